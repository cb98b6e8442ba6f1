"""A workshop on a real JupyterHub (issue #17, section 1), and the hub settings of the local server.

The hub is jupyterhub from the package registry with its proxy, configurable-http-proxy, from the
npm registry (pinned; installed once into the per-user cache by redistutor.hub.proxy_command), on
127.0.0.1, with a shared-password login and the local-process spawner. Five learners log in through
the login form at the same time, each starts a server through the hub's REST API, opens a kernel on
notebooks/01-cache-aside.ipynb through the proxy and runs it over the kernel's websocket. Then, from
inside the learners' own kernels: each one's Redis refuses the others (learner B, knowing A's port,
gets NOAUTH, and WRONGPASS for a guessed password), an exercise check passes with the reference
answer, and a restarted kernel rebuilds its state from the setup cell. Then the idle culler
(jupyterhub-idle-culler, as TLJH and Zero to JupyterHub run it) stops every idle server, which takes
each learner's kernel and Redis with it, and a learner who comes back spawns again and reruns the
setup cell. Last, the hub is stopped and no process of any learner (server, kernel, Redis, guardian)
is left.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest
import redis

from redistutor import hub as H
from redistutor.exceptions import ConfigError
from redistutor.race import wait_until
from redistutor.server import RedisServer

from .helpers import wait_gone

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "01-cache-aside.ipynb"
LEARNERS = [f"learner-{c}" for c in "abcde"]
NOBODY = 65534

# Run in a learner's kernel: what the server looks like from there (its own view, with its password).
WHOAMI = """
import json, os
print(json.dumps({"port": server.port, "pid": server.pid, "socket": str(server.unix_socket),
                  "maxmemory": r.config_get("maxmemory")["maxmemory"], "cwd": os.getcwd(),
                  "keys": r.dbsize()}))
"""
# Run in learner B's kernel against learner A's port: the server's own replies on a raw connection.
KNOCK = """
import json, socket
def knock(port, line):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(line)
        return s.recv(200).decode().strip()
print(json.dumps([knock({port}, b"PING\\r\\n"), knock({port}, b"AUTH guessed-password\\r\\n"),
                  knock({port}, b"GET user:1\\r\\n")]))
"""
# The exercise the notebook leaves for the learner, answered with its reference solution.
SOLVE = """
import redis  # the reference solution names redis.Redis in its signature
before = ex1.evaluate(get_users).outcome
exec(str(ex1.solution()), globals())
print(json.dumps([before, ex1.evaluate(get_users).outcome]))
"""


def last_json(text: str):
    return json.loads(text.strip().splitlines()[-1])


@pytest.mark.timeout(600)
def test_five_learners_run_a_notebook_on_a_real_hub_isolated_and_nothing_outlives_it(tmp_path):
    H.proxy_command()  # installs the pinned proxy from the npm registry on first use (or says how)
    seen: dict[str, dict] = {}
    knocks: dict[str, list[str]] = {}
    solved: dict[str, list[str]] = {}
    restart: dict[str, object] = {}
    all_in = asyncio.Barrier(len(LEARNERS))

    async def after(learner: H.HubLearner, kernel_id: str, channel: H.KernelChannel) -> None:
        me = await channel.run(WHOAMI)
        assert me.status == "ok", me.error
        seen[learner.name] = mine = last_json(me.text)
        sock = Path(mine["socket"])  # looked at from outside, while the server is up
        mine["socket_modes"] = [stat.S_ISSOCK(sock.stat().st_mode), oct(stat.S_IMODE(sock.stat().st_mode)),
                                oct(stat.S_IMODE(sock.parent.stat().st_mode))]
        async with asyncio.timeout(300):
            await all_in.wait()  # every learner's server is up: now each one knocks on the next one's
        target = LEARNERS[(LEARNERS.index(learner.name) + 1) % len(LEARNERS)]
        knock = await channel.run(KNOCK.replace("{port}", str(seen[target]["port"])))
        assert knock.status == "ok", knock.error
        knocks[learner.name] = last_json(knock.text)
        solve = await channel.run(SOLVE)
        assert solve.status == "ok", solve.error
        solved[learner.name] = last_json(solve.text)
        if learner.name == LEARNERS[0]:
            # A culled (or restarted) kernel loses every variable and its Redis; the setup cell
            # brings both back, so the notebook reruns from the top.
            await learner.restart_kernel(kernel_id)
            restart["old_redis_gone"] = not wait_gone({seen[learner.name]["pid"]}, timeout=30)
            fresh = await learner.channel(kernel_id)
            lost = await fresh.run("server")
            restart["lost"] = lost.error
            setup = await fresh.run(H.notebook_cells(NOTEBOOK)[0][0])
            assert setup.status == "ok", setup.error
            again = await fresh.run(WHOAMI)
            assert again.status == "ok", again.error
            restart["again"] = last_json(again.text)

    culler_token = secrets.token_hex(16)
    culler = {"JupyterHub.services": [{"name": "idle-culler", "api_token": culler_token}],
              "JupyterHub.load_roles": [{"name": "idle-culler", "services": ["idle-culler"], "scopes": [
                  "list:users", "read:users:activity", "read:servers", "delete:servers"]}]}
    root = tmp_path / "hub"
    with H.LoopbackHub(root, extra_config=culler) as hub:
        for name in LEARNERS:
            hub.seed(name, [NOTEBOOK])
        # every code cell but the last (server.stop()): the learners' servers stay up for the checks
        cells = len(H.notebook_cells(NOTEBOOK)) - 1
        runs = asyncio.run(H.run_learners(hub.url, LEARNERS, hub.password, NOTEBOOK, cells=cells, after=after))
        text, go = H.report(runs, max_spawn_s=1e9, max_first_cell_s=1e9)
        print(text)
        assert [r.failure for r in runs] == [None] * len(LEARNERS), text + "\n" + hub.log_tail()
        assert go and all(len(r.cells) == cells for r in runs)

        # Each learner: its own server (own port and process), capped, in its own home.
        assert len({s["port"] for s in seen.values()}) == len({s["pid"] for s in seen.values()}) == len(LEARNERS)
        for name, s in seen.items():
            assert s["cwd"] == str(hub.home(name)) and s["maxmemory"] == str(256 * 2**20) and s["keys"] > 0
            assert s["socket_modes"] == [True, "0o700", "0o700"]  # a socket, in a dir only its OS user enters
        # ... and refuses every other learner: no command without the password, a guessed one refused.
        for name, replies in knocks.items():
            assert replies[0].startswith("-NOAUTH") and replies[1].startswith("-WRONGPASS"), (name, replies)
            assert replies[2].startswith("-NOAUTH"), (name, replies)
        assert solved == {name: ["not attempted", "correct"] for name in LEARNERS}
        assert restart["old_redis_gone"] and "NameError" in str(restart["lost"])
        again = restart["again"]
        assert isinstance(again, dict) and again["pid"] != seen[LEARNERS[0]]["pid"] and again["keys"] == 0

        learner_procs = H.marked_processes(hub.marker)
        kinds = sorted(learner_procs.values())
        assert kinds.count("singleuser") == kinds.count("kernel") == len(LEARNERS), kinds
        assert kinds.count("redis-server") >= len(LEARNERS), kinds
        assert hub.proc is not None
        print(H.memory_line(hub.marker, len(LEARNERS)))

        # The idle culler (jupyterhub-idle-culler, as TLJH and z2jh run it) stops every idle server;
        # each learner's kernel and Redis go with it, and the notebook reruns from the top.
        env = {**os.environ, "JUPYTERHUB_API_TOKEN": culler_token}
        cull = subprocess.Popen([sys.executable, "-m", "jupyterhub_idle_culler", f"--url={hub.url}/hub/api",
                                 "--timeout=1", "--cull-every=2"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_until(lambda: not H.marked_processes(hub.marker), timeout=120, step=0.5,
                       what="the idle culler stopping every learner's server, kernel and Redis")
        finally:
            cull.kill()
            cull.wait()
        assert not wait_gone(set(learner_procs), timeout=30)
        reruns: dict[str, dict] = {}

        async def rerun(learner: H.HubLearner, kernel_id: str, channel: H.KernelChannel) -> None:
            me = await channel.run(WHOAMI)
            assert me.status == "ok", me.error
            reruns[learner.name] = last_json(me.text)

        (back,) = asyncio.run(H.run_learners(hub.url, LEARNERS[:1], hub.password, NOTEBOOK, cells=1, after=rerun))
        assert back.ok, back.failure
        assert reruns[LEARNERS[0]]["pid"] not in {seen[LEARNERS[0]]["pid"], again["pid"]}
        assert reruns[LEARNERS[0]]["keys"] == 0
        hub_family = {p.pid for p in psutil.Process(hub.proc.pid).children(recursive=True)} | {hub.proc.pid}
        learner_procs.update(H.marked_processes(hub.marker))
    # The hub stopped every learner's server, each server its kernel, each kernel its Redis, by
    # itself: stop()'s safety net had nothing to kill.
    assert hub.left_behind == {}
    assert not wait_gone(set(learner_procs) | hub_family, timeout=60)
    assert H.marked_processes(hub.marker) == {}


# ---------------------------------------------------------------------------------------------
# The hub's settings for each learner's private server (read by redistutor.server.RedisServer)


def test_stop_kills_and_names_learner_processes_the_hub_left(tmp_path):
    """The safety net under the hub: a learner process still alive after the hub exited (as a
    kernel that hung while starting was, once, in a 20-learner load test) is killed and listed."""
    hub = H.LoopbackHub(tmp_path)
    hub.proc = subprocess.Popen([sys.executable, "-c", "pass"])          # the hub, already exiting
    stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                             env={**os.environ, "REDISTUTOR_HUB_MARKER": hub.marker})
    try:
        wait_until(lambda: stray.pid in H.marked_processes(hub.marker), timeout=10)
        hub.stop(grace=0.5)
        assert hub.left_behind == {stray.pid: "other"}
        assert stray.wait(timeout=10) == -9
    finally:
        stray.kill()


def test_hub_settings_cap_memory_and_add_a_private_unix_socket(monkeypatch):
    monkeypatch.setenv("REDISTUTOR_MAXMEMORY", "64mb")
    monkeypatch.setenv("REDISTUTOR_UNIXSOCKET", "1")
    with RedisServer(modules=()) as capped, RedisServer(modules=(), config={"maxmemory": "10mb"}) as own:
        c = capped.client()
        assert c.config_get("maxmemory") == {"maxmemory": str(64 * 2**20)}
        assert own.client().config_get("maxmemory") == {"maxmemory": str(10 * 2**20)}  # a notebook's own wins
        sock = capped.unix_socket
        assert sock is not None and stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(sock.stat().st_mode) == 0o700
        over_socket = redis.Redis(unix_socket_path=str(sock), password=capped.password, decode_responses=True)
        assert over_socket.set("k", "v") and c.get("k") == "v"  # the same server, over the socket
        over_socket.close()
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(unix_socket_path=str(sock)).ping()  # the socket does not skip the password
        tmp = capped._tmp
    assert tmp is not None and not tmp.exists()  # stop() removes the socket's dir


def test_a_deep_temp_dir_still_gets_a_private_socket(monkeypatch, tmp_path):
    """A socket path must fit in 104-108 bytes: under a deep TMPDIR (a hub learner's, a test's) the
    server's private dir moves to /tmp, still 0700, and the socket works."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setenv("TMPDIR", str(deep))
    monkeypatch.setattr(tempfile, "tempdir", None)        # re-read TMPDIR
    monkeypatch.setenv("REDISTUTOR_UNIXSOCKET", "1")
    with RedisServer(modules=()) as server:
        sock = server.unix_socket
        assert sock is not None and sock.parent.parent == Path("/tmp") and len(str(sock)) <= 100
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        assert redis.Redis(unix_socket_path=str(sock), password=server.password).ping()
    monkeypatch.delenv("REDISTUTOR_UNIXSOCKET")
    with RedisServer(modules=()) as plain:             # without a socket the temp dir is kept
        assert plain._tmp is not None and plain._tmp.parent == deep


def test_without_the_hub_settings_no_socket_and_no_cap(monkeypatch):
    monkeypatch.delenv("REDISTUTOR_MAXMEMORY", raising=False)
    monkeypatch.delenv("REDISTUTOR_UNIXSOCKET", raising=False)
    with RedisServer(modules=()) as plain:
        assert plain.unix_socket is None
        assert plain.client().config_get("maxmemory") == {"maxmemory": "0"}
        assert "--unixsocket" not in plain._argv() and "--maxmemory" not in plain._argv()


def test_a_bad_memory_cap_says_how_to_write_it(monkeypatch):
    monkeypatch.setenv("REDISTUTOR_MAXMEMORY", "lots")
    with pytest.raises(ConfigError, match=r"REDISTUTOR_MAXMEMORY='lots' is not a memory size: set it like 256mb"):
        RedisServer(modules=())


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to act as nobody")
def test_another_os_user_cannot_reach_the_private_socket(monkeypatch):
    """On a hub with a Unix user per learner (TLJH, LocalProcessSpawner): the socket's 0700 dir keeps
    every other user out before the password is even asked; TCP still asks for the password."""
    monkeypatch.setenv("REDISTUTOR_UNIXSOCKET", "1")
    probe = """
import socket, sys
try:
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"PING\\r\\n"); unix = s.recv(100).decode()
except OSError as e:
    unix = type(e).__name__
t = socket.create_connection(("127.0.0.1", int(sys.argv[2]))); t.sendall(b"PING\\r\\n")
print(unix, "|", t.recv(100).decode().strip())
"""
    with RedisServer(modules=()) as server:
        assert server.unix_socket is not None
        as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "/usr/bin/python3",
                     "-I", "-c", probe, str(server.unix_socket), str(server.port)]
        out = subprocess.run(as_nobody, capture_output=True, text=True, timeout=30, cwd="/")
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["PermissionError", "|", "-NOAUTH", "Authentication", "required."], out.stdout


# ---------------------------------------------------------------------------------------------
# workshop/: the configurations parse, and agree with each other and with the runtime

WORKSHOP = ROOT / "workshop"
LEARNER_ENV = {
    "REDISTUTOR_REDIS_SERVER": "/opt/redistutor/bin/redis-server", "REDISTUTOR_CACHE": "/opt/redistutor/cache",
    "REDISTUTOR_NO_BUILD": "1", "REDISTUTOR_MAXMEMORY": "256mb", "REDISTUTOR_UNIXSOCKET": "1",
}


def load_hub_config(path: Path, monkeypatch) -> dict:
    """The file read by traitlets' own loader, as `jupyterhub -f` reads it."""
    from traitlets.config.loader import PyFileConfigLoader

    monkeypatch.setenv("REDISTUTOR_WORKSHOP_PASSWORD", "a-test-password")
    return PyFileConfigLoader(path.name, path=str(path.parent)).load_config()


def learner_settings(c) -> dict:
    """Spawner.environment with its one per-learner value called as JupyterHub calls it (with the spawner)."""
    from types import SimpleNamespace

    env = dict(c.Spawner.environment)
    runtime = env.pop("JUPYTER_RUNTIME_DIR")(SimpleNamespace(user=SimpleNamespace(name="ada")))
    assert runtime == "/run/jupyter-ada" and len(f"{runtime}/kernel-{'0' * 36}-ipc-4") < 107  # a socket path
    assert c.Spawner.args == ["--KernelManager.transport=ipc"]
    assert c.SystemdSpawner.unit_extra_properties == {"RuntimeDirectory": "jupyter-{USERNAME}",
                                                      "RuntimeDirectoryMode": "0700"}
    return env


def test_single_host_config_sets_limits_culler_and_learner_settings(monkeypatch):
    c = load_hub_config(WORKSHOP / "jupyterhub_config.py", monkeypatch)
    assert c.JupyterHub.authenticator_class == "shared-password"
    assert c.SharedPasswordAuthenticator.user_password == "a-test-password"
    assert c.JupyterHub.spawner_class == "systemdspawner.SystemdSpawner" and c.SystemdSpawner.dynamic_users
    assert (c.SystemdSpawner.mem_limit, c.SystemdSpawner.cpu_limit) == ("1G", 1.0)
    assert learner_settings(c) == LEARNER_ENV
    (culler,) = c.JupyterHub.services
    assert culler["command"][1:] == ["-m", "jupyterhub_idle_culler", "--timeout=3600", "--cull-every=300"]
    (role,) = c.JupyterHub.load_roles
    assert role["services"] == ["idle-culler"] and "delete:servers" in role["scopes"]


def test_single_host_config_without_a_password_names_the_variable(monkeypatch):
    from traitlets.config.loader import PyFileConfigLoader

    monkeypatch.delenv("REDISTUTOR_WORKSHOP_PASSWORD", raising=False)
    with pytest.raises(KeyError, match="REDISTUTOR_WORKSHOP_PASSWORD"):
        PyFileConfigLoader("jupyterhub_config.py", path=str(WORKSHOP)).load_config()


def test_tljh_setup_and_config_agree_with_the_other_hubs(monkeypatch):
    c = load_hub_config(WORKSHOP / "tljh" / "redistutor_config.py", monkeypatch)
    assert learner_settings(c) == LEARNER_ENV
    script = (WORKSHOP / "tljh" / "setup.sh").read_text()
    assert subprocess.run(["bash", "-n", str(WORKSHOP / "tljh" / "setup.sh")]).returncode == 0
    settings = dict(line.split()[2:4] for line in script.splitlines() if line.startswith("tljh-config set "))
    assert settings == {"limits.memory": "1G", "limits.cpu": "1", "services.cull.timeout": "3600",
                        "services.cull.every": "300", "user_environment.default_app": "jupyterlab"}
    assert "/opt/tljh/config/jupyterhub_config.d/redistutor.py" in script
    assert os.access(WORKSHOP / "tljh" / "setup.sh", os.X_OK)


def test_z2jh_values_and_image_agree_with_the_other_hubs():
    import yaml

    from redistutor import provision

    values = yaml.safe_load((WORKSHOP / "z2jh" / "values.yaml").read_text())
    user = values["singleuser"]
    assert (user["memory"], user["cpu"]) == ({"limit": "1G", "guarantee": "512M"}, {"limit": 1, "guarantee": 0.25})
    assert user["extraEnv"] == LEARNER_ENV
    assert values["cull"] == {"enabled": True, "timeout": 3600, "every": 300}
    dockerfile = (WORKSHOP / "z2jh" / "Dockerfile").read_text()
    # the image builds the release provision.py pins first, and the env names where it links it
    assert f"ARG REDIS_VERSION={provision.SOURCES[0].version}\n" in dockerfile
    assert provision.SOURCES[0].kind == "upstream"
    for key in ("REDISTUTOR_CACHE", "REDISTUTOR_REDIS_SERVER"):
        assert f"{key}={LEARNER_ENV[key]}" in dockerfile


def test_nbgitpuller_link_is_pinned_to_a_tag_and_url_encoded():
    import urllib.parse

    link = H.nbgitpuller_link("https://hub.example.org/", "v1.0+rc 2", repo="https://github.com/o/redistutor.git",
                              path="notebooks/01-cache-aside.ipynb")
    base, _, query = link.partition("?")
    assert base == "https://hub.example.org/hub/user-redirect/git-pull"
    assert "v1.0%2Brc%202" in query and "https%3A%2F%2Fgithub.com%2Fo%2Fredistutor.git" in query
    assert urllib.parse.parse_qs(query) == {"repo": ["https://github.com/o/redistutor.git"], "branch": ["v1.0+rc 2"],
                                            "urlpath": ["lab/tree/redistutor/notebooks/01-cache-aside.ipynb"]}
    for tag in ("main", ""):
        with pytest.raises(ConfigError, match="is not a release tag: pass a tag such as v1.0"):
            H.nbgitpuller_link("https://hub.example.org", tag, repo="https://github.com/o/redistutor")
    with pytest.raises(ConfigError, match="is not a hub URL: pass it as https://hub.example.org"):
        H.nbgitpuller_link("hub.example.org", "v1.0", repo="https://github.com/o/redistutor")


def test_link_and_loadtest_commands_say_what_is_missing(capsys):
    from redistutor.__main__ import main

    link = ["workshop", "link", "--hub", "https://h.example", "--tag", "v2", "--repo", "https://g.example/o/r"]
    assert main(link) == 0
    assert capsys.readouterr().out.strip() == ("https://h.example/hub/user-redirect/git-pull?repo=https%3A%2F%2F"
                                               "g.example%2Fo%2Fr&branch=v2&urlpath=lab%2Ftree%2Fr%2Fnotebooks%2F"
                                               "00-guide.ipynb")
    assert main(["workshop", "loadtest", "--users", "3"]) == 2
    assert "needs --hub URL --password PASSWORD" in capsys.readouterr().err
    assert main(["workshop", "loadtest", "--local", "--notebook", "nope.ipynb"]) == 2
    assert "no notebook at nope.ipynb" in capsys.readouterr().err


def test_loadtest_report_says_no_go_on_a_failure_or_a_slow_spawn():
    ok = [H.LearnerRun("a", spawn_s=10.0, first_cell_s=2.0), H.LearnerRun("b", spawn_s=20.0, first_cell_s=3.0)]
    text, go = H.report(ok, max_spawn_s=60)
    assert go and text.splitlines()[-1] == "GO: all 2 learners spawned and ran the setup cell"
    assert text.splitlines()[-2] == "spawn: median 20.0 s, slowest 20.0 s; first cell: median 3.0 s, slowest 3.0 s"
    failed = [*ok, H.LearnerRun("c", failure="could not spawn a server: TimeoutError: ")]
    text, go = H.report(failed)
    assert not go and text.splitlines()[-1] == "NO-GO: 1 of 3 learners failed"
    text, go = H.report(ok, max_spawn_s=15)
    assert not go and text.splitlines()[-1].startswith("NO-GO: slowest spawn over 15 s")
    reopened = [H.LearnerRun("a", spawn_s=10.0, first_cell_s=2.0, reconnects=1)]
    text, go = H.report(reopened)
    assert go and "note: 1 learner(s)' kernel websocket closed before the kernel answered" in text
