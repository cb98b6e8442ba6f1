"""Server lifecycle: start, stop, cleanup on exit and on kill -9, attach mode, capabilities."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import redis

from redistutor.server import AttachedServer, RedisServer, start_server

from .helpers import redistutor_servers, wait_gone


def test_start_returns_self_and_stop_is_idempotent():
    server = RedisServer()
    assert server.start() is server
    pid, tmp = server.pid, server._tmp
    assert server.running and server.client().ping()
    server.stop()
    server.stop()
    assert not server.running
    assert not wait_gone({pid}), "server process still alive after stop()"
    assert not Path(tmp).exists(), "temp dir left behind"


def test_context_manager_and_repr_show_no_port_or_password():
    with RedisServer() as server:
        text = repr(server)
        assert text.startswith("RedisServer(running, redis=8.")
        assert str(server.port) not in text and server.password not in text
    assert repr(server) .startswith("RedisServer(stopped")


def test_loopback_only_password_required_no_persistence():
    with RedisServer() as server:
        c = server.client()
        assert c.config_get("bind")["bind"] == "127.0.0.1"
        assert c.config_get("save")["save"] == ""
        assert c.config_get("appendonly")["appendonly"] == "no"
        anonymous = redis.Redis(host="127.0.0.1", port=server.port)
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.ping()
        # The password is not on the command line, where `ps` would show it.
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().decode()
        assert server.password not in cmdline


def test_each_server_gets_its_own_port_and_password():
    with RedisServer() as a, RedisServer() as b:
        assert a.port != b.port and a.password != b.password
        a.client().set("k", "a")
        assert b.client().get("k") is None


def test_capabilities_include_redis8_vector_sets_json_and_bloom(redis_server):
    caps = redis_server.capabilities
    assert caps.version >= (8, 0)
    for feature in ("vector-sets", "json", "bloom", "cuckoo", "count-min-sketch", "top-k",
                    "t-digest", "hash-field-ttl", "client-tracking"):
        assert caps.has(feature), feature
    card = redis_server.card()
    assert card.startswith(f"Redis {caps.version_str} (")
    assert "vector sets ✓" in card and "JSON ✓" in card and "Bloom family ✓" in card


def test_modules_work_end_to_end(r):
    assert r.vset().vadd("vs", [0.1, 0.2, 0.3], "a") == 1
    assert r.vset().vdim("vs") == 3
    r.json().set("doc", "$", {"a": [1, 2]})
    assert r.json().get("doc", "$.a") == [[1, 2]]
    assert r.bf().add("bloom", "x") and r.bf().exists("bloom", "x")


def test_rerunning_setup_cell_replaces_the_old_server():
    first = start_server("rerun", quiet=True)
    pid = first.pid
    second = start_server("rerun", quiet=True)
    try:
        assert not first.running and second.running
        assert not wait_gone({pid})
    finally:
        second.stop()


def test_persistence_modes_configure_the_server(tmp_path):
    with RedisServer(persistence="aof-always", data_dir=tmp_path) as server:
        c = server.client()
        assert c.config_get("appendonly")["appendonly"] == "yes"
        assert c.config_get("appendfsync")["appendfsync"] == "always"
        c.set("k", "v")
        server.kill()
        server.restart()
        assert server.client().get("k") == "v"


_CHILD = textwrap.dedent(
    """
    import sys, time
    from redistutor.server import start_server
    s = start_server("child", quiet=True)
    print(s.pid, s._tmp, flush=True)
    if sys.argv[1] == "exit":
        sys.exit(0)
    time.sleep(600)
    """
)


def _spawn_child(mode: str) -> tuple[subprocess.Popen, int, Path]:
    env = dict(os.environ)
    env.pop("REDIS_URL", None)
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, mode], stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline().split()
    assert line, "child did not start a server"
    return proc, int(line[0]), Path(line[1])


def test_server_dies_when_parent_is_killed_with_sigkill():
    before = redistutor_servers()
    proc, pid, tmp = _spawn_child("sleep")
    try:
        assert pid in redistutor_servers()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not wait_gone({pid}), "redis-server survived kill -9 of its parent"
    assert not (redistutor_servers() - before)
    assert not wait_gone_path(tmp), "temp dir survived kill -9 of its parent"


def wait_gone_path(path: Path, timeout: float = 5.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.exists()


def test_server_stops_on_normal_interpreter_exit():
    proc, pid, tmp = _spawn_child("exit")
    proc.wait(timeout=30)
    assert not wait_gone({pid}), "redis-server survived a normal exit of its parent"
    assert not tmp.exists()


def test_server_started_from_a_thread_outlives_the_thread():
    # prctl(PDEATHSIG) would kill it when the thread ends; the guardian must not.
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("s", RedisServer().start()))
    t.start()
    t.join()
    server = box["s"]
    try:
        assert server.client().ping()
    finally:
        server.stop()


# -- attach mode ------------------------------------------------------------------------------


def test_attach_mode_uses_a_private_prefix_and_removes_only_its_keys(monkeypatch):
    with RedisServer() as host:
        host.client().set("someone-else:key", "keep me")
        monkeypatch.setenv("REDIS_URL", host.url)
        a = start_server("nb", quiet=True)
        b = start_server("other", quiet=True)
        try:
            assert a.backend == "attached" and a.namespace and a.namespace != b.namespace
            ra, rb = a.client(), b.client()
            ra.set(a.key("x"), 1)
            rb.set(b.key("x"), 2)
            a.stop()
            c = host.client()
            assert c.get(b.key("x")) == "2" and c.get("someone-else:key") == "keep me"
            assert c.get(a.key("x")) is None
        finally:
            a.stop()
            b.stop()


def test_attached_server_capabilities_are_probed():
    with RedisServer() as host:
        server = AttachedServer(host.url, name="probe").start()
        try:
            assert server.capabilities.version >= (8, 0)
            assert server.capabilities.backend == "attached"
        finally:
            server.stop()


def test_backend_choice(monkeypatch):
    from redistutor.server import _choose_backend

    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("REDISTUTOR_BACKEND", raising=False)
    # A local Redis 8 exists here, so it wins over Docker (milliseconds instead of seconds).
    assert _choose_backend(None) == "local"
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1")
    assert _choose_backend(None) == "attach"
    assert _choose_backend("local") == "local"


def test_docker_backend_without_engine_says_how_to_fix(monkeypatch):
    from redistutor.exceptions import NoServerError
    from redistutor.server import docker_available

    if docker_available():
        pytest.skip("a Docker engine answers on this machine")
    monkeypatch.delenv("REDIS_URL", raising=False)
    with pytest.raises(NoServerError) as info:
        start_server("docker", backend="docker", quiet=True)
    assert "REDISTUTOR_BACKEND=local" in info.value.message


def _create_request(container) -> dict:
    """The JSON body docker-py would POST to /containers/create for this testcontainers container,
    built the way ``DockerContainer.start()`` passes it on (no engine is asked)."""
    import docker.models.containers as dmc

    api = container.get_docker_client().client.api
    kwargs = dict(image=container.image, command=container._command, environment=container.env,
                  ports=container.ports, volumes={}, tmpfs=container.tmpfs, detach=True,
                  version=api._version, **container._kwargs)
    args = dmc._create_container_args(kwargs)
    return api.create_container_config(**args)


def test_docker_container_is_pinned_loopback_only_and_keeps_the_password_off_its_command_line():
    """Issue #10, section 3: built without an engine (docker-py with a fixed API version)."""
    import tarfile

    from testcontainers.core.transferable import build_transfer_tar

    from redistutor.server import DOCKER_IMAGE, DockerServer

    server = DockerServer()
    container = server.build_container(docker_client_kw={"version": "1.44"})
    assert container.image == DOCKER_IMAGE and DOCKER_IMAGE.startswith("redis:8.") and "latest" not in DOCKER_IMAGE
    body = _create_request(container)
    assert body["Image"] == DOCKER_IMAGE
    assert body["HostConfig"]["PortBindings"] == {
        "6379/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(server.port)}]}
    assert server.password not in json.dumps(body), "the password is in the container's config (argv/env)"
    assert body["Cmd"] == ["redis-server", DockerServer.CONF_PATH]
    # The password reaches Redis in a file copied into the container before it starts.
    (payload, path, mode), = container._transferable_specs
    assert path == DockerServer.CONF_PATH
    with tarfile.open(fileobj=io.BytesIO(build_transfer_tar(payload, path, mode))) as tar:
        conf = tar.extractfile(tar.getmembers()[0]).read().decode()
    assert conf == f"requirepass {server.password}\n"


def test_setup_cell_shows_the_card_as_a_view_in_jupyter(monkeypatch):
    """In a kernel the card is displayed as a view (its HTML wraps between items); its text is the
    same line that is printed outside Jupyter."""
    import IPython
    import IPython.display

    from redistutor.capabilities import CapabilityCard
    from redistutor.server import start_server

    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    server = start_server("card-view", backend="local")
    try:
        assert len(shown) == 1 and isinstance(shown[0], CapabilityCard)
        assert repr(shown[0]) == f"✓ {server.card()}"
        assert 'class="rt-items"' in shown[0]._html()
    finally:
        server.stop()


def test_connect_never_replaces_the_notebooks_own_server(monkeypatch):
    from redistutor.server import connect

    monkeypatch.delenv("REDIS_URL", raising=False)
    server = start_server("notebook", backend="local", quiet=True)
    try:
        a = connect(backend="local", quiet=True)
        b = connect(backend="local", quiet=True)
        assert server.running and server.client().ping()  # before: connect() stopped it
        ports = {server.port, a.connection_pool.connection_kwargs["port"],
                 b.connection_pool.connection_kwargs["port"]}
        assert len(ports) == 3 and a.ping() and b.ping()
    finally:
        server.stop()


def test_docker_backend_refuses_local_options_as_attach_mode_does(monkeypatch):
    from redistutor.exceptions import ConfigError

    monkeypatch.delenv("REDIS_URL", raising=False)
    with pytest.raises(ConfigError) as info:
        start_server("docker-options", backend="docker", quiet=True, config={"maxmemory": "10mb"})
    assert "apply to a local server only" in info.value.message and "backend='local'" in info.value.message


def test_one_fail_fast_client_recipe_for_every_lab_client(redis_server):
    from redistutor import lab
    from redistutor.server import fail_fast_options

    assert fail_fast_options(socket_timeout=5)["socket_timeout"] == 5  # the caller's value wins
    c = redis_server.client(fail_fast=True)
    kw = c.connection_pool.connection_kwargs
    assert c.get_retry().get_retries() == 0 and kw["socket_timeout"] == kw["socket_connect_timeout"] == 1.0
    with lab.Node("ff") as node:
        proxied = node.latency(0).client(node.password)
        for client in (node.client(), proxied):
            assert client.get_retry().get_retries() == 0 and client.ping()
        proxied.close()


def test_a_save_setting_replaces_the_persistence_modes_default():
    # Before: persistence="rdb" passed --save "1 1" and config's "3600 1" was appended to it,
    # so the node still snapshotted every second (CONFIG GET save: "1 1 3600 1").
    with RedisServer(name="save-rules", persistence="rdb", config={"save": "3600 1"}) as server:
        assert server.client().config_get("save")["save"] == "3600 1"
    with RedisServer(name="save-default", persistence="rdb") as server:
        assert server.client().config_get("save")["save"] == "1 1"
