"""Self-tests of the exercise checkers of notebook 27: the references pass, known-wrong answers fail."""

from __future__ import annotations

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import redis_as_primary_database as ex


def test_change_email_reference_passes(r):
    assert ex.change_email_exercise(r).evaluate(ex.change_email).outcome == CORRECT


def test_change_email_starter_is_not_attempted(r):
    def starter(r, prefix, uid, new_email):
        raise NotImplementedError

    assert ex.change_email_exercise(r).evaluate(starter).outcome == NOT_ATTEMPTED


def _pipeline_change(check_taken: bool, delete_old: bool = True):
    """A MULTI/EXEC version: atomic writes, but the old email and the NX check are read outside."""
    def change(r, prefix, uid, new_email):
        old = r.hget(f"{prefix}:{uid}", "email")
        if check_taken and r.exists(f"{prefix}:email:{new_email}") and old != new_email:
            return False
        with r.pipeline(transaction=True) as tx:
            tx.set(f"{prefix}:email:{new_email}", uid)
            if delete_old:
                tx.delete(f"{prefix}:email:{old}")
            tx.hset(f"{prefix}:{uid}", "email", new_email)
            tx.execute()
        return True
    return change


def test_change_email_stealing_a_taken_email_fails(r):
    res = ex.change_email_exercise(r).evaluate(_pipeline_change(check_taken=False))
    assert res.outcome == INCORRECT and "refused" in res.message


def test_change_email_leaving_the_old_entry_fails(r):
    res = ex.change_email_exercise(r).evaluate(_pipeline_change(check_taken=True, delete_old=False))
    assert res.outcome == INCORRECT and "old email's entry" in res.message


def test_change_email_to_the_same_email_deleting_its_entry_fails(r):
    res = ex.change_email_exercise(r).evaluate(_pipeline_change(check_taken=True))
    assert res.outcome == INCORRECT and "already has" in res.message


def test_change_email_without_nx_race_fails(r):
    # check-then-set outside the script: 8 racing claims of one email, held at a barrier between
    # the check and the write, all pass the check
    import threading

    barrier = threading.Barrier(8, timeout=10)

    def change(r, prefix, uid, new_email):
        old = r.hget(f"{prefix}:{uid}", "email")
        if old == new_email:
            return True
        if r.exists(f"{prefix}:email:{new_email}"):
            return False
        if new_email == "hot@example.com":
            barrier.wait()
        with r.pipeline(transaction=True) as tx:
            tx.set(f"{prefix}:email:{new_email}", uid)
            tx.delete(f"{prefix}:email:{old}")
            tx.hset(f"{prefix}:{uid}", "email", new_email)
            tx.execute()
        return True

    res = ex.change_email_exercise(r).evaluate(change)
    assert res.outcome == INCORRECT and "exactly one" in res.message


def test_repair_reference_passes(r):
    assert ex.repair_exercise(r).evaluate(ex.repair).outcome == CORRECT


def test_repair_only_the_email_index_fails(r):
    def emails_only(r, prefix):
        n = 0
        for key in r.scan_iter(f"{prefix}:email:*"):
            if not r.exists(f"{prefix}:{r.get(key)}"):
                n += r.delete(key)
        return n

    res = ex.repair_exercise(r).evaluate(emails_only)
    assert res.outcome == INCORRECT and "5 dangling" in res.message


def test_repair_rebuilding_the_age_index_fails(r):
    # rebuilding from the records re-adds user 3, which a repair must not invent
    def rebuild(r, prefix):
        n = ex.repair(r, prefix)
        for key in r.scan_iter(f"{prefix}:*"):
            rest = key[len(prefix) + 1:]
            if rest.isdigit():
                r.zadd(f"{prefix}s:by:age", {rest: r.hget(key, "age")})
        return n

    res = ex.repair_exercise(r).evaluate(rebuild)
    assert res.outcome == INCORRECT and "invent" in res.message


def test_repair_deleting_records_fails(r):
    def wipe(r, prefix):
        n = ex.repair(r, prefix)
        r.delete(f"{prefix}:3")
        return n

    res = ex.repair_exercise(r).evaluate(wipe)
    assert res.outcome == INCORRECT and "no record" in res.message


def test_snapshot_prediction_is_checked_against_a_real_crash():
    assert ex.snapshot_prediction(300).evaluate(300).outcome == CORRECT
    res = ex.snapshot_prediction(300).evaluate(1000)
    assert res.outcome == INCORRECT and "kept 300" in res.message
