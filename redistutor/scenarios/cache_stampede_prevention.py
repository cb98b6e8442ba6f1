"""Scenarios for notebooks/04-cache-stampede-prevention.ipynb: stampedes, faults, simulations.

The patterns are in :mod:`redistutor.patterns.cache_stampede_prevention`. Everything here is
orchestration the notebook calls in one line, returning plain data:

* :class:`NaiveCache` and :func:`garbled_should_refresh`: the broken variants, kept to be broken.
* :func:`stampede`: N reader threads that all miss an expired key together (barriers), counting
  rebuilds exactly; :func:`process_stampede`: the same from real OS processes (``lab.Workers``).
* :func:`pause_mid_rebuild`, :func:`kill_holder`, :func:`overrun`: the lock's race and faults.
* :func:`simulate_xfetch`: XFetch under steady load on a simulated clock against the real Redis.
* ``*_chart`` functions: the notebook's charts, via :mod:`redistutor.charts`, each with a
  one-line summary computed from the measurement.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import random
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis

from ..patterns.cache_stampede_prevention import (
    CacheBase,
    CoalescingCache,
    LockedCache,
    XFetchCache,
    refresh_probability,
)
from ..race import PausePoint, run_in_thread


class NaiveCache(CacheBase):
    """GET; on a miss, rebuild and SET with a TTL. Every concurrent miss rebuilds (the naive way).

    Hooks: ``after_miss(name)``: a reader found the key missing (before it rebuilds).
    """

    strategy = "naive"

    def get(self, name: str) -> str:
        value = self.cached(name)
        if value is not None:
            return value
        value = self.load(name)
        self.r.set(self.key(name), value, px=int(self.ttl * 1000))
        return value


def garbled_should_refresh(now: float, delta: float, beta: float, expiry: float, rand: float) -> bool:
    """The garbled sign: ``now + delta*beta*ln(rand) >= expiry``. Fires only after expiry."""
    return now + delta * beta * math.log(rand) >= expiry


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
                            threads: int, processes: int, locks: list[bool], latency: float,
                            barrier: str, timeout: float = 30.0) -> None:
    """One application process (run by :class:`redistutor.lab.Workers`): for each entry of
    ``locks``, a stampede of ``threads`` readers behind one :class:`CoalescingCache` (``lock=``
    that entry), all missing the expired key together.

    Determinism: before each round the processes meet at a :func:`redis_barrier`; worker 1
    deletes the key (the expiry) before the others may read. The process's readers meet at a
    ``threading.Barrier`` after missing (so they all join one flight), and the process's leader
    then meets the other processes' leaders at a :func:`redis_barrier` before rebuilding. Every
    rebuild runs ``query`` on the shared SQLite file and appends a row (worker, pid, strategy)
    to :data:`REBUILD_LOG` there, so the parent counts rebuilds from the database itself.
    Records one "done" event per round with this process's outcome (JSON).
    """
    from ..db import Database

    r = ctx.client(0)
    db = Database(path=db_path, latency=latency, write_latency=0.0)
    try:
        for rnd, lock in enumerate(locks):
            strategy = "coalesce+lock" if lock else "coalesce"
            redis_barrier(r, f"{barrier}:ready:{rnd}", processes, timeout=timeout)
            if ctx.index == 1:  # the expiry event, seen by every process of this round
                r.delete(f"{prefix}:{name}", f"{prefix}:lock:{name}")
            redis_barrier(r, f"{barrier}:go:{rnd}", processes, timeout=timeout)

            def loader(n: str, strategy: str = strategy) -> str:
                rows = db.execute(query)
                db.execute(f"INSERT INTO {REBUILD_LOG} (worker, pid, strategy) VALUES (?, ?, ?)",
                           (ctx.name, os.getpid(), strategy))
                ctx.record("rebuild", n)
                return json.dumps(rows)

            all_missed = threading.Barrier(threads, timeout=timeout)
            leaders = f"{barrier}:leaders:{rnd}"
            cache = CoalescingCache(r, loader, prefix=prefix, lock=lock, wait_timeout=timeout, hooks={
                "after_miss": lambda *_, b=all_missed: b.wait(),
                "before_rebuild": lambda *_, k=leaders: redis_barrier(r, k, processes, timeout=timeout)})
            with ThreadPoolExecutor(max_workers=threads) as pool:
                values = list(pool.map(lambda _, c=cache: c.get(name), range(threads), timeout=timeout))
            ctx.record("done", json.dumps({"strategy": strategy, "values": sorted(set(values)),
                                           "readers": len(values), "waits": cache.stats.waits}))
    finally:
        db.close()


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


def process_stampedes(server: Any, db: Any, name: str, query: str, *, prefix: str,
                      processes: int = 4, threads: int = 25, locks: tuple = (False, True),
                      timeout: float = 30.0) -> list[ProcessStampedeResult]:
    """Expire ``name`` and stampede it from ``processes`` real OS processes x ``threads`` readers,
    once per entry of ``locks`` (coalescing alone, then each leader behind the Redis lock).

    The same processes run every round (a fresh interpreter per process costs a second or more
    on a loaded machine). ``server`` is a server or lab node (host/port/password and
    ``client()``); ``db`` a :class:`~redistutor.db.Database` whose file the workers open (its
    latency is theirs). Rebuilds are counted from the rows the workers wrote to
    :data:`REBUILD_LOG` in that file.
    """
    from ..lab import run_workers

    db.execute(f"DROP TABLE IF EXISTS {REBUILD_LOG}")
    db.execute(f"CREATE TABLE {REBUILD_LOG} (worker TEXT NOT NULL, pid INTEGER NOT NULL, strategy TEXT NOT NULL)")
    barrier = f"{prefix}:barrier:{name}"
    r = server.client()
    stale = list(r.scan_iter(match=f"{barrier}:*", count=1000))
    if stale:
        r.delete(*stale)
    try:
        workers = run_workers(
            process_stampede_worker, processes, nodes=[server], timeout=timeout * len(locks),
            args=(name,), kwargs=dict(prefix=prefix, db_path=str(db.path), query=query,
                                      threads=threads, processes=processes, locks=list(locks),
                                      latency=db.latency, barrier=barrier, timeout=timeout))
    finally:
        used = list(r.scan_iter(match=f"{barrier}:*", count=1000))
        if used:
            r.delete(*used)
        r.close()
    results = []
    for lock in locks:
        strategy = "coalesce+lock" if lock else "coalesce"
        done = [d for d in (json.loads(ev.detail) for ev in workers.log.events if ev.kind == "done")
                if d["strategy"] == strategy]
        counted = dict(db.execute(f"SELECT worker, COUNT(*) FROM {REBUILD_LOG} WHERE strategy = ? "
                                  "GROUP BY worker", (strategy,)))
        results.append(ProcessStampedeResult(
            strategy, processes, sum(d["readers"] for d in done),
            {w: counted.get(w, 0) for w in workers.names}, {v for d in done for v in d["values"]},
            sum(d["waits"] for d in done), workers.exitcodes))
    return results


def process_stampede(server: Any, db: Any, name: str, query: str, *, prefix: str,
                     processes: int = 4, threads: int = 25, lock: bool = False,
                     timeout: float = 30.0) -> ProcessStampedeResult:
    """One round of :func:`process_stampedes`: coalescing alone, or (``lock=True``) each
    process's leader behind the Redis lock."""
    return process_stampedes(server, db, name, query, prefix=prefix, processes=processes,
                             threads=threads, locks=(lock,), timeout=timeout)[0]


def per_bucket(times: list[float], width: float = 0.1) -> list[int]:
    """Count ``times`` (seconds) per ``width``-second slot, from the earliest to the latest."""
    if not times:
        return []
    first = min(times)
    out = [0] * (int((max(times) - first) / width) + 1)
    for t in times:
        out[int((t - first) / width)] += 1
    return out


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
        kind, cur, token = cache.begin(name, now)  # with refresh_lock, takes the lock or serves
        if kind == "hit":                            # the current value (a refresh is in flight)
            continue
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
        value = cache.load(name)
        seq += 1
        heapq.heappush(pending, (now + delta, seq, value, now + delta + cache.ttl, token))
    return XFetchRun(n, rebuilds, misses, refreshes, [generations[k] for k in sorted(generations)],
                     starts)


# -- many keys expiring together -------------------------------------------------------------


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


# -- the lock's race and faults -------------------------------------------------------------------


def pause_mid_rebuild(r: redis.Redis, loader: Any, prefix: str, name: str = "top", *,
                      cls: type = LockedCache) -> dict[str, Any]:
    """One reader takes the lock and is held (a PausePoint) just before its rebuild.

    Returns ``{"token", "lock_value", "lock_pttl", "value_before", "release"}``: call
    ``release()`` to let the reader finish; it returns the value the reader got."""
    pause = PausePoint("before_rebuild")
    cache = cls(r, loader, prefix=prefix, ttl=60, lock_ttl=5, hooks={"before_rebuild": pause})
    r.delete(cache.key(name))
    reader = run_in_thread(cache.get, name)
    _, token = pause.wait_reached()           # the reader holds the lock and is about to query

    def release() -> str:
        pause.release()
        return reader.result(timeout=10)

    return {"cache": cache, "token": token, "lock_value": r.get(cache.lock_key(name)),
            "lock_pttl": r.pttl(cache.lock_key(name)), "value_before": r.get(cache.key(name)),
            "release": release}


def late_loser(r: redis.Redis, db: Any, loader: Any, prefix: str, name: str = "top", *,
               cls: type = LockedCache) -> dict[str, Any]:
    """Reader A misses and is held (a PausePoint on ``after_miss``) before it tries the lock;
    reader B rebuilds, stores and releases; then A goes on and wins the now free lock. Only the
    re-check after winning stops A from running the query a second time.

    Returns each reader's rebuilds, the DB queries, and the values both got."""
    pause = PausePoint("after_miss")
    a = cls(r, loader, prefix=prefix, ttl=60, hooks={"after_miss": pause})
    b = cls(r, loader, prefix=prefix, ttl=60)
    r.delete(a.key(name), a.lock_key(name))
    db.reset_counts()
    reader_a = run_in_thread(a.get, name)
    pause.wait_reached()                       # A: GET -> nil, not yet at SET NX
    value_b = b.get(name)                      # B: miss, lock, query, SET, release
    pause.release()
    value_a = reader_a.result(timeout=10)      # A: SET NX wins the free lock
    return {"A rebuilds": a.stats.rebuilds, "B rebuilds": b.stats.rebuilds,
            "DB queries": db.counts["read"], "same value": value_a == value_b,
            "lock left": r.exists(a.lock_key(name))}


def lock_holder(ctx: Any, prefix: str, name: str, *, lock_ttl: float) -> None:
    """A worker process (``lab.Workers``) that takes the rebuild lock through :class:`LockedCache`
    and then "rebuilds" for a minute; it records a "holding" event with its token."""
    r = ctx.client(0)

    def rebuild_for_a_minute(n: str) -> str:
        time.sleep(60)
        return "never"

    cache = LockedCache(r, rebuild_for_a_minute, prefix=prefix, lock_ttl=lock_ttl,
                        hooks={"before_rebuild": lambda n, token: ctx.record("holding", token)})
    cache.get(name)


def kill_holder(server: Any, r: redis.Redis, db: Any, loader: Any, prefix: str, name: str = "top", *,
                lock_ttl: float = 1.0, waiters: int = 20) -> dict[str, Any]:
    """A separate process holds the rebuild lock (PX ``lock_ttl``); ``waiters`` readers here miss
    and wait; the holder is killed with ``kill -9``; one waiter must take over once the PX ran out.

    Returns the dead holder's token and exit code, the waiters' stats and values, and for each
    rebuild (token used, the lock's value at that moment)."""
    from ..lab import Workers

    r.delete(f"{prefix}:{name}", f"{prefix}:lock:{name}")
    holder = Workers(lock_holder, 1, nodes=[server], args=(prefix, name),
                     kwargs={"lock_ttl": lock_ttl}).start()
    try:
        dead_token = holder.wait_for("holding", timeout=30).detail
        lock_value = r.get(f"{prefix}:lock:{name}")
        rebuilt_under: list[tuple[str, str | None]] = []
        survivors = LockedCache(r, loader, prefix=prefix, ttl=60, hooks={
            "before_rebuild": lambda n, token: rebuilt_under.append((token, r.get(f"{prefix}:lock:{n}")))})
        db.reset_counts()
        futs = [run_in_thread(survivors.get, name) for _ in range(waiters)]
        deadline = time.monotonic() + 10
        while survivors.stats.waits < waiters and time.monotonic() < deadline:
            time.sleep(0.01)                      # until every waiter is waiting on the lock
        holder.kill("w1")
        killed_at = time.perf_counter()
        values = {f.result(timeout=15) for f in futs}
        recovered = time.perf_counter() - killed_at
    finally:
        holder.stop()
    return {"dead_token": dead_token, "lock_held_by_holder": lock_value == dead_token,
            "exit_code": holder.exitcodes["w1"], "rebuilds": survivors.stats.rebuilds,
            "db_queries": db.counts["read"], "values": values, "rebuilt_under": rebuilt_under,
            "recovered_s": recovered, "waiters": waiters}


def overrun(r: redis.Redis, loader: Any, prefix: str, release: str, name: str = "top") -> str | None:
    """A's lock (PX 200 ms) expires while A is paused before its release; B takes the lock; then
    A releases with ``release`` ("del" or "token"). Returns B's lock value afterwards (None if gone)."""
    pause = PausePoint("before_release")
    a = LockedCache(r, loader, prefix=prefix, ttl=60, lock_ttl=0.2, release=release,
                    hooks={"before_release": pause})
    r.delete(a.key(name))
    fut = run_in_thread(a.get, name)
    pause.wait_reached()                       # A rebuilt and stored the value; not yet released
    deadline = time.monotonic() + 5
    while r.exists(a.lock_key(name)) and time.monotonic() < deadline:
        time.sleep(0.01)                       # A's 200 ms lock expires
    r.set(a.lock_key(name), "token-of-B", nx=True, px=5000)   # B takes the lock
    pause.release()                            # A releases "its" lock
    fut.result(timeout=10)
    left = r.get(a.lock_key(name))
    r.delete(a.lock_key(name))
    return left


# -- XFetch experiments -----------------------------------------------------------------------------


def xfetch_draws(delta: float = 0.2, beta: float = 1.0, expiry: float = 100.0, n: int = 10_000,
                 seed: int = 2015) -> dict[str, Any]:
    """``n`` readers spread over the last second before expiry, each with its own rand: the lead
    times (expiry - now) of those that refresh early, with the correct and the garbled sign."""
    from ..patterns.cache_stampede_prevention import xfetch_should_refresh

    rng = random.Random(seed)
    draws = [(expiry - rng.uniform(0, 1.0), 1.0 - rng.random()) for _ in range(n)]  # (now, rand)
    near = [(now, u) for now, u in draws if abs((expiry - now) - delta * beta) < 0.05]
    return {"readers": n,
            "correct": [expiry - now for now, u in draws if xfetch_should_refresh(now, delta, beta, expiry, u)],
            "garbled": [expiry - now for now, u in draws if garbled_should_refresh(now, delta, beta, expiry, u)],
            "near_fraction": sum(xfetch_should_refresh(now, delta, beta, expiry, u) for now, u in near) / len(near)}


def xfetch_run(r: redis.Redis, loader: Any, prefix: str, beta: float, *, db: Any = None,
               check: Any = None, refresh_lock: bool = False, seed: int = 11,
               periods: int = 10) -> XFetchRun:
    """:func:`simulate_xfetch` at 100 reads/s, TTL 2 s, delta 200 ms, for ``periods`` TTLs.

    With ``db``, its query latency is switched off meanwhile: on the simulated clock the 200 ms
    of a rebuild are the simulation's ``delta``, not real time."""
    import contextlib

    kw = {"check": check} if check is not None else {}
    c = XFetchCache(r, loader, prefix=prefix, ttl=2, beta=beta, rng=random.Random(seed),
                    refresh_lock=refresh_lock, **kw)
    with (db.slow(0) if db is not None else contextlib.nullcontext()):
        return simulate_xfetch(c, "top", periods=periods, rate=100, delta=0.2)


def xfetch_table(runs: dict[str, XFetchRun]):
    """One row per simulated strategy: rebuilds per expiry, readers that waited, busiest 100 ms."""
    from ..tables import Table

    rows = [[label, " ".join(map(str, run.per_generation)), round(statistics.mean(run.per_generation), 1),
             run.misses, max(run.per_bucket(0.1))] for label, run in runs.items()]
    return Table(["strategy", "rebuilds per expiry", "mean", "readers that waited",
                  "busiest 100 ms (queries)"], rows,
                 title="XFetch under steady load: 100 reads/s, TTL 2 s, rebuild 200 ms, 10 expiries")


def probability_chart(delta: float = 0.2, betas: tuple = (0.5, 1.0, 2.0)) -> None:
    """P(one reader refreshes) against time to expiry, for a few betas."""
    from .. import charts

    tte = [i / 100 for i in range(0, 201)]
    fig, ax = charts.figure(f"XFetch, delta = {delta * 1000:.0f} ms: one reader's chance to refresh early",
                            xlabel="time to expiry (s)", ylabel="P(this reader refreshes)", width=7)
    for b in betas:
        ax.plot(tte, [refresh_probability(t, delta, b) for t in tte], label=f"beta = {b}")
    ax.invert_xaxis()
    half = {b: delta * b * math.log(2) for b in betas}
    charts.finish(ax, summary="a reader's chance reaches 50 % at " + ", ".join(
        f"{half[b] * 1000:.0f} ms before expiry for beta = {b}" for b in betas))


def queries_chart(runs: dict[str, XFetchRun]) -> None:
    """DB queries started per 100 ms of simulated time, one line per strategy."""
    from .. import charts

    fig, ax = charts.figure("When the database is asked", xlabel="simulated time (s)",
                            ylabel="DB queries per 100 ms", width=9)
    for label, run in runs.items():
        per = run.per_bucket(0.1)
        ax.step([i * 0.1 for i in range(len(per))], per, where="post", label=label)
    charts.finish(ax, summary="in this run the busiest 100 ms held " + ", ".join(
        f"{max(run.per_bucket(0.1))} ({label})" for label, run in runs.items()) + " queries")


def leads_chart(runs: dict[float, XFetchRun], delta: float = 0.2) -> None:
    """How long before expiry XFetch refreshes, per beta (histogram), with delta marked."""
    from .. import charts

    fig, ax = charts.figure("When XFetch refreshes, 100 reads/s, TTL 2 s",
                            xlabel="lead time: expiry - refresh start (s)", ylabel="refreshes", width=7)
    bins = [i * 0.1 for i in range(0, 26)]
    for b, run in runs.items():
        ax.hist(run.leads, bins=bins, alpha=0.55, label=f"beta = {b}")
    ax.axvline(delta, color="k", ls="--", lw=1, label="delta (rebuild time)")
    charts.finish(ax, summary="in this run the median lead was " + ", ".join(
        f"{statistics.median(run.leads) * 1000:.0f} ms (beta = {b})" for b, run in runs.items()))


def latency_chart(bursts: dict[str, StampedeResult], xfetch: dict[str, XFetchRun]) -> None:
    """Rebuilds per expiry (log) and reader latency at an expiry, strategy by strategy."""
    from .. import charts

    fig, (a1, a2) = charts.figure("Stampede strategies side by side", ncols=2, width=10, height=3.4)
    labels = list(bursts) + list(xfetch)
    a1.bar(labels, [run.rebuilds for run in bursts.values()]
           + [statistics.mean(run.per_generation) for run in xfetch.values()], color=charts.PALETTE[0])
    a1.set_yscale("log")
    a1.set_ylabel("DB rebuilds per expiry (log)")
    a1.tick_params(axis="x", rotation=20)
    a2.boxplot([[t * 1000 for t in run.latencies] for run in bursts.values()], tick_labels=list(bursts))
    a2.set_ylabel("reader latency at an expiry (ms)")
    charts.finish([a1, a2], summary="in this run the median reader waited " + ", ".join(
        f"{run.p50_ms:.0f} ms ({label})" for label, run in bursts.items())
        + "; with XFetch " + ", ".join(f"{run.misses} of {run.requests} readers waited ({label})"
                                        for label, run in xfetch.items()))
