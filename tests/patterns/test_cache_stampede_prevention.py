"""Stampede prevention on a real Redis and a real SQLite: rebuild counts are exact, not sampled."""

from __future__ import annotations

import json
import math
import random
import statistics
import threading

import pytest

from redistutor.db import Database
from redistutor.patterns.cache_stampede_prevention import (
    CoalescingCache,
    LockedCache,
    XFetchCache,
    refresh_probability,
    warm,
    xfetch_should_refresh,
)
from redistutor.race import PausePoint, run_in_thread
from redistutor.scenarios.cache_stampede_prevention import (
    NaiveCache,
    garbled_should_refresh,
    simulate_xfetch,
    stampede,
)


@pytest.fixture
def db():
    with Database(latency=0.05) as d:
        yield d


@pytest.fixture
def loader(db):
    def load(name: str) -> str:
        (n,) = db.execute("SELECT 42")[0]
        return json.dumps({"name": name, "answer": n})
    return load


@pytest.mark.parametrize("cls, rebuilds", [(NaiveCache, 40), (LockedCache, 1), (CoalescingCache, 1)])
def test_stampede_rebuild_counts_are_exact(r, db, loader, cls, rebuilds):
    cache = cls(r, loader, prefix="hot", ttl=60)
    res = stampede(cache, "top", readers=40)
    assert res.rebuilds == rebuilds == db.counts["read"]
    assert db.peak_in_flight == rebuilds
    assert res.values == {loader("top")}  # every reader got the rebuilt value
    assert 0 < r.pttl("hot:top") <= 60_000
    assert r.exists("hot:lock:top") == 0  # the lock (if any) is released


def test_lock_holds_token_with_px_while_rebuilding(r, loader):
    pause = PausePoint("before_rebuild")
    cache = LockedCache(r, loader, prefix="hot", lock_ttl=5, hooks={"before_rebuild": pause})
    fut = run_in_thread(cache.get, "top")
    _, token = pause.wait_reached()
    assert r.get("hot:lock:top") == token and 0 < r.pttl("hot:lock:top") <= 5000
    assert r.exists("hot:top") == 0
    pause.release()
    assert fut.result(timeout=5) == loader("top")
    assert r.exists("hot:lock:top") == 0


@pytest.mark.parametrize("mode, second_lock_survives", [("token", True), ("del", False)])
def test_overrunning_holder_and_release_mode(r, loader, mode, second_lock_survives):
    """A holds past its PX, B takes the lock; A's release must not delete B's lock."""
    pause = PausePoint("before_release")
    a = LockedCache(r, loader, prefix="hot", lock_ttl=0.2, release=mode, hooks={"before_release": pause})
    fut = run_in_thread(a.get, "top")
    _, token_a = pause.wait_reached()
    waited = 0
    while r.exists("hot:lock:top"):  # poll until A's lock expires (PX 200 ms)
        threading.Event().wait(0.01)
        waited += 1
        assert waited < 500
    assert r.set("hot:lock:top", "token-b", nx=True, px=5000)  # B acquires
    pause.release()
    fut.result(timeout=5)
    assert (r.get("hot:lock:top") == "token-b") is second_lock_survives
    if mode == "token":
        assert a.foreign_releases == 1


def test_lock_waiters_take_over_from_a_dead_holder(r, db, loader):
    # The "dead" holder: a lock with a token nobody will ever release, PX 300 ms.
    r.set("hot:lock:top", "dead-holder", px=300)
    cache = LockedCache(r, loader, prefix="hot", lock_ttl=5)
    futs = [run_in_thread(cache.get, "top") for _ in range(10)]
    values = {f.result(timeout=10) for f in futs}
    assert cache.stats.rebuilds == 1 and db.counts["read"] == 1
    assert values == {loader("top")}


def test_coalescing_leader_error_reaches_waiters(r):
    gate = threading.Barrier(5, timeout=5)
    cache = None

    def failing(name):
        for _ in range(2000):  # fail only once the 4 others wait on the leader's future
            if cache.stats.waits >= 4:
                break
            threading.Event().wait(0.005)
        raise RuntimeError("db down")

    cache = CoalescingCache(r, failing, prefix="hot", hooks={"after_miss": lambda *_: gate.wait()})
    futs = [run_in_thread(cache.get, "top") for _ in range(5)]
    errors = [f.exception(timeout=5) for f in futs]
    assert all(isinstance(e, RuntimeError) for e in errors)
    assert cache.stats.rebuilds == 1 and cache._inflight == {}


def test_xfetch_formula_sign():
    rng = random.Random(1)
    delta, beta, expiry = 1.0, 1.0, 100.0
    now = 99.0  # one delta before expiry
    draws = [1.0 - rng.random() for _ in range(2000)]
    good = sum(xfetch_should_refresh(now, delta, beta, expiry, u) for u in draws)
    bad = sum(garbled_should_refresh(now, delta, beta, expiry, u) for u in draws)
    assert bad == 0
    assert abs(good / len(draws) - math.exp(-1)) < 0.05  # P = exp(-tte / (delta*beta))
    # At or after expiry both fire; rand = 1 never refreshes early.
    assert xfetch_should_refresh(100.0, delta, beta, expiry, 0.5)
    assert not xfetch_should_refresh(99.99, delta, beta, expiry, 1.0)
    assert refresh_probability(1.0, 1.0, 1.0) == pytest.approx(math.exp(-1))
    assert refresh_probability(0.0, 1.0, 1.0) == 1.0


def test_xfetch_get_with_injected_clock(r, db, loader):
    clock = [1000.0]

    def slow_loader(name):
        clock[0] += 0.5  # the rebuild takes 0.5 simulated seconds
        return loader(name)

    cache = XFetchCache(r, slow_loader, prefix="x", ttl=10, clock=lambda: clock[0], rng=random.Random(3))
    cache.get("top")
    v, delta, exp = cache.read("top")
    assert v == loader("top") and delta == 0.5 and exp == 1010.5
    assert 3500 < r.ttl("x:top") <= 3600  # physical TTL outlives the logical one
    assert cache.get("top", now=1001.0) == v and cache.stats.rebuilds == 1  # far from expiry
    cache.get("top", now=1010.5)  # at the logical expiry: a miss, rebuilt
    assert cache.stats.misses == 2 and cache.stats.rebuilds == 2


def test_simulated_steady_load(r, db, loader):
    db.latency = 0
    runs = {}
    for beta in (0.5, 1.0, 2.0):
        c = XFetchCache(r, loader, prefix="x", ttl=2, beta=beta, rng=random.Random(11))
        runs[beta] = simulate_xfetch(c, "top", periods=10, rate=100, delta=0.2)
    assert runs[1.0].misses == 0 and runs[2.0].misses == 0
    assert len(runs[1.0].per_generation) >= 10
    assert all(lead > 0 for lead in runs[1.0].leads)
    meds = [statistics.median(runs[b].leads) for b in (0.5, 1.0, 2.0)]
    assert meds[0] < meds[1] < meds[2]

    locked = XFetchCache(r, loader, prefix="x", ttl=2, beta=1, rng=random.Random(11), refresh_lock=True)
    run = simulate_xfetch(locked, "top", periods=10, rate=100, delta=0.2)
    assert run.misses == 0 and set(run.per_generation) == {1}

    garbled = XFetchCache(r, loader, prefix="x", ttl=2, beta=1, rng=random.Random(11),
                          check=garbled_should_refresh)
    bad = simulate_xfetch(garbled, "top", periods=10, rate=100, delta=0.2)
    assert bad.refreshes == [] and bad.misses == bad.rebuilds
    assert min(bad.per_generation) >= 19  # every reader in the 200 ms rebuild window rebuilds


# -- across processes: coalescing alone vs coalescing in front of the Redis lock ----------------

def test_redis_barrier_releases_all_parties_together(r):
    from redistutor.scenarios.cache_stampede_prevention import redis_barrier
    arrived = []
    threads = [threading.Thread(target=lambda: arrived.append(redis_barrier(r, "bar", 5, timeout=10)))
               for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert sorted(arrived) == [1, 2, 3, 4, 5] and r.get("bar") == "5"
    with pytest.raises(TimeoutError):
        redis_barrier(r, "lonely", 2, timeout=0.05)


def test_coalescing_with_lock_counts_one_rebuild_in_threads(r, db, loader):
    cache = CoalescingCache(r, loader, prefix="hot", ttl=60, lock=True)
    assert cache.strategy == "coalesce+lock"
    res = stampede(cache, "top", readers=20)
    assert res.rebuilds == 1 == db.counts["read"] and res.values == {loader("top")}
    assert r.exists("hot:lock:top") == 0  # the leader released the Redis lock


def test_process_stampedes_rebuild_once_per_process_then_once(redis_server):
    """The same 3 processes, two rounds: coalescing alone rebuilds once in each process; with each
    leader behind the Redis lock, once in total."""
    from redistutor.scenarios.cache_stampede_prevention import process_stampedes
    with Database(latency=0.05) as d:
        alone, locked = process_stampedes(redis_server, d, "top", "SELECT 42", prefix=redis_server.key("ps"),
                                          processes=3, threads=4, locks=(False, True))
        logged = dict(d.execute("SELECT strategy, COUNT(*) FROM stampede_rebuilds GROUP BY strategy"))
    assert alone.rebuilds == 3 == logged["coalesce"] and set(alone.rebuilds_by_process.values()) == {1}
    assert locked.rebuilds == 1 == logged["coalesce+lock"]
    for res in (alone, locked):
        assert res.readers == 12 and res.waits == 9 and res.values == {"[[42]]"}
        assert set(res.exitcodes.values()) == {0}


def test_xfetch_run_counts_db_calls_per_bucket(r):
    cache = XFetchCache(r, lambda n: "v", prefix="hot", ttl=2, beta=1.0, rng=random.Random(3),
                        check=garbled_should_refresh)
    run = simulate_xfetch(cache, "top", periods=3, rate=100, delta=0.2)
    assert len(run.starts) == run.rebuilds and sum(run.per_bucket(0.1)) == run.rebuilds
    assert max(run.per_bucket(0.1)) >= 10  # the garbled sign: ~20 misses in one 200 ms rebuild


def test_jitter_spreads_the_expiries_of_keys_loaded_together(r):
    from redistutor.scenarios.cache_stampede_prevention import expiries_per_bucket
    keys = [f"batch:{i}" for i in range(100)]
    warm(r, {k: "v" for k in keys}, ttl=60)
    assert max(expiries_per_bucket(r, keys)) >= 95  # one 100 ms slot holds (almost) all of them
    warm(r, {k: "v" for k in keys}, ttl=60, jitter=0.1, rng=random.Random(7))
    per = expiries_per_bucket(r, keys)
    assert sum(per) == 100 and max(per) <= 10 and len(per) > 50  # spread over ~12 s
    with pytest.raises(ValueError):
        warm(r, {}, ttl=1, jitter=1.5)


def test_kill_holder_one_waiter_takes_over_after_px(redis_server, r, db, loader):
    """A holder process killed with kill -9 mid-rebuild: its PX frees the lock, one waiter rebuilds."""
    from redistutor.scenarios.cache_stampede_prevention import kill_holder
    res = kill_holder(redis_server, r, db, loader, "kh", lock_ttl=0.5, waiters=5)
    assert res["exit_code"] == -9 and res["lock_held_by_holder"] and len(res["dead_token"]) == 32
    assert res["rebuilds"] == 1 == res["db_queries"] and res["values"] == {loader("top")}
    (token_used, lock_held), = res["rebuilt_under"]
    assert token_used == lock_held != res["dead_token"]


def test_lock_waits_count_each_waiting_episode(r, db, loader):
    r.set("hot:lock:top", "dead-holder", px=200)   # a dead holder's lock: everyone waits once
    cache = LockedCache(r, loader, prefix="hot", lock_ttl=5)
    futs = [run_in_thread(cache.get, "top") for _ in range(5)]
    assert {f.result(timeout=10) for f in futs} == {loader("top")}
    assert cache.stats.rebuilds == 1 and cache.stats.waits >= 5


def test_late_loser_is_stopped_by_the_recheck_after_winning(r, db, loader):
    """A reader that missed before B's rebuild and wins the lock after it must not query again;
    a LockedCache without the re-check queries twice (what the notebook's assertion catches)."""
    import uuid

    from redistutor.scenarios.cache_stampede_prevention import late_loser

    class NoRecheck(LockedCache):
        def get(self, name):
            value = self.cached(name)
            while value is None:
                token = uuid.uuid4().hex
                if self.r.set(self.lock_key(name), token, nx=True, px=int(self.lock_ttl * 1000)):
                    try:
                        value = self.rebuild(name, token)
                    finally:
                        self.release(name, token)
                else:
                    value = self.wait_for_value(name)
            return value

    good = late_loser(r, db, loader, "hot")
    assert (good["A rebuilds"], good["B rebuilds"], good["DB queries"], good["lock left"]) == (0, 1, 1, 0)
    bad = late_loser(r, db, loader, "hot", cls=NoRecheck)
    assert (bad["A rebuilds"], bad["DB queries"]) == (1, 2)


def test_xfetch_reader_respects_the_refresh_lock(r):
    """Reader A draws an early refresh, takes the lock (with a PX) and rebuilds; reader B, drawing
    "refresh" meanwhile, sees the lock and serves the current value without touching the DB.
    After A's rebuild the lock is released (not left to expire)."""
    entered, go = threading.Event(), threading.Event()
    calls, clock = [], [0.0]

    def slow(name):
        calls.append("A")
        clock[0] += 1.0  # the cold fill takes 1 s of the simulated clock: delta = 1
        if len(calls) > 1:  # the first call is the cold fill
            entered.set()
            assert go.wait(5)
        return f"v{len(calls)}"

    def other(name):
        calls.append("B")
        return "from B"

    # beta this large makes every reader before the logical expiry draw an early refresh
    a = XFetchCache(r, slow, prefix="x", ttl=10, beta=1e9, clock=lambda: clock[0], refresh_lock=True,
                    lock_ttl=5, rng=random.Random(1))
    b = XFetchCache(r, other, prefix="x", ttl=10, beta=1e9, clock=lambda: clock[0], refresh_lock=True,
                    rng=random.Random(2))
    assert a.get("k") == "v1"
    refresher = run_in_thread(a.get, "k", 5.0)
    assert entered.wait(5)
    assert 0 < r.pttl(a.lock_key("k")) <= 5000
    assert b.get("k", now=5.0) == "v1" and calls == ["A", "A"]
    assert b.stats.hits == 1 and b.stats.early_refreshes == 0
    go.set()
    assert refresher.result(timeout=5) == "v2" and a.stats.early_refreshes == 1
    assert r.exists(a.lock_key("k")) == 0 and b.get("k", now=clock[0]) == "from B"


def test_xfetch_store_is_one_transaction_with_a_physical_ttl(redis_server, r, loader):
    cache = XFetchCache(r, loader, prefix="x", ttl=10, physical_ttl=100)
    r.config_resetstat()
    cache.store("k", "v", 0.25, 1234.5)
    stats = r.info("commandstats")
    assert stats["cmdstat_multi"]["calls"] == stats["cmdstat_exec"]["calls"] == 1
    assert cache.read("k") == ("v", 0.25, 1234.5) and 99_000 < r.pttl("x:k") <= 100_000


def test_coalescing_new_leader_double_checks_the_cache(r, db, loader):
    """B missed, then stalled; A missed, rebuilt, stored and finished. B is now alone, so it
    leads, but the value is there: it must read it, not run the query a second time."""
    pause = PausePoint("after_miss")
    first = [True]

    def after_miss(name):
        if first[0]:
            first[0] = False
            pause(name)

    cache = CoalescingCache(r, loader, prefix="hot", hooks={"after_miss": after_miss})
    b = run_in_thread(cache.get, "top")
    pause.wait_reached()
    value = cache.get("top")  # A: miss, leader, rebuild, store
    pause.release()
    assert b.result(timeout=5) == value and cache.stats.rebuilds == 1 and db.counts["read"] == 1


# -- the waiters' contract, the XFetch clock and hooks, coalescing's settings, warm's TTLs --------


def test_waiter_takes_the_value_as_soon_as_it_is_stored_not_when_the_lock_goes(r, db, loader):
    """Another client holds the lock (no expiry here) and stores the value: the waiter returns it
    at its next read, having waited once and queried nothing, and leaves that client's lock alone.
    A waiter that read the wrong key, or waited only for the lock to go, times out instead; one
    that went back to SET NX while the lock is held counts a wait per round."""
    from redistutor.race import wait_until
    r.set("hot:lock:top", "other-holder")
    cache = LockedCache(r, loader, prefix="hot", wait_timeout=3)
    fut = run_in_thread(cache.get, "top")
    wait_until(lambda: cache.stats.waits == 1, 5, "the reader to start waiting")
    r.set("hot:top", "stored by the holder")
    assert fut.result(timeout=10) == "stored by the holder"
    assert (cache.stats.misses, cache.stats.waits, cache.stats.rebuilds, db.counts["read"]) == (1, 1, 0, 0)
    assert r.get("hot:lock:top") == "other-holder"


@pytest.mark.parametrize("make", [
    lambda r, loader: LockedCache(r, loader, prefix="hot", wait_timeout=0.3),
    lambda r, loader: CoalescingCache(r, loader, prefix="hot", lock=True, wait_timeout=0.3),
], ids=["locked", "coalescing+lock"])
def test_waiter_gives_up_after_wait_timeout_when_the_holder_never_stores(r, db, loader, make):
    """A holder that hangs (its lock stays, no value comes): the waiter raises TimeoutError after
    ``wait_timeout`` instead of waiting for ever, and queries nothing (coalescing passes its
    ``wait_timeout`` on to the Redis lock behind its leader)."""
    r.set("hot:lock:top", "hung-holder")
    cache = make(r, loader)
    exc = run_in_thread(cache.get, "top").exception(timeout=10)
    assert isinstance(exc, TimeoutError) and "no value for 'hot:top'" in str(exc)
    assert cache.stats.rebuilds == 0 and db.counts["read"] == 0 and r.get("hot:lock:top") == "hung-holder"


def test_refresh_probability_values_and_edges():
    """exp(-tte / (delta*beta)): beta and delta both stretch the window; at or past the expiry it
    is 1 (a miss) even with beta 0; with beta 0 (or delta 0) no early refresh before it."""
    assert refresh_probability(1.0, 0.5, 1.0) == pytest.approx(math.exp(-2))
    assert refresh_probability(1.0, 1.0, 2.0) == pytest.approx(math.exp(-0.5))
    assert refresh_probability(3.0, 2.0, 0.5) == pytest.approx(math.exp(-3))
    assert refresh_probability(0.0, 0.0, 1.0) == 1.0 and refresh_probability(-1.0, 1.0, 0.0) == 1.0
    assert refresh_probability(1.0, 1.0, 0.0) == 0.0 and refresh_probability(1.0, 0.0, 1.0) == 0.0


def test_xfetch_reads_its_clock_and_fires_after_miss_only_on_a_miss(r, db, loader):
    """Without ``now`` every read asks the clock: the second read, 1 s later, is a hit. The
    ``after_miss`` hook fires for the cold miss and the miss at the logical expiry, never for a hit
    or an early refresh."""
    clock, missed = [1000.0], []

    def timed(name):
        clock[0] += 0.5  # each rebuild takes 0.5 s of the clock: delta = 0.5
        return loader(name)

    cache = XFetchCache(r, timed, prefix="x", ttl=10, beta=0, clock=lambda: clock[0],
                        hooks={"after_miss": missed.append})
    assert cache.get("top") == loader("top")                  # cold: a miss
    clock[0] += 1
    assert cache.get("top") == loader("top")                  # 1 s later on the clock: a hit
    assert (cache.stats.hits, cache.stats.misses, cache.stats.rebuilds) == (1, 1, 1) and missed == ["top"]
    eager = XFetchCache(r, timed, prefix="x", ttl=10, beta=1e9, clock=lambda: clock[0],
                        hooks={"after_miss": missed.append})
    eager.get("top", now=clock[0] + 1)                        # before the expiry: an early refresh
    assert eager.stats.early_refreshes == 1 and missed == ["top"]
    clock[0] += 100
    cache.get("top")                                          # past the expiry: a miss
    assert missed == ["top", "top"] and cache.stats.misses == 2


def test_xfetch_refresh_lock_has_the_lock_ttl(r, loader):
    """The refresh lock expires after ``lock_ttl`` seconds (PX in ms), so a refresher that dies
    does not block refreshes for ever, nor for longer than asked."""
    seen = []
    cache = XFetchCache(r, lambda n: seen.append(r.pttl("x:refreshing:k")) or "v", prefix="x", ttl=10,
                        beta=1e9, refresh_lock=True, lock_ttl=1000, clock=lambda: 0.0)
    cache.store("k", "old", 1.0, 10.0)
    assert cache.get("k", now=5.0) == "v" and cache.stats.early_refreshes == 1
    assert 990_000 < seen[0] <= 1_000_000 and r.exists("x:refreshing:k") == 0


def test_coalescing_defaults_and_settings_reach_redis(r, loader):
    """Defaults: prefix "hot", TTL 60 s, no Redis lock (strategy "coalesce"). A prefix and TTL
    passed in are the ones the value is stored under, with or without the lock; with ``lock=True``
    the leader rebuilds while holding ``<prefix>:lock:<name>`` (a token with PX ``lock_ttl``)."""
    plain = CoalescingCache(r, loader)
    assert (plain.strategy, plain.locked, plain.key("top")) == ("coalesce", None, "hot:top")
    assert plain.get("top") == loader("top") and 59_000 < r.pttl("hot:top") <= 60_000
    assert repr(plain) == "CoalescingCache(prefix='hot', ttl=60s)"

    locks = []

    def watching(name):
        locks.append((r.get(f"{prefix}:lock:{name}"), r.pttl(f"{prefix}:lock:{name}")))
        return loader(name)

    for prefix, lock, lock_ttl, ms in [("cc", False, 2.0, None), ("cl", True, 2.0, 2000), ("cd", True, None, 5000)]:
        locks.clear()
        kwargs = {} if lock_ttl is None else {"lock_ttl": lock_ttl}
        cache = CoalescingCache(r, watching, prefix=prefix, ttl=10, lock=lock, **kwargs)
        assert cache.get("top") == loader("top") and cache.stats.rebuilds == 1
        assert 9_000 < r.pttl(f"{prefix}:top") <= 10_000 and r.exists(f"{prefix}:lock:top") == 0
        (token, pttl), = locks
        if ms is None:
            assert token is None and cache.locked is None
        else:
            assert len(token) == 32 and ms - 1000 < pttl <= ms


def test_coalescing_counts_hits_and_misses_and_calls_its_hooks_with_the_name(r, loader):
    called = []
    cache = CoalescingCache(r, loader, prefix="hot", hooks={"before_rebuild": lambda n: called.append(("rebuild", n)),
                                                           "after_miss": lambda n: called.append(("miss", n))})
    assert cache.get("top") == cache.get("top") == loader("top")
    assert (cache.stats.misses, cache.stats.hits, cache.stats.rebuilds) == (1, 1, 1)
    assert called == [("miss", "top"), ("rebuild", "top")]


def test_coalescing_waiter_gives_up_after_wait_timeout(r, loader):
    """The leader's rebuild hangs: a waiter in the same process raises TimeoutError after its
    ``wait_timeout`` rather than hanging with it; the leader still finishes and stores."""
    go, leading = threading.Event(), threading.Event()

    def stuck(name):
        assert go.wait(10)
        return loader(name)

    cache = CoalescingCache(r, stuck, prefix="hot", wait_timeout=0.2,
                            hooks={"before_rebuild": lambda n: leading.set()})
    leader = run_in_thread(cache.get, "top")
    assert leading.wait(5)
    waiter = run_in_thread(cache.get, "top")
    exc = waiter.exception(timeout=5)
    go.set()
    assert isinstance(exc, TimeoutError) and cache.stats.waits == 1
    assert leader.result(timeout=10) == loader("top") == r.get("hot:top")


def test_warm_sets_the_asked_ttl_and_spreads_it_symmetrically(r):
    """Without jitter every key gets the TTL asked (PX = ttl * 1000); with jitter 0.1 each key's
    TTL is ttl * (1 + its seeded draw), in [0.9, 1.1] x ttl. A jitter of 1 or more (TTLs down to 0)
    or below 0 is refused. (PTTL is read just after the SETs: up to 1 s is allowed to pass.)"""
    keys = [f"batch:{i}" for i in range(100)]
    warm(r, {k: "v" for k in keys}, ttl=60)
    with r.pipeline(transaction=False) as p:
        for k in keys:
            p.pttl(k)
        pttls = p.execute()
    assert all(59_000 < ms <= 60_000 for ms in pttls)
    warm(r, {k: "v" for k in keys}, ttl=60, jitter=0.1, rng=random.Random(7))
    with r.pipeline(transaction=False) as p:
        for k in keys:
            p.pttl(k)
        pttls = p.execute()
    draws = random.Random(7)
    asked = [int(60 * (1 + draws.uniform(-0.1, 0.1)) * 1000) for _ in keys]
    assert all(a - 1000 < ms <= a for ms, a in zip(pttls, asked, strict=True))
    assert 54_000 <= min(asked) < 55_000 and 65_000 < max(asked) <= 66_000
    for bad in (1.0, 1.5, -0.1):
        with pytest.raises(ValueError):
            warm(r, {}, ttl=1, jitter=bad)


def test_locked_cache_defaults_and_its_hooks_arguments(r, loader):
    """Defaults: prefix "hot", value TTL 60 s, lock PX 5 s. The hooks get the name and the token
    of the lock the rebuild runs under (the same one before the rebuild and before the release);
    a TTL passed in is the value's PX (ttl * 1000 ms)."""
    events = []
    hooks = {"before_rebuild": lambda n, t: events.append((n, t, r.get("hot:lock:top"), r.pttl("hot:lock:top"))),
             "before_release": lambda n, t: events.append((n, t))}
    cache = LockedCache(r, loader, hooks=hooks)
    assert cache.get("top") == loader("top") and repr(cache) == "LockedCache(prefix='hot', ttl=60s)"
    assert 59_000 < r.pttl("hot:top") <= 60_000 and r.exists("hot:lock:top") == 0
    (name, token, held, lock_pttl), released = events
    assert name == "top" and held == token and len(token) == 32 and 4_000 < lock_pttl <= 5_000
    assert released == ("top", token)
    assert cache.get("top") == loader("top")  # now a hit
    assert (cache.stats.hits, cache.stats.misses, cache.stats.rebuilds, cache.stats.waits) == (1, 1, 1, 0)
    LockedCache(r, loader, prefix="long", ttl=1000).get("top")
    assert 999_000 < r.pttl("long:top") <= 1_000_000
    naive = NaiveCache(r, loader)  # the scenario's naive cache: CacheBase's own defaults
    assert naive.get("other") == loader("other") and 59_000 < r.pttl("hot:other") <= 60_000


def test_release_reports_whose_lock_it_was_and_counts_every_foreign_one(r, loader):
    """The token release deletes only its own lock (True); on someone else's it leaves it, returns
    False and counts each such release. The "del" variant deletes whatever is there and says True."""
    cache = LockedCache(r, loader, prefix="hot")
    r.set("hot:lock:top", "token-b")
    assert [cache.release("top", "token-a"), cache.release("top", "token-a")] == [False, False]
    assert cache.foreign_releases == 2 and r.get("hot:lock:top") == "token-b"
    assert cache.release("top", "token-b") is True and r.exists("hot:lock:top") == 0
    assert cache.foreign_releases == 2
    r.set("hot:lock:top", "token-b")
    plain = LockedCache(r, loader, prefix="hot", release="del")
    assert plain.release("top", "token-a") is True and r.exists("hot:lock:top") == 0


def test_xfetch_defaults_and_an_unlocked_early_refresh(r, loader):
    """Defaults: prefix "hot", logical TTL 60 s, beta 1 (what the check is given), no refresh lock
    (a reader that draws "refresh" rebuilds even while a refresh lock is held), lock PX 5 s when
    the lock is on. A hit takes no lock: ``begin`` returns no token. The check fires at the
    expiry itself even when the draw adds nothing (rand = 1)."""
    betas, draw = [], [True]

    def check(now, delta, beta, expiry, rand):
        betas.append(beta)
        return draw[0]

    cache = XFetchCache(r, loader, clock=lambda: 50.0, check=check)
    assert cache.get("top") == loader("top") and cache.read("top")[2] == 110.0 and r.exists("hot:top")
    r.set("hot:refreshing:top", "another-reader", px=10_000)
    cache.get("top")
    assert cache.stats.early_refreshes == 1 and betas == [1.0]
    draw[0] = False
    assert cache.begin("top", 60.0) == ("hit", cache.read("top"), None)
    r.delete("hot:refreshing:top")
    draw[0], pttls = True, []
    locked = XFetchCache(r, lambda n: pttls.append(r.pttl("hot:refreshing:top")) or "v", clock=lambda: 50.0,
                         check=check, refresh_lock=True)
    assert locked.get("top") == "v" and locked.stats.early_refreshes == 1 and 4_000 < pttls[0] <= 5_000
    assert xfetch_should_refresh(100.0, 1.0, 1.0, 100.0, 1.0)
