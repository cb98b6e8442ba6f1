"""WriteThrough on a real Redis and a real SQLite: read-after-write, DB failures, the writer race."""

from __future__ import annotations

import json

import pytest

from redistutor.db import DatabaseError
from redistutor.patterns.write_through import WriteThrough
from redistutor.race import PausePoint, run_in_thread
from redistutor.server import RedisServer


def cached(r, key):
    raw = r.get(key)
    return json.loads(raw) if raw else None


def test_read_after_write_hits_and_equals_db(r, db):
    wt = WriteThrough(r, db)
    row = wt.write(1, name="Ada")
    db.reset_counts()
    assert wt.get(1) == row == db.get_user(1)
    assert db.counts["read"] == 1  # only the explicit db.get_user above
    assert wt.stats.hits == 1 and wt.stats.misses == 0
    assert cached(r, "user:1") == row and r.ttl("user:1") == -1


def test_each_write_is_one_db_write_and_one_cache_write(r, db):
    wt = WriteThrough(r, db, ttl=60)
    for i in range(5):
        wt.write(2, name=f"n{i}")
    assert db.counts == {"write": 5}
    assert cached(r, "user:2")["name"] == "n4" and cached(r, "user:2")["version"] == 6
    assert 0 < r.ttl("user:2") <= 60


def test_db_failure_leaves_redis_untouched(r, db):
    wt = WriteThrough(r, db)
    before = wt.write(3, name="kept")
    db.fail_next("write")
    with pytest.raises(DatabaseError):
        wt.write(3, name="refused")
    assert cached(r, "user:3") == before == db.get_user(3)
    assert wt.stats.db_failures == 1


def test_naive_cache_first_diverges_on_db_failure(r, db):
    """The broken variant the notebook shows: SET first, then UPDATE."""
    db.fail_next("write")
    r.set("user:4", json.dumps({"id": 4, "name": "refused"}))
    with pytest.raises(DatabaseError):
        db.update_user(4, name="refused")
    assert cached(r, "user:4")["name"] == "refused" and db.get_user(4)["name"] == "user-4"


def test_unknown_user_raises_keyerror_and_caches_nothing(r, db):
    wt = WriteThrough(r, db)
    with pytest.raises(KeyError):
        wt.write(999, name="x")
    assert r.exists("user:999") == 0


@pytest.mark.parametrize("versioned, stale", [(False, True), (True, False)])
def test_two_writers_race(r, db, versioned, stale):
    pause = PausePoint("after_db_write")
    a = WriteThrough(r, db, versioned=versioned, hooks={"after_db_write": pause})
    b = WriteThrough(r, db, versioned=versioned)
    writer_a = run_in_thread(a.write, 5, name="A")
    (row_a,) = pause.wait_reached()
    row_b = b.write(5, name="B")
    pause.release()
    writer_a.result(timeout=5)
    assert (row_a["version"], row_b["version"]) == (2, 3)
    assert db.get_user(5) == row_b
    in_redis = cached(r, "user:5")
    assert (in_redis == row_a) is stale
    assert (in_redis == row_b) is not stale
    assert a.stats.rejected_sets == (0 if stale else 1)


def test_versioned_set_compares_numbers_not_strings(r, db):
    wt = WriteThrough(r, db)
    r.set("user:6", json.dumps({"id": 6, "name": "v10", "email": "e", "version": 10}))
    assert wt._cache({"id": 6, "name": "v9", "email": "e", "version": 9}) is False
    assert wt._cache({"id": 6, "name": "v11", "email": "e", "version": 11}) is True
    assert cached(r, "user:6")["version"] == 11


def test_miss_fills_cache_from_db(r, db):
    wt = WriteThrough(r, db, ttl=30)
    assert wt.get(7)["name"] == "user-7"
    assert wt.get(7)["name"] == "user-7"
    assert db.counts["read"] == 1 and (wt.stats.hits, wt.stats.misses) == (1, 1)
    assert 0 < r.ttl("user:7") <= 30


def test_ttl_expires_unread_rows(r, db):
    wt = WriteThrough(r, db, ttl=0.2)
    wt.write(8, name="rarely read")
    assert r.exists("user:8") == 1
    import time
    deadline = time.monotonic() + 5
    while r.exists("user:8") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert r.exists("user:8") == 0


def test_redis_down_after_db_commit_still_succeeds(db):
    server = RedisServer().start()
    try:
        wt = WriteThrough(server.client(fail_fast=True), db)
        wt.write(9, name="before")
        server.kill()
        row = wt.write(9, name="during outage")
        assert row["name"] == "during outage" and db.get_user(9)["name"] == "during outage"
        assert wt.stats.cache_errors == 1
    finally:
        server.stop()


def test_warm_fills_a_cold_cache_in_one_query(r, db):
    wt = WriteThrough(r, db, ttl=60)
    db.reset_counts()
    assert wt.warm(list(range(1, 21)) + [999]) == 20  # 999 does not exist
    assert db.counts == {"read": 1}
    assert cached(r, "user:7") == db.get_user(7) and 0 < r.ttl("user:7") <= 60
    db.reset_counts()
    assert all(wt.get(i) == db.get_user(i) for i in range(1, 21))
    assert db.counts["read"] == 20 and wt.stats.hits == 20  # those 20 reads are the checks' own


def test_warm_never_overwrites_a_newer_write(r, db):
    pause = PausePoint("after_warm_read")
    warmer = WriteThrough(r, db, hooks={"after_warm_read": pause})
    writer = WriteThrough(r, db)
    job = run_in_thread(lambda: warmer.warm([3]))
    (rows,) = pause.wait_reached()
    assert rows[0]["version"] == 1
    newer = writer.write(3, name="written during warm-up")  # version 2, cached
    pause.release()
    assert job.result(timeout=5) == 0
    assert cached(r, "user:3") == newer and warmer.stats.rejected_sets == 1


@pytest.mark.parametrize("persistence, after_restart", [("none", None), ("aof-everysec", "before")])
def test_redis_down_then_back_absent_or_stale_until_ttl(tmp_path, db, persistence, after_restart):
    import time
    server = RedisServer(persistence=persistence, data_dir=tmp_path, modules=()).start()
    try:
        c = server.client(fail_fast=True)
        wt = WriteThrough(c, db, ttl=0.5)
        wt.write(9, name="before")
        deadline = time.monotonic() + 5
        while persistence != "none" and c.info("persistence")["aof_buffer_length"] and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill()
        assert wt.write(9, name="during")["name"] == "during"
        assert wt.get(9)["name"] == "during"  # Redis down: the read falls back to the DB
        server.restart()
        c = server.client(fail_fast=True)
        back = cached(c, "user:9")
        assert (back and back["name"]) == after_restart
        deadline = time.monotonic() + 5
        while c.exists("user:9") and time.monotonic() < deadline:
            time.sleep(0.02)
        wt = WriteThrough(c, db, ttl=0.5)
        assert wt.get(9)["name"] == "during" and cached(c, "user:9")["name"] == "during"
    finally:
        server.stop()


def test_write_through_function_is_the_pattern(r, db):
    from redistutor.db import DatabaseError
    from redistutor.patterns.write_through import write_through

    db.reset_counts()
    row = write_through(r, db, 3, "Grace", ttl=60)
    assert row == db.get_user(3) and row["version"] == 2
    assert json.loads(r.get("user:3")) == row and 0 < r.ttl("user:3") <= 60
    assert db.counts["write"] == 1 and db.counts["read"] == 1  # the get_user above, no read-back
    db.fail_next("write")
    with pytest.raises(DatabaseError):
        write_through(r, db, 3, "Refused")
    assert json.loads(r.get("user:3")) == row  # Redis untouched by the refused write
    with pytest.raises(KeyError):
        write_through(r, db, 999999, "nobody")
    assert r.exists("user:999999") == 0


@pytest.mark.parametrize("versioned", [True, False])
def test_a_refused_cache_write_deletes_the_old_copy(db, versioned):
    """Redis up but refusing writes (OOM under maxmemory with noeviction; DEL is still allowed):
    the write succeeds (the DB committed) and Redis must not keep serving the old row."""
    server = RedisServer().start()
    try:
        c = server.client(fail_fast=True)
        wt = WriteThrough(c, db, versioned=versioned)
        wt.write(10, name="before")
        c.config_set("maxmemory-policy", "noeviction")
        c.config_set("maxmemory", 1)
        try:
            row = wt.write(10, name="after")
        finally:
            c.config_set("maxmemory", 0)
        assert row["name"] == "after" == db.get_user(10)["name"]
        assert wt.stats.cache_errors == 1 and c.exists("user:10") == 0
        assert wt.get(10) == row and cached(c, "user:10") == row  # the next read refills it
    finally:
        server.stop()


class WriterBetweenDatabase:
    """The real database, where another writer commits (and writes through) right after a
    reader's SELECT returns: the reader then holds an older row than the cache."""

    def __init__(self, db, writer):
        self.db, self.writer = db, writer

    def get_user(self, user_id):
        row = self.db.get_user(user_id)
        self.writer.write(user_id, name="newer")
        return row


@pytest.mark.parametrize("ttl", [None, 30])
def test_a_miss_fills_through_the_versioned_write(r, db, ttl):
    """The read path's fill is a cache write like any other: a row read before a writer's commit
    must not overwrite the newer row that writer cached (a plain SET would)."""
    reader = WriteThrough(r, db, ttl=ttl)
    reader.db = WriterBetweenDatabase(db, WriteThrough(r, db, ttl=ttl))
    old = reader.get(11)
    assert old["version"] == 1 and reader.stats.rejected_sets == 1
    assert cached(r, "user:11") == db.get_user(11) and cached(r, "user:11")["name"] == "newer"
    assert r.ttl("user:11") == -1 if ttl is None else 0 < r.ttl("user:11") <= 30


@pytest.mark.parametrize("versioned", [True, False])
def test_stored_form_ttls_and_warm_in_both_modes(r, db, versioned):
    """What other clients read: the committed row as sorted-key JSON, with the TTL in ms (or none);
    warm() stores the same form and counts what it stored; both fields can be written at once."""
    wt = WriteThrough(r, db, ttl=60, versioned=versioned)
    row = wt.write(1, name="Ada", email="ada@example.com")
    assert row["email"] == "ada@example.com" and db.get_user(1) == row
    assert r.get("user:1") == json.dumps(row, sort_keys=True) and 59_000 < r.pttl("user:1") <= 60_000
    assert wt._cache(row) is (not versioned)  # versioned: the same version again is refused
    r.flushdb()
    assert wt.warm([1, 2, 3]) == 3 and wt.stats.rejected_sets == (1 if versioned else 0)
    assert r.get("user:2") == json.dumps(db.get_user(2), sort_keys=True)
    assert 59_000 < r.pttl("user:2") <= 60_000 and wt.warm([]) == 0
    forever = WriteThrough(r, db, versioned=versioned)
    r.flushdb()
    assert forever.warm([4]) == 1 and r.ttl("user:4") == -1
    assert forever.write(4, name="x") and r.ttl("user:4") == -1


def test_write_refuses_bad_fields_and_names_the_missing_user(r, db):
    wt = WriteThrough(r, db)
    for bad in ({}, {"version": 9}, {"name": "x", "id": 2}):
        with pytest.raises(ValueError):
            wt.write(1, **bad)
    with pytest.raises(KeyError) as missing:
        wt.write(999, name="x")
    assert missing.value.args == (999,)
    from redistutor.patterns.write_through import write_through
    with pytest.raises(KeyError) as missing:
        write_through(r, db, 998, "x")
    assert missing.value.args == (998,)
