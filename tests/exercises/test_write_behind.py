"""Self-tests of the write-behind exercise checkers: the reference passes, known-wrong answers fail."""

from __future__ import annotations

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import write_behind as ex

# The old exercise-2 hint: an upsert without a version check. The notebook shows that a worker
# that stalls between its read and its write then moves the DB back to an older value.
UPSERT_UNVERSIONED = ("INSERT INTO ex_status (user_id, status, ver) VALUES (?, ?, ?) "
                      "ON CONFLICT(user_id) DO UPDATE SET status = excluded.status, ver = excluded.ver")


def _read(r, prefix, user):
    status, ver = r.hmget(f"{prefix}:user:{user}", "status", "ver")
    return status, int(ver)


# -- exercise 1 ---------------------------------------------------------------------------------


def test_status_write_reference_passes(r, db):
    assert ex.status_write(r, db).evaluate(ex.set_status).outcome == CORRECT


def test_status_write_starter_is_not_attempted(r, db):
    def starter(r, prefix, user, status):
        raise NotImplementedError

    assert ex.status_write(r, db).evaluate(starter).outcome == NOT_ATTEMPTED
    ex.status_write(r, db).check(starter)  # shows "not attempted" and does not raise


def test_status_write_forgetting_dirty_fails(r, db):
    def no_dirty(r, prefix, user, status):
        r.hset(f"{prefix}:user:{user}", "status", status)
        return r.hincrby(f"{prefix}:user:{user}", "ver", 1)

    res = ex.status_write(r, db).evaluate(no_dirty)
    assert res.outcome == INCORRECT and "never copies it" in res.message


def test_status_write_without_version_fails(r, db):
    def unversioned(r, prefix, user, status):
        r.hset(f"{prefix}:user:{user}", "status", status)
        r.sadd(f"{prefix}:dirty", user)
        return 1

    res = ex.status_write(r, db).evaluate(unversioned)
    assert res.outcome == INCORRECT and "bumps the version" in res.message


def test_status_write_writing_through_fails(r, db):
    def write_through(r, prefix, user, status):
        ver = ex.set_status(r, prefix, user, status)
        db.execute(ex.TABLE_SQL, kind="ddl")
        db.execute(UPSERT_UNVERSIONED, (user, status, ver))
        return ver

    res = ex.status_write(r, db).evaluate(write_through)
    assert res.outcome == INCORRECT and "does not touch the database" in res.message


# -- exercise 2 ---------------------------------------------------------------------------------


def test_status_sync_reference_passes(r, db):
    assert ex.status_sync(r, db).evaluate(ex.sync).outcome == CORRECT


def test_status_sync_starter_is_not_attempted(r, db):
    def starter(r, db, prefix):
        raise NotImplementedError

    assert ex.status_sync(r, db).evaluate(starter).outcome == NOT_ATTEMPTED


def test_status_sync_unversioned_upsert_lets_a_late_worker_win(r, db):
    """The old hint's answer: crash-safe and idempotent, but a stalled worker's older copy wins."""
    def unversioned(r, db, prefix):
        dirty, syncing = f"{prefix}:dirty", f"{prefix}:syncing"
        if not r.exists(syncing) and r.exists(dirty):
            r.rename(dirty, syncing)
        for user in sorted(r.smembers(syncing)):
            db.execute(UPSERT_UNVERSIONED, (user, *_read(r, prefix, user)))
            r.srem(syncing, user)

    res = ex.status_sync(r, db).evaluate(unversioned)
    assert res.outcome == INCORRECT and "stalled" in res.message and "'busy'" in res.message


def test_status_sync_pop_before_apply_loses(r, db):
    def pop_first(r, db, prefix):
        for user in sorted(r.spop(f"{prefix}:dirty", 1000) or []):
            db.execute(UPSERT_UNVERSIONED + " WHERE excluded.ver > ex_status.ver", (user, *_read(r, prefix, user)))

    res = ex.status_sync(r, db).evaluate(pop_first)
    assert res.outcome == INCORRECT and "nothing lost" in res.message


def test_status_sync_not_resuming_a_crashed_batch_loses(r, db):
    def no_resume(r, db, prefix):
        dirty, syncing = f"{prefix}:dirty", f"{prefix}:syncing"
        if not r.exists(dirty):
            return
        r.rename(dirty, syncing)
        for user in sorted(r.smembers(syncing)):
            db.execute(UPSERT_UNVERSIONED + " WHERE excluded.ver > ex_status.ver", (user, *_read(r, prefix, user)))
        r.delete(syncing)

    res = ex.status_sync(r, db).evaluate(no_resume)
    assert res.outcome == INCORRECT and "nothing lost" in res.message


def test_status_sync_never_clearing_dirty_fails(r, db):
    def keeps_dirty(r, db, prefix):
        for user in sorted(r.smembers(f"{prefix}:dirty")):
            db.execute(UPSERT_UNVERSIONED + " WHERE excluded.ver > ex_status.ver", (user, *_read(r, prefix, user)))

    res = ex.status_sync(r, db).evaluate(keeps_dirty)
    assert res.outcome == INCORRECT and "no user is left pending" in res.message


# -- Try it -------------------------------------------------------------------------------------


def test_write_bound():
    assert ex.write_bound(2000, 10, 250).evaluate(80).outcome == CORRECT
    assert ex.write_bound(2000, 10, 300).evaluate(70).outcome == CORRECT
    assert ex.write_bound(2000, 10, 250).evaluate(2000).outcome == INCORRECT
    assert ex.write_bound(2000, 10, 250).evaluate(None).outcome == NOT_ATTEMPTED
    assert ex.write_bound(2000, 10, 250, measured=81).evaluate(80).outcome == INCORRECT
