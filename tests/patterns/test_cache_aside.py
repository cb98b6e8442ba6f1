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


class ReaderBetweenDatabase:
    """The real database, with a reader that runs just before each UPDATE commits: the moment a
    writer that deletes the cache *before* updating the database leaves open."""

    def __init__(self, db, read):
        self.db, self.read = db, read

    def get_user(self, user_id):
        return self.db.get_user(user_id)

    def update_user(self, user_id, **fields):
        self.read(user_id)  # another client reads between the writer's two steps
        return self.db.update_user(user_id, **fields)


def test_write_user_updates_the_db_before_deleting(r, db):
    """DEL first: the reader in between misses, reloads the old row and caches it for an hour."""
    from redistutor.patterns.cache_aside import read_user, write_user

    read_user(r, db, 7)
    racy = ReaderBetweenDatabase(db, lambda uid: read_user(r, db, uid))
    write_user(r, racy, 7, name="new")
    assert read_user(r, db, 7)["name"] == "new"


def test_update_writes_the_db_before_invalidating(r, db):
    cache = CacheAside(r, db)
    cache.get(7)
    cache.db = ReaderBetweenDatabase(db, lambda uid: CacheAside(r, db).get(uid))
    cache.update(7, name="new")
    cache.db = db
    assert r.exists("user:7") == 0 and cache.get(7)["name"] == "new"


def test_versioned_fill_and_tombstone_carry_ttls(r, db):
    """Both writes of versioned invalidation expire: a fill lives one TTL, and so does a tombstone
    (one without a TTL would sit in Redis forever for a row nobody reads again)."""
    cache = CacheAside(r, db, ttl=100, invalidation="versioned")
    cache.get(8)
    assert 90 < r.ttl("user:8") <= 100
    cache.update(8, name="new")
    assert json.loads(r.get("user:8"))["tombstone"] and 90 < r.ttl("user:8") <= 100
    assert cache.get(8)["name"] == "new" and 90 < r.ttl("user:8") <= 100
    cache.negative_ttl = 30
    assert cache.get(9999) is None and 0 < r.ttl("user:9999") <= 30


def test_a_fill_of_the_tombstones_own_version_is_accepted(r, db):
    """A tombstone for v2 refuses a fill of v1 but takes v2 (the row the writer committed); a
    cached row refuses the same version again."""
    cache = CacheAside(r, db, invalidation="versioned")
    version = cache.update(9, name="new")
    assert cache.get(9)["version"] == version and cache.stats.rejected_fills == 0
    assert json.loads(r.get("user:9"))["row"]["name"] == "new"
    assert cache.get(9)["name"] == "new" and cache.stats.hits == 1
    assert cache._fill(keys=["user:9"], args=[version, "{}", 60000]) == 0
    assert cache._fill(keys=["user:9"], args=[version + 1, '{"v": 3}', 60000]) == 1


def test_a_tombstone_is_not_served_as_a_row(r, db):
    cache = CacheAside(r, db, invalidation="versioned")
    cache.update(10, name="new")
    assert cache.get(10)["name"] == "new" and (cache.stats.hits, cache.stats.misses) == (0, 1)


def test_defaults_and_ttl_arithmetic(r, db):
    """The default TTL is an hour (to the millisecond), the jitter is drawn from the given random
    source around the TTL, a tiny TTL still rounds to 1 ms, and a jitter of 100 % is refused."""
    cache = CacheAside(r, db)
    cache.get(1)
    assert 3_590_000 < r.pttl("user:1") <= 3_600_000 and cache.last_degraded is False
    seeded = CacheAside(r, db, ttl=100, jitter=0.2, rng=random.Random(5))
    spread = random.Random(5).uniform(-0.2, 0.2)
    assert seeded.ttl_ms() == int(100 * (1 + spread) * 1000)
    assert CacheAside(r, db, ttl=0.001).ttl_ms() == 1
    for bad in (1, 1.5, -0.1):
        with pytest.raises(ValueError):
            CacheAside(r, db, jitter=bad)
    with pytest.raises(ValueError):
        CacheAside(r, db, invalidation="write-through")


def test_stored_documents(r, db):
    """What other clients (and the notebook's key views) read: sorted-key JSON, the row under
    "row" with its version, and a "missing" marker of version 0 that lives negative_ttl (in ms)."""
    for invalidation in ("delete", "versioned"):
        r.flushdb()
        cache = CacheAside(r, db, negative_ttl=30, invalidation=invalidation)
        cache.get(2)
        row = db.get_user(2)
        assert r.get("user:2") == json.dumps({"row": row, "v": row["version"]}, sort_keys=True)
        assert cache.get(9999) is None
        assert r.get("user:9999") == '{"missing": true, "v": 0}'
        assert 29_000 < r.pttl("user:9999") <= 30_000


def test_redis_dying_between_read_and_fill_degrades(db):
    """GET answered, then Redis died before the fill: the caller still gets the row, marked as
    degraded; the next read on a live Redis is not."""
    server = RedisServer().start()
    try:
        cache = CacheAside(server.client(fail_fast=True), db, hooks={"after_db_read": lambda row: server.kill()})
        row = cache.get(3)
        assert row["name"] == "user-3" and cache.last_degraded is True and cache.stats.degraded == 1
    finally:
        server.stop()


def test_a_healthy_read_clears_the_degraded_flag(r, db):
    server = RedisServer().start()
    try:
        cache = CacheAside(server.client(fail_fast=True), db)
        server.kill()
        cache.get(4)
        assert cache.last_degraded is True
        cache.r = r
        cache.get(4)
        assert cache.last_degraded is False
    finally:
        server.stop()
