"""Cache stampede prevention: when a hot key expires, rebuild it once, not once per reader.

A key read thousands of times a second expires. Every reader that arrives before the rebuild
finishes sees a miss and runs the slow query itself::

    time 0.000  key expires
    time 0.001  reader 1: GET -> nil -> SELECT ... (200 ms)
    time 0.002  reader 2: GET -> nil -> SELECT ... (200 ms)
    ...         readers 3..100 do the same: 100 identical queries in flight at once
    time 0.201  reader 1: SET key; readers 2..100 overwrite it with the same value

Four read paths, all with the same ``get(name)`` method:

* :class:`NaiveCache`: GET, on a miss rebuild and SET. One rebuild per concurrent reader.
* :class:`LockedCache`: on a miss, ``SET <lock> <token> NX PX <ms>``. The winner rebuilds; the
  others poll until the value appears (or the lock vanishes because its holder died, and they
  try again). The lock is released by a Lua script that deletes it only if it still holds the
  winner's token, so a holder that overran its PX cannot delete the next holder's lock::

      time 0  A acquires (token a, PX 5 s) and starts a slow rebuild
      time 5  the lock expires; B acquires (token b)
      time 6  A finishes: a plain DEL would delete B's lock, letting C in beside B;
              the token-checked release sees "b" != "a" and leaves it alone.

* :class:`CoalescingCache`: one in-process future per key (single flight): threads of the same
  process that miss together share one rebuild. Different processes still rebuild once each,
  which is why coalescing is combined with the lock across processes: ``lock=True`` sends each
  process's leader through :class:`LockedCache`. :func:`process_stampede` measures both with
  real OS processes, counting rebuilds in the shared SQLite file.
* :class:`XFetchCache`: probabilistic early refresh (Vattani, Chierichetti, Lowenstein, "Optimal
  Probabilistic Cache Stampede Prevention", VLDB 2015). The value is stored with the time its
  rebuild took (``delta``) and its logical expiry; each reader refreshes early when::

      now - delta * beta * ln(rand()) >= expiry        rand() uniform in (0, 1]

  ``-ln(rand())`` is >= 0 (an exponential random variable), so each reader advances the clock by
  a random amount proportional to ``delta * beta`` and refreshes if that lands past the expiry:
  rarely far from expiry, almost surely right before it. Writing ``+ delta*beta*ln(rand())``
  instead (a garbled form seen in the wild) subtracts that amount: the check then fires only
  *after* expiry, i.e. never early, and every expiry is a stampede again.

Notebook: notebooks/04-cache-stampede-prevention.ipynb
Redis: https://redis.io/commands/set (NX, PX) · https://redis.io/docs/latest/develop/use/patterns/
"""

from __future__ import annotations

import heapq
import json
import math
import os
import random
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import redis

from ..race import call_hook
from ..stats import Stats

Loader = Callable[[str], str]


@dataclass
class StampedeStats(Stats):
    hits: int = 0
    misses: int = 0  # readers that found no usable value
    rebuilds: int = 0  # calls of the loader (the slow query)
    waits: int = 0  # readers that waited for someone else's rebuild
    early_refreshes: int = 0  # XFetch: rebuilds started before the logical expiry


class _Base:
    """Shared plumbing: key names, stats, hooks. ``loader(name) -> str`` is the slow query."""

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

    def _cached(self, name: str) -> str | None:
        """The cached value (a hit), or None after counting the miss and firing ``after_miss``."""
        value = self.r.get(self.key(name))
        if value is not None:
            self.stats.add("hits")
            return value
        self.stats.add("misses")
        call_hook(self.hooks, "after_miss", name)
        return None

    def _rebuild(self, name: str) -> str:
        self.stats.add("rebuilds")
        return self.loader(name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(prefix={self.prefix!r}, ttl={self.ttl:g}s)"


class NaiveCache(_Base):
    """GET; on a miss, rebuild and SET with a TTL. Every concurrent miss rebuilds.

    Hooks: ``after_miss(name)``: a reader found the key missing (before it rebuilds).
    """

    strategy = "naive"

    def get(self, name: str) -> str:
        value = self._cached(name)
        if value is not None:
            return value
        value = self._rebuild(name)
        self.r.set(self.key(name), value, px=int(self.ttl * 1000))
        return value


class LockedCache(_Base):
    """One rebuild per expiry across all clients: ``SET lock NX PX``, the others wait and re-read.

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

    # KEYS[1] = lock key
    # ARGV[1] = the token this client wrote when it acquired the lock
    # Returns 1 if the lock was ours and is now deleted; 0 if it expired and someone else (or
    # nobody) holds it now: then we must not touch it.
    LUA_RELEASE = """
    if redis.call('GET', KEYS[1]) == ARGV[1] then
      return redis.call('DEL', KEYS[1])
    end
    return 0
    """

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

    def get(self, name: str) -> str:
        value = self._cached(name)
        if value is not None:
            return value
        key, lock = self.key(name), self.lock_key(name)
        deadline = time.monotonic() + self.wait_timeout
        waited = False
        while True:
            token = uuid.uuid4().hex
            if self.r.set(lock, token, nx=True, px=int(self.lock_ttl * 1000)):
                try:
                    # Double-check: the previous holder may have stored the value between our
                    # GET and our SET NX. Without this, a late reader rebuilds a second time.
                    value = self.r.get(key)
                    if value is None:
                        call_hook(self.hooks, "before_rebuild", name, token)
                        value = self._rebuild(name)
                        self.r.set(key, value, px=int(self.ttl * 1000))
                        call_hook(self.hooks, "before_release", name, token)
                    return value
                finally:
                    self.release(name, token)
            if not waited:
                waited = True
                self.stats.add("waits")
            # Someone else is rebuilding: re-read until the value appears, or until the lock is
            # gone without a value (its holder died or gave up): then try to take it ourselves.
            while True:
                with self.r.pipeline(transaction=False) as p:
                    value, locked = p.get(key).exists(lock).execute()
                if value is not None:
                    return value
                if not locked:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no value for {key!r} after {self.wait_timeout:g} s")
                time.sleep(self.poll)

    def release(self, name: str, token: str) -> bool:
        """Release the lock if it still holds ``token``. Returns whether it was ours."""
        if self.release_mode == "del":
            self.r.delete(self.lock_key(name))  # broken on purpose: may delete another's lock
            return True
        ours = bool(self._release(keys=[self.lock_key(name)], args=[token]))
        if not ours:
            self.foreign_releases += 1
        return ours


class CoalescingCache(_Base):
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
        # The Redis lock behind the leaders; its loader is our _rebuild, so self.stats counts.
        self.locked = (LockedCache(r, self._rebuild, prefix=prefix, ttl=ttl, lock_ttl=lock_ttl,
                                   wait_timeout=wait_timeout) if lock else None)
        if lock:
            self.strategy = "coalesce+lock"

    def _fill(self, name: str) -> str:
        if self.locked is not None:
            return self.locked.get(name)  # one leader per process competes: SET NX PX
        value = self._rebuild(name)
        self.r.set(self.key(name), value, px=int(self.ttl * 1000))
        return value

    def get(self, name: str) -> str:
        value = self._cached(name)
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


def redis_barrier(r: redis.Redis, key: str, parties: int, *, timeout: float = 30.0,
                  poll: float = 0.005) -> int:
    """Wait until ``parties`` callers, in any process, have arrived at ``key`` (INCR, then poll).

    Returns this caller's arrival number. The parent deletes ``key`` before a run.
    """
    n = r.incr(key)
    deadline = time.monotonic() + timeout
    while int(r.get(key) or 0) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{key}: {r.get(key)} of {parties} arrived after {timeout:g} s")
        time.sleep(poll)
    return n


# -- across processes ---------------------------------------------------------------------------

REBUILD_LOG = "stampede_rebuilds"  # a SQLite table: one row per rebuild, from whichever process


def process_stampede_worker(ctx: Any, name: str, *, prefix: str, db_path: str, query: str,
                            threads: int, processes: int, lock: bool, latency: float,
                            barrier: str, timeout: float = 30.0) -> None:
    """One application process (run by :class:`redistutor.lab.Workers`): ``threads`` readers
    behind one :class:`CoalescingCache`, all missing the expired key together.

    Determinism: the process's readers meet at a ``threading.Barrier`` after missing (so they all
    join one flight), and the process's leader then meets the other processes' leaders at a
    :func:`redis_barrier` before rebuilding. Every rebuild runs ``query`` on the shared SQLite
    file and appends a row to :data:`REBUILD_LOG` there, so the parent counts rebuilds from the
    database itself. Records one "done" event with this process's outcome (JSON).
    """
    from ..db import Database

    r = ctx.client(0)
    db = Database(path=db_path, latency=latency, write_latency=0.0)

    def loader(n: str) -> str:
        rows = db.execute(query)
        db.execute(f"INSERT INTO {REBUILD_LOG} (worker, pid) VALUES (?, ?)", (ctx.name, os.getpid()))
        ctx.record("rebuild", n)
        return json.dumps(rows)

    all_missed = threading.Barrier(threads, timeout=timeout)
    cache = CoalescingCache(r, loader, prefix=prefix, lock=lock, wait_timeout=timeout, hooks={
        "after_miss": lambda *_: all_missed.wait(),
        "before_rebuild": lambda *_: redis_barrier(r, barrier, processes, timeout=timeout)})
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            values = list(pool.map(lambda _: cache.get(name), range(threads), timeout=timeout))
    finally:
        db.close()
    ctx.record("done", json.dumps({"values": sorted(set(values)), "readers": len(values),
                                   "waits": cache.stats.waits, "rebuilds": cache.stats.rebuilds}))


@dataclass
class ProcessStampedeResult:
    strategy: str
    processes: int
    readers: int  # in total
    rebuilds_by_process: dict[str, int]  # from the SQLite rebuild log
    values: set[str]
    waits: int  # readers that waited on their process's leader
    exitcodes: dict[str, int | None]

    @property
    def rebuilds(self) -> int:
        return sum(self.rebuilds_by_process.values())


def process_stampede(server: Any, db: Any, name: str, query: str, *, prefix: str,
                     processes: int = 4, threads: int = 25, lock: bool = False,
                     timeout: float = 30.0) -> ProcessStampedeResult:
    """Expire ``name`` and stampede it from ``processes`` real OS processes x ``threads`` readers.

    ``server`` is a server or lab node (host/port/password and ``client()``); ``db`` a :class:`~redistutor.db.Database`
    whose file the workers open (its latency is theirs). Rebuilds are counted from the rows the
    workers wrote to :data:`REBUILD_LOG` in that file.
    """
    from ..lab import run_workers

    db.execute(f"CREATE TABLE IF NOT EXISTS {REBUILD_LOG} (worker TEXT NOT NULL, pid INTEGER NOT NULL)")
    db.execute(f"DELETE FROM {REBUILD_LOG}")
    barrier = f"{prefix}:barrier:{name}"
    r = server.client()
    r.delete(f"{prefix}:{name}", f"{prefix}:lock:{name}", barrier)  # the expiry event
    try:
        workers = run_workers(
            process_stampede_worker, processes, nodes=[server], timeout=timeout, args=(name,),
            kwargs=dict(prefix=prefix, db_path=str(db.path), query=query, threads=threads,
                        processes=processes, lock=lock, latency=db.latency, barrier=barrier,
                        timeout=timeout))
    finally:
        r.delete(barrier)
        r.close()
    done = [json.loads(ev.detail) for ev in workers.log.events if ev.kind == "done"]
    counted = dict(db.execute(f"SELECT worker, COUNT(*) FROM {REBUILD_LOG} GROUP BY worker"))
    return ProcessStampedeResult(
        "coalesce+lock" if lock else "coalesce", processes, sum(d["readers"] for d in done),
        {w: counted.get(w, 0) for w in workers.names}, {v for d in done for v in d["values"]},
        sum(d["waits"] for d in done), workers.exitcodes)


def per_bucket(times: list[float], width: float = 0.1) -> list[int]:
    """Count ``times`` (seconds) per ``width``-second slot, from the earliest to the latest."""
    if not times:
        return []
    first = min(times)
    out = [0] * (int((max(times) - first) / width) + 1)
    for t in times:
        out[int((t - first) / width)] += 1
    return out


# -- XFetch -----------------------------------------------------------------------------------


def xfetch_should_refresh(now: float, delta: float, beta: float, expiry: float, rand: float) -> bool:
    """The XFetch check: ``now - delta*beta*ln(rand) >= expiry``, ``rand`` in (0, 1]."""
    return now - delta * beta * math.log(rand) >= expiry


def garbled_should_refresh(now: float, delta: float, beta: float, expiry: float, rand: float) -> bool:
    """The garbled sign: ``now + delta*beta*ln(rand) >= expiry``. Fires only after expiry."""
    return now + delta * beta * math.log(rand) >= expiry


def refresh_probability(time_to_expiry: float, delta: float, beta: float) -> float:
    """P(one reader refreshes) at ``time_to_expiry`` before expiry: ``exp(-tte / (delta*beta))``."""
    if time_to_expiry <= 0:
        return 1.0
    if delta * beta <= 0:
        return 0.0
    return math.exp(-time_to_expiry / (delta * beta))


class XFetchCache(_Base):
    """Probabilistic early refresh: one lucky reader rebuilds shortly before expiry.

    The key is a hash ``{v, delta, exp}``: the value, how long its rebuild took (seconds) and its
    logical expiry (on ``clock``'s time line). The physical TTL (``physical_ttl``, real seconds) is
    longer, so the hash outlives its logical expiry and keeps ``delta`` for the next rebuild.

    Args:
        beta: > 1 favours earlier refreshes, < 1 later ones; 0 disables early refresh.
        clock: ``() -> seconds`` (default ``time.monotonic``); inject a simulated clock for tests.
        rng: ``random.Random``; seed it for reproducible decisions.
        check: the refresh test (default :func:`xfetch_should_refresh`; the notebook swaps in
            :func:`garbled_should_refresh` to show the broken sign).
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

    def get(self, name: str, now: float | None = None) -> str:
        """The value; rebuilt synchronously on a miss or when this reader draws an early refresh."""
        now = self.clock() if now is None else now
        kind, cur = self.decide(name, now)
        if kind == "hit":
            self.stats.add("hits")
            return cur[0]
        token = None
        if kind == "early":
            if self.refresh_lock:
                token = self.try_lock(name)
                if token is None:  # someone else is refreshing: the current value is still good
                    self.stats.add("hits")
                    return cur[0]
            self.stats.add("early_refreshes")
        else:
            self.stats.add("misses")
            call_hook(self.hooks, "after_miss", name)
        try:
            start = self.clock()
            value = self._rebuild(name)
            done = self.clock()
            self.store(name, value, done - start, done + self.ttl)
            return value
        finally:
            if token:
                self.unlock(name, token)


@dataclass
class XFetchRun:
    """What :func:`simulate_xfetch` observed. Times are on the simulated clock."""

    requests: int
    rebuilds: int  # after the cold start
    misses: int  # readers that found the value logically expired and had to wait
    refreshes: list[tuple[float, float]]  # (time, lead = expiry - time) of each early rebuild
    per_generation: list[int]  # rebuilds triggered while each stored value was current
    starts: list[float] = field(default_factory=list)  # start time of every counted rebuild

    def per_bucket(self, width: float = 0.1) -> list[int]:
        """DB calls started per ``width`` seconds, from the first to the last."""
        return per_bucket(self.starts, width)

    @property
    def leads(self) -> list[float]:
        return [lead for _, lead in self.refreshes]


def simulate_xfetch(cache: XFetchCache, name: str, *, periods: int = 10, rate: float = 100.0,
                    delta: float = 0.2, start: float = 1000.0) -> XFetchRun:
    """Steady load on one key, on a simulated clock, against the real Redis.

    Readers arrive every ``1/rate`` simulated seconds for ``periods * cache.ttl`` seconds. A
    rebuild started at ``t`` reaches Redis at ``t + delta``; readers arriving in between still
    read the old hash and make their own decision, as concurrent readers would. The first
    (cold) fill is not counted. Deterministic for a seeded ``cache.rng``.
    """
    cache.r.delete(cache.key(name), cache.lock_key(name))
    pending: list[tuple[float, int, str, float, str | None]] = []  # (done_at, seq, value, exp, token)
    seq = 0
    n = int(round(periods * cache.ttl * rate))
    rebuilds = misses = 0
    refreshes: list[tuple[float, float]] = []
    starts: list[float] = []
    generations: dict[float, int] = {}
    cold = True
    for i in range(n):
        now = start + i / rate
        while pending and pending[0][0] <= now:
            done_at, _, value, exp, token = heapq.heappop(pending)
            cache.store(name, value, delta, exp)
            if token:
                cache.unlock(name, token)
        kind, cur = cache.decide(name, now)
        if kind == "hit":
            continue
        token = None
        if kind == "early" and cache.refresh_lock:
            token = cache.try_lock(name)
            if token is None:
                continue  # another refresh is in flight; serve the current value
        if cur is None and cold:
            if pending:
                continue  # the cold fill is on its way (keep the warm-up out of the counts)
        else:
            cold = False
            rebuilds += 1
            starts.append(now)
            generations[cur[2] if cur else -1.0] = generations.get(cur[2] if cur else -1.0, 0) + 1
            if kind == "miss":
                misses += 1
            else:
                refreshes.append((now, cur[2] - now))
        value = cache._rebuild(name)
        seq += 1
        heapq.heappush(pending, (now + delta, seq, value, now + delta + cache.ttl, token))
    return XFetchRun(n, rebuilds, misses, refreshes, [generations[k] for k in sorted(generations)],
                     starts)


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


def expiries_per_bucket(r: redis.Redis, keys: list[str], width: float = 0.1) -> list[int]:
    """How many of ``keys`` expire in each ``width``-second slot, from the first expiry on
    (read with PTTL in one pipeline; keys without a TTL are left out)."""
    with r.pipeline(transaction=False) as p:
        for key in keys:
            p.pttl(key)
        pttls = [ms / 1000 for ms in p.execute() if ms >= 0]
    return per_bucket(pttls, width)


# -- the stampede harness -----------------------------------------------------------------------


@dataclass
class StampedeResult:
    strategy: str
    readers: int
    rebuilds: int
    values: set[str]
    latencies: list[float]  # seconds, one per reader

    @property
    def p50_ms(self) -> float:
        s = sorted(self.latencies)
        return s[len(s) // 2] * 1000

    @property
    def max_ms(self) -> float:
        return max(self.latencies) * 1000


def stampede(cache: NaiveCache | LockedCache | CoalescingCache, name: str, *, readers: int = 100,
             timeout: float = 30.0) -> StampedeResult:
    """Expire ``name`` and let ``readers`` threads read it at once. Deterministic worst case.

    The readers start together (a Barrier), and a second Barrier in the ``after_miss`` hook holds
    every reader that missed until all ``readers`` have missed: so every GET happens before any
    rebuild can finish, as when the rebuild is slow compared with the arrival of readers.
    """
    cache.r.delete(cache.key(name))  # the expiry event
    go = threading.Barrier(readers, timeout=timeout)
    all_missed = threading.Barrier(readers, timeout=timeout)
    saved = cache.hooks
    cache.hooks = {**(saved or {}), "after_miss": lambda *_: all_missed.wait()}
    before = cache.stats.rebuilds

    def reader() -> tuple[str, float]:
        go.wait()
        t0 = time.perf_counter()
        value = cache.get(name)
        return value, time.perf_counter() - t0

    try:
        with ThreadPoolExecutor(max_workers=readers, thread_name_prefix="reader") as pool:
            results = [f.result(timeout=timeout) for f in [pool.submit(reader) for _ in range(readers)]]
    finally:
        cache.hooks = saved
    return StampedeResult(cache.strategy, readers, cache.stats.rebuilds - before,
                          {v for v, _ in results}, [t for _, t in results])
