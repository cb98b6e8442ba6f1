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


def _fresh(r, key, value):
    r.set(key, value)
    r.set(f"{key}:fresh", 1, px=60_000)


# -- exercise 1 ---------------------------------------------------------------------------------


def test_stale_rebuild_reference_passes(r, db):
    assert ex.stale_rebuild(r, db).evaluate(ex.get_report).outcome == CORRECT
    assert r.keys("ex1:*") == []


def test_stale_rebuild_starter_is_not_attempted(r, db):
    def starter(r, key, lock_key, rebuild):
        raise NotImplementedError

    assert ex.stale_rebuild(r, db).evaluate(starter).outcome == NOT_ATTEMPTED


def test_stale_rebuild_naive_fails(r, db):
    def naive(r, key, lock_key, rebuild):
        if r.exists(f"{key}:fresh"):
            return r.get(key)
        value = rebuild()
        _fresh(r, key, value)
        return value

    res = ex.stale_rebuild(r, db, readers=10).evaluate(naive)
    assert res.outcome == INCORRECT and "rebuilt exactly once" in res.message and "actual:   10" in res.message


def test_stale_rebuild_waiting_losers_fail(r, db):
    """The notebook's LockedCache, retyped: correct for a missing key, but here losers must not wait."""
    def waits(r, key, lock_key, rebuild):
        while not r.exists(f"{key}:fresh"):
            token = uuid.uuid4().hex
            if r.set(lock_key, token, nx=True, px=5000):
                try:
                    if not r.exists(f"{key}:fresh"):
                        _fresh(r, key, rebuild())
                finally:
                    r.eval(ex.RELEASE, 1, lock_key, token)
            else:
                time.sleep(0.01)
        return r.get(key)

    res = ex.stale_rebuild(r, db, readers=10).evaluate(waits)
    assert res.outcome == INCORRECT and "must not wait" in res.message


def test_stale_rebuild_plain_del_release_fails(r, db):
    def plain_del(r, key, lock_key, rebuild):
        if r.exists(f"{key}:fresh"):
            return r.get(key)
        if not r.set(lock_key, "me", nx=True, px=5000):
            return r.get(key)
        try:
            value = rebuild()
            _fresh(r, key, value)
            return value
        finally:
            r.delete(lock_key)

    res = ex.stale_rebuild(r, db, readers=10).evaluate(plain_del)
    assert res.outcome == INCORRECT and "check the token" in res.message


def test_stale_rebuild_lock_without_expiry_fails(r, db):
    def no_px(r, key, lock_key, rebuild):
        if r.exists(f"{key}:fresh"):
            return r.get(key)
        token = uuid.uuid4().hex
        if not r.set(lock_key, token, nx=True):
            return r.get(key)
        try:
            value = rebuild()
            _fresh(r, key, value)
            return value
        finally:
            r.eval(ex.RELEASE, 1, lock_key, token)

    res = ex.stale_rebuild(r, db, readers=10).evaluate(no_px)
    assert res.outcome == INCORRECT and "has an expiry" in res.message


def test_stale_rebuild_never_marking_fresh_fails(r, db):
    def no_mark(r, key, lock_key, rebuild):
        if r.exists(f"{key}:fresh"):
            return r.get(key)
        token = uuid.uuid4().hex
        if not r.set(lock_key, token, nx=True, px=5000):
            return r.get(key)
        try:
            value = rebuild()
            r.set(key, value)
            return value
        finally:
            r.eval(ex.RELEASE, 1, lock_key, token)

    res = ex.stale_rebuild(r, db, readers=10).evaluate(no_mark)
    assert res.outcome == INCORRECT and "marked fresh again" in res.message


# -- exercise 2 ---------------------------------------------------------------------------------


def test_refresh_chance_reference_passes():
    assert ex.refresh_chance().evaluate(ex.refresh_probability).outcome == CORRECT


def test_refresh_chance_starter_is_not_attempted():
    def starter(time_to_expiry, delta, beta):
        raise NotImplementedError

    assert ex.refresh_chance().evaluate(starter).outcome == NOT_ATTEMPTED


def test_refresh_chance_complement_fails():
    def complement(tte, delta, beta):
        return 1.0 if tte <= 0 else (0.0 if delta * beta == 0 else 1 - math.exp(-tte / (delta * beta)))

    res = ex.refresh_chance().evaluate(complement)
    assert res.outcome == INCORRECT and "exp(-1)" in res.message


def test_refresh_chance_ignoring_beta_fails():
    def no_beta(tte, delta, beta):
        return 1.0 if tte <= 0 else (0.0 if delta == 0 else math.exp(-tte / delta))

    res = ex.refresh_chance().evaluate(no_beta)
    assert res.outcome == INCORRECT and "beta = 2" in res.message


def test_refresh_chance_without_edge_cases_fails():
    res = ex.refresh_chance().evaluate(lambda tte, delta, beta: math.exp(-tte / (delta * beta)))
    assert res.outcome == INCORRECT


# -- Try it -------------------------------------------------------------------------------------


def test_will_wait():
    assert ex.will_wait(0.1, misses=40, requests=2000).evaluate(True).outcome == CORRECT
    assert ex.will_wait(1.0, misses=0, requests=2000).evaluate(False).outcome == CORRECT
    assert ex.will_wait(1.0, misses=0, requests=2000).evaluate(True).outcome == INCORRECT
    assert ex.will_wait(1.0, misses=0, requests=2000).evaluate(None).outcome == NOT_ATTEMPTED
    assert ex.will_wait(1.0, misses=0, requests=2000).evaluate("no").outcome == INCORRECT
