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
