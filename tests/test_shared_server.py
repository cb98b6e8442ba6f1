"""Notebooks on a shared server (issue #17, section 2): as a workshop learner, a notebook that needs
Redis servers of its own stops at its setup cell with one sentence naming the notebooks that run
there; the others run under the learner's prefix. On a real Redis 8 with learners made by
redistutor.workshop.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from redistutor import lab, watch, workshop
from redistutor.capabilities import OWN_SERVERS, notebook_requirements, own_server_needs, shared_server_notebooks
from redistutor.check import CORRECT
from redistutor.exceptions import MissingCapability
from redistutor.exercises import guide as guide_ex
from redistutor.exercises import lexicographic_sorted_sets as lex
from redistutor.lab.workers import Endpoint
from redistutor.scenarios import guide
from redistutor.server import AttachedServer, RedisServer, no_own_servers, start_server

from .helpers import clean_env

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
# What starts a server of the notebook's own, in its code or its scenario module.
STARTS_SERVERS = re.compile(r"RedisServer\(|\b(Fleet|Cluster|Replicated|Node)\(|measuring_server\(|"
                            r"backend=\"local\"|start_fleet\(")


@pytest.fixture(scope="module")
def shared():
    """The room's shared Redis 8, as a facilitator runs it (maxmemory, noeviction)."""
    with RedisServer(name="shared-room", config={"maxmemory": "256mb", "maxmemory-policy": "noeviction"}) as server:
        yield server


@pytest.fixture
def learner(shared):
    admin = shared.client()
    (ada,) = workshop.add(admin, shared.url, ["ada"])
    yield ada
    workshop.remove(admin, "ada")


def _setup_cell(nb) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "start_server(" in c.source
                or "start_fleet(" in c.source)


def test_every_notebook_that_starts_servers_of_its_own_declares_it():
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb")):
        nb = json.loads(path.read_text())
        code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
        scenario = ROOT / "redistutor" / "scenarios" / f"{path.stem.split('-', 1)[1].replace('-', '_')}.py"
        source = code + (scenario.read_text() if scenario.exists() else "")
        needs = own_server_needs(notebook_requirements(path))
        assert set(needs) <= set(OWN_SERVERS), path.name
        if STARTS_SERVERS.search(source):
            assert needs, f"{path.name} starts servers of its own: add \"own-servers\" to its requires="


def test_the_notebooks_named_for_a_shared_server_need_no_servers_of_their_own():
    here = shared_server_notebooks(NOTEBOOKS)
    assert {"00-tour", "18-lexicographic-sorted-sets", "22-geospatial"} <= set(here)
    # 17 and 30 never call start_server: they run on fleets of their own only.
    assert not {"08-redlock", "11-hash-tag-colocation", "17-pinterest-task-queue", "30-uber-resilience"} & set(here)
    assert all(not own_server_needs(notebook_requirements(NOTEBOOKS / f"{n}.ipynb")) for n in here)


def test_who_can_start_servers_of_their_own(shared, learner, monkeypatch, tmp_path):
    assert no_own_servers(None) == "" and no_own_servers("default") == ""  # Redis 8 is installed here
    assert "workshop learner" in no_own_servers("ada")
    monkeypatch.setenv("REDIS_URL", learner.url)
    server = start_server("tour", requires={"version": "8.0"}, quiet=True)
    try:
        assert server.namespace.startswith("u:ada:") and "workshop learner" in server.capabilities.no_own_servers
    finally:
        server.stop()
    with pytest.raises(MissingCapability) as refused:
        RedisServer(name="not-for-learners").start()
    assert refused.value.message.startswith("This notebook needs Redis servers of its own, which a workshop learner")
    with pytest.raises(MissingCapability):
        lab.Fleet(1, name="not-for-learners").start()
    # The facilitator's own user on a machine without Redis 8: attaching works, lab notebooks stop.
    clean_env(monkeypatch, tmp_path)
    admin = AttachedServer(shared.url, name="no-binary").start()
    try:
        assert "no Redis 8 is installed here" in admin.capabilities.no_own_servers
        with pytest.raises(MissingCapability, match="which this machine cannot start"):
            admin.require({"version": "8.0", "own-servers": ["fleet"]})
        admin.require({"version": "8.0"})  # the others still run
    finally:
        admin.stop()


def test_a_lab_notebook_stops_at_its_setup_cell_with_one_sentence(learner, monkeypatch):
    monkeypatch.setenv("REDIS_URL", learner.url)
    monkeypatch.setenv("REDISTUTOR_DISPLAY", "text")
    for stem in ("08-redlock", "17-pinterest-task-queue"):  # declared; and a fleet with no start_server
        nb = nbformat.read(NOTEBOOKS / f"{stem}.ipynb", as_version=4)
        stored = nbformat.read(NOTEBOOKS / f"{stem}.ipynb", as_version=4)
        client = NotebookClient(nb, timeout=120, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOKS)}})
        with pytest.raises(CellExecutionError):
            client.execute()
        setup = _setup_cell(nb)
        errors = [(i, o) for i, c in enumerate(nb.cells) if c.cell_type == "code"
                  for o in c.get("outputs", []) if o.output_type == "error"]
        assert [i for i, _ in errors] == [setup], stem  # the setup cell, and nothing after it ran
        assert all(c.get("outputs") == s.get("outputs") for c, s in zip(nb.cells[setup + 1:], stored.cells[setup + 1:]))
        (_, error), = errors
        assert error.ename == "MissingCapability" and len(error.traceback) == 1, error.traceback  # no traceback
        sentence = re.sub(r"\x1b\[[0-9;]*m", "", error.traceback[0])
        assert "needs Redis servers of its own" in sentence and "a workshop learner on a shared server" in sentence
        named = sentence.split("run ", 1)[1].split(" instead")[0]
        assert "00-tour" in named and "18-lexicographic-sorted-sets" in named and stem not in named


def test_an_attachable_notebook_passes_under_nbval_as_a_learner_and_its_exercises_pass(shared, learner):
    env = {**os.environ, "REDIS_URL": learner.url, "REDISTUTOR_STRICT_CAPABILITIES": "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", "notebooks/18-lexicographic-sorted-sets.ipynb",
                          "-p", "no:cacheprovider", "-q"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:]
    summary = run.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary and "failed" not in summary
    # Its exercises, with the reference answers, checked as the learner under their prefix.
    server = AttachedServer(learner.url, name="lexicographic-sorted-sets").start()
    try:
        r = server.client()
        assert lex.events_on_days(r, prefix=server.key("ex1")).evaluate(lex.between_days).outcome == CORRECT
        assert lex.prefix_removal(r, prefix=server.key("ex2")).evaluate(lex.remove_prefix).outcome == CORRECT
    finally:
        server.stop()
    admin = shared.client()
    assert not [k for k in admin.scan_iter(count=1000) if not k.startswith("u:ada:")]  # nothing outside


def who_am_i_worker(ctx, key):
    """A lab worker: records the ACL user its connection logged in as, and writes under the prefix."""
    r = ctx.client()
    user = r.client_info()["user"]
    r.rpush(key, f"{ctx.name}:{user}")
    ctx.record("logged-in", user)


def test_lab_workers_log_in_as_the_learner_under_their_prefix(shared, learner):
    """Workers get the URL's user name (and db, TLS): as the default user they were refused
    ("invalid username-password pair") and every notebook with lab workers failed for a learner."""
    server = AttachedServer(learner.url, name="workers").start()
    try:
        log = lab.EventLog()
        workers = lab.Workers(who_am_i_worker, 2, nodes=[server], args=(server.key("who"),), log=log).start()
        workers.join(60)
        assert workers.exitcodes == {"w1": 0, "w2": 0}
        assert sorted(e.detail for e in log.events if e.kind == "logged-in") == ["ada", "ada"]
        assert sorted(server.client().lrange(server.key("who"), 0, -1)) == ["w1:ada", "w2:ada"]
    finally:
        server.stop()
    tls = Endpoint.of(AttachedServer("rediss://ada:pw@127.0.0.1:6390/2", name="tls"))
    assert (tls.username, tls.password, tls.db, tls.ssl) == ("ada", "pw", 2, True)
    assert tls.connection_kwargs() == {"host": "127.0.0.1", "port": 6390, "password": "pw", "db": 2,
                                       "username": "ada", "ssl": True}
    plain = Endpoint.of(shared)  # a private server: no user name, no TLS, db 0
    assert plain.connection_kwargs() == {"host": shared.host, "port": shared.port, "password": shared.password, "db": 0}


def test_the_watcher_says_one_sentence_and_updates_on_refresh_for_a_learner(shared, learner):
    server = AttachedServer(learner.url, name="watch").start()
    try:
        w = watch(server, "user:*")
        r = server.client()
        r.set(server.key("user:1"), "x")
        assert not w.wait(1, timeout=0.5)  # no keyspace events reach a learner
        assert w.running and not w.notifications and w.events.maxlen and not w.events
        assert w.note.endswith("the view updates only when you call refresh()") and ". " not in w.note
        assert "user:1" in repr(w.refresh())
        w.stop()
        assert not w.running
        assert not [c for c in shared.client().client_list() if c.get("name") == "redistutor-watch"]
        assert not [t for t in threading.enumerate() if t.name == "redistutor-watch"]
    finally:
        server.stop()


def test_the_guide_shows_fleet_only_notebooks_as_not_runnable_for_a_learner(learner):
    server = AttachedServer(learner.url, name="guide").start()
    try:
        runs = {row[0]: row[1] for row in guide.runnable_table(server).rows}
        # The guide's exercise measures under the learner's prefix (it wrote guide:set, refused by the ACL).
        e = guide_ex.hll_bound_exercise(server.client(), sizes=(1_000,), key=server.key)
        assert e.evaluate(e.reference).outcome == CORRECT
    finally:
        server.stop()
    assert runs["17-pinterest-task-queue"] == runs["30-uber-resilience"] == runs["08-redlock"] == "✗ no"
    assert runs["18-lexicographic-sorted-sets"] == runs["00-guide"] == "✓ yes"


# Cheap notebooks that together cover the learner fixes: 00-guide (its measurements under the prefix),
# 00-tour (no CONFIG GET, the watcher's fallback), 13 (lab workers as the learner, SCAN not KEYS).
# The others fixed the same way (04, 12, 14, 23, 24) were run by hand as a learner (CI time).
AS_A_LEARNER = ("00-guide", "00-tour", "13-reliable-queue")


def test_notebooks_with_the_learner_fixes_pass_under_nbval_as_a_learner(shared, learner):
    env = {**os.environ, "REDIS_URL": learner.url, "REDISTUTOR_STRICT_CAPABILITIES": "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", *(f"notebooks/{n}.ipynb" for n in AS_A_LEARNER),
                          "-p", "no:cacheprovider", "-q"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:]
    summary = run.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary and "failed" not in summary
    admin = shared.client()
    assert not [k for k in admin.scan_iter(count=1000) if not k.startswith("u:ada:")]  # nothing outside
