"""Write-behind (write-back): writes go to Redis only; a sync worker copies them to the DB later.

Write: ``HINCRBY views:count:<page> count n`` + ``HINCRBY ... ver 1`` + ``SADD views:dirty <page>``
(one MULTI/EXEC). No DB call: the caller gets Redis's latency, and 1,000 increments of one page
between two syncs become **one** DB write (coalescing).

Sync (:meth:`WriteBehind.sync_once`, run by a worker process)::

    1. claim:  SPOP views:dirty N -> SADD views:syncing ...   (Lua, atomic; or resume the batch
               a crashed worker left in views:syncing)
    2. apply:  for each page: HMGET count ver -> UPSERT page_views SET views=count, ver=ver
               WHERE excluded.ver > page_views.ver          (absolute value + version: idempotent)
    3. ack:    SREM views:syncing <page>                     (only after the DB committed)

A worker killed at any point loses nothing (the page is still in ``syncing`` or ``dirty``) and
applies nothing twice (an absolute, versioned upsert re-applied is a no-op). A page incremented
during a sync goes back into ``dirty`` and is copied again by the next sync.

The naive design, :class:`NaiveQueue`, pushes every increment onto a list and has the worker add
the deltas to the DB. Killed mid-batch it either loses the rest of the batch (``ack="before"``:
RPOP first, then apply) or applies the done part twice (``ack="after"``: LRANGE, apply, LTRIM)::

    time 0  worker: LRANGE queue -> 50 increments
    time 1  worker: UPDATE +1 ... (20 of them committed)
    time 2  kill -9
    time 3  new worker: LRANGE queue -> the same 50 -> the first 20 are added again

Durability: until a sync, Redis is the only copy. It survives a Redis restart only with
persistence (AOF); see the notebook for what ``appendfsync everysec`` does and does not promise.

Notebook: notebooks/03-write-behind.ipynb
Redis: https://redis.io/docs/latest/develop/use/patterns/ (persistence:
https://redis.io/docs/latest/operate/oss_and_stack/management/persistence/, SPOP:
https://redis.io/commands/spop)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import redis

from .. import _guard
from ..db import Database, DatabaseError
from ..race import call_hook
from ..stats import Stats

WORKER_URL_ENV = "REDISTUTOR_WB_URL"  # the worker's Redis URL (with password): env, not argv


def create_table(db: Database, table: str = "page_views") -> None:
    """The DB side: one row per page with its count and the version it was copied at."""
    db.execute(f"CREATE TABLE IF NOT EXISTS {table} (page TEXT PRIMARY KEY,"
               " views INTEGER NOT NULL, ver INTEGER NOT NULL)", kind="ddl")


def db_views(db: Database, table: str = "page_views") -> dict[str, int]:
    """Every page's count as the DB has it."""
    return dict(db.execute(f"SELECT page, views FROM {table} ORDER BY page"))


@dataclass
class SyncStats(Stats):
    syncs: int = 0  # sync_once calls that claimed a batch
    applied: int = 0  # upserts that changed a row
    skipped: int = 0  # upserts the version check turned into no-ops (re-applied or older)
    resumed: int = 0  # batches taken over from a worker that died mid-batch


class WriteBehind:
    """Page-view counters written to Redis and synced to ``page_views`` in the DB in batches.

    Args:
        r: a redis-py client (``decode_responses=True``).
        db: the :class:`~redistutor.db.Database` the sync writes to.
        prefix: key prefix, e.g. ``server.key("views")``; keys are ``<prefix>:count:<page>``
            (hash: count, ver), ``<prefix>:dirty`` and ``<prefix>:syncing`` (sets of pages).
        table: the DB table (created if missing).
        hooks: pause points for race labs: "before_apply" (page, count, ver: the values just read
            from Redis, before the DB upsert) and "after_apply" (page, after the DB upsert
            committed, before the page is acknowledged in Redis).

    Example:
        >>> wb = WriteBehind(r, db, prefix=server.key("views"))
        >>> wb.incr("home")          # Redis only
        >>> wb.sync_once()           # what a worker runs: copy dirty pages to the DB
    """

    # KEYS[1] = dirty set, KEYS[2] = syncing set
    # ARGV[1] = most pages to claim
    # Returns the batch to sync: the pages already in KEYS[2] if a previous worker died holding
    # them (prefixed by the marker "~resume"), else up to ARGV[1] pages moved from KEYS[1] to KEYS[2].
    LUA_CLAIM = """
    local held = redis.call('SMEMBERS', KEYS[2])
    if #held > 0 then
      table.insert(held, 1, '~resume')
      return held
    end
    local pages = redis.call('SPOP', KEYS[1], tonumber(ARGV[1]))
    if #pages > 0 then
      redis.call('SADD', KEYS[2], unpack(pages))
    end
    return pages
    """

    # Absolute value + version: re-applying the same (views, ver) changes nothing, and an older
    # copy (a paused worker waking up late) can never overwrite a newer one.
    SQL_UPSERT = ("INSERT INTO {table} (page, views, ver) VALUES (?, ?, ?) "
                  "ON CONFLICT(page) DO UPDATE SET views = excluded.views, ver = excluded.ver "
                  "WHERE excluded.ver > {table}.ver RETURNING page")

    def __init__(self, r: redis.Redis, db: Database, *, prefix: str = "views",
                 table: str = "page_views", hooks: dict[str, Callable[..., Any]] | None = None) -> None:
        self.r = r
        self.db = db
        self.prefix = prefix
        self.table = table
        self.hooks = hooks
        self.stats = SyncStats()
        self.dirty_key = f"{prefix}:dirty"
        self.syncing_key = f"{prefix}:syncing"
        self._claim = r.register_script(self.LUA_CLAIM)
        create_table(db, table)

    def key(self, page: str) -> str:
        return f"{self.prefix}:count:{page}"

    # -- the application's side --------------------------------------------------------------
    def incr(self, page: str, n: int = 1) -> int:
        """Add ``n`` to a page's count in Redis and mark it dirty. Returns the new count."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hincrby(self.key(page), "count", n)
        pipe.hincrby(self.key(page), "ver", 1)
        pipe.sadd(self.dirty_key, page)
        count, _, _ = pipe.execute()
        return count

    def get(self, page: str) -> int:
        """The current count (from Redis: the DB may lag behind)."""
        return int(self.r.hget(self.key(page), "count") or 0)

    def counts(self) -> dict[str, int]:
        """Every page's count in Redis."""
        out = {}
        for k in self.r.scan_iter(match=f"{self.prefix}:count:*", count=1000):
            out[k[len(self.prefix) + len(":count:"):]] = int(self.r.hget(k, "count") or 0)
        return dict(sorted(out.items()))

    def pending(self) -> int:
        """Pages changed in Redis and not yet confirmed in the DB (dirty + being synced)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.scard(self.dirty_key)
        pipe.scard(self.syncing_key)
        return sum(pipe.execute())

    # -- the worker's side -------------------------------------------------------------------
    def sync_once(self, batch: int = 100) -> int:
        """Copy one batch of dirty pages to the DB. Returns how many pages it handled.

        A DB error propagates; the unfinished pages stay in ``syncing`` and the next call
        resumes them, so a failed sync is retried, never lost.
        """
        pages = self._claim(keys=[self.dirty_key, self.syncing_key], args=[batch])
        if not pages:
            return 0
        self.stats.add("syncs")
        if pages[0] == "~resume":
            pages = pages[1:]
            self.stats.add("resumed")
        sql = self.SQL_UPSERT.format(table=self.table)
        for page in sorted(pages):
            count, ver = self.r.hmget(self.key(page), "count", "ver")
            call_hook(self.hooks, "before_apply", page, count, ver)
            if count is not None:
                changed = self.db.execute(sql, (page, int(count), int(ver)), kind="write")
                self.stats.add("applied" if changed else "skipped")
            call_hook(self.hooks, "after_apply", page)
            self.r.srem(self.syncing_key, page)  # acknowledge only after the DB committed
        return len(pages)

    def flush(self, batch: int = 100, max_rounds: int = 10_000) -> int:
        """Sync until nothing is pending. Returns the pages handled."""
        total = 0
        for _ in range(max_rounds):
            n = self.sync_once(batch)
            if n == 0 and self.pending() == 0:
                return total
            total += n
        raise RuntimeError(f"still {self.pending()} pages pending after {max_rounds} syncs")


class NaiveQueue:
    """The naive write-behind, for the lesson only: a list of increments, deltas added to the DB.

    Args:
        ack: "before" (RPOP the batch, then apply: a crash loses the rest of the batch) or
            "after" (LRANGE, apply, LTRIM: a crash makes the next worker apply it again).
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


# -- the worker's loop: retry with exponential back-off ------------------------------------------

# What a sync can fail with and should retry: the DB refusing or timing out (an injected error,
# SQLite's "database is locked"), or Redis unreachable. Anything else is a bug: let it crash.
RETRYABLE = (DatabaseError, sqlite3.Error, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """Seconds to wait after the ``failures``-th failure in a row: base, 2x base, 4x ... capped.

    Doubling keeps a worker from hammering a database that is down (and from adding load to one
    that is recovering); the cap bounds how late the worker notices it is back.
    """
    return min(cap, base * 2 ** (failures - 1))


def sync_forever(sync: "WriteBehind | NaiveQueue", *, batch: int = 100, interval: float = 0.05,
                 max_backoff: float = 2.0, once: bool = False, stop: threading.Event | None = None,
                 on_error: Callable[[BaseException, int, float], None] | None = None) -> None:
    """What a sync worker runs: sync every ``interval``, back off on failures.

    After a full batch it syncs again at once (a backlog drains at the DB's speed); after a
    partial one it waits ``interval``, so one hot key costs at most one DB write per interval.

    A failed sync (see :data:`RETRYABLE`) leaves its batch in ``syncing`` (nothing is lost); the
    loop waits :func:`backoff_delay` and tries again, and the next success resets the delay.
    ``on_error(exc, failures_in_a_row, delay)`` is called before each wait. Returns when ``stop``
    is set, or with ``once`` when nothing is pending.
    """
    stop = stop or threading.Event()
    failures = 0
    while not stop.is_set():
        try:
            n = sync.sync_once(batch)
        except RETRYABLE as exc:
            failures += 1
            delay = backoff_delay(failures, interval, max_backoff)
            if on_error is not None:
                on_error(exc, failures, delay)
            stop.wait(delay)
            continue
        failures = 0
        if n == 0 and once and sync.pending() == 0:
            return
        if n < batch:  # a full batch means more may be waiting: go on at once; else wait a tick
            stop.wait(interval)


# -- the sync worker as a separate OS process ---------------------------------------------------


class Worker:
    """A sync worker in its own process (``python -m redistutor.patterns.write_behind``).

    Its PID is registered with the kernel's guardian, so it never outlives the notebook even if
    the kernel is killed. ``kill()`` is a real ``kill -9``.

    Args:
        url: Redis URL with password (``server.url``); passed through the environment, not argv.
        db_path: the SQLite file (``db.path``).
        prefix: the pattern's key prefix.
        naive: None for :class:`WriteBehind`, or "before"/"after" for :class:`NaiveQueue`.
        pause_after: after this many applied rows, mark ``<prefix>:worker:paused`` in Redis and
            stop there (until killed): a deterministic "mid-batch" point.
        once: exit when nothing is pending (else poll every ``interval`` seconds).
        max_backoff: the longest wait between retries after DB failures (see :func:`sync_forever`).
        busy_timeout: seconds SQLite waits for a lock held by another connection before the write
            fails with "database is locked" (SQLite's own default here: 5).
        table: the DB table (default: the class's own default table).

    The worker reports its failures in Redis, in ``<prefix>:worker:errors`` (a hash: ``count``,
    ``last``) and ``<prefix>:worker:backoffs`` (a list of the waits it chose, in ms, newest last).
    """

    def __init__(self, url: str, db_path: str | os.PathLike, prefix: str, *, naive: str | None = None,
                 pause_after: int | None = None, batch: int = 100, once: bool = False,
                 interval: float = 0.05, write_latency: float = 0.0, table: str | None = None,
                 max_backoff: float = 2.0, busy_timeout: float | None = None) -> None:
        self.prefix = prefix
        self.paused_key = f"{prefix}:worker:paused"
        self.errors_key = f"{prefix}:worker:errors"
        self.backoffs_key = f"{prefix}:worker:backoffs"
        argv = [sys.executable, "-m", __name__, "--db", str(db_path), "--prefix", prefix,
                "--batch", str(batch), "--interval", str(interval),
                "--write-latency", str(write_latency), "--max-backoff", str(max_backoff)]
        if busy_timeout is not None:
            argv += ["--busy-timeout", str(busy_timeout)]
        if naive:
            argv += ["--naive", naive]
        if table:
            argv += ["--table", table]
        if pause_after is not None:
            argv += ["--pause-after", str(pause_after)]
        if once:
            argv.append("--once")
        env = {**os.environ, WORKER_URL_ENV: url}
        root = str(Path(__file__).resolve().parents[2])  # so the child imports this redistutor
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "") if env.get("PYTHONPATH") else root
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _guard.watch_pid(self.proc.pid)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def errors(self, r: redis.Redis) -> int:
        """How many syncs failed and were retried so far (as the worker reported them)."""
        return int(r.hget(self.errors_key, "count") or 0)

    def backoffs(self, r: redis.Redis) -> list[float]:
        """The waits (seconds) the worker chose after its failures, oldest first."""
        return [int(ms) / 1000 for ms in r.lrange(self.backoffs_key, 0, -1)]

    def wait_paused(self, r: redis.Redis, timeout: float = 30.0) -> int:
        """Poll until the worker reports it stopped at ``pause_after``; returns rows applied."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            mark = r.get(self.paused_key)
            if mark is not None:
                return int(mark)
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited ({self.proc.returncode}) before pausing: "
                                   f"{self.proc.stderr.read()[-2000:] if self.proc.stderr else ''}")
            time.sleep(0.02)
        raise TimeoutError("the worker did not reach its pause point in time")

    def kill(self) -> int:
        """``kill -9`` the worker; returns the signal it died of (9)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        rc = self.proc.wait(timeout=10)
        _guard.release_pid(self.proc.pid)
        return -rc

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for a ``once`` worker to finish; raises with its stderr if it failed."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        _guard.release_pid(self.proc.pid)
        if rc != 0:
            raise RuntimeError(f"worker failed ({rc}): {self.proc.stderr.read()[-2000:]}")
        return rc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        else:
            _guard.release_pid(self.proc.pid)
        if self.proc.stderr:
            self.proc.stderr.close()


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="write-behind sync worker (see Worker)")
    ap.add_argument("--db", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--naive", choices=("before", "after"))
    ap.add_argument("--pause-after", type=int)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--write-latency", type=float, default=0.0)
    ap.add_argument("--max-backoff", type=float, default=2.0)
    ap.add_argument("--busy-timeout", type=float)
    ap.add_argument("--once", action="store_true")
    ap.add_argument("--table")
    args = ap.parse_args(argv)

    r = redis.Redis.from_url(os.environ[WORKER_URL_ENV], decode_responses=True, protocol=3)
    db = Database(path=args.db, write_latency=args.write_latency)
    if args.busy_timeout is not None:
        db.execute(f"PRAGMA busy_timeout = {int(args.busy_timeout * 1000)}", kind="ddl")
    applied = 0

    def after_apply(page: str) -> None:
        nonlocal applied
        applied += 1
        if args.pause_after is not None and applied == args.pause_after:
            r.set(f"{args.prefix}:worker:paused", applied)
            while True:  # stopped mid-batch: the lesson kills us here
                time.sleep(3600)

    hooks = {"after_apply": after_apply}
    table = {"table": args.table} if args.table else {}
    if args.naive:
        sync = NaiveQueue(r, db, prefix=args.prefix, ack=args.naive, hooks=hooks, **table)
    else:
        sync = WriteBehind(r, db, prefix=args.prefix, hooks=hooks, **table)
    def report(exc: BaseException, failures: int, delay: float) -> None:
        try:  # best effort: when Redis itself is the failure, there is nowhere to report it
            pipe = r.pipeline(transaction=False)
            pipe.hincrby(f"{args.prefix}:worker:errors", "count", 1)
            pipe.hset(f"{args.prefix}:worker:errors", "last", f"{type(exc).__name__}: {exc}"[:200])
            pipe.rpush(f"{args.prefix}:worker:backoffs", int(delay * 1000))
            pipe.ltrim(f"{args.prefix}:worker:backoffs", -50, -1)
            pipe.execute()
        except RETRYABLE:
            pass

    sync_forever(sync, batch=args.batch, interval=args.interval, max_backoff=args.max_backoff,
                 once=args.once, on_error=report)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
