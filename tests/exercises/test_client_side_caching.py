"""Self-tests of the client-side caching exercise checkers: the reference passes, wrong answers fail."""

from __future__ import annotations

import pytest

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import client_side_caching as ex


@pytest.fixture
def tracked_client(redis_server):
    c = redis_server.client(single_connection_client=True)
    yield c
    c.close()


def test_invalidation_reference_passes(r):
    assert ex.invalidation_handler(r).evaluate(ex.apply_invalidation).outcome == CORRECT
    assert r.keys("ex1:*") == []


def test_invalidation_starter_is_not_attempted(r):
    def starter(local, keys):
        raise NotImplementedError

    assert ex.invalidation_handler(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_invalidation_clear_everything_fails(r):
    res = ex.invalidation_handler(r).evaluate(lambda local, keys: local.clear())
    assert res.outcome == INCORRECT and "other keys stay cached" in res.message


def test_invalidation_del_fails_on_missing_or_none(r):
    def with_del(local, keys):
        for k in keys:
            del local[k]

    res = ex.invalidation_handler(r).evaluate(with_del)
    assert res.outcome == INCORRECT and "your code raised KeyError" in res.message


def test_invalidation_ignoring_flush_fails(r):
    def no_flush(local, keys):
        for k in keys or []:
            local.pop(k, None)

    res = ex.invalidation_handler(r).evaluate(no_flush)
    assert res.outcome == INCORRECT and "FLUSHALL" in res.message


def test_in_flight_reference_passes(r, tracked_client):
    assert ex.in_flight_read(r, tracked_client).evaluate(ex.cached_get).outcome == CORRECT


def test_in_flight_starter_is_not_attempted(r, tracked_client):
    def starter(local, lock, r, key):
        raise NotImplementedError

    assert ex.in_flight_read(r, tracked_client).evaluate(starter).outcome == NOT_ATTEMPTED


def test_in_flight_naive_store_fails(r, tracked_client):
    def naive(local, lock, r, key):
        with lock:
            if key in local:
                return local[key]
        value = r.get(key)
        with lock:
            local[key] = value
        return value

    res = ex.in_flight_read(r, tracked_client).evaluate(naive)
    assert res.outcome == INCORRECT and "stale for good" in res.message


def test_in_flight_no_cache_fails(r, tracked_client):
    res = ex.in_flight_read(r, tracked_client).evaluate(lambda local, lock, r, key: r.get(key))
    assert res.outcome == INCORRECT and "no GET reaches the server" in res.message


def test_in_flight_placeholder_ignored_fails(r, tracked_client):
    def marks_but_stores_anyway(local, lock, r, key):
        with lock:
            v = local.get(key)
            if v is not None and not isinstance(v, ex.Placeholder):
                return v
            local[key] = ex.Placeholder()
        value = r.get(key)
        with lock:
            local[key] = value  # forgets to check that the mark is still there
        return value

    res = ex.in_flight_read(r, tracked_client).evaluate(marks_but_stores_anyway)
    assert res.outcome == INCORRECT and "stale for good" in res.message


# -- exercise 3: writes under NOLOOP (a new case) ----------------------------------------------


def test_own_writes_reference_passes(r, tracked_client):
    assert ex.own_writes(r, tracked_client).evaluate(ex.write_value).outcome == CORRECT


def test_own_writes_keeping_own_value_fails(r, tracked_client):
    def keep_mine(local, lock, r, key, value):
        r.set(key, value)
        with lock:
            local[key] = value   # looks like a write-through local cache; never invalidated again

    res = ex.own_writes(r, tracked_client).evaluate(keep_mine)
    assert res.outcome == INCORRECT and "never invalidated again" in res.message


def test_own_writes_leaving_the_old_copy_fails(r, tracked_client):
    def redis_only(local, lock, r, key, value):
        r.set(key, value)

    res = ex.own_writes(r, tracked_client).evaluate(redis_only)
    assert res.outcome == INCORRECT and "reads its own write" in res.message


def test_own_writes_local_only_fails(r, tracked_client):
    def local_only(local, lock, r, key, value):
        with lock:
            local[key] = value

    res = ex.own_writes(r, tracked_client).evaluate(local_only)
    assert res.outcome == INCORRECT and "reaches Redis" in res.message
