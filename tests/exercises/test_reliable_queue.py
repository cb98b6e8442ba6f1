"""Self-tests of the reliable-queue exercise checkers: the reference passes, known-wrong answers fail."""

from __future__ import annotations

import time

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import reliable_queue as ex

# -- exercise 1: extend a lease ------------------------------------------------------------------


def test_extend_reference_passes(r):
    assert ex.extend_lease(r).evaluate(ex.extend).outcome == CORRECT


def test_extend_starter_is_not_attempted(r):
    def starter(q, worker, msg, lease_ms):
        raise NotImplementedError

    assert ex.extend_lease(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_extend_with_a_plain_zadd_fails(r):
    # extends whatever it is given: after the reaper took it back, it still says True
    def plain(q, worker, msg, lease_ms):
        q.r.zadd(q.leases, {msg: int(time.time() * 1000) + lease_ms})
        return True

    res = ex.extend_lease(r).evaluate(plain)
    assert res.outcome == INCORRECT and "must fail" in res.message


def test_extend_with_zadd_xx_extends_another_workers_lease_and_fails(r):
    # XX CH: no lease is created for a queued message, but B's lease gets A's deadline
    def xx(q, worker, msg, lease_ms):
        return q.r.zadd(q.leases, {msg: int(time.time() * 1000) + lease_ms}, xx=True, ch=True) == 1

    res = ex.extend_lease(r).evaluate(xx)
    assert res.outcome == INCORRECT and "B holds video-1" in res.message


def test_extend_check_then_write_in_two_round_trips_fails(r):
    def two_trips(q, worker, msg, lease_ms):
        if q.r.lpos(f"{q.name}:processing:{worker}", msg) is None:
            return False
        q.r.zadd(q.leases, {msg: int(time.time() * 1000) + lease_ms})
        return True

    res = ex.extend_lease(r).evaluate(two_trips)
    assert res.outcome == INCORRECT and "one round trip" in res.message


def test_extend_in_seconds_fails(r):
    script = ex.EXTEND_LUA
    res = ex.extend_lease(r).evaluate(
        lambda q, w, m, lease_ms: q.r.eval(script, 2, f"{q.name}:processing:{w}", q.leases, m,
                                            int(time.time()) + lease_ms // 1000) == 1)
    assert res.outcome == INCORRECT and "now + lease_ms" in res.message


# -- exercise 2: nack ----------------------------------------------------------------------------


def test_nack_reference_passes(r):
    assert ex.nack_exercise(r).evaluate(ex.nack).outcome == CORRECT


def test_nack_starter_is_not_attempted(r):
    def starter(q, worker, msg):
        raise NotImplementedError

    assert ex.nack_exercise(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_nack_without_checking_lrem_duplicates_the_message_and_fails(r):
    script = ex.NACK_LUA.replace("if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return false end",
                                 "redis.call('LREM', KEYS[1], 1, ARGV[1])")
    res = ex.nack_exercise(r).evaluate(lambda q, w, m: q.r.eval(
        script, 5, f"{q.name}:processing:{w}", q.leases, q.retries, q.queue, q.dead, m, q.max_retries))
    assert res.outcome == INCORRECT and "return None" in res.message


def test_nack_to_the_tail_of_the_queue_fails(r):
    script = ex.NACK_LUA.replace("redis.call('RPUSH', KEYS[4], ARGV[1])", "redis.call('LPUSH', KEYS[4], ARGV[1])")
    res = ex.nack_exercise(r).evaluate(lambda q, w, m: q.r.eval(
        script, 5, f"{q.name}:processing:{w}", q.leases, q.retries, q.queue, q.dead, m, q.max_retries))
    assert res.outcome == INCORRECT and "head of the queue" in res.message


def test_nack_dead_lettering_one_retry_early_fails(r):
    script = ex.NACK_LUA.replace("> tonumber(ARGV[2])", ">= tonumber(ARGV[2])")
    res = ex.nack_exercise(r).evaluate(lambda q, w, m: q.r.eval(
        script, 5, f"{q.name}:processing:{w}", q.leases, q.retries, q.queue, q.dead, m, q.max_retries))
    assert res.outcome == INCORRECT and "max_retries = 2" in res.message


def test_nack_keeping_the_lease_fails(r):
    script = ex.NACK_LUA.replace("redis.call('ZREM', KEYS[2], ARGV[1])", "")
    res = ex.nack_exercise(r).evaluate(lambda q, w, m: q.r.eval(
        script, 5, f"{q.name}:processing:{w}", q.leases, q.retries, q.queue, q.dead, m, q.max_retries))
    assert res.outcome == INCORRECT and "lease" in res.message


def test_nack_in_python_round_trips_fails(r):
    def python_side(q, worker, msg):
        if not q.r.lrem(f"{q.name}:processing:{worker}", 1, msg):
            return None
        q.r.zrem(q.leases, msg)
        if q.r.hincrby(q.retries, msg, 1) > q.max_retries:
            q.r.rpush(q.dead, msg)
            return "dead"
        q.r.rpush(q.queue, msg)
        return "queue"

    res = ex.nack_exercise(r).evaluate(python_side)
    assert res.outcome == INCORRECT and "one round trip" in res.message


# -- try it: lease vs job ------------------------------------------------------------------------


def test_lease_prediction_is_checked_against_a_run(redis_server, r):
    assert ex.lease_prediction(redis_server, 150, job_ms=300).evaluate(2).outcome == CORRECT
    assert ex.lease_prediction(redis_server, 400, job_ms=300).evaluate(1).outcome == CORRECT
    assert ex.lease_prediction(redis_server, 150, job_ms=300).evaluate(1).outcome == INCORRECT
    assert ex.lease_prediction(redis_server, 400, job_ms=300).evaluate(2).outcome == INCORRECT
    assert ex.lease_prediction(redis_server, 150, job_ms=300).evaluate(None).outcome == NOT_ATTEMPTED
