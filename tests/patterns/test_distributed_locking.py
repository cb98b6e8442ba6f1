"""The single-instance lock on a real Redis: NX/PX/token, the unsafe DEL race, the watchdog,
fencing, and worker processes killed (SIGKILL) or paused (SIGSTOP) while holding the lock."""

from __future__ import annotations

import os
import signal
import time

import pytest
from redis.crc import key_slot

from redistutor import lab
from redistutor.db import Database
from redistutor.events import EventLog
from redistutor.patterns.distributed_locking import FencedResource, Lease, Lock, TokenLock, Watchdog
from redistutor.scenarios.distributed_locking import (
    DelLock,
    del_race,
    fenced_writer_worker,
    holding_worker,
)
from redistutor.timeline import max_concurrent, overlaps, run_threads


def wait_until(cond, timeout=10.0, step=0.01):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(step)


def test_token_lock_is_the_core_pattern(r):
    """The notebook's pattern cell: SET NX PX with a random token, token-checked release."""
    lock = TokenLock(r, "lock:core", ttl_ms=5000)
    token = lock.acquire()
    assert token is not None and len(token) == 32 and r.get("lock:core") == token
    assert 0 < r.pttl("lock:core") <= 5000
    assert lock.acquire() is None and r.get("lock:core") == token  # NX: the second client loses
    assert lock.release("someone-else") is False and r.get("lock:core") == token
    assert lock.release(token) is True and not r.exists("lock:core")
    assert lock.acquire() != token  # a new token per acquisition


def test_token_lock_acquires_with_a_plain_set_nx_px(r):
    """Like redis-py's Lock: the acquire is one SET ... NX PX, not a script."""
    seen = []

    class Spy:
        def __init__(self, inner):
            self.inner = inner

        def set(self, *args, **kwargs):
            seen.append(("SET", kwargs.get("nx"), kwargs.get("px")))
            return self.inner.set(*args, **kwargs)

        def __getattr__(self, name):
            seen.append(name)
            return getattr(self.inner, name)

    token = TokenLock(Spy(r), "lock:plain", ttl_ms=4000).acquire()
    assert token and seen == [("SET", True, 4000)]


def test_acquire_is_exclusive_with_expiry_token_and_fence(r):
    lock = Lock(r, "job", ttl_ms=5000)
    assert lock.key == "lock:{job}" and lock.fence_key == "lock:{job}:fence"
    a = lock.try_acquire()
    assert a is not None and r.get(lock.key) == a.token and len(a.token) == 32
    assert 0 < r.pttl(lock.key) <= 5000
    assert lock.try_acquire() is None  # held: NX refuses
    assert lock.release(a) and r.exists(lock.key) == 0
    b = lock.try_acquire()
    assert b.fence == a.fence + 1 and b.token != a.token
    assert r.get(lock.fence_key) == str(b.fence)


def test_lock_and_fence_share_a_cluster_slot(r):
    """The acquire script touches two keys: in a cluster they must hash to one slot."""
    for name in ("job", "report", "invoice-42"):
        lock = Lock(r, name, prefix="app:lock")
        assert key_slot(lock.key.encode()) == key_slot(lock.fence_key.encode())


def test_a_refused_acquire_hands_out_no_fence(r):
    lock = Lock(r, "job", ttl_ms=5000)
    lock.try_acquire()
    assert lock.try_acquire() is None and lock.try_acquire() is None
    assert r.get(lock.fence_key) == "1"


def test_ttl_must_be_positive(r):
    with pytest.raises(ValueError):
        Lock(r, "job", ttl_ms=0)


def test_plain_del_release_lets_a_third_client_in(r):
    run = del_race(r, DelLock, "lock:report")
    assert run["a_released"] is True and run["holder_after"] is None and run["c_got_it"]
    assert max_concurrent(run["log"], "acquire", ("release", "expire")) == 2
    assert overlaps(run["log"], "acquire", ("release", "expire")) == [("B", "C")]


def test_lua_release_refuses_the_late_release(r):
    run = del_race(r, TokenLock, "lock:report")
    assert run["a_released"] is False and not run["c_got_it"] and run["b_released"] is True
    assert run["holder_after"] == run["b_token"]
    assert max_concurrent(run["log"], "acquire", ("release", "expire")) == 1


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
        if cut_link:
            # WAIT counts only its own connection's writes: from a connection that never wrote it
            # answers 1 at once, though the replica has nothing. try_acquire's pipeline pins the
            # acquire and its WAIT to one connection, so it reported 0.
            other = rep.primary.client()
            assert other.execute_command("WAIT", 1, 100) == 1
            other.close()
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
        assert lock.release(lease)
        again = lock.try_acquire_replicated()  # the defaults: one replica, 100 ms
        assert again is not None and again.replicas == 1 and lock.release(again)


def test_watchdog_that_cannot_reach_redis_reports_the_lock_lost():
    """Redis goes away while the job holds the lock: every extend now raises. A watchdog that
    swallows the error and keeps "extending" leaves the job believing it is safe long after the
    key is gone; this one sets ``lost`` and stops at the first failed extend."""
    with lab.Node("wd-node") as node:
        lock = Lock(node.client(socket_timeout=0.5), "wd", ttl_ms=3000)
        lease = lock.try_acquire()
        dog = Watchdog(lock, lease, interval=0.01).start()
        wait_until(lambda: dog.renewals >= 1)
        node.kill()
        assert dog.lost.wait(10)
        dog._thread.join(10)
        assert not dog._thread.is_alive()
        renewals = dog.renewals
        dog.stop()
        assert dog.renewals == renewals  # no "renewal" counted after the failure


def test_lock_loads_its_scripts_up_front(r):
    """Constructing a Lock loads its three scripts (one pipelined round trip); from then on every
    acquire, extend and release is a single EVALSHA, even on a server whose script cache was empty."""
    from redistutor import trace

    r.script_flush()
    lock = Lock(r, "preloaded", ttl_ms=5000)
    with trace(r) as t:
        lease = lock.try_acquire()
        assert lock.extend(lease) and lock.release(lease)
    assert t.round_trips == 3 and t.names() == ["EVALSHA"] * 3


# -- contracts the mutation run (./run mutate distributed_locking) showed unpinned ----------------

def test_lock_contract_defaults_timeouts_and_holder(r):
    core = TokenLock(r, "lock:defaults")
    assert core.acquire() and 9_000 < r.pttl("lock:defaults") <= 10_000  # default TTL: 10 s
    with pytest.raises(ValueError):
        Lock(r, "job", ttl_ms=-1)
    tiny = Lock(r, "tiny", ttl_ms=1)  # 1 ms is a (short) TTL, not "no TTL"
    assert tiny.key == "lock:{tiny}" and tiny.fence_key == "lock:{tiny}:fence"
    lock = Lock(r, "held")
    assert lock.holder() is None
    lease = lock.acquire(timeout=1)
    assert lease.ttl_ms == 10_000 and lock.holder() == lease.token and 9_000 < r.pttl(lock.key) <= 10_000
    rival = Lock(r, "held")
    assert rival.acquire(blocking=False) is None
    assert rival.acquire(timeout=0.05) is None  # gives up once the timeout has passed
    assert lock.release(lease) and rival.acquire(timeout=0) is not None


def test_watchdog_contract_interval_thread_and_exact_renewals(r):
    lock = Lock(r, "dog", ttl_ms=300)
    lease = lock.try_acquire()
    assert Watchdog(lock, lease).interval == 0.1  # ttl / 3
    assert Watchdog(lock, lease, interval=0.25).interval == 0.25
    r.config_resetstat()
    Watchdog(lock, lease).stop()  # stopping a watchdog that never started is fine
    dog = Watchdog(lock, lease, interval=0.01)
    assert dog.renewals == 0
    dog.start()
    # a daemon thread: a program that ends without releasing must not keep extending the lock
    assert dog._thread.name == "watchdog-dog" and dog._thread.daemon
    wait_until(lambda: dog.renewals >= 3)
    dog.stop()
    assert not dog._thread.is_alive()  # stop() waits for the thread
    calls = r.info("commandstats")["cmdstat_evalsha"]["calls"]
    assert dog.renewals == calls and not dog.lost.is_set()  # one renewal per successful extend


def test_fenced_resource_contract():
    with Database() as db:
        res = FencedResource(db)
        assert res.read("missing") is None
        assert res.write_unfenced("row", "naive") and res.read("row") == ("naive", 0)


# -- fair hand-off (issue 11, section 2) -----------------------------------------------------------

def _line_up(r, name, n, **kw):
    """A holder, then ``n`` waiter threads started one after another (each in line before the
    next starts). Returns (holder lock, holder lease, grant order list, threads)."""
    import threading

    holder = Lock(r, name, fair=True, **kw)
    lease = holder.acquire(timeout=1)
    granted: list[int] = []

    def waiter(i: int) -> None:
        lock = Lock(r, name, fair=True, **kw)
        mine = lock.acquire(timeout=10)
        granted.append(i)
        lock.release(mine)

    threads = []
    for i in range(n):
        t = threading.Thread(target=waiter, args=(i,))
        t.start()
        threads.append(t)
        wait_until(lambda k=i + 1: len(holder.waiting()) == k)
    return holder, lease, granted, threads


def test_fair_lock_grants_in_arrival_order_and_the_releaser_cannot_cut_in(r):
    holder, lease, granted, threads = _line_up(r, "fair", 5)
    first = holder.waiting()[0]
    assert holder.release(lease)
    cutter = Lock(r, "fair", fair=True)
    assert cutter.try_acquire() is None          # the releaser asks again at once: refused, in line
    for t in threads:
        t.join(10)
    assert granted == [0, 1, 2, 3, 4]
    assert first not in holder.waiting() and len(holder.waiting()) == 1  # only the cutter is left
    assert r.exists(holder.key) == 0


def test_fair_release_wakes_the_first_waiter_on_its_own_channel(r):
    lock = Lock(r, "announce", fair=True)
    sub = r.pubsub(ignore_subscribe_messages=True)
    sub.psubscribe(f"{lock.channel}:*")
    lease = lock.acquire(timeout=1)
    assert lock.release(lease) and sub.get_message(timeout=0.2) is None  # nobody in line: silence
    lease = lock.acquire(timeout=1)
    assert lock.try_acquire("w1") is None and lock.try_acquire("w2") is None
    assert lock.waiting() == ["w1", "w2"] and lock.channel == "lock:{announce}:released"
    assert not lock.release(Lease(lock.key, "not-ours", 0, 1000))  # a stranger's release: nothing
    assert r.exists(lock.key) and sub.get_message(timeout=0.2) is None
    assert lock.release(lease)
    msg = sub.get_message(timeout=2)
    assert msg is not None and msg["channel"] == "lock:{announce}:released:w1"
    assert sub.get_message(timeout=0.2) is None      # w2 is not woken
    assert lock.try_acquire("w2") is None          # not first: refused although the lock is free
    won = lock.try_acquire("w1")
    assert won is not None and won.fence == lease.fence + 1 and lock.waiting() == ["w2"]
    sub.close()


def test_fair_acquire_of_a_free_lock_is_one_round_trip(r):
    from redistutor import trace

    lock = Lock(r, "free", fair=True)
    with trace(r) as t:
        lease = lock.acquire(timeout=1)
        lock.release(lease)
    assert t.names() == ["EVALSHA", "EVALSHA"]       # no subscription when nobody holds it


def test_fair_waiter_that_gives_up_or_dies_loses_its_place(r):
    lock = Lock(r, "patience", fair=True, patience_ms=300)
    lease = lock.acquire(timeout=1)
    assert Lock(r, "patience", fair=True).acquire(timeout=0.05) is None   # gave up: left the line
    assert lock.waiting() == [] and not r.exists(f"{lock.queue_key}:until")
    assert lock.try_acquire("dead") is None          # queued once, then never asks again
    assert lock.waiting() == ["dead"] and 0 < r.pttl(lock.queue_key) <= 300 + 10_000
    until = int(r.hget(f"{lock.queue_key}:until", "dead"))
    now = int(r.time()[0]) * 1000
    assert now < until <= now + 1300
    lock.release(lease)
    assert lock.try_acquire("alive") is None         # 'dead' still has its place for now
    time.sleep(0.4)                                  # past its patience (server time)
    got = lock.try_acquire("alive")
    assert got is not None and lock.waiting() == []  # 'dead' skipped and forgotten
    assert r.hgetall(f"{lock.queue_key}:until") == {}


def test_fair_hand_off_is_one_round_trip_for_the_woken_waiter(r):
    """The head is woken by the release's PUBLISH and takes the lock with one EVALSHA: no sleep,
    no retry storm (commands counted, not time)."""
    import threading

    from redistutor import trace

    holder = Lock(r, "handoff", fair=True)
    lease = holder.acquire(timeout=1)
    waiter_client = type(r)(connection_pool=r.connection_pool)
    got = []
    with trace(waiter_client) as t:
        # patience 60 s: it asks again only every 20 s, so within the join below only the release's
        # message can wake it (a waiter deaf to its channel would still be asleep)
        th = threading.Thread(target=lambda: got.append(Lock(waiter_client, "handoff", fair=True, patience_ms=60_000)
                                                        .acquire()), name="waiter", daemon=True)
        th.start()
        wait_until(lambda: len(r.pubsub_channels(f"{holder.channel}:*")) == 1
                   and t.names(thread="waiter").count("EVALSHA") == 2)
        holder.release(lease)                        # the waiter is in line, listening, refused twice
        th.join(10)
    assert got and got[0] is not None
    mine = [n for n in t.names(thread="waiter") if n != "SCRIPT LOAD"]
    assert mine == ["EVALSHA", "EVALSHA", "EVALSHA"]  # refused (in line), again after subscribing, granted
    assert len(holder.waiting()) == 0


def test_lock_loads_its_scripts_once_per_client(r):
    from redistutor import trace

    c = type(r)(connection_pool=r.connection_pool)
    with trace(c) as t:
        Lock(c, "a")
        Lock(c, "b", fair=True)
    assert t.names() == ["SCRIPT LOAD"] * 5 and t.round_trips == 1
    shas = [Lock(c, "c")._acquire.sha, Lock(c, "d", fair=True)._release_fair.sha]
    assert r.script_exists(*shas) == [True, True]


def test_fair_waiter_keeps_one_subscription_per_thread_and_none_for_a_free_lock(r):
    import threading

    lock = Lock(r, "subs", fair=True)
    lease = lock.acquire(timeout=1)
    assert getattr(lock._local, "sub", None) is None  # a free lock: no pub/sub connection at all
    assert lock._subscriber() is lock._subscriber()  # kept for the next wait of this thread
    other: list = []
    t = threading.Thread(target=lambda: other.append(lock._subscriber()))
    t.start()
    t.join(5)
    assert other and other[0] is not lock._subscriber()  # another thread: its own connection
    lock.release(lease)


def test_fair_waiter_takes_a_lock_that_expired_without_a_release(r):
    """A holder that dies publishes nothing: the waiter asks again every patience/3 and gets the
    lock once its TTL ran out (a wait of seconds, not of the whole timeout)."""
    import threading

    dead = Lock(r, "expires", fair=True, ttl_ms=300)
    assert dead.acquire(timeout=1) is not None       # never released
    waiter = Lock(r, "expires", fair=True, patience_ms=600)
    got: list = []
    th = threading.Thread(target=lambda: got.append(waiter.acquire()), daemon=True)
    th.start()
    th.join(10)                                       # no deadline: only its own polling gets it the lock
    assert got and got[0] is not None and waiter.holder() == got[0].token


def test_fair_contract_defaults_lease_and_what_a_plain_lock_does_not_use(r):
    fair = Lock(r, "contract", fair=True)
    assert fair.patience_ms == 1000 and fair.queue_key == "lock:{contract}:queue"
    lease = fair.try_acquire()
    assert lease.ttl_ms == 10_000 and fair.extend(lease) and 9_000 < r.pttl(fair.key) <= 10_000
    fair.release(lease)
    asked = fair.try_acquire(wait_replicas=1, wait_ms=10)  # WAIT asked: the replicated path, not the line
    assert asked is not None and asked.replicas == 0
    fair.release(asked)
    plain = Lock(r, "plain")
    held = plain.acquire(timeout=1)
    assert Lock(r, "plain").acquire(timeout=0.05) is None
    rival = Lock(r, "plain")
    assert rival.acquire(timeout=0.05) is None and getattr(rival._local, "sub", None) is None  # sleeps, no pub/sub
    assert plain.waiting() == [] and plain.release(held)
