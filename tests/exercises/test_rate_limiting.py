"""Self-tests of the rate-limiting exercise checkers: the reference passes, known-wrong answers fail."""

from __future__ import annotations

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import rate_limiting as ex


def test_credit_quota_reference_passes(r):
    assert ex.credit_quota(r).evaluate(ex.spend).outcome == CORRECT


def test_credit_quota_starter_is_not_attempted(r):
    def starter(r, key, cost, limit, window_s):
        raise NotImplementedError

    assert ex.credit_quota(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_credit_quota_counting_refused_requests_fails(r):
    # INCRBY first, then compare: a refused request still eats the budget
    script = """
    local used = redis.call('INCRBY', KEYS[1], ARGV[1])
    redis.call('EXPIRE', KEYS[1], ARGV[3], 'NX')
    if used <= tonumber(ARGV[2]) then return 1 end
    return 0
    """
    res = ex.credit_quota(r).evaluate(lambda r, k, c, lim, w: r.eval(script, 1, k, c, lim, w) == 1)
    assert res.outcome == INCORRECT and "refused" in res.message


def test_credit_quota_two_round_trips_fail(r):
    def check_then_spend(r, key, cost, limit, window_s):
        if int(r.get(key) or 0) + cost > limit:
            return False
        with r.pipeline(transaction=True) as p:
            p.incrby(key, cost)
            p.expire(key, window_s, nx=True)
            p.execute()
        return True

    res = ex.credit_quota(r).evaluate(check_then_spend)
    assert res.outcome == INCORRECT and "one round trip" in res.message


def test_credit_quota_without_expiry_fails(r):
    script = ex.CREDIT_QUOTA_LUA.replace("redis.call('EXPIRE', KEYS[1], ARGV[3], 'NX')", "")
    res = ex.credit_quota(r).evaluate(lambda r, k, c, lim, w: r.eval(script, 1, k, c, lim, w) == 1)
    assert res.outcome == INCORRECT and "TTL" in res.message


def test_credit_quota_resetting_ttl_every_request_fails(r):
    script = ex.CREDIT_QUOTA_LUA.replace("ARGV[3], 'NX')", "ARGV[3])")
    res = ex.credit_quota(r).evaluate(lambda r, k, c, lim, w: r.eval(script, 1, k, c, lim, w) == 1)
    assert res.outcome == INCORRECT and "push the expiry back" in res.message


def test_try_it_prediction_is_checked_against_the_server(r):
    import math

    for offset in (1, 250, 500, 999):
        assert ex.sliding_counter_prediction(r, offset).evaluate(math.ceil(10 * offset / 1000)).outcome == CORRECT
    assert ex.sliding_counter_prediction(r, 1).evaluate(0).outcome == INCORRECT   # "weight 0.99": 9.9 + ...
    assert ex.sliding_counter_prediction(r, 500).evaluate(10).outcome == INCORRECT
    assert ex.sliding_counter_prediction(r, 500).evaluate(None).outcome == NOT_ATTEMPTED


def test_token_bucket_reference_passes(r):
    assert ex.token_bucket(r).evaluate(ex.allow).outcome == CORRECT


def test_token_bucket_starter_is_not_attempted(r):
    def starter(r, key, capacity, per_second, now_ms):
        raise NotImplementedError

    assert ex.token_bucket(r).evaluate(starter).outcome == NOT_ATTEMPTED
    ex.token_bucket(r).check(starter)


def test_token_bucket_uncapped_refill_fails(r):
    script = ex.TOKEN_BUCKET_LUA.replace("math.min(cap, tokens + math.max(0, now - ts) * rate / 1000)",
                                         "tokens + math.max(0, now - ts) * rate / 1000")
    res = ex.token_bucket(r).evaluate(lambda r, k, c, p, n: r.eval(script, 1, k, c, p, n) == 1)
    assert res.outcome == INCORRECT and "not 100" in res.message


def test_token_bucket_python_side_fails(r):
    def python_side(r, key, capacity, per_second, now_ms):
        h = r.hgetall(key)
        elapsed = now_ms - float(h.get("ts", now_ms))
        tokens = min(capacity, float(h.get("tokens", capacity)) + elapsed * per_second / 1000)
        ok = tokens >= 1
        r.hset(key, mapping={"tokens": tokens - ok, "ts": now_ms})
        r.expire(key, 60)
        return ok

    res = ex.token_bucket(r).evaluate(python_side)
    assert res.outcome == INCORRECT and "one round trip" in res.message


def test_token_bucket_without_refill_fails(r):
    script = ex.TOKEN_BUCKET_LUA.replace("tokens + math.max(0, now - ts) * rate / 1000", "tokens")
    res = ex.token_bucket(r).evaluate(lambda r, k, c, p, n: r.eval(script, 1, k, c, p, n) == 1)
    assert res.outcome == INCORRECT and "exactly one token has come back" in res.message
