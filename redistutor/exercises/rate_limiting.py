"""Exercises for notebooks/09-rate-limiting.ipynb.

Try it. ``sliding_counter_prediction``: predict how many requests the sliding counter admits
   ``offset_ms`` into a window that follows a full one; the check runs it.
1. ``credit_quota``: ``spend(r, key, cost, limit, window_s)``: a new case for the fixed window:
   requests that cost different amounts of a per-window credit budget, a refused one costing nothing.
2. ``token_bucket``: ``allow(r, key, capacity, per_second, now_ms)``: a token bucket in Lua.
"""

from __future__ import annotations

import inspect

import redis

from ..check import Exercise, expect
from ..timeline import run_threads
from ..trace import trace

# -- reference solutions (self-tested in tests/exercises/test_rate_limiting.py) -----------------

CREDIT_QUOTA_LUA = """
local cost, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + cost > limit then return 0 end
redis.call('INCRBY', KEYS[1], cost)
redis.call('EXPIRE', KEYS[1], ARGV[3], 'NX')
return 1
"""


def spend(r: redis.Redis, key: str, cost: int, limit: int, window_s: int) -> bool:
    return r.eval(CREDIT_QUOTA_LUA, 1, key, cost, limit, window_s) == 1


TOKEN_BUCKET_LUA = """
local cap, rate, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local s = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(s[1]) or cap, tonumber(s[2]) or now
tokens = math.min(cap, tokens + math.max(0, now - ts) * rate / 1000)
local ok = 0
if tokens >= 1 then tokens = tokens - 1; ok = 1 end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', math.max(now, ts))
redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate * 1000))
return ok
"""


def allow(r: redis.Redis, key: str, capacity: int, per_second: float, now_ms: int) -> bool:
    return r.eval(TOKEN_BUCKET_LUA, 1, key, capacity, per_second, now_ms) == 1


# -- helpers ------------------------------------------------------------------------------------


def _together(n: int, fn) -> list:
    """Run fn() in n threads released together (the toolkit's run_threads); return their results."""
    return run_threads(lambda _actor, _log: fn(), n, timeout=30)

def _one_round_trip(r: redis.Redis, call, what: str):
    with trace(r) as t:
        result = call()
    expect(t.round_trips == 1,
           f"{what} is one round trip (one EVAL, or one MULTI/EXEC pipeline): between two round "
           "trips another client can interleave, or this client can crash",
           expected="1 round trip", actual=f"{t.round_trips}: {[c.line() for c in t.commands]}")
    return result


# -- exercises ----------------------------------------------------------------------------------


def sliding_counter_prediction(r: redis.Redis, offset_ms: int, prefix: str = "try") -> Exercise:
    """Try it: a full previous window (10 of limit 10), then 10 requests at once ``offset_ms`` into
    the next window. The answer is how many of those 10 the sliding counter admits."""
    from ..patterns.rate_limiting import SlidingWindowCounter

    def run() -> int:
        lim = SlidingWindowCounter(r, limit=10, window_ms=1000, prefix=prefix)
        r.delete(lim.key("kim"))
        for _ in range(10):
            lim.hit("kim", now_ms=20_500)
        return sum(bool(lim.hit("kim", now_ms=21_000 + offset_ms)) for _ in range(10))

    def checker(answer) -> None:
        got = run()
        expect(answer == got, f"{offset_ms} ms into the window the previous 10 count as "
               f"{SlidingWindowCounter.estimate(10, 0, offset_ms, 1000):g}; the server admitted {got}",
               expected=got, actual=answer)

    return Exercise(
        f"sliding counter at {offset_ms} ms", checker,
        hints=["The estimate is previous * (1000 - offset_ms) / 1000 + current; a request passes "
               "while the estimate is below 10, and each one that passes adds 1 to current.",
               "Count how many whole requests fit below 10 once the previous window's share is "
               "subtracted: 10 - 10 * (1000 - offset_ms) / 1000, rounded up."],
        solution="import math\nprediction = math.ceil(10 * offset_ms / 1000)   # for 0 <= offset_ms < 1000",
        reference=None,
    )


def credit_quota(r: redis.Redis, prefix: str = "ex1") -> Exercise:
    """Exercise 1: ``spend(r, key, cost, limit, window_s) -> bool``."""

    def checker(answer) -> None:
        key = f"{prefix}:acme"
        r.delete(key)
        first = _one_round_trip(r, lambda: answer(r, key, 40, 100, 60), "one request")
        expect(first is True or first == 1, "a 40-credit request on an empty budget of 100 is allowed",
               expected=True, actual=first)
        expect(r.get(key) == "40", f"{key} holds the credits spent so far", expected="40", actual=r.get(key))
        ttl = r.ttl(key)
        expect(0 < ttl <= 60, f"{key} gets the window (60 s) as its TTL on the first request, or the "
               "budget never resets", expected="1..60", actual=ttl)
        r.pexpire(key, 30_000)  # as if 30 s of the window had passed
        got = [bool(answer(r, key, c, 100, 60)) for c in (50, 20, 10)]
        pttl = r.pttl(key)
        expect(0 < pttl <= 30_000, "later requests must not push the expiry back: a client that keeps "
               "spending would then never get a new window", expected="<= 30000 ms", actual=f"{pttl} ms")
        expect(got == [True, False, True], "40 spent: 50 more fits (90), 20 more would make 110 and is "
               "refused, 10 more fits (100)", expected=[True, False, True], actual=got)
        expect(r.get(key) == "100", "a refused request costs nothing: the refused 20 credits must not "
               "be counted", expected="100", actual=r.get(key))
        r.delete(key)
        allowed = sum(_together(8, lambda: sum(bool(answer(r, key, 3, 30, 60)) for _ in range(5))))
        expect(allowed == 10 and r.get(key) == "30", "8 clients x 5 requests of 3 credits at once, "
               "budget 30: exactly 10 allowed, 30 spent", expected=(10, "30"), actual=(allowed, r.get(key)))

    return Exercise(
        "credit quota", checker,
        hints=[
            "Read the credits spent, compare spent + cost with the limit, and only then add the cost "
            "and set the window's TTL: all of it in one Lua script, so no other client runs in between.",
            "In the script: GET (a missing key is 0); if used + cost > limit return 0; otherwise INCRBY "
            "the cost and EXPIRE key window_s NX (NX: only a new window sets the TTL); return 1. "
            "Call it with r.eval(script, 1, key, cost, limit, window_s).",
        ],
        solution=CREDIT_QUOTA_LUA + "\n" + inspect.getsource(spend), reference=spend,
    )


def token_bucket(r: redis.Redis, prefix: str = "ex2") -> Exercise:
    """Exercise 2: ``allow(r, key, capacity, per_second, now_ms) -> bool``."""

    def checker(answer) -> None:
        key = f"{prefix}:bob"
        r.delete(key)
        t0 = 5_000_000
        first = _one_round_trip(r, lambda: answer(r, key, 3, 1, t0), "one decision")
        rest = [bool(answer(r, key, 3, 1, t0)) for _ in range(3)]
        expect([bool(first)] + rest == [True, True, True, False],
               "a full bucket of 3 allows a burst of 3, then refuses",
               expected=[True, True, True, False], actual=[bool(first)] + rest)
        early = bool(answer(r, key, 3, 1, t0 + 999))
        expect(not early, "at 1 token per second, 999 ms later there is not yet a whole token",
               expected=False, actual=early)
        later = [bool(answer(r, key, 3, 1, t0 + 1000)) for _ in range(2)]
        expect(later == [True, False], "1000 ms after the burst exactly one token has come back",
               expected=[True, False], actual=later)
        idle = [bool(answer(r, key, 3, 1, t0 + 101_000)) for _ in range(5)]
        expect(sum(idle) == 3, "after 100 s idle the bucket holds 3 tokens, not 100: cap the refill "
               "at the capacity", expected=3, actual=sum(idle))
        ttl = r.pttl(key)
        expect(ttl > 0, f"{key} has a TTL, so idle clients do not stay in Redis forever",
               expected="> 0", actual=ttl)
        r.delete(key)
        allowed = sum(_together(8, lambda: sum(bool(answer(r, key, 10, 1, t0)) for _ in range(5))))
        expect(allowed == 10, "8 clients x 5 requests at the same instant, capacity 10: exactly 10",
               expected=10, actual=allowed)

    return Exercise(
        "token bucket in Lua", checker,
        hints=[
            "Keep two fields in a hash: tokens and the time (ms) they were last computed. A missing "
            "hash is a full bucket.",
            "tokens = math.min(cap, tokens + (now - ts) * rate / 1000); allow if tokens >= 1 "
            "(then subtract 1); HSET both fields back and PEXPIRE the key, all in one script.",
        ],
        solution=TOKEN_BUCKET_LUA + "\n" + inspect.getsource(allow), reference=allow,
    )
