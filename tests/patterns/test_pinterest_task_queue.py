"""Functional partitioning on real redis-servers: the router, virtual shards, and what each
instance's maxmemory-policy does to queued tasks (counted by the scenario's SQLite sink)."""

from __future__ import annotations

import zlib

import pytest

from redistutor.patterns.pinterest_task_queue import Partitioned
from redistutor.scenarios import pinterest_task_queue as sc


@pytest.fixture(scope="module")
def fleet():
    f = sc.start_fleet()
    yield f
    f.stop()
    sc.close_sinks()


@pytest.fixture
def fresh(fleet):
    sc.reset(fleet)
    return fleet


def test_shard_is_crc32_mod_shards_and_stable():
    p = Partitioned({"cache": ["a", "b"]}, shards=64)
    assert p.shard("cache:pin:1") == zlib.crc32(b"cache:pin:1") % 64
    assert Partitioned({"cache": ["a", "b", "c"]}, shards=64).shard("cache:pin:1") == p.shard("cache:pin:1")


def test_client_routes_by_function_then_by_shard():
    p = Partitioned({"cache": ["c0", "c1"], "sessions": ["s"], "queue": ["q"]}, shards=8)
    assert p.placement == {"cache": [0, 1] * 4, "sessions": [0] * 8, "queue": [0] * 8}
    assert p.client("queue") == p.client("queue", "tasks:spam") == "q"
    assert p.client("cache") == p.client("cache", "") == ["c0", "c1"][zlib.crc32(b"") % 8 % 2]   # no key: shard of ""
    assert p.client("sessions", "session:u1") == "s"
    for key in (f"cache:pin:{i}" for i in range(50)):
        assert p.client("cache", key) == ["c0", "c1"][p.shard(key) % 2]
    with pytest.raises(KeyError):
        p.client("search", "x")


def test_moving_a_shard_moves_only_its_keys():
    p = Partitioned({"cache": ["c0", "c1", "c2"]}, shards=16)
    keys = [f"k{i}" for i in range(2000)]
    before = {k: p.client("cache", k) for k in keys}
    p.placement["cache"][5] = 2
    changed = {k for k in keys if p.client("cache", k) != before[k]}
    assert changed == {k for k in keys if p.shard(k) == 5 and before[k] != "c2"}


def test_sharding_balances_and_grows_by_a_third(fresh):
    _, split = sc.routers(fresh)
    s = sc.sharding(split, n=10_000)
    assert sum(s["per_instance"]) == 10_000 and all(abs(c - 5000) < 300 for c in s["per_instance"])
    assert s["moved_shards"] == 21 and s["moved_by_shard"] < 4000 < 6000 < s["moved_by_mod"]
    assert len(split.routes["cache"]) == 2 and split.placement["cache"] == [0, 1] * 32   # left as it was


def test_one_instance_loses_the_backlog_and_partitioning_loses_nothing(fresh):
    shared, split = sc.routers(fresh)
    one = sc.pressure(shared)
    assert one["report"]["produced"] == 120 and one["lost"] > 0 and one["evicted_by_function"]["queue"] > 0
    assert set(one["queues_gone"]) and one["report"]["duplicated"] == {} and one["report"]["unknown"] == []
    part = sc.pressure(split)
    assert part["lost"] == 0 and part["report"]["effects"] == 120 and part["sessions_lost"] == 0
    assert part["evicted_by_function"]["queue"] == 0 < part["evicted_by_function"]["cache"]


def test_volatile_lru_keeps_tasks_but_evicts_sessions(fresh):
    sc.configure(fresh["shared"], sc.POLICIES["shared"][0], "volatile-lru")
    run = sc.pressure(sc.one_instance(fresh["shared"].r))
    assert run["lost"] == 0 and run["sessions_lost"] > 0


def test_noeviction_refuses_cache_writes_instead(fresh):
    sc.configure(fresh["shared"], sc.POLICIES["shared"][0], "noeviction")
    run = sc.pressure(sc.one_instance(fresh["shared"].r))
    assert run["lost"] == 0 and run["cache_refused"] > 0 and run["evicted_by_function"]["cache"] == 0
    # ... and once full, the workers' BLMOVE is refused too: the backlog waits in Redis, unconsumed
    assert run["waiting"] + run["report"]["effects"] == 120 and run["waiting"] > 0


def test_full_queue_instance_tells_the_producer(fresh):
    full = sc.queue_full(fresh["queue"])
    assert full["error"].startswith("OOM") and full["accepted"] > 0 and full["evicted"] == 0
    assert full["rows"]["LPUSH (a producer's enqueue)"] == "refused: OOM"
    assert full["rows"]["BLMOVE (a worker's take)"] == "refused: OOM"
    assert full["rows"]["EVAL (the ack script, for a task taken earlier)"] == "runs" and full["probe_done"] == "1"
    assert full["rows"]["LLEN (monitoring)"] == "runs"
    assert full["report"]["lost"] == [] and full["drained"] == full["accepted"] == full["report"]["produced"]


def test_noisy_neighbour_shares_the_event_loop_only_on_one_instance(fresh):
    run = sc.noisy_neighbour(*sc.routers(fresh), ops=20)
    assert run["shared"]["cache_calls"] > 0 and run["shared"]["hammer_calls"] > 0
    assert run["split"]["cache_calls"] == 0 and run["split"]["hammer_calls"] > 0
    assert run["split"]["queue_cmds"] == {"lpush": 20, "blmove": 20, "zadd": 20, "eval": 20}
    assert len(run["shared"]["loud"]) == len(run["split"]["loud"]) == 20 and run["ratio"] > 0
    assert run["shared"]["queue_port"] == fresh["shared"].port and run["split"]["queue_port"] == fresh["queue"].port
    assert fresh["cache1"].r.config_get("maxmemory")["maxmemory"] == str(sc.POLICIES["cache1"][0])

