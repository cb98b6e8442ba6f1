"""Write-behind (write-back): writes go to Redis only; a sync worker copies them to the DB later.

Write (:meth:`WriteBehind.incr`): ``HINCRBY views:count:<page> count n`` + ``HINCRBY ... ver 1``
+ ``SADD views:dirty <page>`` (one MULTI/EXEC). No DB call: the caller gets Redis's latency, and
1,000 increments of one page between two syncs become **one** DB write (coalescing).

Sync (:meth:`WriteBehind.sync_once`, run by a worker process)::

    1. claim:  SPOP views:dirty N -> SADD views:syncing ...   (Lua, atomic; or resume the batch
               a crashed worker left in views:syncing)
    2. apply:  for each page: HMGET count ver -> UPSERT page_views SET views=count, ver=ver
               WHERE excluded.ver > page_views.ver          (absolute value + version: idempotent)
    3. ack:    SREM views:syncing <page>                     (only after the DB committed)

A worker killed at any point loses nothing (the page is still in ``syncing`` or ``dirty``) and
applies nothing twice (an absolute, versioned upsert re-applied is a no-op). A page incremented
during a sync goes back into ``dirty`` and is copied again by the next sync. A worker that stalls
between its read and its upsert cannot move the DB backwards: its older version is refused::

    worker A: claim [home] -> HMGET home: count 3, ver 3     ... stalls ...
    app:      HINCRBY home 2 -> count 5, ver 5; SADD dirty home
    worker B: resumes [home] -> upserts (5, ver 5); nothing pending
    worker A: upserts (3, ver 3) -> refused by WHERE excluded.ver > page_views.ver

The module keeps only the pattern: :class:`WriteBehind` (the part the notebook shows),
:class:`WriteBehindBase` (key names, stats, hooks, flush) and the worker's retry loop
(:func:`sync_forever`). The naive queue, worker processes and experiments are in
``redistutor/scenarios/write_behind.py``.

Durability: until a sync, Redis is the only copy. It survives a Redis restart only with
persistence (AOF); see the notebook for what ``appendfsync everysec`` does and does not promise.

Notebook: notebooks/03-write-behind.ipynb
Redis: https://redis.io/docs/latest/develop/use/patterns/ (persistence:
https://redis.io/docs/latest/operate/oss_and_stack/management/persistence/, SPOP:
https://redis.io/commands/spop)
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from ..db import Database, DatabaseError
from ..race import call_hook
from ..stats import Stats


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
    resumed: int = 0  # batches taken over from a worker that died (or failed) mid-batch


class WriteBehindBase:
    """The plumbing around :class:`WriteBehind`: key names, the DB table, stats, hooks, flush.

    Args:
        r: a redis-py client (``decode_responses=True``).
        db: the :class:`~redistutor.db.Database` the sync writes to.
        prefix: key prefix, e.g. ``server.key("views")``; keys are ``<prefix>:count:<page>``
            (hash: count, ver), ``<prefix>:dirty`` and ``<prefix>:syncing`` (sets of pages).
        table: the DB table (created if missing).
        hooks: pause points for race labs: "before_apply" (page, count, ver: the values just read
            from Redis, before the DB upsert) and "after_apply" (page, after the DB upsert
            committed, before the page is acknowledged in Redis).

    A subclass provides ``LUA_CLAIM``, ``SQL_UPSERT``, ``incr`` and ``sync_once``.
    """

    LUA_CLAIM: str
    SQL_UPSERT: str

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

    def claim(self, batch: int) -> list[str]:
        """Run ``LUA_CLAIM``: a batch of pages now in ``syncing`` (a dead worker's, or new ones)."""
        resuming = self.r.exists(self.syncing_key)  # for the stats only
        pages = self._claim(keys=[self.dirty_key, self.syncing_key], args=[batch])
        if pages:
            self.stats.add("syncs")
            if resuming:
                self.stats.add("resumed")
        return pages

    def upsert(self, page: str, count: Any, ver: Any) -> bool:
        """Apply one page's ``SQL_UPSERT`` (hooks around it); returns whether the row changed."""
        call_hook(self.hooks, "before_apply", page, count, ver)
        changed = False
        if count is not None:
            sql = self.SQL_UPSERT.format(table=self.table) + " RETURNING page"
            changed = bool(self.db.execute(sql, (page, int(count), int(ver)), kind="write"))
            self.stats.add("applied" if changed else "skipped")
        call_hook(self.hooks, "after_apply", page)
        return changed

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

    def sync_once(self, batch: int = 100) -> int:  # pragma: no cover - provided by the subclass
        raise NotImplementedError

    def flush(self, batch: int = 100, max_rounds: int = 10_000) -> int:
        """Sync until nothing is pending. Returns the pages handled."""
        total = 0
        for _ in range(max_rounds):
            n = self.sync_once(batch)
            if n == 0 and self.pending() == 0:
                return total
            total += n
        raise RuntimeError(f"still {self.pending()} pages pending after {max_rounds} syncs")


class WriteBehind(WriteBehindBase):
    """Page-view counters: written to Redis only, copied to the DB in batches by a sync worker."""

    # KEYS: dirty set, syncing set; ARGV: batch size. A dead worker's batch first, else N dirty pages.
    LUA_CLAIM = """
    local held = redis.call('SMEMBERS', KEYS[2])
    if #held > 0 then return held end
    local pages = redis.call('SPOP', KEYS[1], tonumber(ARGV[1]))
    if #pages > 0 then redis.call('SADD', KEYS[2], unpack(pages)) end
    return pages"""
    # The absolute count with its version: re-applied it changes nothing; an older copy is refused.
    SQL_UPSERT = ("INSERT INTO {table} (page, views, ver) VALUES (?, ?, ?) ON CONFLICT(page) DO UPDATE"
                  " SET views = excluded.views, ver = excluded.ver WHERE excluded.ver > {table}.ver")

    def incr(self, page: str, n: int = 1) -> int:      # the write: Redis only, no DB call
        pipe = self.r.pipeline(transaction=True)       # one MULTI/EXEC: all three or none
        pipe.hincrby(self.key(page), "count", n)
        pipe.hincrby(self.key(page), "ver", 1)
        pipe.sadd(self.dirty_key, page)                # the worker's to-do list
        return pipe.execute()[0]

    def sync_once(self, batch: int = 100) -> int:      # what the worker runs on its timer
        pages = self.claim(batch)                      # LUA_CLAIM: these pages are now in syncing
        for page in sorted(pages):
            count, ver = self.r.hmget(self.key(page), "count", "ver")
            self.upsert(page, count, ver)              # SQL_UPSERT, with hooks and stats
            self.r.srem(self.syncing_key, page)        # acknowledge only after the DB committed
        return len(pages)


# -- the worker's loop: retry with exponential back-off ------------------------------------------

# What a sync can fail with and should retry: the DB refusing or timing out (an injected error,
# SQLite's OperationalError: "database is locked", a busy or unreachable file), or Redis
# unreachable. Anything else cannot succeed by waiting (a constraint the row violates, WRONGTYPE,
# a count that is not a number, a bug): let it crash where someone will see it.
RETRYABLE = (DatabaseError, sqlite3.OperationalError, redis.exceptions.ConnectionError,
             redis.exceptions.TimeoutError)


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """Seconds to wait after the ``failures``-th failure in a row: base, 2x base, 4x ... capped.

    Doubling keeps a worker from hammering a database that is down (and from adding load to one
    that is recovering); the cap bounds how late the worker notices it is back.
    """
    return min(cap, base * 2 ** (failures - 1))


def sync_forever(sync: Any, *, batch: int = 100, interval: float = 0.05, max_backoff: float = 2.0,
                 once: bool = False, stop: threading.Event | None = None,
                 on_error: Callable[[BaseException, int, float], None] | None = None) -> None:
    """What a sync worker runs: sync every ``interval``, back off on failures.

    ``sync`` is anything with ``sync_once(batch)`` and ``pending()`` (a :class:`WriteBehind`).
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
