"""The experiments of notebooks/00-multi-node-lab.ipynb, each behind a one-line helper.

The lab itself (:mod:`redistutor.lab`: nodes, fleets, replication, a cluster, workers) is the
toolkit; this module holds what the notebook does *with* it: the worker functions it runs in OS
processes, the WAIT and CLUSTERDOWN demonstrations, the kill -9 persistence trials, and the views
of their results. Every helper returns plain data (or a :class:`~redistutor.Table`), so the
notebook's cells stay a few lines long and its collapsed assertion cells check state, not time.

What the fault tests here prove, and what they do not: notebooks/what-a-fault-test-proves.md.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import redis

from ..events import EventLog
from ..race import wait_until
from ..tables import Table

__all__ = [
    "PERSISTENCE_MODES", "clusterdown_window", "counter_worker", "first_read_after_failover",
    "frozen_node", "lock_worker", "persistence_table", "persistence_trial", "persistence_trials",
    "pause_for_writes", "slow_node_timings", "wait_on_frozen_replica", "write_and_wait",
]


# -- worker functions for lab.Workers (importable: each runs in a fresh process) ----------------

_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def lock_worker(ctx: Any, key: str = "lab:lock", *, hold: float = 0.2, ttl_ms: int = 1000,
                deadline: float = 10.0) -> None:
    """Take a single-node lock (SET NX PX), hold it ``hold`` s, release it if still ours.

    Records "acquire" when it gets the lock and "release" when it gives it back, so a lab can
    check that holders never overlap, and kill a worker between the two (a crash that leaves
    the lock to expire after ``ttl_ms``). ``ctx`` is a :class:`redistutor.lab.WorkerContext`.
    """
    r = ctx.client(0)
    token = f"{ctx.name}:{os.getpid()}"
    give_up = time.monotonic() + deadline
    while time.monotonic() < give_up:
        if r.set(key, token, nx=True, px=ttl_ms):
            ctx.record("acquire", key)
            time.sleep(hold)  # the critical section
            released = r.eval(_RELEASE, 1, key, token)
            ctx.record("release", key if released else f"{key} (expired before release)")
            return
        time.sleep(0.01)
    ctx.record("give-up", key)


def counter_worker(ctx: Any, key: str = "lab:counter", *, n: int = 100) -> None:
    """INCR ``key`` ``n`` times on node 0 and record one "write" span."""
    r = ctx.client(0)
    t = time.monotonic()
    for _ in range(n):
        r.incr(key)
    ctx.record("write", f"INCR {key} x{n}", t=t, end=time.monotonic())


# -- frozen processes ---------------------------------------------------------------------------

def _wait_stopped(pid: int | None, timeout: float = 5.0) -> None:
    """SIGSTOP is delivered asynchronously: block until the kernel says the process is stopped."""
    import psutil

    if not pid:
        return
    proc = psutil.Process(pid)
    wait_until(lambda: proc.status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP), timeout,
               f"process {pid} to stop")


@contextmanager
def frozen_node(node: Any) -> Iterator[Any]:
    """``with frozen_node(node):`` SIGSTOP the node (and wait until it is stopped), SIGCONT after."""
    node.pause()
    try:
        _wait_stopped(node.pid)
        yield node
    finally:
        node.resume()


# -- slow nodes ---------------------------------------------------------------------------------

def pause_for_writes(node: Any, key: str = "who") -> dict[str, Any]:
    """CLIENT PAUSE WRITE on ``node``, held until we lift it: reads go on, a write waits.

    A SET is sent from another thread while writes are paused; a GET sent meanwhile still reads
    the old value and the SET has not returned. After CLIENT UNPAUSE the SET completes. State,
    not timing: the pause lasts until we end it, however slow the machine is.
    """
    from ..race import run_in_thread

    before = node.r.get(key)
    node.client_pause(10_000, writes_only=True)
    writer = node.client(socket_timeout=15)
    try:
        pending = run_in_thread(writer.set, key, f"{before}!")
        read_while_paused = node.r.get(key)   # reads are not held
        write_done_while_paused = pending.done()
        node.client_unpause()
        write_result = pending.result(timeout=10)
    finally:
        writer.close()
    return {"before": before, "read while paused": read_while_paused,
            "write returned while paused": write_done_while_paused, "write result": write_result,
            "after unpause": node.r.get(key)}


def slow_node_timings(sleeper: Any, delayed: Any, *, sleep_s: float = 0.3, delay_ms: float = 25) -> dict[str, float]:
    """Durations (ms) seen by a client of a node in DEBUG SLEEP, and through a latency proxy.

    For printing only: on a shared machine a duration is a measurement, not a guarantee.
    """
    sleeping = sleeper.debug_sleep(sleep_s)
    time.sleep(0.05)  # let DEBUG SLEEP reach the server first
    t = time.monotonic()
    sleeper.r.ping()
    ping_ms = (time.monotonic() - t) * 1000
    sleeping.result()
    proxy = delayed.latency(delay_ms)
    far = proxy.client(delayed.password)
    try:
        far.ping()  # connecting pays the delay too
        t = time.monotonic()
        far.ping()
        far_ms = (time.monotonic() - t) * 1000
    finally:
        far.close()
        proxy.stop()
    return {f"PING during DEBUG SLEEP {sleep_s:g}": ping_ms,
            f"PING through a +{delay_ms:g} ms proxy (each way)": far_ms}


# -- replication: WAIT ----------------------------------------------------------------------------

def write_and_wait(r: redis.Redis, key: str, value: str, *, replicas: int = 1, timeout_ms: int = 1000) -> int:
    """SET, then WAIT on the *same connection* (one pipeline): how many replicas have the write."""
    p = r.pipeline(transaction=False)
    p.set(key, value)
    p.wait(replicas, timeout_ms)
    _, acked = p.execute()
    return int(acked)


def wait_on_frozen_replica(master: Any, replica: Any, key: str, *, timeout_ms: int = 100) -> dict[str, int]:
    """Freeze ``replica`` (SIGSTOP); write on ``master`` and WAIT two ways; thaw it.

    Returns how many replicas each WAIT reported: ``same connection`` (the write and the WAIT in
    one pipeline: 0, the frozen replica has not acknowledged it) and ``fresh connection`` (WAIT
    from a client that never wrote: it counts replicas that acknowledged *its* last write, which
    is none, so every connected replica qualifies at once).
    """
    fresh = master.client()
    try:
        with frozen_node(replica):
            same = write_and_wait(master.r, key, "written while the replica was frozen", timeout_ms=timeout_ms)
            other = int(fresh.wait(1, timeout_ms))
    finally:
        fresh.close()
    return {"same connection": same, "fresh connection": other}


# -- cluster: the CLUSTERDOWN window --------------------------------------------------------------

def _cluster_state(node: Any) -> str:
    return node.r.cluster("info")["cluster_state"]


def clusterdown_window(cluster: Any, master: str, replica: str, probe_key: str | None = None,
                       *, timeout: float = 15.0) -> dict[str, Any]:
    """kill -9 ``master`` while its ``replica`` is frozen, so nobody can take over its slots yet.

    Once the other masters flag the dead one FAIL (after ``cluster-node-timeout``), the cluster
    state is ``fail`` on every live master, and a live master answers CLUSTERDOWN to a read and a
    write of ``probe_key`` (a key it owns itself). Then the replica is thawed, wins the election
    and the state returns to ``ok``. Holding the replica frozen makes the window last as long as
    we need, so catching it does not depend on timing.
    """
    victim, heir = cluster[master], cluster[replica]
    if probe_key is None:  # the first of probe:0, probe:1... that another master owns
        probe_key = next(k for k in (f"probe:{i}" for i in range(100))
                         if cluster.owner(k).name not in (master, replica))
    live = cluster.owner(probe_key)
    assert live.name not in (master, replica), "probe_key must live on another master"
    with frozen_node(heir):
        victim.kill()
        wait_until(lambda: _cluster_state(live) == "fail", timeout, f"{live.name} to see the cluster fail",
                   step=0.02)
        errors = {}
        for what, call in (("read", lambda: live.r.get(probe_key)), ("write", lambda: live.r.set(probe_key, "x"))):
            try:
                call()
                errors[what] = "answered"
            except redis.exceptions.ClusterDownError as exc:  # redis-py's name for a CLUSTERDOWN reply
                errors[what] = f"CLUSTERDOWN {exc}"
            except redis.exceptions.ResponseError as exc:
                errors[what] = f"error: {exc}"
        state_during = _cluster_state(live)
    cluster.wait_promoted(replica, timeout=timeout)
    return {"probe key": probe_key, "asked": live.name, "state during": state_during, "read": errors["read"],
            "write": errors["write"], "state after": _cluster_state(live)}


def first_read_after_failover(rc: Any, key: str) -> tuple[Any, str]:
    """Read ``key`` with a cluster client whose slot map may still point at a dead node.

    Lab clients fail fast instead of retrying, so the first call can raise ConnectionError; that
    error makes redis-py reload the slot map, and the next call goes to the new master.
    Returns (value, what the first attempt did).
    """
    try:
        return rc.get(key), "answered"
    except redis.exceptions.ConnectionError:
        return rc.get(key), "ConnectionError (stale slot map, now refreshed)"


# -- persistence across kill -9 ------------------------------------------------------------------

# mode -> (Node persistence, extra config, what it is)
PERSISTENCE_MODES: dict[str, tuple[str, dict[str, Any], str]] = {
    "none": ("none", {}, "no persistence"),
    "rdb": ("rdb", {"save": "3600 1"}, "RDB snapshots (save 3600 1)"),
    "aof-no": ("aof-everysec", {"appendfsync": "no"}, "AOF, appendfsync no (the OS flushes)"),
    "aof-everysec": ("aof-everysec", {}, "AOF, fsync once a second"),
    "aof-always": ("aof-always", {}, "AOF, fsync before every reply"),
}


def _aof_written(node: Any, timeout: float = 3.0) -> None:
    """Until the AOF buffer is empty: every acknowledged write has been handed to the kernel.

    Redis writes the buffer before it sends replies; only when a slow disk is still busy with
    the previous second's fsync may ``everysec`` postpone that write (up to 2 s). Waiting here
    keeps that rare case out of the trial (it is the disk, not the process, being slow).
    """
    wait_until(lambda: not node.r.info("persistence").get("aof_buffer_length", 0), timeout,
               f"{node.name}'s AOF buffer to be written", step=0.01)


def persistence_trial(mode: str, *, cycles: int = 2, writes: int = 20, snapshot_after_first: bool = True,
                      log: EventLog | None = None) -> dict[str, Any]:
    """Write ``writes`` keys, kill -9, restart; ``cycles`` times. Count what survived.

    With ``rdb`` a snapshot (SAVE) is taken after the first cycle's writes, so that cycle
    survives and every later one is lost: a snapshot keeps what it had when it was taken.
    """
    from ..lab import Node

    persistence, config, _ = PERSISTENCE_MODES[mode]
    node = Node(f"{mode}", persistence=persistence, config=config, log=log).start()
    try:
        acknowledged = 0
        for cycle in range(cycles):
            for i in range(writes):
                assert node.r.set(f"w:{cycle}:{i}", i) is True  # acknowledged
                acknowledged += 1
            if mode == "rdb" and snapshot_after_first and cycle == 0:
                node.r.save()
            if persistence.startswith("aof"):
                _aof_written(node)
            node.kill()
            node.restart()
        survived = int(node.r.dbsize())
    finally:
        node.stop()
    return {"mode": mode, "acknowledged": acknowledged, "survived": survived, "lost": acknowledged - survived}


def persistence_trials(modes: Iterable[str] = tuple(PERSISTENCE_MODES), *, log: EventLog | None = None,
                       **kwargs: Any) -> dict[str, dict[str, Any]]:
    """:func:`persistence_trial` for every mode, in parallel threads; results by mode."""
    modes = list(modes)
    with ThreadPoolExecutor(max_workers=len(modes)) as pool:
        results = list(pool.map(lambda m: persistence_trial(m, log=log, **kwargs), modes))
    return {r["mode"]: r for r in results}


def persistence_table(trials: dict[str, dict[str, Any]]) -> Table:
    rows = [[m, PERSISTENCE_MODES[m][2], t["acknowledged"], t["survived"], t["lost"]] for m, t in trials.items()]
    return Table(["mode", "what it is", "acknowledged", "after kill -9", "lost"], rows,
                 title="Acknowledged writes across kill -9 (the process dies, the OS does not)",
                 note="fsync decides what survives an OS crash or power loss, which kill -9 does not cause")
