"""The multi-node lab on real redis-servers: fleets, replication, a cluster, faults, workers.

Every test checks that what it started is gone afterwards (the ``no_leftovers`` fixture), and one
test kills a whole lab-building Python with ``kill -9`` and checks that nothing survives it.
"""

from __future__ import annotations

import json
import multiprocessing.resource_tracker
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest
import redis
from redis.exceptions import RedisClusterException

from redistutor import _guard, lab
from redistutor.exceptions import ConfigError
from redistutor.lab import _base
from redistutor.race import wait_until

from .helpers import wait_gone


def _children() -> set[int]:
    """Live descendants of this test process, minus its long-lived helpers."""
    me = psutil.Process()
    keep = {_guard.guardian_pid()}
    tracker = getattr(multiprocessing.resource_tracker._resource_tracker, "_pid", None)
    keep.add(tracker)
    out = set()
    for p in me.children(recursive=True):
        try:
            if p.pid not in keep and p.status() != psutil.STATUS_ZOMBIE:
                out.add(p.pid)
        except psutil.NoSuchProcess:
            continue
    return out


@pytest.fixture(autouse=True)
def no_leftovers():
    """No process, proxy thread or lab object started by a test outlives it."""
    before = _children()
    threads_before = {t.name for t in threading.enumerate()}
    yield
    leftover = wait_gone(_children() - before)
    assert not leftover, f"processes left behind: {[psutil.Process(p).cmdline()[:2] for p in leftover]}"
    proxies = {t.name for t in threading.enumerate() if t.name.startswith("latency-proxy")} - threads_before
    assert not proxies, f"proxy threads left running: {proxies}"


# -- fleets ---------------------------------------------------------------------------------------


def test_fleet_of_five_one_killed_and_restarted():
    with lab.Fleet(5) as fleet:
        assert fleet.up() == ["n1", "n2", "n3", "n4", "n5"]
        assert len({node.port for node in fleet}) == 5
        assert len({node.pid for node in fleet}) == 5
        for i, c in enumerate(fleet.clients):
            c.set("who", f"n{i + 1}")
        # Independent: each node has only its own write.
        assert [node.r.get("who") for node in fleet] == ["n1", "n2", "n3", "n4", "n5"]
        port, pid = fleet["n3"].port, fleet["n3"].pid

        fleet["n3"].kill()
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert fleet.up() == ["n1", "n2", "n4", "n5"]
        # Fail fast, asserted on its cause (no retries configured), not on a time.
        assert fleet["n3"].r.get_retry().get_retries() == 0
        with pytest.raises(redis.ConnectionError):
            fleet["n3"].r.get("who")
        assert fleet["n1"].r.get("who") == "n1"  # the others do not care

        fleet["n3"].restart()
        assert fleet["n3"].port == port  # clients configured with the old address still work
        assert fleet["n3"].r.ping() is True
        assert fleet["n3"].r.get("who") is None  # persistence="none": the crash lost it
        faults = [(e.actor, e.detail) for e in fleet.log.of_kind("fault")]
        assert faults == [("n3", "kill -9"), ("n3", "restart")]
        pids = {node.pid for node in fleet}
    assert not wait_gone(pids)
    assert fleet.nodes == []
    fleet.stop()  # idempotent


def test_fleet_names_and_repr_are_deterministic():
    fleet = lab.Fleet(names=["a", "b", "c"])
    with fleet:
        assert fleet["b"].name == "b" and fleet[2].name == "c"
        with pytest.raises(KeyError, match="no node named 'z'"):
            fleet["z"]
        text = repr(fleet) + repr(fleet["a"])
        assert str(fleet["a"].port) not in text and str(fleet["a"].pid) not in text
        assert repr(fleet) == "Fleet(3 nodes, up=3, persistence='none')"


# -- replication ----------------------------------------------------------------------------------


def test_promoted_replica_lacks_the_acknowledged_unreplicated_write():
    with lab.Replicated(replicas=1) as rep:
        assert rep.set_and_wait("order:41", "paid", replicas=1) == 1
        assert rep["replica-1"].r.get("order:41") == "paid"

        rep.partition("replica-1")
        acked = rep.set_and_wait("order:42", "paid", replicas=1, timeout_ms=100)
        assert acked == 0  # the primary said OK; no replica has it
        assert rep.primary.r.get("order:42") == "paid"
        rep.primary.kill()
        new = rep.promote("replica-1")

        assert new.name == "replica-1" and rep.primary is new
        assert rep.role("replica-1") == "master"
        assert new.r.get("order:41") == "paid"  # replicated before the partition
        assert new.r.get("order:42") is None  # acknowledged, then lost on failover
        new.r.set("after", "failover")  # the new primary takes writes

        # The old primary comes back empty-handed and follows the new one.
        rep["primary"].restart(wipe=True)
        rep.rejoin("primary")
        rep.wait_in_sync()
        assert rep.role("primary") == "slave"
        assert rep["primary"].r.get("after") == "failover"
        order = [(e.actor, e.kind, e.detail) for e in rep.log.events]
        assert order[:5] == [
            ("primary", "write", "SET order:41 (WAIT: 1 replica(s))"),
            ("replica-1 link", "fault", "partition (bytes dropped)"),
            ("primary", "write", "SET order:42 (WAIT: 0 replica(s))"),
            ("primary", "fault", "kill -9"),
            ("replica-1", "fault", "promote (REPLICAOF NO ONE)"),
        ]


def test_slow_replica_link_shows_in_wait():
    with lab.Replicated(replicas=2) as rep:
        rep.link("replica-2").set_delay(300)
        assert rep.set_and_wait("k", "v", replicas=2, timeout_ms=100) == 1  # only the fast one
        assert rep.set_and_wait("k2", "v", replicas=2, timeout_ms=3000) == 2  # the slow one later


# -- cluster --------------------------------------------------------------------------------------


# `cluster` (3 masters, a replica each, for this module) is the shared fixture in tests/conftest.py.


def test_cluster_formed_and_a_slots_owner_identified(cluster):
    assert cluster.ready_seconds is not None
    assert sorted(cluster.masters()) == ["m1", "m2", "m3"]
    assert cluster.keyslot("foo") == 12182  # CRC16("foo") mod 16384, as in the Redis docs
    assert cluster.keyslot("{user:7}:cart") == cluster.keyslot("user:7")
    owner = cluster.owner("foo")
    assert owner.name == "m3" and cluster.slots_of("m3") == ["10923-16383"]
    cluster.rc.set("foo", "bar")
    assert owner.r.get("foo") == "bar"
    other = cluster["m1"]
    with pytest.raises(redis.exceptions.MovedError) as moved:
        other.r.get("foo")  # a plain client talking to the wrong master is redirected
    assert moved.value.slot_id == 12182 and moved.value.port == owner.port


def test_cross_slot_multi_key_rejected_but_hash_tag_works(cluster):
    rc = cluster.rc
    assert cluster.keyslot("cart:1") != cluster.keyslot("stock:1")
    with pytest.raises(RedisClusterException, match="same key slot"):
        rc.mset({"cart:1": "x", "stock:1": "y"})  # refused by the client before sending
    with pytest.raises(redis.ResponseError, match="CROSSSLOT|same slot"):
        cluster["m1"].r.mset({"cart:1": "x", "stock:1": "y"})  # and by the server
    assert rc.mset({"{order:1}:cart": "x", "{order:1}:stock": "y"}) is True
    assert rc.mget(["{order:1}:cart", "{order:1}:stock"]) == ["x", "y"]


def test_slot_migrated_with_its_keys_still_readable(cluster):
    rc = cluster.rc
    keys = [f"{{acct:9}}:{i}" for i in range(150)]  # one slot, more than one MIGRATE batch
    rc.mset({k: str(i) for i, k in enumerate(keys)})
    slot = cluster.keyslot(keys[0])
    src = cluster.owner(slot=slot)
    dst = next(n for n in ("m1", "m2", "m3") if n != src.name)
    assert cluster.migrate_slot(slot, dst) == 150
    assert cluster.owner(slot=slot).name == dst
    assert str(slot) in cluster.slots_of(dst)
    assert rc.mget(keys) == [str(i) for i in range(150)]  # the client followed MOVED
    assert cluster[dst].r.get(keys[0]) == "0"  # really on the new owner
    assert cluster.log.of_kind("reshard")[-1].detail == f"slot {slot}: {src.name} -> {dst} (150 keys)"


def test_manual_cluster_failover_promotes_the_replica(cluster):
    rc = cluster.rc
    slot_of_m1 = int(cluster.slots_of("m1")[0].split("-")[0])
    key = next(f"k{i}" for i in range(10_000) if cluster.keyslot(f"k{i}") == slot_of_m1)
    rc.set(key, "before")
    cluster.failover("r1")
    assert cluster.role("r1") == "master" and cluster.role("m1") == "slave"
    assert cluster.owner(key).name == "r1"
    assert rc.get(key) == "before"  # coordinated failover: nothing lost
    rc.set(key, "after")
    assert cluster["r1"].r.get(key) == "after"
    assert ("r1", "CLUSTER FAILOVER") in [(e.actor, e.detail) for e in cluster.log.of_kind("fault")]


def test_cluster_start_picks_another_bus_port_when_one_is_taken(monkeypatch):
    from redistutor.lab import cluster as cluster_module

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        ports = iter([taken])
        real_free_port = cluster_module.free_port
        # The first bus port handed out is one another process holds: the race, made certain.
        monkeypatch.setattr(cluster_module, "free_port", lambda: next(ports, None) or real_free_port())
        c = lab.Cluster(3).start()
        try:
            assert taken not in c.bus_ports.values()
            assert sorted(c.masters()) == ["m1", "m2", "m3"]
        finally:
            c.stop()


def test_cluster_start_forms_again_after_a_failed_formation(monkeypatch):
    calls = []
    real_assign = lab.Cluster._assign_slots

    def first_attempt_fails(self, masters):
        calls.append(sorted(n.pid for n in self.nodes))
        if len(calls) == 1:
            raise redis.exceptions.ResponseError("Node config epoch is already non-zero")
        return real_assign(self, masters)

    monkeypatch.setattr(lab.Cluster, "_assign_slots", first_attempt_fails)
    c = lab.Cluster(3).start()
    try:
        assert len(calls) == 2 and not set(calls[0]) & set(calls[1])  # all-new processes
        assert not wait_gone(set(calls[0]))  # the failed attempt's nodes are gone
        assert sorted(c.masters()) == ["m1", "m2", "m3"]
    finally:
        c.stop()


def test_automatic_failover_after_a_master_is_killed():
    c = lab.Cluster(3, replicas=1, node_timeout_ms=1000).start()
    pids = {n.pid for n in c}
    try:
        first, last = map(int, c.slots_of("m2")[0].split("-"))
        key = next(f"k{i}" for i in range(100) if first <= c.keyslot(f"k{i}") <= last)
        c.rc.set(key, "replicated")
        assert c["m2"].r.execute_command("WAIT", 1, 2000) == 1  # the replica has it
        c["m2"].kill()
        c.wait_promoted("r2")
        assert c.role("r2") == "master"
        assert c.owner(key).name == "r2"
        assert c.client().get(key) == "replicated"  # nothing acknowledged by WAIT is lost
        # The old master comes back as a replica of the node that replaced it.
        c["m2"].restart()
        c.wait_ok()
        assert c.role("m2") == "slave"
        assert [e.actor for e in c.log.of_kind("promoted")] == ["r2"]
    finally:
        c.stop()
    assert not wait_gone(pids)


# -- persistence ----------------------------------------------------------------------------------


def _fstype(path: Path) -> str:
    best = max((p for p in psutil.disk_partitions(all=True) if str(path).startswith(p.mountpoint)),
               key=lambda p: len(p.mountpoint))
    return best.fstype


def test_aof_always_loses_no_acknowledged_write_across_20_kill9():
    node = lab.Node("aof", persistence="aof-always").start()
    try:
        assert _fstype(node.data_dir) not in ("tmpfs", "ramfs"), "needs a real disk"
        acked: list[int] = []
        seq = 0
        for cycle in range(20):
            writer = node.client()
            stop = threading.Event()

            def write(writer=writer, stop=stop, cycle=cycle) -> None:
                nonlocal seq
                while not stop.is_set():
                    seq += 1
                    try:
                        writer.set(f"w:{seq}", cycle)
                    except (redis.ConnectionError, redis.TimeoutError):
                        return  # not acknowledged: the server died under it
                    acked.append(seq)

            before = len(acked)
            t = threading.Thread(target=write)
            t.start()
            # A crash mid-stream, once this cycle has some acknowledged writes (a state, not a
            # time: a loaded machine with fsync on every write may manage few per 20 ms).
            while len(acked) - before < 5 and t.is_alive():
                time.sleep(0.001)
            node.kill()
            stop.set()
            t.join()
            writer.close()
            node.restart()
            present = node.r.exists(*[f"w:{s}" for s in acked]) if acked else 0
            assert present == len(acked), f"cycle {cycle}: {len(acked) - present} acknowledged writes lost"
        assert len(acked) >= 100
        assert len(node.log.of_kind("fault")) == 40
    finally:
        node.stop()


def test_persistence_modes_survive_restart_or_not():
    with lab.Fleet(names=["none", "rdb"], persistence="none") as fleet:
        fleet["none"].r.set("k", "v")
        fleet["none"].shutdown()
        fleet["none"].restart()
        assert fleet["none"].r.get("k") is None  # no persistence: gone
    rdb = lab.Node("rdb", persistence="rdb").start()
    try:
        rdb.r.set("k", "v")
        rdb.shutdown()  # graceful: SHUTDOWN saves the RDB
        rdb.restart()
        assert rdb.r.get("k") == "v"
        rdb.restart(wipe=True)
        assert rdb.r.get("k") is None
        assert [e.detail for e in rdb.log.of_kind("fault")] == [
            "shutdown (graceful)", "restart", "restart (wiped)"]
    finally:
        rdb.stop()


# -- faults ---------------------------------------------------------------------------------------


def test_paused_node_times_out_then_resumes():
    with lab.Node("p") as node:
        node.r.set("k", "v")
        node.pause()
        assert node.r.get_retry().get_retries() == 0  # one timeout, not a retried series
        t = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            node.r.get("k")
        assert time.monotonic() - t > 0.9  # the 1 s socket timeout ran out (a lower bound only)
        assert node.paused and node.running
        node.resume()
        assert node.client().get("k") == "v"
        assert [e.detail for e in node.log.of_kind("fault")] == ["pause (SIGSTOP)", "resume (SIGCONT)"]
        node.pause()  # stopping a paused node must not hang


def test_client_pause_and_debug_sleep_delay_but_do_not_fail():
    with lab.Node("slow") as node:
        node.client_pause(300, writes_only=True)
        # Relative, not absolute: the read is answered during the pause, the write after it.
        t = time.monotonic()
        assert node.client().get("k") is None  # reads are not paused
        read_s = time.monotonic() - t
        node.client().set("k", "v")  # writes wait for the pause to end
        write_s = time.monotonic() - t
        assert write_s > 0.2 and read_s < write_s
        done = node.debug_sleep(0.3)
        time.sleep(0.05)
        t = time.monotonic()
        assert node.client().ping() is True
        assert time.monotonic() - t > 0.15  # answered only when the server woke up
        done.result(timeout=5)


def test_latency_proxy_delays_partitions_heals_and_stops():
    with lab.Node("far") as node:
        proxy = node.latency(40)
        c = proxy.client(node.password)
        c.ping()  # connect (the handshake pays the delay too)
        t = time.monotonic()
        c.ping()
        delayed_s = time.monotonic() - t
        assert delayed_s >= 0.08  # 40 ms each way (a lower bound: the delay is injected)
        proxy.set_delay(0)
        t = time.monotonic()
        c.ping()
        c.ping()
        assert time.monotonic() - t < delayed_s  # two undelayed round trips beat one delayed
        proxy.partition()
        with pytest.raises(redis.TimeoutError):
            c.ping()
        proxy.heal()
        assert c.ping() is True  # the reset connection was replaced
        assert [e.detail for e in node.log.of_kind("fault")] == [
            "latency +40 ms each way (proxy)", "latency +0 ms each way", "partition (bytes dropped)",
            "heal (connections reset)"]
        c.close()
    assert not proxy.running
    proxy.stop()  # idempotent


# -- workers --------------------------------------------------------------------------------------


def test_demo_workers_live_with_the_lab_notebooks_scenarios():
    from redistutor.scenarios import multi_node_lab

    # lab.lock_worker / lab.counter_worker stay importable (README) as re-exports.
    assert lab.lock_worker is multi_node_lab.lock_worker
    assert lab.counter_worker is multi_node_lab.counter_worker
    assert lab.lock_worker.__module__ == "redistutor.scenarios.multi_node_lab"


def test_worker_killed_mid_critical_section_leaves_the_lock_until_ttl():
    with lab.Node("lock") as node:
        workers = lab.Workers(lab.lock_worker, 3, nodes=[node], log=node.log,
                              kwargs={"hold": 0.2, "ttl_ms": 700}).start()
        with workers:
            first = workers.wait_for("acquire")
            workers.kill(first.actor)
            workers.join()
            pids = set(workers.pids.values())
        assert workers.exitcodes[first.actor] == -signal.SIGKILL
        acquires = node.log.of_kind("acquire")
        assert len(acquires) == 3 and len(node.log.of_kind("release")) == 2
        assert first.actor not in [e.actor for e in node.log.of_kind("release")]
        # Nobody got in until the dead holder's lock expired.
        assert acquires[1].t - acquires[0].t >= 0.6
        table = lab.timeline_table(node.log)
        assert re.search(rf"^2\s+{first.actor}\s+fault\s+kill -9$", table, re.M)
    assert not wait_gone(pids)


def test_worker_paused_keeps_its_lock_and_resumes():
    with lab.Node("pause") as node:
        workers = lab.Workers(lab.lock_worker, 1, nodes=[node], log=node.log,
                              kwargs={"hold": 0.3, "ttl_ms": 10000}).start()
        with workers:
            holder = workers.wait_for("acquire").actor
            workers.pause(holder)
            proc = psutil.Process(workers.pids[holder])
            # SIGSTOP is delivered asynchronously
            wait_until(lambda: proc.status() == psutil.STATUS_STOPPED, 5, "the holder to be stopped")
            assert node.r.get("lab:lock") is not None  # frozen, still holding
            workers.resume(holder)
            workers.join()
        assert workers.exitcodes[holder] == 0
        assert [e.detail for e in node.log.of_kind("fault")] == ["pause (SIGSTOP)", "resume (SIGCONT)"]
        assert len(node.log.of_kind("release")) == 1 and node.r.get("lab:lock") is None


def _defined_in_a_notebook_cell(ctx):
    ctx.record("ran")


def test_workers_refuse_a_function_fresh_processes_cannot_import(monkeypatch):
    # A notebook cell's function lives in the kernel's __main__, which has no file to import.
    monkeypatch.setattr(_defined_in_a_notebook_cell, "__module__", "__main__")
    monkeypatch.setattr(sys.modules["__main__"], "__spec__", None, raising=False)
    for fn in (_defined_in_a_notebook_cell, lambda ctx: None):
        workers = lab.Workers(fn, 2)
        with pytest.raises(ConfigError) as info:
            workers.start()
        message = str(info.value)
        assert "fresh processes" in message and "%%writefile" in message
        assert not workers.procs and workers._dir is None  # nothing started, nothing left


def test_run_workers_collects_every_event():
    with lab.Node("count") as node:
        w = lab.run_workers(lab.counter_worker, 2, nodes=[node], log=node.log, kwargs={"n": 50})
        assert node.r.get("lab:counter") == "100"
        spans = node.log.of_kind("write")
        assert sorted(e.actor for e in spans) == ["w1", "w2"] and all(e.end >= e.t for e in spans)
        assert w.exitcodes == {"w1": 0, "w2": 0}


# -- timeline and cleanup -------------------------------------------------------------------------


def test_timeline_table_is_stable_text():
    log = lab.EventLog()
    log.record("n1", "fault", "kill -9", t=0.123)
    log.record("w1", "acquire", "lab:lock", t=0.05, end=0.31)
    assert lab.timeline_table(log) == textwrap.dedent("""\
        #  actor  kind     detail
        -  -----  -------  --------
        1  w1     acquire  lab:lock
        2  n1     fault    kill -9""")
    assert "0.1-0.3" in lab.timeline_table(log, times=True)
    assert lab.timeline_table(log, kinds=["fault"]).count("\n") == 2


def test_stop_all_stops_everything_still_running():
    fleet = lab.Fleet(2).start()
    node = lab.Node("x").start()
    proxy = node.latency(0)
    assert lab.stop_all() >= 2
    assert fleet.nodes == [] and not node.running and not proxy.running
    assert not list(_base._running)


_KILLED_PARENT = """
import json, sys, time
from redistutor import lab
fleet = lab.Fleet(3).start()
cluster = lab.Cluster(3).start()
proxy = fleet["n1"].latency(10)
workers = lab.Workers(lab.lock_worker, 2, nodes=[fleet["n1"]], kwargs={"hold": 60, "deadline": 60}).start()
workers.wait_for("acquire")
print(json.dumps({"dirs": [str(fleet._dir), str(cluster._dir), str(workers._dir)]}), flush=True)
time.sleep(120)
"""


def test_kill9_of_the_parent_leaves_no_process(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", _KILLED_PARENT], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[1])
    try:
        line = child.stdout.readline()
        assert line, "the child lab did not start"
        dirs = json.loads(line)["dirs"]
        family = {p.pid for p in psutil.Process(child.pid).children(recursive=True)}
        cmdlines = " ".join(" ".join(psutil.Process(p).cmdline()) for p in family)
        assert cmdlines.count("redis-server") >= 6 and "multiprocessing" in cmdlines
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert not wait_gone(family, timeout=10), "processes outlived a kill -9 of their lab"
        assert not [d for d in dirs if os.path.exists(d)], "lab dirs outlived the lab"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.parametrize("context", ["spawn", "forkserver"])
def test_workers_run_to_completion_under_every_start_method(context):
    # Before: under forkserver a worker's parent is the fork server, so its parent check saw a
    # "changed parent" at once and every worker exited 1 without working.
    with lab.Node("ctx") as node:
        try:
            w = lab.run_workers(lab.counter_worker, 2, nodes=[node], log=node.log, kwargs={"n": 20},
                                context=context)
        finally:
            if context == "forkserver":  # multiprocessing's own fork server outlives the workers
                from multiprocessing import forkserver
                forkserver._forkserver._stop()  # type: ignore[attr-defined]
        assert w.exitcodes == {"w1": 0, "w2": 0} and node.r.get("lab:counter") == "40"


def test_wait_for_returns_this_pools_event_not_an_earlier_pools_on_the_same_log():
    # Before: wait_for searched the whole shared log by worker name, so a second pool named like
    # the first got the first pool's (long past) event back at once.
    with lab.Node("two-pools") as node:
        first = lab.run_workers(lab.counter_worker, 2, nodes=[node], log=node.log, kwargs={"n": 5})
        earlier = max(e.t for e in node.log.of_kind("write"))
        with lab.Workers(lab.counter_worker, 2, nodes=[node], log=node.log, kwargs={"n": 5}).start() as second:
            ev = second.wait_for("write")
            second.join()
        assert first.names == second.names and ev.t > earlier
