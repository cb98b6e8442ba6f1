"""Self-tests of the stampede exercise checkers: the reference passes, known-wrong answers fail."""

from __future__ import annotations

import math
import time
import uuid

import pytest

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.db import Database
from redistutor.exercises import cache_stampede_prevention as ex


@pytest.fixture
def db():
    with Database(latency=0.05) as d:
        yield d


def test_single_rebuild_reference_passes(r, db):
    assert ex.single_rebuild(r, db).evaluate(ex.get_hot).outcome == CORRECT
    assert r.keys("ex1:*") == []


def test_single_rebuild_starter_is_not_attempted(r, db):
    def starter(r, key, lock_key, rebuild):
        raise NotImplementedError

    assert ex.single_rebuild(r, db).evaluate(starter).outcome == NOT_ATTEMPTED


def test_single_rebuild_naive_fails(r, db):
    def naive(r, key, lock_key, rebuild):
        value = r.get(key)
        if value is None:
            value = rebuild()
            r.set(key, value, ex=60)
        return value

    res = ex.single_rebuild(r, db, readers=10).evaluate(naive)
    assert res.outcome == INCORRECT and "rebuilt exactly once" in res.message and "actual:   10" in res.message


def test_single_rebuild_plain_del_release_fails(r, db):
    def plain_del(r, key, lock_key, rebuild):
        value = r.get(key)
        while value is None:
            if r.set(lock_key, "me", nx=True, px=5000):
                try:
                    value = r.get(key) or rebuild()
                    r.set(key, value, ex=60)
                finally:
                    r.delete(lock_key)
            else:
                time.sleep(0.01)
                value = r.get(key)
        return value

    res = ex.single_rebuild(r, db, readers=10).evaluate(plain_del)
    assert res.outcome == INCORRECT and "check the token" in res.message


def test_single_rebuild_lock_without_expiry_fails(r, db):
    def no_px(r, key, lock_key, rebuild):
        value = r.get(key)
        while value is None:
            token = uuid.uuid4().hex
            if r.set(lock_key, token, nx=True):
                try:
                    value = r.get(key) or rebuild()
                    r.set(key, value, ex=60)
                finally:
                    r.eval(ex.RELEASE, 1, lock_key, token)
            else:
                time.sleep(0.01)
                value = r.get(key)
        return value

    res = ex.single_rebuild(r, db, readers=10).evaluate(no_px)
    assert res.outcome == INCORRECT and "has an expiry" in res.message


def test_single_rebuild_losers_rebuilding_anyway_fails(r, db):
    def no_wait(r, key, lock_key, rebuild):
        value = r.get(key)
        if value is None:
            token = uuid.uuid4().hex
            got = r.set(lock_key, token, nx=True, px=5000)
            value = rebuild()  # rebuilds even without the lock
            r.set(key, value, ex=60)
            if got:
                r.eval(ex.RELEASE, 1, lock_key, token)
        return value

    res = ex.single_rebuild(r, db, readers=10).evaluate(no_wait)
    assert res.outcome == INCORRECT and "rebuilt exactly once" in res.message


def test_early_refresh_reference_passes():
    assert ex.early_refresh().evaluate(ex.should_refresh).outcome == CORRECT


def test_early_refresh_starter_is_not_attempted():
    def starter(now, delta, beta, expiry, rand):
        raise NotImplementedError

    assert ex.early_refresh().evaluate(starter).outcome == NOT_ATTEMPTED


def test_early_refresh_garbled_sign_fails():
    def garbled(now, delta, beta, expiry, rand):
        return now + delta * beta * math.log(rand) >= expiry

    res = ex.early_refresh().evaluate(garbled)
    assert res.outcome == INCORRECT and "refresh early" in res.message


def test_early_refresh_without_log_fails():
    def no_log(now, delta, beta, expiry, rand):
        return now + delta * beta * rand >= expiry

    res = ex.early_refresh().evaluate(no_log)
    assert res.outcome == INCORRECT


def test_early_refresh_always_fails():
    res = ex.early_refresh().evaluate(lambda now, delta, beta, expiry, rand: True)
    assert res.outcome == INCORRECT and "keep serving" in res.message
