"""The resilience pattern on a real Redis: placement by salted crc32, the read path through a
circuit breaker, the breaker's state machine on an injected clock, and the CDC tailer's offset
committed in the same MULTI as the values it applies."""

from __future__ import annotations

import time
import zlib

import pytest
import redis

from redistutor.patterns.uber_resilience import CircuitBreaker, read, shard, tail


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class FakeDB:
    def __init__(self, rows):
        self.rows, self.asked = rows, []

    def get(self, key):
        self.asked.append(key)
        return self.rows.get(key)


class Broken:
    """A cache node that is down: every call raises like a refused connection."""

    def __init__(self, exc=redis.ConnectionError):
        self.exc, self.calls = exc, 0

    def get(self, key):
        self.calls += 1
        raise self.exc("down")


class Spy:
    def __init__(self, r):
        self.r, self.calls = r, 0

    def get(self, key):
        self.calls += 1
        return self.r.get(key)


# -- shard -------------------------------------------------------------------------------------------


def test_shard_is_crc32_of_salt_then_key_mod_n():
    assert shard("trip:1", 3) == zlib.crc32(b"trip:1") % 3
    assert shard("trip:1", 7, "cache:") == zlib.crc32(b"cache:trip:1") % 7
    assert shard("ax", 5) == shard("x", 5, "a")
    assert all(0 <= shard(f"k{i}", 3) < 3 for i in range(100))


def test_aligned_salt_keeps_placement_and_staggered_spreads_one_shard_everywhere():
    keys = [f"trip:{i}" for i in range(900)]
    one = [k for k in keys if shard(k, 3) == 0]
    assert {shard(k, 3, "") for k in one} == {0}
    spread = [sum(shard(k, 3, "cache:") == j for k in one) for j in range(3)]
    assert min(spread) > len(one) / 6


# -- read ----------------------------------------------------------------------------------------------


def test_read_hit_returns_cache_value_and_records_success(r):
    r.set("trip:1", "cached")
    i = shard("trip:1", 1, "cache:")
    b = CircuitBreaker(threshold=1, clock=Clock())
    db = FakeDB({"trip:1": "db"})
    assert i == 0 and read("trip:1", [r], [b], db) == "cached" and db.asked == []
    assert b.state == "closed" and b.failures == []


def test_read_miss_goes_to_db(r):
    db = FakeDB({"trip:2": "db"})
    b = CircuitBreaker(clock=Clock())
    assert read("trip:2", [r], [b], db) == "db" and db.asked == ["trip:2"]
    assert b.failures == []


def test_read_uses_the_salt_to_pick_the_node(r):
    keys = [f"k{i}" for i in range(40)]
    for salt in ("cache:", "other:"):
        spies = [Spy(r), Spy(r), Spy(r)]
        bs = [CircuitBreaker(clock=Clock()) for _ in spies]
        for k in keys:
            read(k, spies, bs, FakeDB({}), salt)
        assert [s.calls for s in spies] == [sum(shard(k, 3, salt) == j for k in keys) for j in range(3)]
    spies = [Spy(r), Spy(r), Spy(r)]
    for k in keys:
        read(k, spies, [CircuitBreaker(clock=Clock()) for _ in spies], FakeDB({}))
    assert [s.calls for s in spies] == [sum(shard(k, 3, "cache:") == j for k in keys) for j in range(3)]


@pytest.mark.parametrize("exc", [redis.ConnectionError, redis.TimeoutError, redis.ResponseError])
def test_read_on_a_failing_node_records_failure_and_falls_back(exc):
    clock = Clock()
    node, b, db = Broken(exc), CircuitBreaker(threshold=2, clock=clock), FakeDB({"t": "db"})
    assert read("t", [node], [b], db) == "db" and b.failures == [100.0] and b.state == "closed"
    assert read("t", [node], [b], db) == "db" and b.state == "open" and node.calls == 2
    assert read("t", [node], [b], db) == "db" and node.calls == 2 and db.asked == ["t"] * 3


def test_read_does_not_swallow_other_errors():
    class Bad:
        def get(self, key):
            raise ValueError("bug")

    with pytest.raises(ValueError):
        read("t", [Bad()], [CircuitBreaker(clock=Clock())], FakeDB({}))


# -- the breaker -----------------------------------------------------------------------------------------


def test_breaker_defaults():
    b = CircuitBreaker()
    assert (b.threshold, b.window, b.cooldown, b.clock) == (5, 1.0, 2.0, time.monotonic)
    assert (b.state, b.failures, b.opened) == ("closed", [], 0.0) and b.allow()


def test_breaker_opens_at_threshold_within_window():
    clock = Clock()
    b = CircuitBreaker(threshold=3, window=1.0, cooldown=2.0, clock=clock)
    for _ in range(2):
        b.record(False)
        assert b.state == "closed" and b.allow()
    clock.now += 0.5
    b.record(False)
    assert b.state == "open" and b.opened == 100.5 and not b.allow()


def test_breaker_forgets_failures_older_than_the_window():
    clock = Clock()
    b = CircuitBreaker(threshold=3, window=1.0, clock=clock)
    b.record(False)
    b.record(False)
    clock.now += 1.0                 # exactly one window later: those two no longer count
    b.record(False)
    assert b.state == "closed" and b.failures == [101.0]
    clock.now += 0.999
    b.record(False)
    b.record(False)
    assert b.state == "open"


def test_breaker_success_while_closed_keeps_the_window():
    clock = Clock()
    b = CircuitBreaker(threshold=2, clock=clock)
    b.record(False)
    b.record(True)
    assert b.failures == [100.0] and b.state == "closed"
    b.record(False)
    assert b.state == "open"


def test_breaker_half_open_after_cooldown_then_closes_on_success():
    clock = Clock()
    b = CircuitBreaker(threshold=1, cooldown=2.0, clock=clock)
    b.record(False)
    clock.now += 1.999
    assert not b.allow() and b.state == "open"
    clock.now += 0.001
    assert b.allow() and b.state == "half-open"
    b.record(True)
    assert b.state == "closed" and b.failures == [] and b.allow()


def test_breaker_half_open_failure_reopens_with_a_new_cooldown():
    clock = Clock()
    b = CircuitBreaker(threshold=5, window=1.0, cooldown=2.0, clock=clock)
    for _ in range(5):
        b.record(False)
    clock.now += 10
    assert b.allow() and b.state == "half-open"
    b.record(False)                  # one failure is enough while half-open
    assert b.state == "open" and b.opened == 110.0 and not b.allow()
    clock.now += 2.0
    assert b.allow()


def test_breaker_open_state_is_not_reset_by_late_success():
    clock = Clock()
    b = CircuitBreaker(threshold=1, clock=clock)
    b.record(False)
    b.record(True)                   # a request started before the trip, answered late
    assert b.state == "open"


# -- tail -------------------------------------------------------------------------------------------------


def log_of(entries):
    calls = []

    def changes(offset, batch):
        calls.append((offset, batch))
        yield from [e for e in entries if e[0] > offset][:batch]
    changes.calls = calls
    return changes


def test_tail_applies_in_order_and_stores_the_offset(r):
    changes = log_of([(1, "a", "1"), (2, "b", "x"), (3, "a", "2"), (4, "c", "3")])
    assert tail(changes, r, "d1", lambda k: k != "b") == 4
    assert (r.get("a"), r.get("b"), r.get("c"), r.get("cdc:offset:d1")) == ("2", None, "3", "4")
    assert changes.calls == [(0, 500)]


def test_tail_resumes_from_the_offset_and_respects_batch(r):
    entries = [(i, f"k{i}", str(i)) for i in range(1, 8)]
    changes = log_of(entries)
    assert tail(changes, r, "d2", lambda k: True, batch=3) == 3
    assert tail(changes, r, "d2", lambda k: True, batch=3) == 3
    assert changes.calls == [(0, 3), (3, 3)] and r.get("cdc:offset:d2") == "6" and r.get("k7") is None
    assert tail(changes, r, "d2", lambda k: True, batch=3) == 1 and r.get("k7") == "7"


def test_tail_with_nothing_new_writes_nothing(r):
    assert tail(log_of([]), r, "d3", lambda k: True) == 0 and r.exists("cdc:offset:d3") == 0
    r.set("cdc:offset:d3", 5)
    assert tail(log_of([(5, "x", "1")]), r, "d3", lambda k: True) == 0 and r.get("x") is None


def test_tail_killed_mid_batch_applies_nothing(r):
    def crashing(offset, batch):
        yield 1, "a", "1"
        yield 2, "b", "2"
        raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        tail(crashing, r, "d1", lambda k: True)
    assert r.get("a") is None and r.get("cdc:offset:d1") is None


def test_tail_commits_in_one_multi(r):
    r.config_resetstat()
    tail(log_of([(1, "a", "1"), (2, "b", "2")]), r, "d1", lambda k: True)
    stats = r.info("commandstats")
    assert stats["cmdstat_multi"]["calls"] == 1 and stats["cmdstat_exec"]["calls"] == 1
    assert stats["cmdstat_set"]["calls"] == 3
