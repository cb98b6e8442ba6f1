"""Self-tests of the write-behind exercise checkers: the reference passes, known-wrong answers fail."""

from __future__ import annotations


from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import write_behind as ex

UPSERT_ABS = ("INSERT INTO ex_views (page, views) VALUES (?, ?) "
              "ON CONFLICT(page) DO UPDATE SET views = excluded.views")



# -- exercise 1 ---------------------------------------------------------------------------------


def test_write_path_reference_passes(r, db):
    assert ex.write_path(r, db).evaluate(ex.record_view).outcome == CORRECT


def test_write_path_starter_is_not_attempted(r, db):
    def starter(r, db, prefix, page):
        raise NotImplementedError

    assert ex.write_path(r, db).evaluate(starter).outcome == NOT_ATTEMPTED
    ex.write_path(r, db).check(starter)  # shows "not attempted" and does not raise


def test_write_path_forgetting_dirty_fails(r, db):
    def no_dirty(r, db, prefix, page):
        return r.incr(f"{prefix}:count:{page}")

    res = ex.write_path(r, db).evaluate(no_dirty)
    assert res.outcome == INCORRECT and "never copies it" in res.message


def test_write_path_writing_through_fails(r, db):
    def write_through(r, db, prefix, page):
        count = r.incr(f"{prefix}:count:{page}")
        db.execute(UPSERT_ABS, (page, count))
        r.sadd(f"{prefix}:dirty", page)
        return count

    res = ex.write_path(r, db).evaluate(write_through)
    assert res.outcome == INCORRECT and "does not touch the database" in res.message


def test_write_path_set_instead_of_incr_fails(r, db):
    def overwrite(r, db, prefix, page):
        r.set(f"{prefix}:count:{page}", 1)
        r.sadd(f"{prefix}:dirty", page)
        return 1

    res = ex.write_path(r, db).evaluate(overwrite)
    assert res.outcome == INCORRECT and "= 3" in res.message


# -- exercise 2 ---------------------------------------------------------------------------------


def test_sync_reference_passes(r, db):
    assert ex.sync_path(r, db).evaluate(ex.sync).outcome == CORRECT


def test_sync_starter_is_not_attempted(r, db):
    def starter(r, db, prefix):
        raise NotImplementedError

    assert ex.sync_path(r, db).evaluate(starter).outcome == NOT_ATTEMPTED


def test_sync_pop_before_apply_loses(r, db):
    def pop_first(r, db, prefix):
        for page in sorted(r.spop(f"{prefix}:dirty", 1000) or []):
            db.execute(UPSERT_ABS, (page, int(r.get(f"{prefix}:count:{page}"))))

    res = ex.sync_path(r, db).evaluate(pop_first)
    assert res.outcome == INCORRECT and "nothing lost" in res.message and "'c'" not in res.message.split("actual")[1]


def test_sync_adding_deltas_double_applies(r, db):
    def additive(r, db, prefix):
        dirty, syncing = f"{prefix}:dirty", f"{prefix}:syncing"
        if not r.exists(syncing) and r.exists(dirty):
            r.rename(dirty, syncing)
        for page in sorted(r.smembers(syncing)):
            n = int(r.get(f"{prefix}:count:{page}"))
            db.execute("INSERT INTO ex_views (page, views) VALUES (?, ?) "
                       "ON CONFLICT(page) DO UPDATE SET views = views + excluded.views", (page, n))
            r.srem(syncing, page)

    res = ex.sync_path(r, db).evaluate(additive)
    assert res.outcome == INCORRECT and "nothing applied twice" in res.message and "'b': 10" in res.message


def test_sync_not_resuming_a_crashed_batch_loses(r, db):
    def no_resume(r, db, prefix):
        dirty, syncing = f"{prefix}:dirty", f"{prefix}:syncing"
        if not r.exists(dirty):
            return
        r.rename(dirty, syncing)
        for page in sorted(r.smembers(syncing)):
            db.execute(UPSERT_ABS, (page, int(r.get(f"{prefix}:count:{page}"))))
        r.delete(syncing)

    res = ex.sync_path(r, db).evaluate(no_resume)
    assert res.outcome == INCORRECT and "nothing lost" in res.message


def test_sync_never_clearing_dirty_fails(r, db):
    def keeps_dirty(r, db, prefix):
        for page in sorted(r.smembers(f"{prefix}:dirty")):
            db.execute(UPSERT_ABS, (page, int(r.get(f"{prefix}:count:{page}"))))

    res = ex.sync_path(r, db).evaluate(keeps_dirty)
    assert res.outcome == INCORRECT and "no page is left pending" in res.message
