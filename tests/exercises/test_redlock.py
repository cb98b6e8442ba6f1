"""Self-tests of the Redlock exercise checkers on 5 real nodes: the reference passes, known-wrong
answers fail with the message that explains them."""

from __future__ import annotations

import time

import pytest
import redis

from redistutor import lab
from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import redlock as ex


@pytest.fixture(scope="module")
def clients():
    with lab.Fleet(5) as fleet:
        yield [n.client(socket_timeout=0.5) for n in fleet]


# -- exercise 1 -----------------------------------------------------------------------------------


def test_validity_reference_passes():
    assert ex.decide().evaluate(ex.redlock_validity).outcome == CORRECT


def test_validity_starter_is_not_attempted():
    def starter(ok, n, ttl_ms, elapsed_ms):
        raise NotImplementedError

    assert ex.decide().evaluate(starter).outcome == NOT_ATTEMPTED


def test_validity_without_drift_fails():
    def no_drift(ok, n, ttl_ms, elapsed_ms):
        v = ttl_ms - elapsed_ms
        return v if ok > n // 2 and v > 0 else None

    res = ex.decide().evaluate(no_drift)
    assert res.outcome == INCORRECT and "100 + 2" in res.message


def test_half_is_not_a_majority():
    def half(ok, n, ttl_ms, elapsed_ms):
        v = ttl_ms - elapsed_ms - (int(ttl_ms * 0.01) + 2)
        return v if ok >= n / 2 and v > 0 else None

    res = ex.decide().evaluate(half)
    assert res.outcome == INCORRECT and "2 of 4 is a tie" in res.message


def test_validity_ignoring_elapsed_fails():
    def no_elapsed(ok, n, ttl_ms, elapsed_ms):
        return ttl_ms - (int(ttl_ms * 0.01) + 2) if ok >= n // 2 + 1 else None

    res = ex.decide().evaluate(no_elapsed)
    assert res.outcome == INCORRECT and "elapsed_ms=5.0" in res.message


def test_negative_validity_must_be_none():
    def negative(ok, n, ttl_ms, elapsed_ms):
        return ttl_ms - elapsed_ms - (int(ttl_ms * 0.01) + 2) if ok >= n // 2 + 1 else None

    res = ex.decide().evaluate(negative)
    assert res.outcome == INCORRECT and "nothing left after drift" in res.message


# -- exercise 2 -----------------------------------------------------------------------------------


def test_acquire_reference_passes(clients):
    assert ex.acquire_on_majority(clients).evaluate(ex.redlock_acquire).outcome == CORRECT


def test_acquire_starter_is_not_attempted(clients):
    def starter(clients, key, token, ttl_ms):
        raise NotImplementedError

    assert ex.acquire_on_majority(clients).evaluate(starter).outcome == NOT_ATTEMPTED


def test_acquire_that_crashes_on_a_down_node_fails(clients):
    def no_except(clients, key, token, ttl_ms):
        ok = sum(bool(c.set(key, token, nx=True, px=ttl_ms)) for c in clients)
        return ttl_ms - 102 if ok >= 3 else None

    res = ex.acquire_on_majority(clients).evaluate(no_except)
    assert res.outcome == INCORRECT and "ConnectionError" in res.message


def test_acquire_without_release_on_failure_fails(clients):
    def no_cleanup(clients, key, token, ttl_ms):
        start, ok = time.monotonic(), 0
        for c in clients:
            try:
                ok += bool(c.set(key, token, nx=True, px=ttl_ms))
            except redis.RedisError:
                pass
        v = ttl_ms - (time.monotonic() - start) * 1000 - (int(ttl_ms * 0.01) + 2)
        return v if ok >= 3 and v > 0 else None

    res = ex.acquire_on_majority(clients).evaluate(no_cleanup)
    assert res.outcome == INCORRECT and "releases what it did get" in res.message


def test_acquire_with_plain_del_cleanup_fails(clients):
    def del_cleanup(clients, key, token, ttl_ms):
        start, ok = time.monotonic(), 0
        for c in clients:
            try:
                ok += bool(c.set(key, token, nx=True, px=ttl_ms))
            except redis.RedisError:
                pass
        v = ttl_ms - (time.monotonic() - start) * 1000 - (int(ttl_ms * 0.01) + 2)
        if ok >= 3 and v > 0:
            return v
        for c in clients:
            try:
                c.delete(key)
            except redis.RedisError:
                pass
        return None

    res = ex.acquire_on_majority(clients).evaluate(del_cleanup)
    assert res.outcome == INCORRECT and "checks the token" in res.message


def test_acquire_ignoring_elapsed_time_fails(clients):
    def count_only(clients, key, token, ttl_ms):
        ok = 0
        for c in clients:
            try:
                ok += bool(c.set(key, token, nx=True, px=ttl_ms))
            except redis.RedisError:
                pass
        if ok >= 3:
            return ttl_ms - (int(ttl_ms * 0.01) + 2)
        for c in clients:
            try:
                c.eval(ex.RELEASE, 1, key, token)
            except redis.RedisError:
                pass
        return None

    res = ex.acquire_on_majority(clients).evaluate(count_only)
    assert res.outcome == INCORRECT and "longer than the 150 ms TTL" in res.message
