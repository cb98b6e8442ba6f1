"""Lifecycle under the signals a notebook really gets (issue #10, section 1).

Each test runs a stand-in kernel (``tests/_lifecycle_child.py``) in its own session, as Jupyter
starts kernels, and then does to it what Jupyter or a learner does: Interrupt (SIGINT to the
kernel's process group), ``kill -9`` (also inside a spawn window, held open by the
``REDISTUTOR_TEST_PAUSE_AT`` hook), killing its guardian. What survives is checked from outside,
on real processes and real servers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis

from redistutor.race import wait_until

from .helpers import wait_gone

ROOT = Path(__file__).resolve().parent.parent


class Kernel:
    """A child Python running one scenario of tests/_lifecycle_child.py in its own session."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        full_env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REDISTUTOR_TEST_PAUSE_AT")}
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests._lifecycle_child", *args], cwd=ROOT, env=full_env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
        )

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        assert line, f"the kernel stand-in exited early (code {self.proc.wait()})"
        return json.loads(line)

    def send(self, text: str) -> None:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def family(self) -> set[int]:
        """The stand-in's descendants, including ones in other sessions (servers, guardian)."""
        try:
            return {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            return set()

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill9()
        self.proc.stdout.close()


def answers(ep: dict) -> bool:
    c = redis.Redis(port=ep["port"], password=ep["password"], socket_timeout=2, socket_connect_timeout=2)
    try:
        return bool(c.ping())
    except redis.exceptions.RedisError:
        return False
    finally:
        c.close()


def wait_gone_path(path: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return Path(path).exists()


def alive(pids) -> set[int]:
    return {p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE}


# -- 1.1 Interrupt ------------------------------------------------------------------------------


def test_interrupt_stops_the_cells_workers_and_every_server_survives():
    kernel = Kernel("interrupt")
    try:
        ready = kernel.read()
        assert ready["ready"] and len(ready["servers"]) == 3
        # Jupyter's Interrupt: SIGINT to the kernel's whole process group.
        os.killpg(kernel.proc.pid, signal.SIGINT)
        after = kernel.read()
        assert after["interrupted"], "the cell did not see KeyboardInterrupt"
        down = [ep["port"] for ep in ready["servers"] if not answers(ep)]
        assert not down, f"{len(down)} of {len(ready['servers'])} servers died on Interrupt"
        assert after["workers_alive"] == [False, False], "the interrupted cell's workers kept running"
        assert not wait_gone(set(ready["workers"])), "worker processes outlived the interrupt"
        # Workers of an earlier cell are not the interrupted cell's work: SIGINT must not reach them.
        assert after["background_ticks_after"] >= 3 and after["background_alive"] == [True], after
    finally:
        kernel.close()
    assert not wait_gone({ep["pid"] for ep in ready["servers"]}, timeout=10)


# -- 1.2 the window between a spawn and its registration --------------------------------------


@pytest.mark.parametrize("kind, expected", [("server", 1), ("fleet", 3), ("workers", 1)])
def test_kill_9_between_spawn_and_registration_leaves_nothing(kind, expected):
    point = "worker-spawned" if kind == "workers" else "server-spawned"
    kernel = Kernel("pause", kind, env={"REDISTUTOR_TEST_PAUSE_AT": point})
    try:
        paused = kernel.read()
        assert paused["paused"] == point
        # Every spawn of a Fleet pauses in its own thread; wait until all have happened.
        wait_until(lambda: len([p for p in kernel.family() if _is_ours(p, kind)]) >= expected, 60,
                   f"{expected} {kind} processes to be spawned")
        family = kernel.family()
        kernel.kill9()
        assert not wait_gone(family, timeout=15), \
            f"a kill -9 inside the spawn window orphaned {sorted(alive(family))}"
        if "dir" in paused:
            assert not wait_gone_path(paused["dir"]), "its temp dir was left"
    finally:
        kernel.close()


@pytest.mark.parametrize("kind", ["server", "fleet", "workers"])
def test_kill_9_right_after_a_temp_dir_is_made_leaves_no_dir(kind):
    """The dir exists and nothing else does yet: it must still be registered (it was made with
    mkdtemp and registered afterwards, so a kill in between left it in /tmp)."""
    kernel = Kernel("pause", kind, env={"REDISTUTOR_TEST_PAUSE_AT": "dir-created"})
    try:
        paused = kernel.read()
        assert paused["paused"] == "dir-created" and Path(paused["dir"]).is_dir()
        kernel.kill9()
        assert not wait_gone_path(paused["dir"]), f"{paused['dir']} left after kill -9"
    finally:
        kernel.close()


def _is_ours(pid: int, kind: str) -> bool:
    try:
        cmd = " ".join(psutil.Process(pid).cmdline())
    except psutil.NoSuchProcess:
        return False
    if kind == "workers":
        return "spawn_main" in cmd
    # A server counts once it listens: killed earlier, it would die by itself when the guardian
    # removes the config file it has not read yet, and the test would prove nothing.
    try:
        return "redis-server" in cmd and any(
            c.status == psutil.CONN_LISTEN for c in psutil.Process(pid).net_connections("tcp"))
    except psutil.NoSuchProcess:
        return False


# -- 1.3 module-probe servers -------------------------------------------------------------------


def test_module_probe_server_is_guarded_like_any_other():
    """The probe that decides which modules load (first start with an empty cache) is a server
    like the others: loopback, a password (not in argv), argv kept for the orphan check, and
    registered, so a kill -9 of its parent in mid-probe leaves nothing."""
    kernel = Kernel("pause", "probe", env={"REDISTUTOR_TEST_PAUSE_AT": "server-spawned"})
    try:
        paused = kernel.read()
        assert paused["paused"] == "server-spawned", "the module probe bypasses the guarded spawn"
        pid = paused["child"]
        wait_until(lambda: _is_ours(pid, "server"), 60, "the paused server to be ours")
        argv = psutil.Process(pid).cmdline()
        assert argv[argv.index("--bind") + 1] == "127.0.0.1"
        assert argv[argv.index("--set-proc-title") + 1] == "no"  # the orphan check can see it
        assert any(paused["dir"] in a for a in argv) and "redistutor-" in paused["dir"]
        assert not any("requirepass" in a for a in argv)
        port = int(argv[argv.index("--port") + 1])
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=port, socket_timeout=2).ping()
        kernel.kill9()
        assert not wait_gone({pid}, timeout=15), "a probe server outlived kill -9 of its parent"
        assert not wait_gone_path(paused["dir"])
    finally:
        kernel.close()


# -- 1.4 re-running a setup cell ---------------------------------------------------------------


def _servers_of(kernel: Kernel) -> set[int]:
    out = set()
    for pid in kernel.family():
        try:
            if "redis-server" in " ".join(psutil.Process(pid).cmdline()):
                out.add(pid)
        except psutil.NoSuchProcess:
            continue
    return out


def test_rerunning_a_setup_cell_replaces_what_it_started_and_stop_all_sees_everything():
    kernel = Kernel("ipython")
    try:
        assert kernel.read()["step"] == "setup cells re-run"
        # 2 (last run of the Fleet(2) cell) + 1 (last run of the Fleet(1) cell) + 2 (one run, two
        # fleets); without replacement it would be 3*2 + 2*1 + 2 = 10.
        running = alive(_servers_of(kernel))
        assert len(running) == 5, f"{len(running)} servers running after the re-runs, expected 5"
        kernel.send("cleanup")
        assert kernel.read()["step"] == "stop_all"
        assert not wait_gone(running), "lab.stop_all() did not stop every server the cells started"
    finally:
        kernel.close()


def test_a_named_lab_replaces_the_running_one_of_the_same_name():
    kernel = Kernel("rerun")
    try:
        ready = kernel.read()
        assert ready["running"] == [0, 0, 2], ready
        assert len(alive(_servers_of(kernel))) == 2
    finally:
        kernel.close()


# -- 1.5 the guardian's own death ----------------------------------------------------------------


def test_a_replacement_guardian_is_told_every_earlier_registration():
    kernel = Kernel("guardian")
    try:
        ready = kernel.read()
        first = ready["guardian"]
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 15
        now = first
        while now in (first, None) and time.monotonic() < deadline:
            kernel.send("guardian?")
            now = kernel.read()["guardian"]
            time.sleep(0.05)
        server = ready["servers"][0]
        assert answers(server)
        kernel.kill9()
        assert not wait_gone({server["pid"]}, timeout=15), \
            "the server registered before the guardian died outlived kill -9 of its kernel"
        assert not wait_gone_path(ready["tmp"])
        assert now not in (first, None)
    finally:
        kernel.close()


# -- 1.6 SQLite stand-in databases ---------------------------------------------------------------


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_database_temp_dir_is_removed_on_exit_and_on_kill_9(how):
    kernel = Kernel("database", how)
    try:
        ready = kernel.read()
        if how == "kill":
            kernel.kill9()
        else:
            assert kernel.proc.wait(timeout=60) == 0
        assert not wait_gone_path(ready["tmp"]), f"{ready['tmp']} left after {how}"
    finally:
        kernel.close()


# -- 1.7 attach mode: a killed kernel's namespace --------------------------------------------------


@pytest.mark.parametrize("cleaner", ["next start", "python -m redistutor clean"])
def test_a_killed_kernels_namespace_is_removed_later_and_nobody_elses(cleaner, monkeypatch):
    from redistutor import __main__ as cli
    from redistutor.server import AttachedServer, RedisServer

    with RedisServer(modules=()) as shared:
        admin = shared.client()
        # A stranger's keys, one of them looking like ours but never registered by redistutor.
        admin.set("user:1", "alice")
        admin.hset("rt:someone:else", mapping={"a": "1"})
        stranger = {k: admin.dump(k) for k in ("user:1", "rt:someone:else")}
        monkeypatch.setenv("REDIS_URL", shared.url)
        alive_nb = AttachedServer(shared.url, name="still-running").start()
        alive_nb.client().set(alive_nb.key("k"), "v")
        kernel = Kernel("attach", env={"REDIS_URL": shared.url, "REDISTUTOR_LEASE_SECONDS": "1"})
        try:
            ns = kernel.read()["namespace"]
            assert len(admin.keys(ns + "*")) == 12
            kernel.kill9()
        finally:
            kernel.close()
        # The kernel is gone; its lease (1 s here) runs out on the server's own clock.
        wait_until(lambda: not admin.exists(f"rt:_lease:{ns}"), 30, "the dead kernel's lease to expire")
        if cleaner == "next start":
            AttachedServer(shared.url, name="next-notebook").start().stop()
        else:
            assert cli.main(["clean"]) == 0
        assert admin.keys(ns + "*") == [], "the killed kernel's keys are still on the shared server"
        assert {k: admin.dump(k) for k in stranger} == stranger, "a stranger's keys were touched"
        assert admin.get(alive_nb.key("k")) == "v", "a live notebook's keys were removed"
        alive_nb.stop()
        assert admin.keys("rt:*") == ["rt:someone:else"]
