"""Cache stampede prevention: when a hot key expires, rebuild it once, not once per reader.

A key read thousands of times a second expires. Every reader that arrives before the rebuild
finishes sees a miss and runs the slow query itself::

    time 0.000  key expires
    time 0.001  reader 1: GET -> nil -> SELECT ... (200 ms)
    time 0.002  reader 2: GET -> nil -> SELECT ... (200 ms)
    ...         readers 3..100 do the same: 100 identical queries in flight at once
    time 0.201  reader 1: SET key; readers 2..100 overwrite it with the same value

Three remedies, all with the same ``get(name)`` method:

* :class:`LockedCache`: on a miss, ``SET <lock> <token> NX PX <ms>``. The winner re-checks the
  key, rebuilds and stores it; the others poll until the value appears (or the lock vanishes
  because its holder died, and they try again). The lock is released by a Lua script that
  deletes it only if it still holds the winner's token, so a holder that overran its PX cannot
  delete the next holder's lock::

      time 0  A acquires (token a, PX 5 s) and starts a slow rebuild
      time 5  the lock expires; B acquires (token b)
      time 6  A finishes: a plain DEL would delete B's lock, letting C in beside B;
              the token-checked release sees "b" != "a" and leaves it alone.

* :class:`CoalescingCache`: one in-process future per key (single flight): threads of the same
  process that miss together share one rebuild. Different processes still rebuild once each,
  which is why coalescing is combined with the lock across processes: ``lock=True`` sends each
  process's leader through :class:`LockedCache`.
* :class:`XFetchCache`: probabilistic early refresh (Vattani, Chierichetti, Lowenstein, "Optimal
  Probabilistic Cache Stampede Prevention", VLDB 2015). The value is stored with the time its
  rebuild took (``delta``) and its logical expiry; each reader refreshes early when
  :func:`xfetch_should_refresh`::

      now - delta * beta * ln(rand()) >= expiry        rand() uniform in (0, 1]

  ``-ln(rand())`` is >= 0 (an exponential random variable), so each reader advances the clock by
  a random amount proportional to ``delta * beta`` and refreshes if that lands past the expiry:
  rarely far from expiry, almost surely right before it. Writing ``+ delta*beta*ln(rand())``
  instead (a garbled form seen in the wild) subtracts that amount: the check then fires only
  *after* expiry, i.e. never early, and every expiry is a stampede again.
* :func:`warm` with ``jitter``: keys loaded together with one TTL expire together; spread them.

The module keeps only the patterns; the naive cache, the garbled check, the stampede harness,
worker processes and simulations are in ``redistutor/scenarios/cache_stampede_prevention.py``.

Notebook: notebooks/04-cache-stampede-prevention.ipynb
Redis: https://redis.io/commands/set (NX, PX) · https://redis.io/docs/latest/develop/use/patterns/
"""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import redis

from ..race import call_hook
from ..stats import Stats

Loader = Callable[[str], str]


@dataclass
class StampedeStats(Stats):
    hits: int = 0
    misses: int = 0  # readers that found no usable value
    rebuilds: int = 0  # calls of the loader (the slow query)
    waits: int = 0  # times a reader started waiting for someone else's rebuild
    early_refreshes: int = 0  # XFetch: rebuilds started before the logical expiry


class CacheBase:
    """Shared plumbing: key names, stats, hooks. ``loader(name) -> str`` is the slow query.

    Hooks: ``after_miss(name)``: a reader found the key missing (before it does anything else).
    """

    strategy = "base"

    def __init__(self, r: redis.Redis, loader: Loader, *, prefix: str = "hot", ttl: float = 60.0,
                 hooks: dict[str, Callable[..., Any]] | None = None) -> None:
        self.r = r
        self.loader = loader
        self.prefix = prefix
        self.ttl = ttl
        self.hooks = hooks
        self.stats = StampedeStats()

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def cached(self, name: str) -> str | None:
        """The cached value (a hit), or None after counting the miss and firing ``after_miss``."""
        value = self.r.get(self.key(name))
        if value is not None:
            self.stats.add("hits")
            return value
        self.stats.add("misses")
        call_hook(self.hooks, "after_miss", name)
        return None

    def load(self, name: str) -> str:
        """Run the loader (the slow query), counted as a rebuild."""
        self.stats.add("rebuilds")
        return self.loader(name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(prefix={self.prefix!r}, ttl={self.ttl:g}s)"


class LockedCacheBase(CacheBase):
    """The plumbing around :class:`LockedCache`: lock key, release, waiting, rebuild-and-store.

    Args:
        lock_ttl: seconds before an abandoned lock (holder crashed) frees itself. Make it longer
            than a rebuild takes, or a slow holder loses its lock while still rebuilding.
        poll: seconds between re-reads while waiting for another reader's rebuild.
        wait_timeout: give up waiting after this long (raises TimeoutError).
        release: "token" (Lua compare-and-delete, correct) or "del" (plain DEL: the broken
            variant, kept so the notebook can show what it breaks).
        hooks: ``after_miss(name)``; ``before_rebuild(name, token)``: the lock is held and the
            value is still missing; ``before_release(name, token)``: rebuilt and stored.
    """

    strategy = "lock"
    LUA_RELEASE: str

    def __init__(self, r: redis.Redis, loader: Loader, *, prefix: str = "hot", ttl: float = 60.0,
                 lock_ttl: float = 5.0, poll: float = 0.01, wait_timeout: float = 30.0,
                 release: str = "token", hooks: dict[str, Callable[..., Any]] | None = None) -> None:
        super().__init__(r, loader, prefix=prefix, ttl=ttl, hooks=hooks)
        if release not in ("token", "del"):
            raise ValueError("release must be 'token' or 'del'")
        self.lock_ttl = lock_ttl
        self.poll = poll
        self.wait_timeout = wait_timeout
        self.release_mode = release
        self._release = r.register_script(self.LUA_RELEASE)
        self.foreign_releases = 0  # releases that found someone else's token (and left it)

    def lock_key(self, name: str) -> str:
        return f"{self.prefix}:lock:{name}"

    def rebuild(self, name: str, token: str) -> str:
        """Under the lock: run the loader and store the value with its TTL (hooks around it)."""
        call_hook(self.hooks, "before_rebuild", name, token)
        value = self.load(name)
        self.r.set(self.key(name), value, px=int(self.ttl * 1000))
        call_hook(self.hooks, "before_release", name, token)
        return value

    def release(self, name: str, token: str) -> bool:
        """Release the lock if it still holds ``token``. Returns whether it was ours."""
        if self.release_mode == "del":
            self.r.delete(self.lock_key(name))  # broken on purpose: may delete another's lock
            return True
        ours = bool(self._release(keys=[self.lock_key(name)], args=[token]))
        if not ours:
            self.foreign_releases += 1
        return ours

    def wait_for_value(self, name: str) -> str | None:
        """Someone else holds the lock: re-read until the value appears (returned), or until the
        lock is gone without a value (its holder died or gave up: returns None, try again)."""
        self.stats.add("waits")
        key, lock = self.key(name), self.lock_key(name)
        deadline = time.monotonic() + self.wait_timeout
        while True:
            with self.r.pipeline(transaction=False) as p:
                value, locked = p.get(key).exists(lock).execute()
            if value is not None or not locked:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"no value for {key!r} after {self.wait_timeout:g} s")
            time.sleep(self.poll)


class LockedCache(LockedCacheBase):
    """One rebuild per expiry across all clients: ``SET lock NX PX``, the others wait and re-read."""

    # KEYS[1] = lock key, ARGV[1] = the token this client wrote when it acquired the lock.
    # Returns 1 if the lock was ours and is now deleted; 0 if it expired and someone else (or
    # nobody) holds it now: then we must not touch it.
    LUA_RELEASE = """
    if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
    return 0
    """

    def get(self, name: str) -> str:
        value = self.cached(name)                         # GET: a hit, or a counted miss
        while value is None:
            token = uuid.uuid4().hex
            if self.r.set(self.lock_key(name), token, nx=True, px=int(self.lock_ttl * 1000)):
                try:
                    value = self.r.get(self.key(name))    # re-check: stored while we raced?
                    if value is None:
                        value = self.rebuild(name, token)  # loader, then SET key value PX ttl
                finally:
                    self.release(name, token)             # LUA_RELEASE: only if it is still ours
            else:
                value = self.wait_for_value(name)         # None if the lock vanished: try again
        return value


class CoalescingCache(CacheBase):
    """Single flight inside one process: concurrent misses of a key share one in-process rebuild.

    The first thread to miss becomes the leader and registers a Future; the others wait on it.
    Across processes this gives one rebuild *per process* (a process cannot see another's
    futures). With ``lock=True`` the leader does not rebuild directly but goes through a
    :class:`LockedCache` on the same keys: one leader per process asks Redis, one rebuild in total.

    Hooks: ``after_miss(name)``; ``before_rebuild(name)``: the leader is about to rebuild (or, with
    ``lock=True``, to compete for the Redis lock).
    """

    strategy = "coalesce"

    def __init__(self, r: redis.Redis, loader: Loader, *, prefix: str = "hot", ttl: float = 60.0,
                 wait_timeout: float = 30.0, lock: bool = False, lock_ttl: float = 5.0,
                 hooks: dict[str, Callable[..., Any]] | None = None) -> None:
        super().__init__(r, loader, prefix=prefix, ttl=ttl, hooks=hooks)
        self.wait_timeout = wait_timeout
        self._inflight: dict[str, Future] = {}
        self._mutex = threading.Lock()
        # The Redis lock behind the leaders; its loader is our load(), so self.stats counts.
        self.locked = (LockedCache(r, self.load, prefix=prefix, ttl=ttl, lock_ttl=lock_ttl,
                                   wait_timeout=wait_timeout) if lock else None)
        if lock:
            self.strategy = "coalesce+lock"

    def _fill(self, name: str) -> str:
        if self.locked is not None:
            return self.locked.get(name)  # one leader per process competes: SET NX PX
        value = self.load(name)
        self.r.set(self.key(name), value, px=int(self.ttl * 1000))
        return value

    def get(self, name: str) -> str:
        value = self.cached(name)
        if value is not None:
            return value
        with self._mutex:
            fut = self._inflight.get(name)
            leader = fut is None
            if leader:
                fut = self._inflight[name] = Future()
        if not leader:
            self.stats.add("waits")
            return fut.result(timeout=self.wait_timeout)
        try:
            value = self.r.get(self.key(name))  # double-check: a previous leader may have just stored it
            if value is None:
                call_hook(self.hooks, "before_rebuild", name)
                value = self._fill(name)
            fut.set_result(value)
            return value
        except BaseException as exc:
            fut.set_exception(exc)  # the waiters see the leader's error instead of hanging
            raise
        finally:
            with self._mutex:
                self._inflight.pop(name, None)


# -- XFetch -----------------------------------------------------------------------------------


def xfetch_should_refresh(now: float, delta: float, beta: float, expiry: float, rand: float) -> bool:
    """XFetch: refresh early if a random jump forward, delta * beta * -ln(rand), passes the expiry."""
    return now - delta * beta * math.log(rand) >= expiry     # rand uniform in (0, 1]: ln(rand) <= 0


def refresh_probability(time_to_expiry: float, delta: float, beta: float) -> float:
    """P(one reader refreshes) at ``time_to_expiry`` before expiry: ``exp(-tte / (delta*beta))``."""
    if time_to_expiry <= 0:
        return 1.0
    if delta * beta <= 0:
        return 0.0
    return math.exp(-time_to_expiry / (delta * beta))


class XFetchCache(CacheBase):
    """Probabilistic early refresh: one lucky reader rebuilds shortly before expiry.

    The key is a hash ``{v, delta, exp}``: the value, how long its rebuild took (seconds) and its
    logical expiry (on ``clock``'s time line). The physical TTL (``physical_ttl``, real seconds) is
    longer, so the hash outlives its logical expiry and keeps ``delta`` for the next rebuild.

    Args:
        beta: > 1 favours earlier refreshes, < 1 later ones; 0 disables early refresh.
        clock: ``() -> seconds`` (default ``time.monotonic``); inject a simulated clock for tests.
        rng: ``random.Random``; seed it for reproducible decisions.
        check: the refresh test (default :func:`xfetch_should_refresh`; the notebook swaps in
            a garbled sign to show what it breaks).
        refresh_lock: also take ``SET <lock> NX PX`` before an *early* refresh, so readers that
            draw "refresh" while another refresh is in flight keep serving the current value.
        hooks: ``after_miss(name)``.
    """

    strategy = "xfetch"

    def __init__(self, r: redis.Redis, loader: Loader, *, prefix: str = "hot", ttl: float = 60.0,
                 beta: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None, physical_ttl: float = 3600.0,
                 check: Callable[..., bool] = xfetch_should_refresh, refresh_lock: bool = False,
                 lock_ttl: float = 5.0, hooks: dict[str, Callable[..., Any]] | None = None) -> None:
        super().__init__(r, loader, prefix=prefix, ttl=ttl, hooks=hooks)
        self.beta = beta
        self.clock = clock
        self.rng = rng or random.Random()
        self.physical_ttl = physical_ttl
        self.check = check
        self.refresh_lock = refresh_lock
        self.lock_ttl = lock_ttl
        self._release = r.register_script(LockedCache.LUA_RELEASE)

    def lock_key(self, name: str) -> str:
        return f"{self.prefix}:refreshing:{name}"

    def rand(self) -> float:
        """Uniform in (0, 1]: ``random()`` is in [0, 1), and ln(0) is undefined."""
        return 1.0 - self.rng.random()

    def read(self, name: str) -> tuple[str, float, float] | None:
        """``(value, delta, expiry)`` or None when the hash is absent."""
        v, delta, exp = self.r.hmget(self.key(name), ["v", "delta", "exp"])
        if v is None:
            return None
        return v, float(delta), float(exp)

    def should_refresh(self, now: float, delta: float, expiry: float) -> bool:
        return self.check(now, delta, self.beta, expiry, self.rand())

    def store(self, name: str, value: str, delta: float, expiry: float) -> None:
        key = self.key(name)
        with self.r.pipeline() as p:  # MULTI/EXEC: readers never see half a hash
            p.hset(key, mapping={"v": value, "delta": repr(delta), "exp": repr(expiry)})
            p.pexpire(key, int(self.physical_ttl * 1000))
            p.execute()

    def try_lock(self, name: str) -> str | None:
        token = uuid.uuid4().hex
        if self.r.set(self.lock_key(name), token, nx=True, px=int(self.lock_ttl * 1000)):
            return token
        return None

    def unlock(self, name: str, token: str) -> None:
        self._release(keys=[self.lock_key(name)], args=[token])

    def decide(self, name: str, now: float) -> tuple[str, tuple[str, float, float] | None]:
        """What a reader at ``now`` does: ("hit" | "early" | "miss", what it read)."""
        cur = self.read(name)
        if cur is None or now >= cur[2]:
            return "miss", cur  # absent or logically expired: this reader must wait for a rebuild
        if self.should_refresh(now, cur[1], cur[2]):
            return "early", cur
        return "hit", cur

    def begin(self, name: str, now: float) -> tuple[str, tuple[str, float, float] | None, str | None]:
        """:meth:`decide`, then the refresh lock: ("hit" | "early" | "miss", what it read, the
        lock's token if this reader took it). A reader that draws an early refresh while another
        holds the lock serves the current value: a "hit"."""
        kind, cur = self.decide(name, now)
        token = None
        if kind == "early" and self.refresh_lock:
            token = self.try_lock(name)
            if token is None:  # someone else is refreshing: the current value is still good
                kind = "hit"
        return kind, cur, token

    def get(self, name: str, now: float | None = None) -> str:
        """The value; rebuilt synchronously on a miss or when this reader draws an early refresh."""
        now = self.clock() if now is None else now
        kind, cur, token = self.begin(name, now)
        if kind == "hit":
            self.stats.add("hits")
            return cur[0]
        if kind == "early":
            self.stats.add("early_refreshes")
        else:
            self.stats.add("misses")
            call_hook(self.hooks, "after_miss", name)
        try:
            start = self.clock()
            value = self.load(name)
            done = self.clock()
            self.store(name, value, done - start, done + self.ttl)
            return value
        finally:
            if token:
                self.unlock(name, token)


# -- many keys expiring together -------------------------------------------------------------


def warm(r: redis.Redis, items: dict[str, str], *, ttl: float, jitter: float = 0.0,
         rng: random.Random | None = None) -> None:
    """Batch-load ``items`` (key -> value) with ``SET PX``, each TTL spread by ±``jitter``.

    Keys loaded together with one TTL expire together: a stampede across keys even if each key
    alone is cold. ``jitter=0.1`` spreads a 60 s TTL over 54..66 s.
    """
    if not 0 <= jitter < 1:
        raise ValueError("jitter is a fraction of the TTL: 0 <= jitter < 1")
    rng = rng or random.Random()
    with r.pipeline(transaction=False) as p:
        for key, value in items.items():
            p.set(key, value, px=max(1, int(ttl * (1 + rng.uniform(-jitter, jitter)) * 1000)))
        p.execute()
