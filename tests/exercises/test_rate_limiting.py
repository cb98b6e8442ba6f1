"""Self-tests of the rate-limiting exercise checkers: the reference passes, known-wrong answers fail."""

from __future__ import annotations

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import rate_limiting as ex


def test_fixed_window_reference_passes(r):
    assert ex.fixed_window(r).evaluate(ex.hit).outcome == CORRECT


def test_fixed_window_multi_pipeline_passes(r):
    def with_multi(r, key, limit, window_s):
        with r.pipeline(transaction=True) as p:
            p.set(key, 0, ex=window_s, nx=True)
            p.incr(key)
            return p.execute()[1] <= limit

    assert ex.fixed_window(r).evaluate(with_multi).outcome == CORRECT


def test_fixed_window_starter_is_not_attempted(r):
    def starter(r, key, limit, window_s):
        raise NotImplementedError

    assert ex.fixed_window(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_fixed_window_incr_then_expire_fails(r):
    def two_trips(r, key, limit, window_s):
        n = r.incr(key)
        if n == 1:
            r.expire(key, window_s)
        return n <= limit

    res = ex.fixed_window(r).evaluate(two_trips)
    assert res.outcome == INCORRECT and "one round trip" in res.message


def test_fixed_window_without_expiry_fails(r):
    res = ex.fixed_window(r).evaluate(lambda r, key, limit, w: r.incr(key) <= limit)
    assert res.outcome == INCORRECT and "gets a TTL" in res.message


def test_fixed_window_resetting_ttl_every_hit_fails(r):
    def always_expire(r, key, limit, window_s):
        with r.pipeline(transaction=True) as p:
            p.incr(key)
            p.expire(key, window_s)
            return p.execute()[0] <= limit

    res = ex.fixed_window(r).evaluate(always_expire)
    assert res.outcome == INCORRECT and "push the expiry back" in res.message


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
        tokens = min(capacity, float(h.get("tokens", capacity)) + (now_ms - float(h.get("ts", now_ms))) * per_second / 1000)
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
