"""WriteBehind on a real Redis and SQLite: coalescing, DB failures, worker processes killed with
kill -9 mid-batch (pattern vs the naive queue), a paused worker waking late, AOF vs no persistence."""

from __future__ import annotations

import threading
import time

import pytest

from redistutor import trace
from redistutor.db import DatabaseError
from redistutor.patterns.write_behind import WriteBehind, db_views
from redistutor.race import PausePoint, run_in_thread
from redistutor.scenarios.write_behind import NaiveQueue, SyncWorker, kill_mid_batch, run_until_idle
from redistutor.server import RedisServer

from ..helpers import RecordingStop


def test_incr_writes_redis_only_and_marks_dirty(r, db):
    wb = WriteBehind(r, db)
    db.reset_counts()
    assert [wb.incr("home") for _ in range(3)] == [1, 2, 3]
    assert db.counts["write"] == 0
    assert r.hgetall("views:count:home") == {"count": "3", "ver": "3"}
    assert r.smembers("views:dirty") == {"home"} and wb.pending() == 1
    assert db_views(db) == {}


def test_sync_coalesces_and_copies_exact_counts(r, db):
    wb = WriteBehind(r, db)
    db.reset_counts()
    for i in range(1000):
        wb.incr(f"p{i % 5}")
        if i % 250 == 249:
            wb.sync_once()
    assert db.counts["write"] == 20  # 4 syncs x 5 pages, not 1000
    assert db_views(db) == wb.counts() == {f"p{i}": 200 for i in range(5)}
    assert wb.pending() == 0


def test_page_changed_during_sync_is_synced_again(r, db):
    pause = PausePoint("after_apply")
    wb = WriteBehind(r, db, hooks={"after_apply": pause})
    wb.incr("a")
    worker = run_in_thread(wb.sync_once)
    pause.wait_reached()  # "a" = 1 is in the DB, not yet acknowledged
    wb.incr("a")  # back into dirty
    pause.release()
    worker.result(timeout=5)
    assert db_views(db) == {"a": 1} and r.smembers("views:dirty") == {"a"}
    wb.hooks = None
    wb.flush()
    assert db_views(db) == {"a": 2} and wb.pending() == 0


def test_db_failure_keeps_the_batch_for_the_next_sync(r, db):
    wb = WriteBehind(r, db)
    for page in "abc":
        wb.incr(page, 5)
    db.fail_next("write")
    with pytest.raises(DatabaseError):
        wb.sync_once()
    assert wb.pending() == 3 and r.scard("views:syncing") == 3
    wb.incr("d")  # the backlog grows while the DB is down
    wb.flush()
    assert db_views(db) == {"a": 5, "b": 5, "c": 5, "d": 1} and wb.stats.resumed == 1


def test_late_worker_cannot_overwrite_newer_copy(r, db):
    """A worker paused (not dead) after reading an old value must not win over a newer sync."""
    wb = WriteBehind(r, db)
    wb.incr("x")
    old = r.hmget("views:count:x", "count", "ver")
    wb.incr("x")
    wb.flush()
    sql = wb.SQL_UPSERT.format(table="page_views") + " RETURNING page"
    assert db.execute(sql, ("x", int(old[0]), int(old[1]))) == []  # refused
    assert db_views(db) == {"x": 2}


def _killed_mid_batch(server, r, db, prefix, naive, pause_after, batch):
    applied, sig = kill_mid_batch(server, db, prefix, naive=naive, pause_after=pause_after, batch=batch)
    assert (applied, sig) == (pause_after, 9)
    assert r.get(f"{prefix}:worker:paused") == str(pause_after)
    run_until_idle(server, db, prefix, naive=naive, batch=batch)


def test_worker_killed_mid_batch_loses_and_doubles_nothing(redis_server, r, db):
    wb = WriteBehind(r, db, prefix="wb")
    for i in range(300):
        wb.incr(f"page{i % 10}")
    _killed_mid_batch(redis_server, r, db, "wb", None, pause_after=4, batch=10)
    assert db_views(db) == wb.counts() == {f"page{i}": 30 for i in range(10)}
    assert wb.pending() == 0


@pytest.mark.parametrize("ack, expected_total", [("before", 300 - 30), ("after", 300 + 20)])
def test_naive_queue_killed_mid_batch(redis_server, r, db, ack, expected_total):
    q = NaiveQueue(r, db, prefix=f"nq{ack}", ack=ack)
    for i in range(300):
        q.incr(f"page{i % 10}")
    _killed_mid_batch(redis_server, r, db, f"nq{ack}", ack, pause_after=20, batch=50)
    total = sum(db_views(db, "naive_views").values())
    assert total == expected_total and q.pending() == 0


def test_naive_queue_does_not_coalesce(r, db):
    q = NaiveQueue(r, db)
    for _ in range(100):
        q.incr("home")
    db.reset_counts()
    q.flush()
    assert db.counts["write"] == 100 and db_views(db, "naive_views") == {"home": 100}


@pytest.mark.parametrize("persistence, survive", [("none", False), ("aof-everysec", True)])
def test_pending_writes_across_a_redis_crash(tmp_path, db, persistence, survive):
    server = RedisServer(persistence=persistence, data_dir=tmp_path, modules=()).start()
    try:
        c = server.client(fail_fast=True)
        wb = WriteBehind(c, db, prefix="v")
        for i in range(200):
            wb.incr(f"p{i % 20}")
        if persistence != "none":  # wait until Redis has handed the AOF buffer to the OS
            deadline = time.monotonic() + 5
            while c.info("persistence")["aof_buffer_length"] and time.monotonic() < deadline:
                time.sleep(0.01)
        server.kill()
        server.restart()
        c = server.client(fail_fast=True)
        wb = WriteBehind(c, db, prefix="v")
        assert wb.pending() == (20 if survive else 0)
        assert sum(wb.counts().values()) == (200 if survive else 0)
    finally:
        server.stop()


def test_after_redis_loses_its_data_smaller_counts_are_refused(r, db):
    """The notebook's note: counters restarted from 0 cannot overwrite the DB's totals."""
    wb = WriteBehind(r, db)
    for _ in range(5):
        wb.incr("home")
    wb.flush()
    r.flushdb()  # Redis restarted without persistence
    wb.incr("home")
    wb.flush()
    assert db_views(db) == {"home": 5} and wb.get("home") == 1 and wb.stats.skipped == 1


def test_backoff_doubles_and_is_capped():
    from redistutor.patterns.write_behind import backoff_delay
    assert [backoff_delay(n, 0.05, 0.3) for n in range(1, 6)] == [0.05, 0.1, 0.2, 0.3, 0.3]


def test_sync_forever_retries_with_backoff_and_loses_nothing(r, db):

    from redistutor.patterns.write_behind import sync_forever
    wb = WriteBehind(r, db)
    for page in "abc":
        wb.incr(page, 2)
    db.fail_next("write", 3)
    waits = []
    sync_forever(wb, interval=0.01, max_backoff=0.02, once=True, stop=threading.Event(),
                 on_error=lambda exc, n, delay: waits.append((n, delay)))
    assert waits == [(1, 0.01), (2, 0.02), (3, 0.02)]
    assert db_views(db) == {"a": 2, "b": 2, "c": 2} and wb.pending() == 0


def test_late_claimer_of_a_resumed_batch_cannot_move_the_db_backwards(r, db):
    """Worker A reads x=3 and stalls; x reaches 5; worker B resumes A's batch and flushes x=5;
    A's late upsert of 3 is refused by the version check, so the DB never goes back to 3."""
    pause = PausePoint("before_apply")
    a = WriteBehind(r, db, hooks={"before_apply": pause})
    b = WriteBehind(r, db)
    a.incr("x", 3)
    a.incr("x", 0)
    a.incr("x", 0)  # count 3, ver 3
    late = run_in_thread(a.sync_once)
    assert pause.wait_reached()[1:] == ("3", "3")
    b.incr("x")
    b.incr("x")  # count 5, ver 5, dirty again
    b.flush()
    assert db_views(db) == {"x": 5} and b.stats.resumed == 1 and b.pending() == 0
    pause.release()
    late.result(timeout=5)
    assert db_views(db) == {"x": 5} and a.stats.skipped == 1 and a.pending() == 0


def test_worker_process_backs_off_while_the_db_is_locked(redis_server, r, db):
    import sqlite3
    wb = WriteBehind(r, db, prefix="wl")
    worker = SyncWorker(redis_server, db, "wl", interval=0.02, max_backoff=0.16, busy_timeout=0.05)
    lock = sqlite3.connect(db.path, isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")  # the DB is "down" for writers from here
        for i in range(50):
            wb.incr(f"p{i % 5}")
        deadline = time.monotonic() + 20
        while worker.errors(r) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert worker.alive() and worker.errors(r) >= 4 and db_views(db) == {}
        assert worker.backoffs(r)[:4] == [0.02, 0.04, 0.08, 0.16]
        assert "locked" in r.hget(worker.errors_key, "last")
        lock.execute("ROLLBACK")
        deadline = time.monotonic() + 20
        while wb.pending() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert db_views(db) == wb.counts() == {f"p{i}": 10 for i in range(5)} and worker.alive()
    finally:
        lock.close()
        worker.stop()


def test_late_worker_scenario_unversioned_goes_backwards(redis_server, r, db):
    """The notebook's race: without the version check the DB goes back from 5 to 3 for good."""
    from redistutor.scenarios.write_behind import late_worker, without_version
    truth = db  # same connection is fine here: counts are not asserted
    bad = late_worker(redis_server, r, db, truth, without_version(WriteBehind), "views")
    good = late_worker(redis_server, r, db, truth, WriteBehind, "views")
    assert (bad["DB after B"], bad["DB after A's late write"], bad["pending"], bad["A refused"]) == (5, 3, 0, 0)
    assert (good["DB after B"], good["DB after A's late write"], good["pending"], good["A refused"]) == (5, 5, 0, 1)


def test_incr_is_one_transaction(redis_server, r, db):
    """Count, version and dirty mark in one MULTI/EXEC: no other client sees one without the others."""
    wb = WriteBehind(r, db)
    r.config_resetstat()
    assert wb.incr("x", 4) == 4 and wb.incr("x") == 5
    stats = r.info("commandstats")
    assert stats["cmdstat_multi"]["calls"] == stats["cmdstat_exec"]["calls"] == 2
    assert r.hgetall(wb.key("x")) == {"count": "5", "ver": "2"} and r.smembers(wb.dirty_key) == {"x"}


class OutageAfterFirstSuccess:
    """The real WriteBehind, whose database fails twice again right after the first sync that
    succeeded: two separate outages, for the worker loop's back-off."""

    def __init__(self, wb, db):
        self.wb, self.db, self.done = wb, db, False

    def sync_once(self, batch):
        n = self.wb.sync_once(batch)
        if n and not self.done:
            self.done = True
            self.db.fail_next("write", 2)
        return n

    def pending(self):
        return self.wb.pending()


def test_backoff_starts_again_after_a_success(r, db):
    """A success resets the back-off: the second outage waits 10 ms, 20 ms again, not 40, 80."""
    from redistutor.patterns.write_behind import sync_forever
    wb = WriteBehind(r, db)
    wb.incr("a")
    wb.incr("b")
    db.fail_next("write", 2)
    waits = []
    sync_forever(OutageAfterFirstSuccess(wb, db), batch=1, interval=0.01, max_backoff=1.0, once=True,
                 on_error=lambda exc, n, delay: waits.append((n, delay)))
    assert waits == [(1, 0.01), (2, 0.02), (1, 0.01), (2, 0.02)]
    assert db_views(db) == {"a": 1, "b": 1} and wb.pending() == 0


def _setup_unfixable(kind, r, db):
    import sqlite3
    wb = WriteBehind(r, db, table="checked_views") if kind == "constraint" else WriteBehind(r, db)
    if kind == "constraint":  # a row the DB's own rule refuses, now and on every retry
        db.execute("DROP TABLE checked_views", kind="ddl")
        db.execute("CREATE TABLE checked_views (page TEXT PRIMARY KEY, views INTEGER NOT NULL"
                   " CHECK (views >= 0), ver INTEGER NOT NULL)", kind="ddl")
        wb.incr("a", -3)
        return wb, sqlite3.IntegrityError
    wb.incr("a")
    if kind == "wrongtype":  # someone replaced the hash with a string
        r.set(wb.key("a"), "oops")
        import redis
        return wb, redis.exceptions.ResponseError
    r.hset(wb.key("a"), "count", "many")  # not a number
    return wb, ValueError


@pytest.mark.parametrize("kind", ["constraint", "wrongtype", "not-a-number"])
def test_worker_does_not_retry_what_cannot_succeed(r, db, kind):
    """Waiting fixes a locked or unreachable database, not a bad row: the loop raises at once
    (the batch stays in syncing), instead of backing off forever in silence."""

    from redistutor.patterns.write_behind import sync_forever
    wb, error = _setup_unfixable(kind, r, db)
    stop, seen = threading.Event(), []

    def on_error(exc, n, delay):
        seen.append(exc)
        stop.set()  # a retrying loop would go on forever: end it after the first retry

    with pytest.raises(error):
        sync_forever(wb, interval=0.01, once=True, stop=stop, on_error=on_error)
    assert seen == [] and r.smembers(wb.syncing_key) == {"a"}



def test_counts_flush_totals_hooks_and_db_writes(r, db):
    """get() of an unknown page is 0; flush() returns the pages it handled; the hooks see the
    page; each applied page is one counted DB write; a dirty page whose hash is gone writes nothing."""
    seen = []
    wb = WriteBehind(r, db, hooks={"before_apply": lambda *a: seen.append(("before", *a)),
                                   "after_apply": lambda *a: seen.append(("after", *a))})
    assert wb.get("nope") == 0
    for page in ("a", "b", "c"):
        wb.incr(page, 2)
    db.reset_counts()
    assert wb.flush() == 3 and wb.flush() == 0
    assert db.counts["write"] == 3 and db_views(db) == {"a": 2, "b": 2, "c": 2}
    assert seen[:2] == [("before", "a", "2", "1"), ("after", "a")]
    r.sadd(wb.dirty_key, "ghost")  # marked dirty, but its hash is gone (Redis lost it)
    assert wb.upsert("ghost", None, None) is False and wb.flush() == 1
    assert db_views(db) == {"a": 2, "b": 2, "c": 2} and wb.stats.applied == 3 and wb.stats.skipped == 0


def test_sync_forever_defaults(r, db):
    """Without ``once`` the loop keeps running while idle until ``stop``; with ``once`` and no
    ``stop`` it returns when nothing is pending (at once if nothing ever was); the first retry
    waits the default interval, 50 ms, and on_error gets the exception itself."""

    from redistutor.patterns.write_behind import sync_forever
    wb = WriteBehind(r, db)
    sync_forever(wb, once=True)  # nothing pending: returns
    stop = threading.Event()
    worker = run_in_thread(sync_forever, wb, stop=stop)
    wb.incr("a")
    deadline = time.monotonic() + 5
    while wb.pending() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert db_views(db) == {"a": 1}
    time.sleep(0.1)
    assert not worker.done()  # idle, still running
    stop.set()
    worker.result(timeout=5)
    wb.incr("b")
    db.fail_next("write")
    errors = []
    sync_forever(wb, once=True, on_error=lambda exc, n, delay: errors.append((type(exc), n, delay)))
    assert errors == [(DatabaseError, 1, 0.05)] and db_views(db) == {"a": 1, "b": 1}


def test_creating_the_table_is_not_a_counted_write(r, db):
    """The CREATE TABLE is labelled "ddl": the DB writes the notebook counts for coalescing are
    the syncs' upserts only, and a write failure injected for the sync is not spent on it."""
    db.reset_counts()
    db.fail_next("write")
    wb = WriteBehind(r, db)
    assert db.counts == {"ddl": 1}
    wb.incr("a")
    with pytest.raises(DatabaseError):
        wb.sync_once()
    assert wb.flush() == 1 and db.counts == {"ddl": 1, "write": 2} and db_views(db) == {"a": 1}


def test_a_hundred_pages_per_sync_by_default(r, db):
    """sync_once, flush and sync_forever take 100 pages a round; flush returns every page it
    handled over all its rounds; the loop syncs again at once after a full batch and waits one
    interval (50 ms by default) only after a partial one."""
    from redistutor.patterns.write_behind import sync_forever
    wb = WriteBehind(r, db)
    pages = [f"p{i:03d}" for i in range(101)]
    for page in pages:
        wb.incr(page)
    assert wb.sync_once() == 100 and wb.pending() == 1 and wb.stats.syncs == 1
    assert wb.flush() == 1
    for page in pages:
        wb.incr(page)
    assert wb.flush() == 101 and wb.stats.syncs == 4  # 100 + 1
    for page in pages:
        wb.incr(page)
    stop = RecordingStop()
    sync_forever(wb, once=True, stop=stop)
    assert wb.stats.syncs == 6 and stop.waits == [0.05]  # 100 pages, no wait; 1 page, then a tick
    assert db_views(db) == wb.counts() == {page: 3 for page in pages} and wb.pending() == 0


def test_backoff_doubles_from_the_interval_up_to_two_seconds_by_default(r, db):
    """With the default interval and cap, eight failures in a row wait 50 ms, doubling, then
    2 s; the success after them resets the wait to one interval."""
    from redistutor.patterns.write_behind import sync_forever
    wb = WriteBehind(r, db)
    wb.incr("a")
    db.fail_next("write", 8)
    stop, delays = RecordingStop(), []
    sync_forever(wb, once=True, stop=stop, on_error=lambda exc, n, delay: delays.append(delay))
    assert delays == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert stop.waits == [*delays, 0.05] and db_views(db) == {"a": 1} and wb.pending() == 0


def test_counts_reads_a_small_keyspace_in_one_scan(r, db):
    """counts() asks SCAN for up to 1000 keys a call: 50 pages come back in one SCAN (SCAN's
    default of 10 a call would take several round trips)."""
    wb = WriteBehind(r, db)
    for i in range(50):
        wb.incr(f"p{i}", i)
    with trace(r) as t:
        got = wb.counts()
    assert got == {f"p{i}": i for i in range(50)}
    assert t.names().count("SCAN") == 1


def test_flush_gives_up_after_ten_thousand_rounds(r, db):
    """A flush that never sees the backlog settle (here a sync that always reports a page) stops
    after 10,000 rounds with an error naming what is still pending, instead of looping forever."""

    class NeverSettles(WriteBehind):
        rounds = 0

        def sync_once(self, batch=100):
            self.rounds += 1
            return 1

    wb = NeverSettles(r, db)
    wb.incr("hot")
    with pytest.raises(RuntimeError, match="still 1 pages pending after 10000 syncs"):
        wb.flush()
    assert wb.rounds == 10_000
