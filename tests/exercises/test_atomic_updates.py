"""Self-tests of the atomic-updates exercise checkers: the reference passes, known-wrong answers fail."""

from __future__ import annotations

import pytest
import redis

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import atomic_updates as ex


@pytest.fixture
def other(redis_server):
    c = redis_server.client()
    yield c
    c.close()


def test_update_reference_passes(r, other):
    assert ex.watch_update(r, other).evaluate(ex.update).outcome == CORRECT


def test_update_starter_is_not_attempted(r, other):
    def starter(r, key, fn):
        raise NotImplementedError

    assert ex.watch_update(r, other).evaluate(starter).outcome == NOT_ATTEMPTED
    ex.watch_update(r, other).check(starter)  # shows "not attempted", does not raise


def test_update_naive_get_set_fails(r, other):
    def naive(r, key, fn):
        new = fn(r.get(key))
        r.set(key, new)
        return new

    res = ex.watch_update(r, other).evaluate(naive)
    assert res.outcome == INCORRECT and "+5 was lost" in res.message


def test_update_watch_without_retry_fails(r, other):
    def no_retry(r, key, fn):
        with r.pipeline() as pipe:
            pipe.watch(key)
            new = fn(pipe.get(key))
            pipe.multi()
            pipe.set(key, new)
            pipe.execute()
            return new

    res = ex.watch_update(r, other).evaluate(no_retry)
    assert res.outcome == INCORRECT and "WatchError" in res.message


def test_update_watch_after_read_fails(r, other):
    def late_watch(r, key, fn):  # reads before WATCH: the change happens unseen
        while True:
            new = fn(r.get(key))
            with r.pipeline() as pipe:
                try:
                    pipe.watch(key)
                    pipe.multi()
                    pipe.set(key, new)
                    pipe.execute()
                    return new
                except redis.WatchError:
                    continue

    res = ex.watch_update(r, other).evaluate(late_watch)
    assert res.outcome == INCORRECT and "+5 was lost" in res.message


def test_withdraw_reference_passes(r):
    assert ex.lua_withdraw(r).evaluate(ex.withdraw).outcome == CORRECT


def test_withdraw_registered_script_passes(r):
    script = r.register_script(ex.WITHDRAW_LUA)

    def via_evalsha(r, key, amount):
        return script(keys=[key], args=[amount], client=r)

    assert ex.lua_withdraw(r).evaluate(via_evalsha).outcome == CORRECT


def test_withdraw_python_get_set_fails(r):
    def python_side(r, key, amount):
        have = int(r.get(key) or 0)
        if have < amount:
            return -1
        return r.decrby(key, amount)

    res = ex.lua_withdraw(r).evaluate(python_side)
    assert res.outcome == INCORRECT and "one script call" in res.message and "GET" in res.message


def test_withdraw_without_funds_check_fails(r):
    def no_check(r, key, amount):
        return r.eval("return redis.call('DECRBY', KEYS[1], ARGV[1])", 1, key, amount)

    res = ex.lua_withdraw(r).evaluate(no_check)
    assert res.outcome == INCORRECT and "returns -1" in res.message


def test_withdraw_creating_missing_wallet_fails(r):
    script = """
    local have = tonumber(redis.call('GET', KEYS[1]) or '0')
    if have < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], have) return -1 end
    return redis.call('DECRBY', KEYS[1], ARGV[1])
    """

    res = ex.lua_withdraw(r).evaluate(lambda r, key, amount: r.eval(script, 1, key, amount))
    assert res.outcome == INCORRECT and "not created" in res.message
