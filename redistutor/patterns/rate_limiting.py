"""Rate limiting: cap how many requests a client may make per unit of time, shared by every server.

The count lives in Redis so that all application servers enforce one global budget. Five
algorithms, each a single Lua script, so that one decision is **one round trip** and no two
clients can interleave between "read the count" and "write the count":

============================  ===========================  =========================================
algorithm                     state per client             what it guarantees
============================  ===========================  =========================================
:class:`FixedWindow`          hash {window id: count}      <= limit per calendar window; up to
                                                           2 x limit across a window boundary
:class:`SlidingLog`           sorted set of timestamps     <= limit in *every* window of W ms;
                                                           memory grows with traffic
:class:`SlidingWindowCounter` hash {window, count, prev}   approximates the log from two counters;
                                                           a small overshoot, O(1) memory
:class:`TokenBucket`          hash {tokens, ts}            bursts up to capacity, then ``rate``
:class:`LeakyBucket`          one integer (GCRA "TAT")     same admissions as the token bucket,
                                                           plus a delay that spaces requests out
============================  ===========================  =========================================

Why the check and the increment must be one step (the naive limiter)::

    limit 5, count 4
    time 0  client A: GET rl:alice -> 4   (4 < 5: allowed)
    time 1  client B: GET rl:alice -> 4   (4 < 5: allowed)
    time 2  client A: INCR -> 5;  client B: INCR -> 6      <- 6 requests got through

And why INCR + EXPIRE must be one step: a client that crashes between them leaves a counter
with no TTL, and once it reaches the limit that user is refused forever.

Time: every script takes ``now_ms`` as ARGV[1]. Pass it from an injectable clock (the tests and
the notebook use a fake one, so window boundaries are exact), or pass ``""`` and the script reads
the server's clock with ``TIME`` (one clock for all app servers: no skew). Correctness never
depends on Redis expiring a key; TTLs are only there to clean up idle clients.

Notebook: notebooks/09-rate-limiting.ipynb
Redis: https://redis.io/glossary/rate-limiting/ · https://redis.io/commands/incr/ (rate limiter
pattern) · https://redis.io/docs/latest/develop/interact/programmability/eval-intro/
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from ..race import call_hook

# Every script starts with this prelude: ARGV[1] is now in ms, or "" to read the server's clock
# (TIME). Since Redis 5.0 scripts replicate their effects by default (the only mode since 7.0), so
# a script that reads TIME is safe on replicas and in the AOF.
NOW_MS = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""


def fixed_window_hit(r: redis.Redis, key: str, limit: int, window_s: int) -> bool:
    """The canonical fixed window: INCR the count, EXPIRE ... NX so only a new window sets the TTL.

    One MULTI/EXEC round trip: both commands run or neither, so a client that dies between them
    cannot leave a counter without a TTL; NX keeps later hits from pushing the expiry back.
    """
    with r.pipeline(transaction=True) as tx:
        tx.incr(key)
        tx.expire(key, window_s, nx=True)
        count, _ = tx.execute()
    return count <= limit


@dataclass(frozen=True)
class Decision:
    """One rate-limit decision.

    Attributes:
        allowed: the request may proceed.
        remaining: how many more requests would be allowed right now (an estimate for the
            sliding counter).
        retry_after_ms: when refused, how long until a request could be allowed (0 if allowed).
        delay_ms: leaky bucket only: how long to hold an allowed request before processing it,
            so that processed requests leave at a constant rate (0 for the others).
    """

    allowed: bool
    remaining: int
    retry_after_ms: int
    delay_ms: int = 0

    def __bool__(self) -> bool:
        return self.allowed


class RateLimiter:
    """Common shape: ``limiter.hit(client_id, now_ms=None) -> Decision``.

    Args:
        r: the client.
        limit: requests allowed per window (the bucket capacity for the buckets).
        window_ms: the window length; the buckets refill/leak ``limit`` per ``window_ms``.
        prefix: keys are ``<prefix>:<client_id>``.
        clock: a function returning now in ms. ``None`` (default) uses the Redis server's clock.
    """

    LUA: str = ""
    name: str = ""

    def __init__(self, r: redis.Redis, *, limit: int, window_ms: int, prefix: str | None = None,
                 clock: Callable[[], int] | None = None) -> None:
        if limit < 1 or window_ms < 1:
            raise ValueError("limit and window_ms must be positive integers")
        self.r = r
        self.limit = int(limit)
        self.window_ms = int(window_ms)
        self.prefix = prefix or f"rl:{self.name}"
        self.clock = clock
        self._script = r.register_script(self.LUA)
        r.script_load(self.LUA)  # loaded up front: every decision is then exactly one EVALSHA

    def key(self, client_id: Any) -> str:
        return f"{self.prefix}:{client_id}"

    def _now_arg(self, now_ms: int | None) -> int | str:
        if now_ms is not None:
            return int(now_ms)
        return int(self.clock()) if self.clock is not None else ""

    def script_args(self, now_ms: int | str) -> list[Any]:
        """ARGV for the script: now, the limit, the window (a subclass may add more)."""
        return [now_ms, self.limit, self.window_ms]

    def hit(self, client_id: Any, now_ms: int | None = None) -> Decision:
        """Decide one request for ``client_id`` (one round trip)."""
        reply = self._script(keys=[self.key(client_id)], args=self.script_args(self._now_arg(now_ms)))
        return self.decision(reply)

    @staticmethod
    def decision(reply: Any) -> Decision:
        """The script's reply {allowed 0/1, remaining, retry_after_ms[, delay_ms]} as a Decision."""
        allowed, remaining, retry, *rest = (int(x) for x in reply)
        return Decision(bool(allowed), remaining, retry, rest[0] if rest else 0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(limit={self.limit}, window_ms={self.window_ms})"


class FixedWindow(RateLimiter):
    """Count requests per calendar window ``floor(now / W)``; reset at each boundary.

    Cheap and simple, with one flaw: ``limit`` requests at the end of one window plus ``limit``
    at the start of the next are all allowed, so 2 x limit pass within a few ms.
    """

    name = "fixed"
    # KEYS[1] = the client's hash, one field: {<current window id> = requests counted in it}
    # ARGV[1] = now in ms ("" = server TIME), ARGV[2] = limit, ARGV[3] = window in ms
    # Returns one integer: the requests remaining (>= 0) if allowed, -retry_after_ms if refused.
    # One command per decision (HINCRBY; refused requests are counted too). Only a window's first
    # request drops the previous window's field and sets the TTL (2 W covers the rest of it).
    LUA = NOW_MS + """
    local limit, W = tonumber(ARGV[2]), tonumber(ARGV[3])
    local win = math.floor(now / W)
    local n = redis.call('HINCRBY', KEYS[1], win, 1)
    if n == 1 then
      if redis.call('HLEN', KEYS[1]) > 1 then
        redis.call('DEL', KEYS[1])
        redis.call('HSET', KEYS[1], win, 1)
      end
      redis.call('PEXPIRE', KEYS[1], 2 * W)
    end
    if n > limit then return now - (win + 1) * W end
    return limit - n
    """

    @staticmethod
    def decision(reply: Any) -> Decision:
        """One integer: remaining if allowed (>= 0), minus the retry-after if refused (< 0)."""
        value = int(reply)
        return Decision(True, value, 0) if value >= 0 else Decision(False, 0, -value)


class SlidingLog(RateLimiter):
    """Exact: at most ``limit`` requests in every window of W ms; one sorted-set entry each."""

    name = "log"
    # KEYS[1] = the client's sorted set: member = a unique request id, score = its time in ms
    # ARGV[1] = now in ms ("" = the server's TIME), ARGV[2] = limit, ARGV[3] = window in ms,
    # ARGV[4] = a unique id for this request
    # Returns {allowed 0/1, remaining, retry_after_ms}.
    LUA = NOW_MS + """
    local limit, W = tonumber(ARGV[2]), tonumber(ARGV[3])
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - W)   -- forget what left the window
    local n = redis.call('ZCARD', KEYS[1])
    if n >= limit then                                         -- full: retry when the oldest leaves
      local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
      return {0, 0, tonumber(oldest[2]) + W - now}
    end
    redis.call('ZADD', KEYS[1], now, ARGV[4])
    redis.call('PEXPIRE', KEYS[1], W)
    return {1, limit - n - 1, 0}
    """

    def script_args(self, now_ms):
        return [now_ms, self.limit, self.window_ms, uuid.uuid4().hex]


class SlidingWindowCounter(RateLimiter):
    """Estimate the sliding log from two fixed-window counters.

    ``estimate = previous_count * (W - elapsed) / W + current_count``: the previous window's
    requests are assumed to be spread evenly, and the part of it still inside the sliding window
    is counted. O(1) memory; allows a little more than ``limit`` when that assumption is wrong.
    """

    name = "counter"

    @staticmethod
    def estimate(previous: int, current: int, elapsed_ms: int, window_ms: int) -> float:
        """The script's estimate: the previous window weighted by the part still inside, plus now's.

        ``SlidingWindowCounter.estimate(10, 0, 1, 1000)`` is 9.99 (weight 0.999): 1 ms into a
        window, 10 requests of the previous one count as 9.99, so one more passes a limit of 10.
        """
        return previous * (window_ms - elapsed_ms) / window_ms + current
    # KEYS[1] = the client's hash {w = current window id, c = its count, p = previous window's count}
    # ARGV[1] = now in ms ("" = server TIME), ARGV[2] = limit, ARGV[3] = window in ms
    # Returns {allowed 0/1, remaining (floor of limit - estimate), retry_after_ms}.
    LUA = NOW_MS + """
    local limit, W = tonumber(ARGV[2]), tonumber(ARGV[3])
    local win = math.floor(now / W)
    local s = redis.call('HMGET', KEYS[1], 'w', 'c', 'p')
    local w, c, p = tonumber(s[1]), tonumber(s[2]) or 0, tonumber(s[3]) or 0
    if w ~= win then
      if w == win - 1 then p = c else p = 0 end
      c = 0
    end
    local elapsed = now - win * W
    local est = p * (W - elapsed) / W + c
    if est >= limit then
      redis.call('HSET', KEYS[1], 'w', win, 'c', c, 'p', p)
      redis.call('PEXPIRE', KEYS[1], 2 * W)
      local retry = W - elapsed
      if c < limit and p > 0 then
        retry = math.min(retry, math.floor(W * (1 - (limit - c) / p)) - elapsed + 1)
      end
      return {0, 0, math.max(1, retry)}
    end
    c = c + 1
    redis.call('HSET', KEYS[1], 'w', win, 'c', c, 'p', p)
    redis.call('PEXPIRE', KEYS[1], 2 * W)
    return {1, math.max(0, math.floor(limit - est - 1)), 0}
    """


class TokenBucket(RateLimiter):
    """A bucket of ``limit`` tokens, refilled at ``limit`` per ``window_ms``; a request takes one.

    Allows a burst of ``limit`` at once, then ``limit`` per window on average. Tokens are kept
    as integers in units of 1/window_ms of a token (a token is ``window_ms`` units; each ms adds
    ``limit`` units), so no floating-point error accumulates.
    """

    name = "token"
    # KEYS[1] = the client's hash {u = tokens in units (1 token = W units), ts = last update ms}
    # ARGV[1] = now in ms ("" = server TIME), ARGV[2] = capacity (= limit), ARGV[3] = window in ms
    # Returns {allowed 0/1, whole tokens left, retry_after_ms}.
    LUA = NOW_MS + """
    local cap, W = tonumber(ARGV[2]), tonumber(ARGV[3])
    local full = cap * W
    local s = redis.call('HMGET', KEYS[1], 'u', 'ts')
    local u, ts = tonumber(s[1]), tonumber(s[2])
    if not u then u, ts = full, now end
    if now > ts then u = math.min(full, u + (now - ts) * cap) else now = ts end
    local allowed = 0
    if u >= W then u = u - W; allowed = 1 end
    redis.call('HSET', KEYS[1], 'u', u, 'ts', now)
    redis.call('PEXPIRE', KEYS[1], W + 1000)
    if allowed == 1 then return {1, math.floor(u / W), 0} end
    return {0, 0, math.ceil((W - u) / cap)}
    """

    def level(self, client_id: Any, now_ms: int) -> float:
        """Tokens in the bucket at ``now_ms``, without taking one (a read: for plots and tests).

        The same refill rule as the script: a client never seen has a full bucket.
        """
        u, ts = self.r.hmget(self.key(client_id), "u", "ts")
        if u is None:
            return float(self.limit)
        units = min(self.limit * self.window_ms, int(u) + max(0, now_ms - int(ts)) * self.limit)
        return units / self.window_ms


class LeakyBucket(RateLimiter):
    """A queue of capacity ``limit`` that leaks one request every ``window_ms / limit`` ms (GCRA).

    The state is one number, the *theoretical arrival time* (TAT): when the queue will be empty.
    A request is allowed if the queue has room; its ``delay_ms`` is when it leaves the queue.
    Admissions are the same as :class:`TokenBucket`'s; the difference is the promise: requests
    processed after their delay leave at a constant rate, bursts are smoothed (shaping, not
    only policing). Times are kept in units of 1/limit ms so that the interval is an integer.
    """

    name = "leaky"
    # KEYS[1] = the client's TAT, in units of 1/limit ms (a string holding an integer)
    # ARGV[1] = now in ms ("" = server TIME), ARGV[2] = capacity (= limit), ARGV[3] = window in ms
    # Returns {allowed 0/1, free places left in the queue, retry_after_ms, delay_ms}.
    LUA = NOW_MS + """
    local cap, W = tonumber(ARGV[2]), tonumber(ARGV[3])
    local nowu = now * cap
    local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
    local start = math.max(tat, nowu)
    local new_tat = start + W
    if new_tat - nowu > cap * W then
      return {0, 0, math.ceil((new_tat - nowu - cap * W) / cap), 0}
    end
    redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', W + 1000)
    return {1, math.floor((cap * W - (new_tat - nowu)) / W), 0, math.ceil((start - nowu) / cap)}
    """


ALGORITHMS: dict[str, type[RateLimiter]] = {
    "fixed window": FixedWindow,
    "sliding log": SlidingLog,
    "sliding counter": SlidingWindowCounter,
    "token bucket": TokenBucket,
    "leaky bucket": LeakyBucket,
}


class NaiveLimiter:
    """The bug, for the notebook: GET, compare, INCR, then EXPIRE on first use: four round trips.

    Two flaws: clients interleave between GET and INCR (more than ``limit`` get through), and a
    client that dies between INCR and EXPIRE leaves a counter without a TTL (the user is refused
    forever once it reaches the limit). Uses Redis expiry, so windows are in real seconds.

    Hooks: ``"after_check"`` with ``(count_read,)`` between GET and INCR; ``"before_expire"``
    with ``(count,)`` between INCR and EXPIRE (raise there to simulate a crash).
    """

    def __init__(self, r: redis.Redis, *, limit: int, window_s: int, prefix: str = "rl:naive",
                 hooks: dict[str, Callable[..., Any]] | None = None) -> None:
        self.r = r
        self.limit = limit
        self.window_s = window_s
        self.prefix = prefix
        self.hooks = hooks

    def key(self, client_id: Any) -> str:
        return f"{self.prefix}:{client_id}"

    def hit(self, client_id: Any) -> bool:
        key = self.key(client_id)
        if int(self.r.get(key) or 0) >= self.limit:
            return False
        call_hook(self.hooks, "after_check", key)
        n = self.r.incr(key)
        if n == 1:
            call_hook(self.hooks, "before_expire", n)
            self.r.expire(key, self.window_s)
        return True
