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


# -- exercise 2: extend (a new case) ----------------------------------------------------------------


def test_extend_reference_passes(clients):
    assert ex.extend_on_majority(clients).evaluate(ex.redlock_extend).outcome == CORRECT


def test_extend_starter_is_not_attempted(clients):
    def starter(clients, key, token, ttl_ms):
        raise NotImplementedError

    assert ex.extend_on_majority(clients).evaluate(starter).outcome == NOT_ATTEMPTED


def _extend_with(step):
    """An extend that counts the nodes where ``step(c, key, token, ttl_ms)`` is truthy."""
    def extend(clients, key, token, ttl_ms):
        start, ok = time.monotonic(), 0
        for c in clients:
            try:
                ok += bool(step(c, key, token, ttl_ms))
            except redis.RedisError:
                pass
        validity = ttl_ms - (time.monotonic() - start) * 1000 - (int(ttl_ms * 0.01) + 2)
        return validity if ok >= len(clients) // 2 + 1 and validity > 0 else None
    return extend


def test_extend_without_token_check_fails(clients):
    blind = _extend_with(lambda c, key, token, ttl: c.pexpire(key, ttl))
    res = ex.extend_on_majority(clients).evaluate(blind)
    assert res.outcome == INCORRECT and "another client's token" in res.message


def test_extend_by_setting_the_key_again_fails(clients):
    # re-SET with our token where the key is free or ours: creates keys where ours had expired
    def reset(c, key, token, ttl):
        return c.get(key) in (None, token) and c.set(key, token, px=ttl)

    res = ex.extend_on_majority(clients).evaluate(_extend_with(reset))
    assert res.outcome == INCORRECT and "2 of 5" in res.message


def test_extend_ignoring_elapsed_time_fails(clients):
    def no_elapsed(clients, key, token, ttl_ms):
        ok = 0
        for c in clients:
            try:
                ok += c.eval(ex.EXTEND, 1, key, token, ttl_ms)
            except redis.RedisError:
                pass
        return ttl_ms - (int(ttl_ms * 0.01) + 2) if ok >= len(clients) // 2 + 1 else None

    res = ex.extend_on_majority(clients).evaluate(no_elapsed)
    assert res.outcome == INCORRECT and "150 ms" in res.message


def test_extend_crashing_on_a_down_node_fails(clients):
    def raises(clients, key, token, ttl_ms):
        ok = sum(c.eval(ex.EXTEND, 1, key, token, ttl_ms) for c in clients)
        return ttl_ms - 102 if ok >= 3 else None

    res = ex.extend_on_majority(clients).evaluate(raises)
    assert res.outcome == INCORRECT and "raised" in res.message


# -- Try it -----------------------------------------------------------------------------------------


def test_try_it_prediction_is_checked_by_killing_nodes():
    with lab.Fleet(5) as fleet:
        assert ex.majority_prediction(fleet, 2).evaluate(True).outcome == CORRECT
        assert ex.majority_prediction(fleet, 3).evaluate(False).outcome == CORRECT
        assert ex.majority_prediction(fleet, 3).evaluate(True).outcome == INCORRECT
        assert ex.majority_prediction(fleet, 0).evaluate(None).outcome == NOT_ATTEMPTED
        assert fleet.up() == ["n1", "n2", "n3", "n4", "n5"]
