"""Self-tests of the event-sourcing exercise checkers: the reference passes, known-wrong answers
fail with the message that explains them."""

from __future__ import annotations

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import streams_event_sourcing as ex
from redistutor.patterns.streams_event_sourcing import fold

# -- exercise 1: balance at a point in time ---------------------------------------------------------


def test_balance_at_reference_passes(r):
    assert ex.balance_at_exercise(r).evaluate(ex.balance_at).outcome == CORRECT


def test_balance_at_starter_is_not_attempted(r):
    def starter(r, key, at_ms):
        raise NotImplementedError

    assert ex.balance_at_exercise(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_balance_at_with_an_exclusive_end_fails(r):
    def exclusive(r, key, at_ms):
        balance = 0
        for _, e in r.xrange(key, "-", f"({at_ms}-0"):
            balance = fold(balance, e)
        return balance

    res = ex.balance_at_exercise(r).evaluate(exclusive)
    assert res.outcome == INCORRECT and "counts every event" in res.message


def test_balance_at_ending_at_sequence_0_misses_the_second_event_of_a_millisecond(r):
    def seq0(r, key, at_ms):
        balance = 0
        for _, e in r.xrange(key, "-", f"{at_ms}-0"):
            balance = fold(balance, e)
        return balance

    res = ex.balance_at_exercise(r).evaluate(seq0)
    assert res.outcome == INCORRECT and "1000-1 share a millisecond" in res.message


def test_balance_at_reading_the_whole_log_fails_even_with_the_right_number(r):
    def everything(r, key, at_ms):
        balance = 0
        for entry_id, e in r.xrange(key):
            if int(entry_id.split("-")[0]) <= at_ms:
                balance = fold(balance, e)
        return balance

    res = ex.balance_at_exercise(r).evaluate(everything)
    assert res.outcome == INCORRECT and "replay only what happened" in res.message


def test_balance_at_current_balance_fails(r):
    def now(r, key, at_ms):
        balance = 0
        for _, e in r.xrange(key):
            balance = fold(balance, e)
        return balance

    assert ex.balance_at_exercise(r).evaluate(now).outcome == INCORRECT


def test_balance_at_leaves_no_keys(r):
    ex.balance_at_exercise(r, prefix="t1").evaluate(ex.balance_at)
    assert r.keys("t1:*") == []


# -- exercise 2: apply each event once ----------------------------------------------------------------


def test_apply_once_reference_passes(r):
    assert ex.apply_once_exercise(r).evaluate(ex.apply_once).outcome == CORRECT


def test_apply_once_starter_is_not_attempted(r):
    def starter(r, view, entry_id, amount):
        raise NotImplementedError

    assert ex.apply_once_exercise(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_apply_once_without_a_check_fails_on_redelivery(r):
    def always(r, view, entry_id, amount):
        r.hincrby(view, "balance", amount)
        r.hset(view, "last_id", entry_id)
        return True

    res = ex.apply_once_exercise(r).evaluate(always)
    assert res.outcome == INCORRECT and "delivered again is skipped" in res.message


STRING_COMPARE = """
local last = redis.call('HGET', KEYS[1], 'last_id') or '0-0'
if ARGV[1] <= last then return 0 end
redis.call('HINCRBY', KEYS[1], 'balance', ARGV[2])
redis.call('HSET', KEYS[1], 'last_id', ARGV[1])
return 1
"""


def test_apply_once_comparing_ids_as_strings_fails(r):
    def as_strings(r, view, entry_id, amount):
        return bool(r.eval(STRING_COMPARE, 1, view, entry_id, amount))

    res = ex.apply_once_exercise(r).evaluate(as_strings)
    assert res.outcome == INCORRECT and "not the strings" in res.message


def _newer(a, b):
    return tuple(map(int, a.split("-"))) > tuple(map(int, b.split("-")))


def test_apply_once_read_then_write_fails_on_the_injected_redelivery(r):
    def check_then_apply(r, view, entry_id, amount):
        last = r.hget(view, "last_id") or "0-0"
        if not _newer(entry_id, last):
            return False
        with r.pipeline(transaction=True) as tx:
            tx.hincrby(view, "balance", amount)
            tx.hset(view, "last_id", entry_id)
            tx.execute()
        return True

    res = ex.apply_once_exercise(r).evaluate(check_then_apply)
    assert res.outcome == INCORRECT and "one atomic step" in res.message


def test_apply_once_that_never_records_the_checkpoint_fails(r):
    def no_checkpoint(r, view, entry_id, amount):
        last = r.hget(view, "last_id") or "0-0"
        if not _newer(entry_id, last):
            return False
        r.hincrby(view, "balance", amount)
        return True

    assert ex.apply_once_exercise(r).evaluate(no_checkpoint).outcome == INCORRECT


def test_apply_once_leaves_no_keys(r):
    ex.apply_once_exercise(r, prefix="t2").evaluate(ex.apply_once)
    assert r.keys("t2:*") == []


def test_apply_once_solution_runs_as_shown(r):
    scope = {}
    exec(ex.apply_once_exercise(r).solution_code, scope)
    assert ex.apply_once_exercise(r).evaluate(scope["apply_once"]).outcome == CORRECT


# -- Try it: deliveries across groups ----------------------------------------------------------------


def test_deliveries_prediction(redis_server, r):
    assert ex.deliveries_prediction(redis_server, 2, 3).evaluate(200).outcome == CORRECT
    assert ex.deliveries_prediction(redis_server, 3, 1).evaluate(300).outcome == CORRECT
    for wrong in (100, 600, 66):  # one group's worth; groups x consumers x events; a split
        assert ex.deliveries_prediction(redis_server, 2, 3).evaluate(wrong).outcome == INCORRECT
    assert ex.deliveries_prediction(redis_server, 2, 3).evaluate(None).outcome == NOT_ATTEMPTED
