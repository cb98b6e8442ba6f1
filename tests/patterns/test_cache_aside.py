"""CacheAside on a real Redis and a real SQLite: hits, invalidation, the race, outages."""

from __future__ import annotations

import json
import random

import pytest

from redistutor.patterns.cache_aside import CacheAside
from redistutor.race import PausePoint, run_in_thread
from redistutor.server import RedisServer



def test_miss_then_hit_reads_db_once_and_sets_ttl(r, db):
    cache = CacheAside(r, db, ttl=3600)
    assert cache.get(1)["name"] == "user-1"
    assert cache.get(1)["name"] == "user-1"
    assert db.counts["read"] == 1
    assert 3590 < r.ttl("user:1") <= 3600
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)


def test_update_invalidates(r, db):
    cache = CacheAside(r, db)
    cache.get(2)
    cache.update(2, name="new")
    assert r.exists("user:2") == 0
    assert cache.get(2)["name"] == "new"


def test_jitter_spreads_ttls(r, db):
    cache = CacheAside(r, db, ttl=100, jitter=0.2, rng=random.Random(1))
    for i in range(1, 31):
        cache.get(i)
    ttls = {r.ttl(f"user:{i}") for i in range(1, 31)}
    assert min(ttls) >= 79 and max(ttls) <= 120 and len(ttls) > 10


def test_negative_caching(r, db):
    cache = CacheAside(r, db, negative_ttl=30)
    assert cache.get(9999) is None and cache.get(9999) is None
    assert db.counts["read"] == 1 and cache.stats.negative_hits == 1
    assert 0 < r.ttl("user:9999") <= 30


@pytest.mark.parametrize("invalidation, stale", [("delete", True), ("versioned", False)])
def test_stale_set_race(r, db, invalidation, stale):
    pause = PausePoint("after_db_read")
    cache = CacheAside(r, db, invalidation=invalidation, hooks={"after_db_read": pause})
    reader = run_in_thread(cache.get, 3)
    pause.wait_reached()
    version = cache.update(3, name="fresh")
    pause.release()
    assert reader.result(timeout=5)["name"] == "user-3"  # the reader saw the old row: fine
    doc = json.loads(r.get("user:3"))
    assert (doc.get("row", {}).get("name") == "user-3") is stale
    cache.hooks = None
    if not stale:
        assert cache.stats.rejected_fills == 1
        assert cache.get(3) == db.get_user(3) and cache.get(3)["version"] == version


def test_versioned_tombstone_never_moves_backwards(r, db):
    cache = CacheAside(r, db, invalidation="versioned")
    v2 = cache.update(4, name="a")
    v3 = cache.update(4, name="b")
    assert v3 == v2 + 1
    assert json.loads(r.get("user:4")) == {"tombstone": True, "v": v3}
    cache._invalidate(keys=["user:4"], args=[v2, 60000])  # a late, older invalidation
    assert json.loads(r.get("user:4"))["v"] == v3


def test_redis_down_serves_from_db(db):
    server = RedisServer().start()
    try:
        cache = CacheAside(server.client(fail_fast=True), db)
        cache.get(5)
        server.kill()
        row = cache.get(5)
        assert row["name"] == "user-5" and cache.last_degraded and cache.stats.degraded == 1
    finally:
        server.stop()


def test_read_user_and_write_user_are_the_pattern(r, db):
    from redistutor.patterns.cache_aside import read_user, write_user

    assert read_user(r, db, 6)["name"] == "user-6" and read_user(r, db, 6)["name"] == "user-6"
    assert db.counts["read"] == 1 and 3590 < r.ttl("user:6") <= 3600
    assert read_user(r, db, 999999) is None and r.exists("user:999999") == 0
    version = write_user(r, db, 6, name="new")
    assert r.exists("user:6") == 0 and read_user(r, db, 6)["version"] == version


@pytest.mark.parametrize("invalidation, stale", [("delete", True), ("versioned", False)])
def test_stale_set_race_scenario(redis_server, r, db, invalidation, stale):
    from redistutor.scenarios.cache_aside import stale_set_race

    res = stale_set_race(redis_server, r, db, "user", invalidation)
    assert res.row_seen["version"] == 1 and db.get_user(5)["version"] == 2
    assert (res.in_redis.get("row", {}).get("version") == 1) is stale
    assert len(res.steps.rows) == 3
