"""Self-tests of the tour's lock exercise: the reference passes, known-wrong answers fail."""

from __future__ import annotations

import pytest

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import tour


@pytest.fixture
def ex(r):
    return tour.lock_exercise(r, threads=8)


def test_reference_passes(ex):
    assert ex.evaluate(tour.acquire).outcome == CORRECT


def test_reference_passes_the_full_20_thread_race(r):
    assert tour.lock_exercise(r).evaluate(tour.acquire).outcome == CORRECT


def test_starter_is_not_attempted(ex):
    def starter(r, key, token, ttl_ms):
        raise NotImplementedError

    assert ex.evaluate(starter).outcome == NOT_ATTEMPTED


def test_setnx_then_expire_fails(ex):
    def setnx_expire(r, key, token, ttl_ms):
        if r.setnx(key, token):
            r.pexpire(key, ttl_ms)
            return True
        return False

    res = ex.evaluate(setnx_expire)
    assert res.outcome == INCORRECT and "one SET ... NX PX" in res.message and "SETNX" in res.message


def test_get_then_set_fails(ex):
    def get_then_set(r, key, token, ttl_ms):
        if r.get(key) is None:
            r.set(key, token, px=ttl_ms)
            return True
        return False

    res = ex.evaluate(get_then_set)
    assert res.outcome == INCORRECT and "'GET " in res.message


def test_no_expiry_fails(ex):
    def no_ttl(r, key, token, ttl_ms):
        return bool(r.set(key, token, nx=True))

    res = ex.evaluate(no_ttl)
    assert res.outcome == INCORRECT and "expires in 1..5 s" in res.message and "no TTL" in res.message


def test_overwriting_a_held_lock_fails(ex):
    def no_nx(r, key, token, ttl_ms):
        return bool(r.set(key, token, px=ttl_ms))

    res = ex.evaluate(no_nx)
    assert res.outcome == INCORRECT and "one SET ... NX PX" in res.message


def test_wrong_token_fails(ex):
    def fixed_token(r, key, token, ttl_ms):
        return bool(r.set(key, "me", nx=True, px=ttl_ms))

    res = ex.evaluate(fixed_token)
    assert res.outcome == INCORRECT and "equals 'token-1'" in res.message


# -- Try it: predict the trace ----------------------------------------------------------------------

def _traced(r, transaction: bool):
    from redistutor import trace

    with trace(r) as t:
        p = r.pipeline(transaction=transaction)
        for i in range(5):
            p.incr(f"try:{i}")
        p.execute()
    return t


@pytest.mark.parametrize("transaction, truth", [(False, (5, 1)), (True, (7, 1))])
def test_trace_prediction_reference_passes(r, transaction, truth):
    try_it = tour.trace_prediction(_traced(r, transaction))
    assert try_it.reference == truth and try_it.evaluate(truth).outcome == CORRECT


def test_trace_prediction_wrong_answers_fail(r):
    try_it = tour.trace_prediction(_traced(r, True))
    assert try_it.evaluate(...).outcome == NOT_ATTEMPTED
    assert try_it.evaluate((5, 5)).outcome == INCORRECT   # one round trip per command: not a pipeline
    assert try_it.evaluate((5, 1)).outcome == INCORRECT   # forgot MULTI and EXEC
    assert try_it.evaluate(7).outcome == INCORRECT


# -- Exercise 2: visits in one round trip -----------------------------------------------------------

@pytest.fixture
def ex2(r):
    return tour.visits_exercise(r)


def test_visits_reference_passes(ex2):
    assert ex2.evaluate(tour.add_visits).outcome == CORRECT


def test_visits_one_command_per_visitor_fails(ex2):
    def loop(r, key, visitors, ttl_s):
        for v in visitors:
            r.sadd(key, v)
        r.expire(key, ttl_s)

    res = ex2.evaluate(loop)
    assert res.outcome == INCORRECT and "one round trip" in res.message


def test_visits_two_round_trips_fail(ex2):
    def two(r, key, visitors, ttl_s):
        r.sadd(key, *visitors)
        r.expire(key, ttl_s)

    res = ex2.evaluate(two)
    assert res.outcome == INCORRECT and "one round trip" in res.message


def test_visits_without_ttl_fail(ex2):
    def no_ttl(r, key, visitors, ttl_s):
        r.sadd(key, *visitors)

    res = ex2.evaluate(no_ttl)
    assert res.outcome == INCORRECT and "no TTL" in res.message


def test_visits_overwriting_earlier_visits_fail(ex2):
    def overwrite(r, key, visitors, ttl_s):
        p = r.pipeline(transaction=False)
        p.delete(key)
        p.sadd(key, *visitors)
        p.expire(key, ttl_s)
        p.execute()

    res = ex2.evaluate(overwrite)
    assert res.outcome == INCORRECT and "'ken'" in res.message


def test_visits_ttl_not_refreshed_fails(ex2):
    def nx_ttl(r, key, visitors, ttl_s):
        p = r.pipeline(transaction=False)
        p.sadd(key, *visitors)
        p.expire(key, ttl_s, nx=True)
        p.execute()

    res = ex2.evaluate(nx_ttl)
    assert res.outcome == INCORRECT and "expires in 6..60 s" in res.message


def test_visits_starter_is_not_attempted(ex2):
    def starter(r, key, visitors, ttl_s):
        raise NotImplementedError

    assert ex2.evaluate(starter).outcome == NOT_ATTEMPTED
