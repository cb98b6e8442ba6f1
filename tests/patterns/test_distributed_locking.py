"""The single-instance lock on a real Redis: NX/PX/token, the unsafe DEL race, the watchdog,
fencing, and worker processes killed (SIGKILL) or paused (SIGSTOP) while holding the lock."""

from __future__ import annotations

import os
import signal
import time

import pytest

from redistutor import lab
from redistutor.db import Database
from redistutor.events import EventLog
from redistutor.patterns.distributed_locking import (
    FencedResource,
    Lock,
    Watchdog,
    fenced_writer_worker,
    holding_worker,
)
from redistutor.race import PausePoint, run_in_thread
from redistutor.timeline import max_concurrent, overlaps, run_threads


def wait_until(cond, timeout=10.0, step=0.01):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(step)


def test_acquire_is_exclusive_with_expiry_token_and_fence(r):
    lock = Lock(r, "job", ttl_ms=5000)
    a = lock.try_acquire()
    assert a is not None and r.get("lock:job") == a.token and len(a.token) == 32
    assert 0 < r.pttl("lock:job") <= 5000
    assert lock.try_acquire() is None  # held: NX refuses
    assert lock.release(a) and r.exists("lock:job") == 0
    b = lock.try_acquire()
    assert b.fence == a.fence + 1 and b.token != a.token
    assert r.get("lock:job:fence") == str(b.fence)


def test_a_refused_acquire_hands_out_no_fence(r):
    lock = Lock(r, "job", ttl_ms=5000)
    lock.try_acquire()
    assert lock.try_acquire() is None and lock.try_acquire() is None
    assert r.get("lock:job:fence") == "1"


def test_ttl_must_be_positive(r):
    with pytest.raises(ValueError):
        Lock(r, "job", ttl_ms=0)


def _del_race(r, release):
    """A's lock expires while A is paused before its release; B acquires; A releases; C tries."""
    log = EventLog()
    pause = PausePoint("before_release")
    lock_a = Lock(r, "report", ttl_ms=150, release=release, hooks={"before_release": pause})
    lock = Lock(r, "report", ttl_ms=5000)
    lease_a = lock_a.try_acquire()
    log.record("A", "acquire")
    done_a = run_in_thread(lock_a.release, lease_a)
    pause.wait_reached()
    wait_until(lambda: r.exists(lock.key) == 0)
    log.record("A", "expire")
    lease_b = lock.try_acquire()
    log.record("B", "acquire")
    pause.release()
    released_a = done_a.result(timeout=10)
    log.record("A", "late release", "deleted" if released_a else "refused")
    lease_c = lock.try_acquire()
    if lease_c:
        log.record("C", "acquire")
    log.record("B", "release")
    released_b = lock.release(lease_b)
    if lease_c:
        log.record("C", "release")
        lock.release(lease_c)
    return log, released_a, released_b, lease_c


def test_plain_del_release_lets_a_third_client_in(r):
    log, released_a, released_b, lease_c = _del_race(r, "del")
    assert released_a is True and lease_c is not None and released_b is False
    assert max_concurrent(log, "acquire", ("release", "expire")) == 2
    assert overlaps(log, "acquire", ("release", "expire")) == [("B", "C")]


def test_lua_release_refuses_the_late_release(r):
    log, released_a, released_b, lease_c = _del_race(r, "lua")
    assert released_a is False and lease_c is None and released_b is True
    assert max_concurrent(log, "acquire", ("release", "expire")) == 1


def test_extend_only_extends_our_own_lock(r):
    lock = Lock(r, "job", ttl_ms=1000)
    lease = lock.try_acquire()
    assert lock.extend(lease, 60_000) and r.pttl(lock.key) > 1000
    r.set(lock.key, "someone-else", px=2000)
    assert not lock.extend(lease, 60_000) and r.pttl(lock.key) <= 2000
    r.delete(lock.key)
    assert not lock.extend(lease) and r.exists(lock.key) == 0  # never resurrects an expired lock


def test_watchdog_keeps_a_long_job_exclusive(r):
    lock = Lock(r, "long", ttl_ms=300)
    lease = lock.try_acquire()
    dog = Watchdog(lock, lease).start()
    other = Lock(r, "long", ttl_ms=300)
    started = time.monotonic()
    attempts = 0
    while time.monotonic() - started < 0.9:  # 3 x TTL
        assert other.try_acquire() is None
        attempts += 1
        time.sleep(0.01)
    dog.stop()
    assert attempts > 10 and dog.renewals >= 1 and not dog.lost.is_set()
    assert lock.release(lease)


def test_watchdog_reports_a_lost_lock(r):
    lock = Lock(r, "lost", ttl_ms=300)
    lease = lock.try_acquire()
    r.set(lock.key, "thief", px=5000)  # as if our lock had expired and someone took it
    dog = Watchdog(lock, lease).start()
    assert dog.lost.wait(5)
    dog.stop()
    assert r.get(lock.key) == "thief"


def test_held_context_manager_releases(r):
    lock = Lock(r, "ctx", ttl_ms=1000)
    with lock.held(timeout=5) as lease:
        assert r.get(lock.key) == lease.token
    assert r.exists(lock.key) == 0


def test_fenced_resource_rejects_older_tokens():
    with Database() as db:
        res = FencedResource(db)
        assert res.write("row", "a", 5) and res.read("row") == ("a", 5)
        assert not res.write("row", "old", 4) and res.read("row") == ("a", 5)
        assert res.write("row", "same holder", 5) and res.write("row", "b", 7)
        assert res.read("row") == ("b", 7)
        assert res.write_unfenced("row", "naive", 1) and res.read("row") == ("naive", 1)


def test_contending_threads_never_overlap_and_lose_no_update(r):
    lock = Lock(r, "counter", ttl_ms=5000)
    r.set("counter", 0)

    def worker(actor, log):
        for _ in range(10):
            lease = lock.acquire(timeout=20)
            log.record(actor, "acquire")
            value = int(r.get("counter"))
            time.sleep(0.001)
            r.set("counter", value + 1)
            log.record(actor, "release")
            assert lock.release(lease)

    log = EventLog()
    run_threads(worker, 6, log=log)
    assert r.get("counter") == "60"
    assert max_concurrent(log) == 1


def test_killed_holder_frees_the_lock_only_after_its_ttl(redis_server, r):
    log = EventLog()
    workers = lab.Workers(holding_worker, 1, nodes=[redis_server], log=log,
                          args=("job", "lock", 1500)).start()
    try:
        ev = workers.wait_for("acquire", timeout=30)
        workers.kill("w1")
        dead_token = ev.detail.split()[-1]
        lock = Lock(r, "job", ttl_ms=1500)
        assert r.get(lock.key) == dead_token and r.pttl(lock.key) > 0
        assert lock.try_acquire() is None  # the dead holder's lock still stands
        lease = None
        deadline = time.monotonic() + 10
        while lease is None and time.monotonic() < deadline:
            lease = lock.try_acquire()
            if lease is None:
                assert r.get(lock.key) in (dead_token, None)
                time.sleep(0.02)
        assert lease is not None and workers.exitcodes["w1"] == -9
        assert lease.fence == 2
    finally:
        workers.stop()


@pytest.mark.parametrize("fenced", [False, True])
def test_paused_holder_late_write(redis_server, r, fenced):
    """SIGSTOP the holder past its TTL: unfenced, its late write clobbers B's; fenced, it is rejected."""
    with Database() as db:
        res = FencedResource(db)
        log = EventLog()
        workers = lab.Workers(fenced_writer_worker, 1, nodes=[redis_server], log=log,
                              args=("row", "lock", 400, str(db.path), "gate", "from-A"),
                              kwargs={"fenced": fenced}).start()
        try:
            workers.wait_for("acquire", timeout=30)
            os.kill(workers.pids["w1"], signal.SIGSTOP)
            lock = Lock(r, "row", ttl_ms=400)
            wait_until(lambda: r.exists(lock.key) == 0)
            lease = lock.acquire(timeout=5)
            assert (res.write if fenced else res.write_unfenced)("row", "from-B", lease.fence)
            lock.release(lease)
            r.set("gate", 1)
            os.kill(workers.pids["w1"], signal.SIGCONT)
            ev = workers.wait_for("write", timeout=30)
            workers.join(30)
        finally:
            os.kill(workers.pids["w1"], signal.SIGCONT) if workers.procs["w1"].is_alive() else None
            workers.stop()
        if fenced:
            assert ev.detail.endswith("rejected") and res.read("row") == ("from-B", 2)
        else:
            assert ev.detail.endswith("accepted") and res.read("row") == ("from-A", 1)


def test_wait_reports_replicas_and_only_reports(r):
    """Without replicas WAIT answers 0; try_acquire still returns the lease (it only reports)."""
    lock = Lock(r, "solo", ttl_ms=5000)
    lease = lock.try_acquire(wait_replicas=1, wait_ms=10)
    assert lease is not None and lease.replicas == 0 and r.get(lock.key) == lease.token
    assert lock.release(lease)
    plain = lock.try_acquire()
    assert plain.replicas is None and lock.release(plain)
    # the replicated variant refuses to trust a primary-only lock, and leaves no key behind
    assert lock.try_acquire_replicated(1, wait_ms=10) is None and not r.exists(lock.key)


@pytest.mark.parametrize("cut_link", [True, False])
def test_failover_loses_an_unreplicated_lock(cut_link):
    """Partitioned replica: the lock (and its fence) dies with the primary, B gets in with the
    same fence. Replicated first (WAIT says 1): the promoted replica refuses B."""
    with lab.Replicated(replicas=1) as rep:
        a = Lock(rep.primary.client(socket_timeout=10), "payout", ttl_ms=30_000)
        a.release(a.try_acquire())
        rep.wait_in_sync()
        if cut_link:
            rep.partition("replica-1")
        lease_a = a.try_acquire(wait_replicas=1, wait_ms=100 if cut_link else 5000)
        assert lease_a is not None and lease_a.fence == 2 and lease_a.replicas == (0 if cut_link else 1)
        rep.primary.kill()
        new = rep.promote("replica-1")
        lease_b = Lock(new.r, "payout", ttl_ms=30_000).try_acquire()
        if cut_link:
            assert lease_b is not None and lease_b.fence == lease_a.fence  # the fence went back too
        else:
            assert lease_b is None and new.r.get(a.key) == lease_a.token


def test_replicated_acquire_refuses_when_the_link_is_cut():
    with lab.Replicated(replicas=1) as rep:
        lock = Lock(rep.primary.client(socket_timeout=10), "payout", ttl_ms=30_000)
        rep.partition("replica-1")
        assert lock.try_acquire_replicated(1, wait_ms=50) is None
        assert not rep.primary.r.exists(lock.key)  # released again, token-checked
        rep.heal("replica-1")
        rep.wait_in_sync()
        lease = lock.try_acquire_replicated(1, wait_ms=2000)
        assert lease is not None and lease.replicas == 1
        assert rep["replica-1"].r.get(lock.key) == lease.token
