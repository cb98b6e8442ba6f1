"""Rate limiters on a real Redis: exact windows via an injected clock, real threads, memory, round trips."""

from __future__ import annotations

import threading
import time

import pytest

from redistutor import trace
from redistutor.clocks import SkewedClock
from redistutor.patterns.rate_limiting import (
    ALGORITHMS,
    FixedWindow,
    LeakyBucket,
    NaiveLimiter,
    SlidingLog,
    SlidingWindowCounter,
    TokenBucket,
    fixed_window_hit,
)
from redistutor.scenarios.rate_limiting import FakeClock, max_in_any_window

W = 1000


def run(limiter, times, client="alice"):
    """Send one request at each time; return the accepted times."""
    return [t for t in times if limiter.hit(client, now_ms=t)]


def boundary_burst(start=10_000):
    # 10 requests in the last 10 ms of one window, 10 in the first 10 ms of the next
    return [start + 990 + i for i in range(10)] + [start + 1000 + i for i in range(10)]


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_burst_of_limit_then_refused(r, name):
    lim = ALGORITHMS[name](r, limit=5, window_ms=W)
    decisions = [lim.hit("a", now_ms=50_000) for _ in range(7)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    assert all(d.retry_after_ms > 0 for d in decisions[5:])


def test_fixed_window_boundary_doubles_the_limit(r):
    accepted = run(FixedWindow(r, limit=10, window_ms=W), boundary_burst())
    assert len(accepted) == 20 and max_in_any_window(accepted, W) == 20
    assert accepted[-1] - accepted[0] < 20


@pytest.mark.parametrize("name, most", [("sliding log", 10), ("sliding counter", 11),
                                        ("token bucket", 10), ("leaky bucket", 10)])
def test_other_algorithms_do_not_double_at_the_boundary(r, name, most):
    accepted = run(ALGORITHMS[name](r, limit=10, window_ms=W), boundary_burst())
    assert max_in_any_window(accepted, W) == most


def test_sliding_log_never_exceeds_limit_in_any_window(r):
    import random
    rng = random.Random(7)
    times = sorted(rng.randrange(0, 5000) for _ in range(400))
    accepted = run(SlidingLog(r, limit=10, window_ms=W), times)
    assert max_in_any_window(accepted, W) == 10


def test_token_bucket_burst_then_rate(r):
    tb = TokenBucket(r, limit=5, window_ms=5000)  # capacity 5, 1 token per second
    assert sum(bool(tb.hit("a", now_ms=0 + 100_000)) for _ in range(8)) == 5
    # one request every 250 ms for 4 s: one allowed per second
    accepted = run(tb, [100_000 + 250 * i for i in range(1, 17)], client="a")
    assert accepted == [101_000, 102_000, 103_000, 104_000]
    refused = tb.hit("a", now_ms=104_000)
    assert not refused and refused.retry_after_ms == 1000


def test_leaky_bucket_same_admissions_as_token_bucket_and_spaced_delays(r):
    import random
    rng = random.Random(3)
    times = sorted(rng.randrange(0, 6000) for _ in range(300))
    tb, lb = TokenBucket(r, limit=8, window_ms=W), LeakyBucket(r, limit=8, window_ms=W)
    assert run(tb, times) == run(lb, times)
    r.delete(lb.key("b"))
    delays = [lb.hit("b", now_ms=0 + 20_000).delay_ms for _ in range(8)]
    assert delays == [0, 125, 250, 375, 500, 625, 750, 875]


def test_sliding_counter_weights_previous_window(r):
    sc = SlidingWindowCounter(r, limit=10, window_ms=W)
    assert len(run(sc, [10_500] * 10)) == 10           # previous window full
    # 250 ms into the next window, 75% of the previous 10 still count: 7.5, 8.5, 9.5 pass
    assert len(run(sc, [11_250] * 5)) == 3
    # at 900 ms: 10 * 0.1 + 3 = 4.0, so 6 more pass (estimates 4 .. 9)
    assert len(run(sc, [11_900] * 8)) == 6


def test_sliding_counter_estimate_matches_the_script_one_ms_into_the_window(r):
    # 10 requests fill the previous window; at 0 ms into the next the weight is 1.0 (estimate 10:
    # refused), 1 ms in it is 0.999 (estimate 9.99: one passes), then 9.98 + 1 is refused again.
    assert SlidingWindowCounter.estimate(10, 0, 0, W) == 10
    assert SlidingWindowCounter.estimate(10, 0, 1, W) == pytest.approx(9.99)
    sc = SlidingWindowCounter(r, limit=10, window_ms=W)
    assert len(run(sc, [10_500] * 10)) == 10
    assert run(sc, [11_000, 11_001, 11_002]) == [11_001]


def test_fixed_window_hit_is_one_round_trip_and_sets_the_ttl_once(r):
    key = "rl:t:canonical"
    with trace(r) as t:
        assert fixed_window_hit(r, key, 3, 60)
    assert t.round_trips == 1 and 0 < r.ttl(key) <= 60
    r.pexpire(key, 500)
    assert [fixed_window_hit(r, key, 3, 60) for _ in range(3)] == [True, True, False]
    assert 0 < r.pttl(key) <= 500  # NX: later hits do not push the expiry back


def test_fixed_window_hit_is_exact_under_8_concurrent_clients(r):
    from redistutor.scenarios.rate_limiting import canonical_race

    assert sum(canonical_race(r, "rl:t:canon-race")) == 1  # count at 4 of 5: one more passes


def test_kill_9_never_leaves_the_canonical_counter_without_a_ttl(redis_server, r):
    from redistutor.scenarios.rate_limiting import kill_while_hammering

    assert kill_while_hammering(redis_server, "rl:t:canon-kill") == -9
    assert int(r.get("rl:t:canon-kill")) >= 200 and r.pttl("rl:t:canon-kill") > 0


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_exact_under_8_concurrent_clients(r, redis_server, name):
    lim = ALGORITHMS[name](r, limit=20, window_ms=W)
    barrier = threading.Barrier(8, timeout=10)
    accepted, lock = [], threading.Lock()

    def client():
        barrier.wait()
        mine = sum(bool(lim.hit("shared", now_ms=77_000)) for _ in range(10))
        with lock:
            accepted.append(mine)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(accepted) == 20


def test_naive_limiter_over_admits_when_clients_interleave(r):
    barrier = threading.Barrier(8, timeout=10)
    naive = NaiveLimiter(r, limit=5, window_s=60, hooks={"after_check": lambda *_: barrier.wait()})
    r.set(naive.key("a"), 4)
    results = []
    threads = [threading.Thread(target=lambda: results.append(naive.hit("a"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(results) == 8 and r.get(naive.key("a")) == "12"


def test_naive_limiter_crash_before_expire_leaves_no_ttl(r):
    def crash(*_):
        raise ConnectionError("client died")

    naive = NaiveLimiter(r, limit=3, window_s=60, hooks={"before_expire": crash})
    with pytest.raises(ConnectionError):
        naive.hit("a")
    assert r.ttl(naive.key("a")) == -1
    naive.hooks = None
    assert [naive.hit("a") for _ in range(3)] == [True, True, False]
    assert r.ttl(naive.key("a")) == -1  # refused forever


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_state_always_has_a_ttl(r, name):
    lim = ALGORITHMS[name](r, limit=3, window_ms=W)
    for _ in range(5):
        lim.hit("a", now_ms=5_000)
    assert 0 < r.pttl(lim.key("a")) <= 2 * W + 1000


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_one_round_trip_per_decision(r, name):
    lim = ALGORITHMS[name](r, limit=3, window_ms=W)
    with trace(r) as t:
        for i in range(6):
            lim.hit("a", now_ms=9_000 + i)
    assert t.round_trips == 6 and t.names() == ["EVALSHA"] * 6


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_server_clock_works(r, name):
    lim = ALGORITHMS[name](r, limit=2, window_ms=60_000)
    assert [bool(lim.hit("srv")) for _ in range(3)] == [True, True, False]


def test_memory_sliding_log_grows_counters_do_not(r):
    usage = {}
    for name, cls in ALGORITHMS.items():
        lim = cls(r, limit=10_000, window_ms=60_000)
        sizes = []
        for n in (10, 100, 1000):
            r.delete(lim.key("m"))
            for i in range(n):
                lim.hit("m", now_ms=1_000_000 + i)
            sizes.append(r.memory_usage(lim.key("m"), samples=0))
        usage[name] = sizes
    log = usage.pop("sliding log")
    assert log[0] < log[1] < log[2] and log[2] > 10 * max(max(s) for s in usage.values())
    for sizes in usage.values():
        assert max(sizes) - min(sizes) <= 16, usage


def test_token_bucket_bursts_capacity_then_sustains_the_rate(r):
    clock = FakeClock(start_ms=0)
    tb = TokenBucket(r, limit=5, window_ms=5000, prefix="rl:t:rate", clock=clock)  # 1 token/s
    assert tb.level("u", 0) == 5.0
    assert [bool(tb.hit("u")) for _ in range(8)] == [True] * 5 + [False] * 3
    assert tb.level("u", 0) == 0.0 and tb.level("u", 500) == 0.5
    allowed = []
    for _ in range(40):  # every 250 ms for 10 s
        clock.advance(250)
        if tb.hit("u"):
            allowed.append(clock())
    assert allowed == [1000 * k for k in range(1, 11)]
    assert tb.level("u", clock()) == 0.0 and tb.level("u", clock() + 60_000) == 5.0


@pytest.mark.parametrize("offset", [-90_000, 90_000])
def test_skewed_app_clocks_break_the_sliding_log_and_server_time_does_not(r, offset):
    true = FakeClock(start_ms=7_000_000)
    a = SlidingLog(r, limit=5, window_ms=60_000, prefix=f"rl:t:skew{offset}", clock=true)
    b = SlidingLog(r, limit=5, window_ms=60_000, prefix=f"rl:t:skew{offset}",
                   clock=SkewedClock(offset=offset, base=true))
    allowed = 0
    for i in range(20):
        allowed += bool((a, b)[i % 2].hit("u"))
        true.advance(50)
    assert allowed > 5  # each app server drops the other's entries as "older than the window"
    a_srv = SlidingLog(r, limit=5, window_ms=60_000, prefix=f"rl:t:srv{offset}")
    b_srv = SlidingLog(r, limit=5, window_ms=60_000, prefix=f"rl:t:srv{offset}")
    assert sum(bool((a_srv, b_srv)[i % 2].hit("u")) for i in range(20)) == 5


@pytest.mark.parametrize("persistence, allowed_after", [("none", 5), ("aof-always", 0)])
def test_a_restart_resets_the_limit_unless_the_state_persists(persistence, allowed_after):
    from redistutor.server import RedisServer

    with RedisServer(modules=(), persistence=persistence, name=f"test-rl-{persistence}") as s:
        lim = SlidingLog(s.client(), limit=5, window_ms=3_600_000, prefix="rl:t:restart")
        assert sum(bool(lim.hit("u")) for _ in range(6)) == 5
        s.kill()
        s.restart()
        lim = SlidingLog(s.client(), limit=5, window_ms=3_600_000, prefix="rl:t:restart")
        assert sum(bool(lim.hit("u")) for _ in range(5)) == allowed_after


def test_kill_9_between_incr_and_expire_leaves_no_ttl_and_lua_always_does(redis_server, r):
    from redistutor.lab import Workers
    from redistutor.scenarios.rate_limiting import lua_hammer_worker, naive_crash_worker

    naive_key = NaiveLimiter(r, limit=3, window_s=60, prefix="rl:t:crash").key("bob")
    w = Workers(naive_crash_worker, 1, nodes=[redis_server], args=("rl:t:crash", "bob")).start()
    try:
        w.wait_for("between INCR and EXPIRE", timeout=20)
        w.kill("w1")
    finally:
        w.stop()
    assert r.get(naive_key) == "1" and r.ttl(naive_key) == -1

    lua = FixedWindow(r, limit=10**9, window_ms=60_000, prefix="rl:t:hammer")
    w = Workers(lua_hammer_worker, 1, nodes=[redis_server], args=("rl:t:hammer", "bob")).start()
    try:
        w.wait_for("hitting", timeout=20)
        deadline = time.monotonic() + 20
        while sum(map(int, r.hvals(lua.key("bob")))) < 200 and time.monotonic() < deadline:
            pass
        w.kill("w1")
    finally:
        w.stop()
    assert sum(map(int, r.hvals(lua.key("bob")))) >= 200 and r.pttl(lua.key("bob")) > 0


# -- bug families a reviewer looks for (issue 11): each test fails on the broken variant ----------

def test_token_bucket_survives_a_clock_that_steps_backwards(r):
    """App servers' clocks differ and NTP steps them back. A time earlier than the last one seen
    must neither refill (negative refill would destroy tokens) nor move the stored time back
    (the next request would then be refilled twice for the same interval)."""
    tb = TokenBucket(r, limit=5, window_ms=W)
    assert tb.hit("a", now_ms=10_000).remaining == 4
    back = tb.hit("a", now_ms=9_000)  # 1 s in the past: as if no time had passed
    assert back.allowed and back.remaining == 3
    assert r.hget(tb.key("a"), "ts") == "10000" and tb.level("a", 9_000) == 3
    assert run(tb, [9_500] * 4, client="a") == [9_500] * 3
    # 200 ms after the latest time seen (10,000): exactly one token (5 per 1,000 ms) came back
    assert run(tb, [10_200] * 3, client="a") == [10_200]


def test_sliding_counter_forgets_a_previous_window_that_is_not_adjacent(r):
    """The previous count only weighs in if it is the window just before. After an idle window
    it is zero: carrying the old count over throttles a client for traffic long gone."""
    sc = SlidingWindowCounter(r, limit=10, window_ms=W)
    assert len(run(sc, [1_000 + i for i in range(11)])) == 10      # window 1 full
    assert len(run(sc, [3_500] * 11)) == 10                         # window 2 idle: 1 counts for nothing
    assert r.hmget(sc.key("alice"), "w", "c", "p") == ["3", "10", "0"]
    assert len(run(sc, [4_500] * 11)) == 5                          # window 3 (10) weighs 50 %
    assert r.hmget(sc.key("alice"), "w", "c", "p") == ["4", "5", "10"]


# -- contracts the mutation run (./run mutate rate_limiting) showed unpinned --------------------

def test_limiter_contract_arguments_keys_clock_and_decision(r):
    for bad in ({"limit": 0, "window_ms": W}, {"limit": 1, "window_ms": 0}):
        with pytest.raises(ValueError):
            FixedWindow(r, **bad)
    clock = FakeClock(50_000)
    one = FixedWindow(r, limit=1, window_ms=W, clock=clock)
    assert repr(one) == "FixedWindow(limit=1, window_ms=1000)" and one.key("a") == "rl:fixed:a"
    first, second = one.hit("a"), one.hit("a")           # both at the injected 50,000 ms
    assert (first.allowed, first.remaining, first.retry_after_ms, first.delay_ms) == (True, 0, 0, 0)
    assert (bool(second), second.retry_after_ms) == (False, 1000)
    assert r.hgetall("rl:fixed:a") == {"50": "2"}  # the refused request is counted too
    clock.advance(W)
    assert one.hit("a") and one.hit("b", now_ms=50_000)   # now_ms wins over the clock
    assert r.hgetall("rl:fixed:b") == {"50": "1"}
    assert [c(r, limit=1, window_ms=W).key(7) for c in ALGORITHMS.values()] == [
        "rl:fixed:7", "rl:log:7", "rl:counter:7", "rl:token:7", "rl:leaky:7"]
    assert FixedWindow(r, limit=1, window_ms=W, prefix="api").key("x") == "api:x"


def test_canonical_fixed_window_allows_exactly_the_limit(r):
    assert [fixed_window_hit(r, "rl:t:exact", 2, 60) for _ in range(3)] == [True, True, False]
    assert r.get("rl:t:exact") == "3"


def test_sliding_log_counts_same_millisecond_requests_apart(r):
    log = SlidingLog(r, limit=3, window_ms=W)
    got = [log.hit("a", now_ms=8_000) for _ in range(4)]
    assert [bool(d) for d in got] == [True, True, True, False]
    assert [d.delay_ms for d in got] == [0, 0, 0, 0]  # only the leaky bucket delays
    assert r.zcard(log.key("a")) == 3  # one member per request, not one per millisecond


def test_token_bucket_level_is_a_read(r):
    tb = TokenBucket(r, limit=4, window_ms=W)
    assert tb.level("new", 1_000) == 4.0
    run(tb, [1_000] * 4, client="a")
    assert tb.level("a", 1_000) == 0.0 and tb.level("a", 1_500) == 2.0 and tb.level("a", 9_000) == 4.0
    assert r.hget(tb.key("a"), "u") == "0"  # reading did not refill


def test_naive_limiter_hooks_and_expire_on_first_hit_only(r):
    seen = []
    naive = NaiveLimiter(r, limit=2, window_s=60,
                         hooks={"after_check": lambda *a: seen.append(("check",) + a),
                                "before_expire": lambda *a: seen.append(("expire",) + a)})
    assert naive.key("a") == "rl:naive:a"
    assert [naive.hit("a") for _ in range(3)] == [True, True, False]
    assert seen == [("check", "rl:naive:a"), ("expire", 1), ("check", "rl:naive:a")]
    assert 0 < r.ttl("rl:naive:a") <= 60


def test_limiter_contract_boundaries_and_the_canonical_transaction(r):
    assert FixedWindow(r, limit=1, window_ms=1).hit("a", now_ms=5)  # a 1 ms window is allowed
    assert SlidingWindowCounter.estimate(10, 3, 500, 1000) == 8.0  # half of 10, plus 3
    assert NaiveLimiter(r, limit=1, window_s=60).hit("fresh")  # an absent counter is 0
    with trace(r) as t:
        fixed_window_hit(r, "rl:t:tx", 3, 60)
    assert t.names() == ["MULTI", "INCRBY", "EXPIRE", "EXEC"]  # both or neither


def test_fixed_window_one_command_per_decision_and_the_ttl_once_per_window(r):
    """Server-side work per decision (INFO commandstats, not time): one HINCRBY each; only a
    window's first request looks at the hash (HLEN), drops the old window and sets the TTL; no
    TIME when the caller passes the time."""
    fw = FixedWindow(r, limit=3, window_ms=W)
    r.config_resetstat()
    assert [bool(fw.hit("a", now_ms=20_000 + i)) for i in range(4)] == [True, True, True, False]
    assert fw.hit("a", now_ms=21_000)  # next window: the old one dropped, TTL again
    stats = {k.removeprefix("cmdstat_"): v["calls"] for k, v in r.info("commandstats").items()}
    assert (stats["hincrby"], stats["hlen"], stats["pexpire"], stats["del"], stats["hset"]) == (5, 2, 2, 1, 1)
    assert "time" not in stats and "hget" not in stats and "hmget" not in stats
    assert r.hgetall(fw.key("a")) == {"21": "1"} and 0 < r.pttl(fw.key("a")) <= 2 * W


def test_fixed_window_reads_the_server_clock_only_without_a_time(r):
    fw = FixedWindow(r, limit=3, window_ms=60_000)
    r.config_resetstat()
    assert fw.hit("a").allowed and fw.hit("a", now_ms=5).allowed
    assert r.info("commandstats")["cmdstat_time"]["calls"] == 1


def test_fixed_window_decision_from_one_integer(r):
    fw = FixedWindow(r, limit=2, window_ms=W)
    got = [fw.hit("a", now_ms=7_250) for _ in range(3)]
    assert [(d.allowed, d.remaining, d.retry_after_ms, d.delay_ms) for d in got] == [
        (True, 1, 0, 0), (True, 0, 0, 0), (False, 0, 750, 0)]
    assert fw.hit("a", now_ms=7_999).retry_after_ms == 1 and fw.hit("a", now_ms=8_000).remaining == 1
