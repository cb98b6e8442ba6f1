"""Self-tests of the distributed-locking exercise checkers: the reference passes, known-wrong
answers fail with the message that explains them."""

from __future__ import annotations

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import distributed_locking as ex

# -- exercise 1: token-checked release ------------------------------------------------------------


def test_release_reference_passes(r):
    assert ex.safe_release(r).evaluate(ex.release).outcome == CORRECT


def test_release_starter_is_not_attempted(r):
    def starter(r, key, token):
        raise NotImplementedError

    assert ex.safe_release(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_release_plain_del_fails(r):
    def plain_del(r, key, token):
        return bool(r.delete(key))

    res = ex.safe_release(r).evaluate(plain_del)
    assert res.outcome == INCORRECT and "must not delete someone else's lock" in res.message


def test_release_get_then_del_fails_on_the_injected_race(r):
    def get_then_del(r, key, token):
        if r.get(key) == token:
            return bool(r.delete(key))
        return False

    res = ex.safe_release(r).evaluate(get_then_del)
    assert res.outcome == INCORRECT and "one atomic step" in res.message


def test_release_that_never_deletes_fails(r):
    def noop(r, key, token):
        return r.get(key) == token

    res = ex.safe_release(r).evaluate(noop)
    assert res.outcome == INCORRECT and "deletes the key" in res.message


def test_release_leaves_no_keys(r):
    ex.safe_release(r, prefix="t1").evaluate(ex.release)
    assert r.keys("t1:*") == []


# -- exercise 2: fenced write ---------------------------------------------------------------------


def test_fenced_write_reference_passes(db):
    assert ex.fenced_write_exercise(db).evaluate(ex.fenced_write).outcome == CORRECT


def test_fenced_write_starter_is_not_attempted(db):
    def starter(db, name, value, fence):
        raise NotImplementedError

    assert ex.fenced_write_exercise(db).evaluate(starter).outcome == NOT_ATTEMPTED


def test_unfenced_write_fails(db):
    def last_writer_wins(db, name, value, fence):
        db.execute("INSERT INTO fenced (name, value, fence) VALUES (?, ?, ?) ON CONFLICT(name) "
                   "DO UPDATE SET value = excluded.value, fence = excluded.fence", (name, value, fence))
        return True

    res = ex.fenced_write_exercise(db).evaluate(last_writer_wins)
    assert res.outcome == INCORRECT and "fence 4 < 5" in res.message


def test_check_then_write_fails_on_the_injected_race(db):
    def check_then_write(db, name, value, fence):
        rows = db.execute("SELECT fence FROM fenced WHERE name = ?", (name,))
        if rows and rows[0][0] > fence:
            return False
        db.execute("INSERT INTO fenced (name, value, fence) VALUES (?, ?, ?) ON CONFLICT(name) "
                   "DO UPDATE SET value = excluded.value, fence = excluded.fence", (name, value, fence))
        return True

    res = ex.fenced_write_exercise(db).evaluate(check_then_write)
    assert res.outcome == INCORRECT and "one statement" in res.message


def test_strictly_greater_rejects_the_same_holder(db):
    def strict(db, name, value, fence):
        return bool(db.execute(
            "INSERT INTO fenced (name, value, fence) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
            "value = excluded.value, fence = excluded.fence WHERE excluded.fence > fenced.fence "
            "RETURNING fence", (name, value, fence)))

    res = ex.fenced_write_exercise(db).evaluate(strict)
    assert res.outcome == INCORRECT and "equal fence is accepted" in res.message


def test_fence_not_stored_fails(db):
    def value_only(db, name, value, fence):
        return bool(db.execute(
            "INSERT INTO fenced (name, value, fence) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
            "value = excluded.value WHERE excluded.fence >= fenced.fence RETURNING fence",
            (name, value, fence)))

    res = ex.fenced_write_exercise(db).evaluate(value_only)
    assert res.outcome == INCORRECT and "records fence 5" in res.message


# -- exercise 3: the pattern on a new case (run a job under the lock) -----------------------------


def test_run_exclusive_reference_passes(r):
    assert ex.run_exclusive_exercise(r).evaluate(ex.run_exclusive).outcome == CORRECT


def test_run_exclusive_starter_is_not_attempted(r):
    def starter(r, key, job, ttl_ms=5000):
        raise NotImplementedError

    assert ex.run_exclusive_exercise(r).evaluate(starter).outcome == NOT_ATTEMPTED


def _tokens():
    import secrets
    return secrets.token_hex(16)


def test_run_exclusive_without_expiry_fails(r):
    def no_px(r, key, job, ttl_ms=5000):
        token = _tokens()
        if not r.set(key, token, nx=True):
            return None
        try:
            return job()
        finally:
            r.eval(ex.RELEASE_SCRIPT, 1, key, token)

    res = ex.run_exclusive_exercise(r).evaluate(no_px)
    assert res.outcome == INCORRECT and "expiry" in res.message


def test_run_exclusive_with_a_fixed_token_fails(r):
    def fixed(r, key, job, ttl_ms=5000):
        if not r.set(key, "worker-1", nx=True, px=ttl_ms):
            return None
        try:
            return job()
        finally:
            r.eval(ex.RELEASE_SCRIPT, 1, key, "worker-1")

    res = ex.run_exclusive_exercise(r).evaluate(fixed)
    assert res.outcome == INCORRECT and "new random token" in res.message


def test_run_exclusive_that_runs_the_job_anyway_fails(r):
    def ignores_the_lock(r, key, job, ttl_ms=5000):
        token = _tokens()
        r.set(key, token, nx=True, px=ttl_ms)
        try:
            return job()
        finally:
            r.eval(ex.RELEASE_SCRIPT, 1, key, token)

    res = ex.run_exclusive_exercise(r).evaluate(ignores_the_lock)
    assert res.outcome == INCORRECT and "does not run" in res.message


def test_run_exclusive_without_finally_fails(r):
    def no_finally(r, key, job, ttl_ms=5000):
        token = _tokens()
        if not r.set(key, token, nx=True, px=ttl_ms):
            return None
        result = job()
        r.eval(ex.RELEASE_SCRIPT, 1, key, token)
        return result

    res = ex.run_exclusive_exercise(r).evaluate(no_finally)
    assert res.outcome == INCORRECT and "finally" in res.message


def test_run_exclusive_with_a_plain_del_fails(r):
    def plain_del(r, key, job, ttl_ms=5000):
        if not r.set(key, _tokens(), nx=True, px=ttl_ms):
            return None
        try:
            return job()
        finally:
            r.delete(key)

    res = ex.run_exclusive_exercise(r).evaluate(plain_del)
    assert res.outcome == INCORRECT and "next holder's" in res.message


def test_run_exclusive_get_then_del_fails_on_the_injected_race(r):
    def get_then_del(r, key, job, ttl_ms=5000):
        token = _tokens()
        if not r.set(key, token, nx=True, px=ttl_ms):
            return None
        try:
            return job()
        finally:
            if r.get(key) == token:
                r.delete(key)

    res = ex.run_exclusive_exercise(r).evaluate(get_then_del)
    assert res.outcome == INCORRECT and "one atomic step" in res.message


# -- "Try it": the watchdog's interval ------------------------------------------------------------


def test_watchdog_interval_reference_passes(r):
    assert ex.watchdog_interval(r).evaluate(ex.renew_every_ms).outcome == CORRECT


def test_watchdog_interval_starter_is_not_attempted(r):
    def starter(ttl_ms):
        raise NotImplementedError

    assert ex.watchdog_interval(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_watchdog_interval_at_or_past_the_ttl_fails(r):
    for wrong in (lambda ttl: ttl, lambda ttl: 2 * ttl):
        res = ex.watchdog_interval(r).evaluate(wrong)
        assert res.outcome == INCORRECT and "after the key has expired" in res.message


def test_watchdog_interval_without_a_spare_renewal_fails(r):
    res = ex.watchdog_interval(r).evaluate(lambda ttl: ttl * 0.9)
    assert res.outcome == INCORRECT and "no room for one slow or failed renewal" in res.message


def test_watchdog_interval_fixed_in_ms_fails_for_short_locks(r):
    res = ex.watchdog_interval(r).evaluate(lambda ttl: 1000)
    assert res.outcome == INCORRECT
