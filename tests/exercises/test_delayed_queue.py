"""Self-tests of the delayed-queue exercise checkers: the reference passes, known-wrong answers
fail with the message that explains them."""

from __future__ import annotations

import json
import math
import time

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import delayed_queue as ex

# -- Try it -----------------------------------------------------------------------------------------


def test_try_it_prediction_is_checked_against_the_server(r):
    for batch in (1, 7, 10, 100):
        assert ex.drain_round_trips(r, batch).evaluate(math.ceil(100 / batch) + 1).outcome == CORRECT
    assert ex.drain_round_trips(r, 10).evaluate(10).outcome == INCORRECT      # forgets the empty claim
    assert ex.drain_round_trips(r, 7).evaluate(100 // 7 + 1).outcome == INCORRECT  # floor, not ceil
    assert ex.drain_round_trips(r, 10).evaluate(None).outcome == NOT_ATTEMPTED


# -- exercise 1: snooze -----------------------------------------------------------------------------


def test_snooze_reference_passes(r):
    assert ex.snooze_exercise(r).evaluate(ex.snooze).outcome == CORRECT


def test_snooze_lua_check_and_set_passes(r):
    script = """
    if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
      redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
      return 1
    end
    return 0
    """
    assert ex.snooze_exercise(r).evaluate(lambda r, k, t, d: r.eval(script, 1, k, t, d) == 1).outcome == CORRECT


def test_snooze_starter_is_not_attempted(r):
    def starter(r, key, task, due_ms):
        raise NotImplementedError

    assert ex.snooze_exercise(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_snooze_plain_zadd_fails(r):
    def plain(r, key, task, due_ms):
        r.zadd(key, {task: due_ms})
        return True

    res = ex.snooze_exercise(r).evaluate(plain)
    assert res.outcome == INCORRECT and "already claimed" in res.message


def test_snooze_read_then_write_fails_on_the_injected_claim(r):
    def read_then_write(r, key, task, due_ms):
        if r.zscore(key, task) is None:
            return False
        r.zadd(key, {task: due_ms})
        return True

    res = ex.snooze_exercise(r).evaluate(read_then_write)
    assert res.outcome == INCORRECT and "atomic" in res.message


def test_snooze_xx_without_ch_fails(r):
    def xx_only(r, key, task, due_ms):
        return r.zadd(key, {task: due_ms}, xx=True) == 1      # XX alone always replies 0

    res = ex.snooze_exercise(r).evaluate(xx_only)
    assert res.outcome == INCORRECT and "return True" in res.message


def test_snooze_new_member_fails(r):
    def reschedule_copy(r, key, task, due_ms):   # a new id each time: the old one still fires
        t = json.loads(task)
        t["id"] += "x"
        r.zadd(key, {json.dumps(t): due_ms})
        return True

    res = ex.snooze_exercise(r).evaluate(reschedule_copy)
    assert res.outcome == INCORRECT


def test_snooze_leaves_no_keys(r):
    ex.snooze_exercise(r, prefix="t1").evaluate(ex.snooze)
    assert r.keys("t1:*") == []


# -- exercise 2: back-off and a dead-letter list -----------------------------------------------------


def test_backoff_reference_passes(r):
    assert ex.backoff_exercise(r).evaluate(ex.fail).outcome == CORRECT


def test_backoff_starter_is_not_attempted(r):
    def starter(q, task, dead_key, max_attempts=3, base_ms=100):
        raise NotImplementedError

    assert ex.backoff_exercise(r).evaluate(starter).outcome == NOT_ATTEMPTED


def _with_script(script, delay_of):
    def answer(q, task, dead_key, max_attempts=3, base_ms=100):
        t = json.loads(task)
        t["attempts"] = t.get("attempts", 0) + 1
        new = json.dumps(t)
        delay = delay_of(t["attempts"], max_attempts, base_ms)
        ok = q.r.eval(script, 3, q.processing, q.key, dead_key, task, new, delay)
        return new if ok and delay >= 0 else None
    return answer


def test_backoff_linear_delay_fails(r):
    linear = _with_script(ex.FAIL_LUA, lambda a, m, b: -1 if a >= m else b * a)   # 100, 200, 300
    res = ex.backoff_exercise(r).evaluate(linear)
    assert res.outcome == INCORRECT and "due 400 ms later" in res.message


def test_backoff_constant_delay_fails(r):
    constant = _with_script(ex.FAIL_LUA, lambda a, m, b: -1 if a >= m else b)
    res = ex.backoff_exercise(r).evaluate(constant)
    assert res.outcome == INCORRECT and "due 200 ms later" in res.message


def test_backoff_never_dead_letters_fails(r):
    forever = _with_script(ex.FAIL_LUA, lambda a, m, b: b * 2 ** (a - 1))
    res = ex.backoff_exercise(r).evaluate(forever)
    assert res.outcome == INCORRECT and "returns None" in res.message


def test_backoff_dead_letter_left_in_processing_fails(r):
    script = ex.FAIL_LUA.replace("if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end",
                                 "if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end\n"
                                 "if tonumber(ARGV[3]) >= 0 then redis.call('ZREM', KEYS[1], ARGV[1]) end")
    res = ex.backoff_exercise(r).evaluate(_with_script(script, lambda a, m, b: -1 if a >= m else b * 2 ** (a - 1)))
    assert res.outcome == INCORRECT and "nowhere else" in res.message


def test_backoff_unconditional_transaction_fails(r):
    def transaction(q, task, dead_key, max_attempts=3, base_ms=100):
        t = json.loads(task)
        t["attempts"] = t.get("attempts", 0) + 1
        new = json.dumps(t)
        with q.r.pipeline(transaction=True) as tx:
            tx.zrem(q.processing, task)
            if t["attempts"] >= max_attempts:
                tx.rpush(dead_key, new)
            else:
                tx.zadd(q.key, {new: time.time() * 1000 + base_ms * 2 ** (t["attempts"] - 1)})
            tx.execute()
        return None if t["attempts"] >= max_attempts else new

    res = ex.backoff_exercise(r).evaluate(transaction)
    assert res.outcome == INCORRECT and "not ours" in res.message


def test_backoff_two_round_trips_fail(r):
    def two_steps(q, task, dead_key, max_attempts=3, base_ms=100):
        t = json.loads(task)
        t["attempts"] = t.get("attempts", 0) + 1
        new = json.dumps(t)
        if not q.r.zrem(q.processing, task):
            return None
        if t["attempts"] >= max_attempts:
            q.r.rpush(dead_key, new)
            return None
        q.r.zadd(q.key, {new: time.time() * 1000 + base_ms * 2 ** (t["attempts"] - 1)})
        return new

    res = ex.backoff_exercise(r).evaluate(two_steps)
    assert res.outcome == INCORRECT and "one round trip" in res.message


def test_backoff_without_attempt_count_fails(r):
    def no_count(q, task, dead_key, max_attempts=3, base_ms=100):
        ok = q.r.eval(ex.FAIL_LUA, 3, q.processing, q.key, dead_key, task, task, base_ms)
        return task if ok else None

    res = ex.backoff_exercise(r).evaluate(no_count)
    assert res.outcome == INCORRECT and "attempts" in res.message
