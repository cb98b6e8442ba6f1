"""Scenarios for notebooks/03-write-behind.ipynb: the naive queue, worker processes, races, trials.

The pattern itself is :class:`redistutor.patterns.write_behind.WriteBehind`. Everything here is
orchestration the notebook calls in one line:

* :class:`NaiveQueue`: the naive design (a list of increments, deltas added to the DB), kept only
  to be broken.
* :func:`sync_worker`: a sync worker for :class:`redistutor.lab.Workers` (a real OS process that
  can be ``kill -9``-ed); :func:`kill_mid_batch`, :func:`run_until_idle` and :class:`SyncWorker`
  drive it.
* :func:`naive_crash`, :func:`late_worker`, :func:`coalescing`, :func:`timed_sync`,
  :func:`outage`, :func:`crash_and_count`, :func:`write_latency`: the notebook's experiments,
  returning plain data; ``*_chart`` functions draw them with :mod:`redistutor.charts`.

Worker processes report through the lab's event files (``paused``) and through Redis
(``<prefix>:worker:errors``, a hash ``count``/``last``, and ``<prefix>:worker:backoffs``, the
waits in ms it chose), which is what a real worker would expose for alerting.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from ..db import Database
from ..lab import Workers
from ..patterns.write_behind import RETRYABLE, WriteBehind, create_table, db_views, sync_forever
from ..race import PausePoint, call_hook, run_in_thread

# -- the naive design -------------------------------------------------------------------------


class NaiveQueue:
    """The naive write-behind, for the lesson only: a list of increments, deltas added to the DB.

    Args:
        ack: "before" (RPOP the batch, then apply: a crash loses the rest of the batch) or
            "after" (LRANGE, apply, LTRIM: a crash makes the next worker apply it again)::

                time 0  worker: LRANGE queue -> 50 increments
                time 1  worker: UPDATE +1 ... (20 of them committed)
                time 2  kill -9
                time 3  new worker: LRANGE queue -> the same 50 -> the first 20 are added again
    """

    def __init__(self, r: redis.Redis, db: Database, *, prefix: str = "naive", ack: str = "before",
                 table: str = "naive_views", hooks: dict[str, Callable[..., Any]] | None = None) -> None:
        if ack not in ("before", "after"):
            raise ValueError("ack is 'before' or 'after'")
        self.r, self.db, self.prefix, self.ack, self.table, self.hooks = r, db, prefix, ack, table, hooks
        self.queue_key = f"{prefix}:queue"
        create_table(db, table)

    def incr(self, page: str, n: int = 1) -> None:
        self.r.lpush(self.queue_key, json.dumps([page, n]))

    def pending(self) -> int:
        return self.r.llen(self.queue_key)

    def sync_once(self, batch: int = 100) -> int:
        if self.ack == "before":
            items = self.r.rpop(self.queue_key, batch) or []  # gone from Redis before the DB has it
        else:
            items = list(reversed(self.r.lrange(self.queue_key, -batch, -1)))
        sql = (f"INSERT INTO {self.table} (page, views, ver) VALUES (?, ?, 0) "
               f"ON CONFLICT(page) DO UPDATE SET views = views + excluded.views")
        for item in items:
            page, n = json.loads(item)
            self.db.execute(sql, (page, n), kind="write")
            call_hook(self.hooks, "after_apply", page)
        if self.ack == "after" and items:
            self.r.ltrim(self.queue_key, 0, -len(items) - 1)  # removed only after the DB has them
        return len(items)

    def flush(self, batch: int = 100) -> int:
        total = 0
        while (n := self.sync_once(batch)):
            total += n
        return total


def without_version(cls: type[WriteBehind] = WriteBehind) -> type[WriteBehind]:
    """``cls`` with an upsert that always overwrites (no version check): the broken variant."""
    return type("Unguarded", (cls,), {
        "__doc__": "The same sync with an upsert that always overwrites: no version check. Do not do this.",
        "SQL_UPSERT": ("INSERT INTO {table} (page, views, ver) VALUES (?, ?, ?) ON CONFLICT(page) "
                       "DO UPDATE SET views = excluded.views, ver = excluded.ver")})


# -- the sync worker as a real process (lab.Workers) ------------------------------------------


def sync_worker(ctx: Any, prefix: str, *, db_path: str, naive: str | None = None,
                table: str | None = None, pause_after: int | None = None, batch: int = 100,
                once: bool = False, interval: float = 0.05, write_latency: float = 0.0,
                max_backoff: float = 2.0, busy_timeout: float | None = None) -> None:
    """One sync worker process (run by :class:`redistutor.lab.Workers`).

    Runs :func:`~redistutor.patterns.write_behind.sync_forever` over a :class:`WriteBehind` (or a
    :class:`NaiveQueue` with ``naive="before"/"after"``). With ``pause_after`` it stops after that
    many applied rows, records a "paused" event (and sets ``<prefix>:worker:paused``) and waits
    there to be killed: a deterministic "mid-batch". With ``once`` it exits when nothing is pending.
    Failed syncs are reported in Redis (``<prefix>:worker:errors``, ``<prefix>:worker:backoffs``).
    """
    r = ctx.client(0)
    db = Database(path=db_path, write_latency=write_latency)
    if busy_timeout is not None:  # how long SQLite waits for another connection's lock
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}", kind="ddl")
    applied = 0

    def after_apply(page: str) -> None:
        nonlocal applied
        applied += 1
        if pause_after is not None and applied == pause_after:
            r.set(f"{prefix}:worker:paused", applied)
            ctx.record("paused", str(applied))
            while True:  # stopped mid-batch: the lesson kills us here
                time.sleep(3600)

    hooks = {"after_apply": after_apply}
    kw = {"table": table} if table else {}
    sync = (NaiveQueue(r, db, prefix=prefix, ack=naive, hooks=hooks, **kw) if naive
            else WriteBehind(r, db, prefix=prefix, hooks=hooks, **kw))

    def report(exc: BaseException, failures: int, delay: float) -> None:
        try:  # best effort: when Redis itself is the failure, there is nowhere to report it
            pipe = r.pipeline(transaction=False)
            pipe.hincrby(f"{prefix}:worker:errors", "count", 1)
            pipe.hset(f"{prefix}:worker:errors", "last", f"{type(exc).__name__}: {exc}"[:200])
            pipe.rpush(f"{prefix}:worker:backoffs", int(delay * 1000))
            pipe.ltrim(f"{prefix}:worker:backoffs", -50, -1)
            pipe.execute()
        except RETRYABLE:
            pass

    try:
        sync_forever(sync, batch=batch, interval=interval, max_backoff=max_backoff, once=once,
                     on_error=report)
    finally:
        db.close()


class SyncWorker:
    """One :func:`sync_worker` process, started at once; ``kill()`` is a real ``kill -9``."""

    def __init__(self, server: Any, db: Database, prefix: str, **kwargs: Any) -> None:
        self.prefix = prefix
        self.errors_key = f"{prefix}:worker:errors"
        self.backoffs_key = f"{prefix}:worker:backoffs"
        self.workers = Workers(sync_worker, 1, nodes=[server], args=(prefix,),
                               kwargs={"db_path": str(db.path), **kwargs}).start()

    def alive(self) -> bool:
        return self.workers.procs["w1"].is_alive()

    def errors(self, r: redis.Redis) -> int:
        """How many syncs failed and were retried so far (as the worker reported them)."""
        return int(r.hget(self.errors_key, "count") or 0)

    def backoffs(self, r: redis.Redis) -> list[float]:
        """The waits (seconds) the worker chose after its failures, oldest first."""
        return [int(ms) / 1000 for ms in r.lrange(self.backoffs_key, 0, -1)]

    def wait_paused(self, timeout: float = 30.0) -> int:
        """Block until the worker stopped at ``pause_after``; returns the rows it applied."""
        return int(self.workers.wait_for("paused", timeout=timeout).detail)

    def kill(self) -> int:
        """``kill -9`` the worker; returns the signal it died of (9)."""
        self.workers.kill("w1")
        return -self.workers.exitcodes["w1"]

    def join(self, timeout: float = 60.0) -> int:
        """Wait for a ``once`` worker to finish; returns its exit code (0)."""
        self.workers.join(timeout)
        code = self.workers.exitcodes["w1"]
        if code != 0:
            raise RuntimeError(f"the sync worker failed (exit code {code})")
        return code

    def stop(self) -> None:
        self.workers.stop()


def kill_mid_batch(server: Any, db: Database, prefix: str, *, pause_after: int, batch: int,
                   naive: str | None = None, table: str | None = None) -> tuple[int, int]:
    """Start a worker process, let it apply ``pause_after`` rows of its batch, ``kill -9`` it.

    Returns (rows it applied, the signal it died of)."""
    w = SyncWorker(server, db, prefix, naive=naive, table=table, pause_after=pause_after,
                   batch=batch, write_latency=0.005)
    try:
        return w.wait_paused(), w.kill()
    finally:
        w.stop()


def run_until_idle(server: Any, db: Database, prefix: str, *, batch: int, naive: str | None = None,
                   table: str | None = None) -> None:
    """A fresh worker process that syncs until nothing is pending, then exits."""
    w = SyncWorker(server, db, prefix, naive=naive, table=table, once=True, batch=batch)
    try:
        w.join()
    finally:
        w.stop()


# -- experiments ---------------------------------------------------------------------------------


def naive_kill(server: Any, r: redis.Redis, db: Database, acks: tuple = ("before", "after"), *,
               views: int = 100, pages: int = 10) -> dict[str, dict[str, Any]]:
    """For each ``ack``, a naive queue under ``views`` views and its own worker process, killed
    with ``kill -9`` after 20 rows of a 50-row batch (the workers run side by side). Returns, per
    ack, the rows it applied, the signal and what its queue still holds."""
    workers = {}
    try:
        for ack in acks:
            q = NaiveQueue(r, db, prefix=server.key(f"naive-{ack}"), ack=ack, table=f"naive_{ack}")
            for i in range(views):
                q.incr(f"page{i % pages}")
            workers[ack] = (q, SyncWorker(server, db, q.prefix, naive=ack, table=q.table,
                                          pause_after=20, batch=50, write_latency=0.005))
        out = {}
        for ack, (q, w) in workers.items():
            applied = w.wait_paused()
            out[ack] = {"ack": ack, "views sent": views, "rows applied when killed": applied,
                        "signal": w.kill(), "left in the queue": q.pending()}
        return out
    finally:
        for _, w in workers.values():
            w.stop()


def naive_finish(server: Any, db: Database, truth: Database, acks: tuple = ("before", "after")) -> dict[str, int]:
    """A fresh worker process per queue drains it (side by side); returns each DB total of views."""
    workers = [SyncWorker(server, db, server.key(f"naive-{ack}"), naive=ack, table=f"naive_{ack}",
                          once=True, batch=50) for ack in acks]
    try:
        for w in workers:
            w.join()
    finally:
        for w in workers:
            w.stop()
    return {ack: sum(db_views(truth, f"naive_{ack}").values()) for ack in acks}


def db_vs_redis(wb: Any, truth: Database, title: str = "") -> Any:
    """A Table of every page's count in Redis and in the DB, side by side."""
    from ..tables import Table

    in_db = db_views(truth, wb.table)
    rows = [[page, n, in_db.get(page)] for page, n in wb.counts().items()]
    return Table(["page", "Redis", "DB"], rows, title=title,
                 note=f"pending pages: {wb.pending()}; DB equals Redis: {in_db == wb.counts()}")


def naive_writes(server: Any, r: redis.Redis, db: Database, views: int = 100) -> int:
    """DB writes the naive queue makes for ``views`` views of one page."""
    q = NaiveQueue(r, db, prefix=server.key("naive-count"), ack="after", table="naive_count")
    for _ in range(views):
        q.incr("home")
    db.reset_counts()
    q.flush()
    return db.counts["write"]


def late_worker(server: Any, r: redis.Redis, db: Database, truth: Database, cls: type[WriteBehind],
                prefix: str) -> dict[str, Any]:
    """Worker A reads home (count 3, ver 3) and is held before its upsert; two more views; worker
    B resumes A's batch and flushes 5; then A's late upsert of 3 runs. Returns what each saw."""
    server.reset()
    create_table(db)
    db.execute("DELETE FROM page_views", kind="ddl")
    pause = PausePoint("before_apply")
    a = cls(r, db, prefix=prefix, hooks={"before_apply": pause})
    b = cls(r, db, prefix=prefix)
    for _ in range(3):
        a.incr("home")
    worker_a = run_in_thread(a.sync_once)          # 1. A claims [home] and reads count 3 ...
    _, count, ver = pause.wait_reached()           #    ... and is held before its upsert
    b.incr("home")
    b.incr("home")                                 # 2. two more views: count 5
    b.flush()                                      # 3. B resumes A's batch, then the dirty page
    after_b = db_views(truth)["home"]
    pause.release()                                # 4. A's late upsert of what it read
    worker_a.result(timeout=10)
    return {"upsert": "unversioned" if "ver >" not in cls.SQL_UPSERT else "versioned",
            "A read (count, ver)": f"{count}, {ver}", "DB after B": after_b,
            "DB after A's late write": db_views(truth)["home"], "Redis": b.get("home"),
            "pending": b.pending(), "A refused": a.stats.skipped}


def coalescing(wb: Any, truth: Database, *, views: int = 2000, pages: int = 10, sync_every: int = 250,
               seed: int = 3) -> dict[str, Any]:
    """Skewed traffic (page 0 most popular) with a sync after every ``sync_every`` views, then a
    final flush. Returns per-sync rows (Redis total, DB total before/after, DB writes so far)."""
    names = [f"page{i}" for i in range(pages)]
    rng = random.Random(seed)
    traffic = rng.choices(names, weights=[1 / (i + 1) for i in range(pages)], k=views)
    wb.db.reset_counts()
    rows = []
    for i, page in enumerate(traffic, 1):
        wb.incr(page)
        if i % sync_every == 0 or i == views:
            before = sum(db_views(truth, wb.table).values())
            wb.sync_once(batch=pages)
            rows.append([i, sum(wb.counts().values()), before, sum(db_views(truth, wb.table).values()),
                         wb.db.counts["write"]])
    wb.flush()
    return {"rows": rows, "db_writes": wb.db.counts["write"], "syncs": len(rows),
            "views": views, "pages": pages, "sync_every": sync_every}


def timed_sync(server: Any, r: redis.Redis, db: Database, truth: Database, interval: float, *,
               total: int = 10_000, per_tick: int = 100) -> dict[str, Any]:
    """A timer-driven worker (``sync_forever`` in a thread) while 100 increments land every 10 ms."""
    prefix, table = server.key(f"interval-{interval}"), f"interval_{int(interval * 1000)}"
    w = WriteBehind(r, db, prefix=prefix, table=table)
    stop = threading.Event()
    db.reset_counts()
    loop = run_in_thread(sync_forever, w, interval=interval, stop=stop)
    lag = []
    for _ in range(total // per_tick):
        w.incr("home", per_tick)                  # INCRBY 100: the same coalescing as 100 INCRs
        lag.append(w.get("home") - db_views(truth, table).get("home", 0))
        time.sleep(0.01)                          # pacing only
    stop.set()
    loop.result(timeout=10)
    db_writes = db.counts["write"]
    w.flush()                                     # the final flush after traffic stops
    return {"interval_ms": int(interval * 1000), "increments": total, "syncs": w.stats.syncs,
            "db_writes": db_writes, "mean_lag": round(statistics.mean(lag)), "max_lag": max(lag),
            "db_equals_redis": db_views(truth, table) == {"home": w.get("home")} == {"home": total}}


def interval_chart(runs: list[dict[str, Any]]) -> None:
    """DB writes and lag against the sync interval, with a summary from the measurement."""
    from .. import charts

    fig, (left, right) = charts.figure("The sync interval: DB writes against staleness",
                                       xlabel="sync interval (ms)", ncols=2, height=3.2)
    xs = [run["interval_ms"] for run in runs]
    left.plot(xs, [run["db_writes"] for run in runs], marker="o", label="DB writes")
    left.set_ylabel("DB writes for 10,000 increments")
    right.plot(xs, [run["mean_lag"] for run in runs], marker="o", label="mean lag", color=charts.PALETTE[1])
    right.plot(xs, [run["max_lag"] for run in runs], marker="s", label="max lag", color=charts.PALETTE[3])
    right.set_ylabel("views not yet in the DB")
    lo, hi = runs[0], runs[-1]
    charts.finish([left, right], summary=(
        f"in this run, {lo['interval_ms']} ms -> {lo['db_writes']} DB writes and a mean lag of "
        f"{lo['mean_lag']} views; {hi['interval_ms']} ms -> {hi['db_writes']} writes, mean lag {hi['mean_lag']}"))


def write_latency(wb: Any, db: Database, n: int = 200) -> dict[str, float]:
    """What the caller waits for: a write-behind write vs a synchronous DB write (ms)."""
    redis_ms, db_ms = [], []
    for i in range(n):
        t0 = time.perf_counter()
        wb.incr("latency-test")
        redis_ms.append((time.perf_counter() - t0) * 1000)
        if i % 4 == 0:
            t0 = time.perf_counter()
            db.execute("INSERT INTO page_views (page, views, ver) VALUES ('direct', ?, ?) "
                       "ON CONFLICT(page) DO UPDATE SET views = excluded.views, ver = excluded.ver", (i, i))
            db_ms.append((time.perf_counter() - t0) * 1000)
    wb.flush()
    return {"redis_p50_ms": statistics.median(redis_ms),
            "redis_p99_ms": statistics.quantiles(redis_ms, n=100)[98],
            "db_p50_ms": statistics.median(db_ms)}


def db_outage(wb: Any, db: Database, *, failures: int = 2) -> dict[str, Any]:
    """The next ``failures`` DB writes fail; a retry loop (no sleep) keeps traffic coming."""
    from ..db import DatabaseError

    for i in range(50):
        wb.incr(f"page{i % 5}")
    db.fail_next("write", failures)
    failed, pending = 0, []
    for _ in range(failures + 1):
        try:
            wb.sync_once()
            break
        except DatabaseError:
            failed += 1
            wb.incr("page9")                 # traffic continues during the outage
            pending.append(wb.pending())
    wb.flush()
    return {"failed syncs": failed, "pending after each failure": pending,
            "batches resumed": wb.stats.resumed}


def outage(server: Any, r: redis.Redis, db: Database, truth: Database, wb: Any, *,
           healthy: float = 0.8, down: float = 1.5, recovery: float = 0.5, seed: int = 11) -> dict[str, Any]:
    """A worker process syncing while the DB is locked (``BEGIN EXCLUSIVE`` from another
    connection) for at least ``down`` seconds and until the worker reported 5 failures.

    Traffic: 10 views every 10 ms over 1,000 pages (Pareto: a few very popular). Samples
    (seconds, phase, pages pending, views not yet in the DB) after every tick.
    """
    prefix = wb.prefix
    worker = SyncWorker(server, db, prefix, interval=0.05, max_backoff=0.8, busy_timeout=0.1)
    rng = random.Random(seed)
    sent: dict[str, int] = {}
    samples: list[tuple[float, str, int, int]] = []
    t0 = time.monotonic()

    def db_total() -> int:
        return truth.execute(f"SELECT COALESCE(SUM(views), 0) FROM {wb.table}")[0][0]

    def sample(phase: str) -> None:
        samples.append((time.monotonic() - t0, phase, wb.pending(), sum(sent.values()) - db_total()))

    def traffic(phase: str, until: Callable[[], bool]) -> None:
        while not until():
            for _ in range(10):
                page = f"page{int(rng.paretovariate(0.8)) % 1000}"
                wb.incr(page)
                sent[page] = sent.get(page, 0) + 1
            sample(phase)
            time.sleep(0.01)  # pacing only: no result depends on it

    def for_seconds(s: float) -> Callable[[], bool]:
        start = time.monotonic()
        return lambda: time.monotonic() - start > s

    try:
        traffic("healthy", for_seconds(healthy))
        lock = sqlite3.connect(db.path, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")                     # the database is down for writers
        res: dict[str, Any] = {"db_before": db_total(), "sent_before": dict(sent)}
        started = for_seconds(down)
        traffic("outage", lambda: (started() and worker.errors(r) >= 5) or time.monotonic() - t0 > 30)
        res.update(db_after=db_total(), pending=wb.pending(),
                   pages_hit={p for p, n in sent.items() if n != res["sent_before"].get(p, 0)})
        lock.execute("ROLLBACK")                            # the database is back
        lock.close()
        traffic("recovery", for_seconds(recovery))
        deadline = time.monotonic() + 30                    # traffic stops; wait for the backlog
        while (wb.pending() or db_total() != sum(sent.values())) and time.monotonic() < deadline:
            sample("drain")
            time.sleep(0.02)
        sample("drain")
        res.update(worker_alive=worker.alive(), worker_errors=worker.errors(r),
                   worker_waits=worker.backoffs(r), last_error=r.hget(worker.errors_key, "last"),
                   sent=dict(sorted(sent.items())), samples=samples)
    finally:
        worker.stop()
    return res


def outage_chart(res: dict[str, Any]) -> None:
    """Pages pending and views not yet in the DB over time, the outage shaded."""
    from .. import charts

    samples = res["samples"]
    fig, (top, bottom) = charts.figure("A DB outage under traffic: the backlog grows, then drains",
                                       xlabel="time (s)", nrows=2, height=4.8, sharex=True)
    xs = [s[0] for s in samples]
    top.plot(xs, [s[2] for s in samples], label="pages pending")
    top.set_ylabel("pages pending")
    bottom.plot(xs, [s[3] for s in samples], color=charts.BAD, label="views not in DB")
    bottom.set_ylabel("views not in DB")
    top.set_xlabel("")
    down = [s[0] for s in samples if s[1] == "outage"]
    for ax in (top, bottom):
        ax.axvspan(down[0], down[-1], color="#999", alpha=0.2, label="DB locked")
    peak = {ph: max(s[3] for s in samples if s[1] == ph) for ph in ("healthy", "outage")}
    pages = {ph: max(s[2] for s in samples if s[1] == ph) for ph in ("healthy", "outage")}
    charts.finish([top, bottom], summary=(
        f"in this run the unsynced views peaked at {peak['outage']} during the outage "
        f"(healthy: {peak['healthy']}), the pending pages at {pages['outage']} "
        f"(healthy: {pages['healthy']}) out of {len(res['sent'])} distinct pages viewed"))


def crash_and_count(db: Database, persistence: str, *, views: int = 200, pages: int = 20) -> dict[str, Any]:
    """Write ``views`` views to a fresh server with ``persistence``, ``kill -9`` it, restart it
    on the same data directory, and count what is still pending. For "rdb" a ``SAVE`` is taken
    after half the views (no automatic snapshots)."""
    from ..server import RedisServer

    data_dir = tempfile.mkdtemp(prefix="redistutor-wb-")
    config = {"save": ""} if persistence == "rdb" else {}
    extra = RedisServer(persistence=persistence, data_dir=data_dir, modules=(), config=config).start()
    try:
        c = extra.client(fail_fast=True)
        w = WriteBehind(c, db, prefix="views", table="crash_views")
        for i in range(views):
            if i == views // 2 and persistence == "rdb":
                c.save()                                 # the last snapshot before the crash
            w.incr(f"p{i % pages}")
        deadline = time.monotonic() + 5                  # AOF: until handed to the OS (write(2))
        while persistence.startswith("aof") and c.info("persistence")["aof_buffer_length"] \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        before = (w.pending(), sum(w.counts().values()))
        extra.kill()                                     # kill -9 redis-server
        extra.restart()                                  # same port, same data dir
        w = WriteBehind(extra.client(fail_fast=True), db, prefix="views", table="crash_views")
        after = (w.pending(), sum(w.counts().values()))
    finally:
        extra.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return {"persistence": persistence, "pending before": before[0], "views before": before[1],
            "pending after restart": after[0], "views after restart": after[1]}


def write_bound(views: int, pages: int, sync_every: int) -> int:
    """The most DB writes ``views`` views over ``pages`` pages can cost with a sync every
    ``sync_every`` views: one write per page per sync."""
    return pages * math.ceil(views / sync_every)
