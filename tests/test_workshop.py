"""Shared-server workshops on a real Redis 8: learners confined by ACL users (redistutor.workshop)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis

from redistutor import workshop
from redistutor.exercises import tour
from redistutor.server import AttachedServer, RedisServer


@pytest.fixture(scope="module")
def shared():
    """The facilitator's server: a private local one standing in for the room's shared Redis."""
    with RedisServer(name="workshop-shared") as server:
        yield server


@pytest.fixture
def room(shared):
    admin = shared.client()
    ada, bob = workshop.add(admin, shared.url, ["Ada", "bob"])
    yield admin, ada, bob
    for name in workshop.learners(admin):
        workshop.remove(admin, name)
    admin.flushall()


def _client(learner):
    return redis.Redis.from_url(learner.url, decode_responses=True)


def test_a_learner_cannot_touch_another_learners_keys_or_the_server(room):
    admin, ada, bob = room
    a, b = _client(ada), _client(bob)
    b.set("u:bob:secret", "42")
    a.set("u:ada:mine", "1")
    denied = {
        "read": lambda: a.get("u:bob:secret"), "write": lambda: a.set("u:bob:secret", "0"),
        "delete": lambda: a.delete("u:bob:secret"), "outside any prefix": lambda: a.set("plain", "x"),
        "a script on B's key": lambda: a.eval("return redis.call('GET', KEYS[1])", 1, "u:bob:secret"),
        "publish to B": lambda: a.publish("u:bob:news", "hi"), "flushall": a.flushall, "flushdb": a.flushdb,
        "config set": lambda: a.config_set("maxmemory", "1"), "config get": lambda: a.config_get("requirepass"),
        "debug": lambda: a.execute_command("DEBUG", "SLEEP", "0"), "shutdown": lambda: a.execute_command("SHUTDOWN"),
        "script flush": a.script_flush, "function flush": a.function_flush,
        "acl": lambda: a.acl_setuser("ada", commands=["+@all"]),
        "client kill": lambda: a.execute_command("CLIENT", "KILL", "TYPE", "normal"),
    }
    for what, call in denied.items():
        with pytest.raises(redis.exceptions.NoPermissionError):
            call()
        assert admin.get("u:bob:secret") == "42", what
    # MODULE LOAD is refused before the ACL check here (enable-module-command); ask the ACL itself.
    assert "no permissions" in admin.execute_command("ACL", "DRYRUN", "ada", "MODULE", "LOAD", "/tmp/x.so")
    p = a.pubsub()
    with pytest.raises(redis.exceptions.NoPermissionError):
        p.subscribe("u:bob:news")
        p.get_message(timeout=1)
    # Key names are not private: SCAN lists B's key to A (Redis ACLs confine access, not names).
    assert "u:bob:secret" in set(a.scan_iter(count=1000))
    a.close(), b.close(), p.close()


def test_a_learners_notebook_attaches_under_their_prefix_and_exercises_pass(room):
    admin, ada, _ = room
    server = AttachedServer(ada.url, name="tour").start()
    try:
        assert server.namespace.startswith("u:ada:rt:tour:") and server.capabilities.version >= (8, 0)
        r = server.client()
        assert tour.visits_exercise(r, prefix=server.key("ex2")).evaluate(tour.add_visits).outcome == "correct"
        assert tour.lock_exercise(r, prefix=server.key("lock"), threads=4).evaluate(tour.acquire).outcome == "correct"
        r.set(server.key("left"), "1")
        assert admin.exists(f"u:ada:rt:_lease:{server.namespace}") and admin.sismember(
            "u:ada:rt:_namespaces", server.namespace)
    finally:
        server.stop()
    assert not [k for k in admin.scan_iter(match="u:ada:rt:tour:*")]  # stop() removed its keys


def test_reset_list_and_remove_touch_one_learner_only(room):
    admin, ada, bob = room
    _client(ada).set("u:ada:k", "v" * 100)
    _client(bob).set("u:bob:k", "v")
    usage = workshop.memory_by_learner(admin)
    assert set(usage) == {"ada", "bob"} and usage["ada"][0] == 1 and usage["ada"][1] > usage["bob"][1]
    assert workshop.reset(admin, "ada") == 1 and admin.get("u:bob:k") == "v"
    assert workshop.remove(admin, "bob") == 1 and workshop.learners(admin) == ["ada"]
    with pytest.raises(redis.exceptions.AuthenticationError):
        _client(bob).ping()


def test_bad_names_and_unknown_learners_get_one_sentence(room):
    admin, _, _ = room
    from redistutor.exceptions import ConfigError
    with pytest.raises(ConfigError, match="lower-case letters"):
        workshop.add(admin, "redis://x", ["Ada Lovelace"])
    with pytest.raises(ConfigError, match="workshop list"):
        workshop.remove(admin, "nobody")


def test_the_command_line_adds_from_a_csv_and_prints_the_sheet(shared, tmp_path):
    csv_file = tmp_path / "learners.csv"
    csv_file.write_text("name,email\ncy,cy@example.org\ndee,dee@example.org\n")
    env = {**os.environ, "REDIS_URL": shared.url}
    run = subprocess.run([sys.executable, "-m", "redistutor", "workshop", "add", str(csv_file)],
                         capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "name,REDIS_URL" and [x.split(",")[0] for x in lines[1:]] == ["cy", "dee"]
    cy = redis.Redis.from_url(lines[1].split(",", 1)[1], decode_responses=True)
    assert cy.set("u:cy:ok", "1") and cy.acl_whoami() == "cy"
    cy.close()
    listed = subprocess.run([sys.executable, "-m", "redistutor", "workshop", "list"],
                            capture_output=True, text=True, env=env, timeout=60)
    rows = [line.split(",") for line in listed.stdout.splitlines()]
    assert rows[0] == ["learner", "keys", "bytes"] and rows[1][:2] == ["cy", "1"] and int(rows[1][2]) > 0
    assert rows[2] == ["dee", "0", "0"]
    admin = shared.client()
    for name in ("cy", "dee"):
        workshop.remove(admin, name)
