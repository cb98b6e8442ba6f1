"""Exercises for notebooks/09-rate-limiting.ipynb.

1. ``fixed_window``: ``hit(r, key, limit, window_s)``: count and expire in ONE atomic round trip.
2. ``token_bucket``: ``allow(r, key, capacity, per_second, now_ms)``: a token bucket in Lua.
"""

from __future__ import annotations

import inspect
import threading

import redis

from ..check import Exercise, expect
from ..trace import trace


# -- reference solutions (self-tested in tests/exercises/test_rate_limiting.py) -----------------

FIXED_WINDOW_LUA = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if n <= tonumber(ARGV[1]) then return 1 end
return 0
"""


def hit(r: redis.Redis, key: str, limit: int, window_s: int) -> bool:
    return r.eval(FIXED_WINDOW_LUA, 1, key, limit, window_s) == 1


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
    """Run fn() in n threads released together; return their results."""
    barrier = threading.Barrier(n, timeout=10)
    out, lock = [], threading.Lock()

    def worker():
        barrier.wait()
        v = fn()
        with lock:
            out.append(v)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def _one_round_trip(r: redis.Redis, call, what: str):
    with trace(r) as t:
        result = call()
    expect(t.round_trips == 1,
           f"{what} is one round trip (one EVAL, or one MULTI/EXEC pipeline): between two round "
           "trips another client can interleave, or this client can crash",
           expected="1 round trip", actual=f"{t.round_trips}: {[c.line() for c in t.commands]}")
    return result


# -- exercises ----------------------------------------------------------------------------------


def fixed_window(r: redis.Redis, prefix: str = "ex1") -> Exercise:
    """Exercise 1: ``hit(r, key, limit, window_s) -> bool``."""

    def checker(answer) -> None:
        key = f"{prefix}:alice"
        r.delete(key)
        first = _one_round_trip(r, lambda: answer(r, key, 3, 60), "one hit")
        expect(first is True or first == 1, "the first request is allowed", expected=True, actual=first)
        ttl = r.ttl(key)
        expect(0 < ttl <= 60, f"{key} gets a TTL of the window (60 s) on the first hit, or the count "
               "never resets", expected="1..60", actual=ttl)
        got = [bool(answer(r, key, 3, 60)) for _ in range(3)]
        expect(got == [True, True, False], "limit 3: requests 2 and 3 allowed, the 4th refused",
               expected=[True, True, False], actual=got)
        r.pexpire(key, 500)  # as if 59.5 s of the window had passed
        answer(r, key, 3, 60)
        pttl = r.pttl(key)
        expect(0 < pttl <= 500, "later hits must not push the expiry back: a client that keeps "
               "retrying would then never get a new window", expected="<= 500 ms", actual=f"{pttl} ms")
        r.delete(key)
        allowed = sum(_together(8, lambda: sum(bool(answer(r, key, 10, 60)) for _ in range(5))))
        expect(allowed == 10, "8 clients x 5 requests at once, limit 10: exactly 10 allowed",
               expected=10, actual=allowed)

    return Exercise(
        "atomic fixed window", checker,
        hints=[
            "INCR the key; if the result is 1 this is the window's first request: set the expiry. "
            "Both must happen in one round trip.",
            "A Lua script does it: local n = redis.call('INCR', KEYS[1]); if n == 1 then "
            "redis.call('EXPIRE', KEYS[1], ARGV[2]) end; then return 1 if n <= limit, else 0. "
            "Call it with r.eval(script, 1, key, limit, window_s).",
        ],
        solution=FIXED_WINDOW_LUA + "\n" + inspect.getsource(hit), reference=hit,
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
