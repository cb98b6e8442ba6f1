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


def test_book_reference_passes(r, other):
    assert ex.book_seats(r, other).evaluate(ex.book).outcome == CORRECT


def test_book_lua_reference_passes(r, other):
    assert ex.book_seats(r, other).evaluate(ex.book_lua).outcome == CORRECT


def test_book_starter_is_not_attempted(r, other):
    def starter(r, key, seats, who):
        raise NotImplementedError

    assert ex.book_seats(r, other).evaluate(starter).outcome == NOT_ATTEMPTED
    ex.book_seats(r, other).check(starter)  # shows "not attempted", does not raise


def test_book_check_then_write_fails(r, other):
    def naive(r, key, seats, who):
        if any(v is not None for v in r.hmget(key, seats)):
            return False
        r.hset(key, mapping={s: who for s in seats})
        return True

    res = ex.book_seats(r, other).evaluate(naive)
    assert res.outcome == INCORRECT and "overwrote their booking" in res.message


def test_book_pipelined_read_then_write_fails(r, other):
    def pipelined(r, key, seats, who):
        with r.pipeline(transaction=False) as p:
            p.hmget(key, seats)
            (held,) = p.execute()
        if any(v is not None for v in held):
            return False
        r.hset(key, mapping={s: who for s in seats})
        return True

    res = ex.book_seats(r, other).evaluate(pipelined)
    assert res.outcome == INCORRECT and "overwrote their booking" in res.message


def test_book_seat_by_seat_hsetnx_fails(r, other):
    def partial(r, key, seats, who):  # no read, but not all-or-none
        return all([r.hsetnx(key, s, who) for s in seats])

    res = ex.book_seats(r, other).evaluate(partial)
    assert res.outcome == INCORRECT and "all or none" in res.message


def test_book_watch_without_retry_fails(r, other):
    def no_retry(r, key, seats, who):
        with r.pipeline() as pipe:
            pipe.watch(key)
            if any(v is not None for v in pipe.hmget(key, seats)):
                return False
            pipe.multi()
            pipe.hset(key, mapping={s: who for s in seats})
            pipe.execute()
            return True

    res = ex.book_seats(r, other).evaluate(no_retry)
    assert res.outcome == INCORRECT and "WatchError" in res.message


def test_book_giving_up_on_abort_fails(r, other):
    def give_up(r, key, seats, who):
        with r.pipeline() as pipe:
            try:
                pipe.watch(key)
                if any(v is not None for v in pipe.hmget(key, seats)):
                    return False
                pipe.multi()
                pipe.hset(key, mapping={s: who for s in seats})
                pipe.execute()
                return True
            except redis.WatchError:
                return False

    res = ex.book_seats(r, other).evaluate(give_up)
    assert res.outcome == INCORRECT and "retry" in res.message


def test_round_trips_reference_passes(r, other):
    assert ex.watch_round_trips(r, other, "tryit").evaluate(ex.round_trips).outcome == CORRECT


def test_round_trips_wrong_formulas_fail(r, other):
    for wrong in (lambda k: k + 1, lambda k: 2 * (k + 1), lambda k: 3 * k + 1, lambda k: 5 * (k + 1)):
        assert ex.watch_round_trips(r, other, "tryit").evaluate(wrong).outcome == INCORRECT


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
