"""Exercises for notebooks/03-write-behind.ipynb.

1. ``write_path``: count a page view in Redis only, and mark the page dirty for the worker.
2. ``sync_path``: the worker's sync: copy dirty pages to the DB so that a crash mid-batch loses
   nothing and applies nothing twice.

Both use plain string counters (``<prefix>:count:<page>``), a ``<prefix>:dirty`` set and the DB
table ``ex_views (page TEXT PRIMARY KEY, views INTEGER NOT NULL)``.
"""

from __future__ import annotations

import inspect

import redis

from ..check import Exercise, expect
from ..db import Database
from ..exceptions import CheckFailed

TABLE_SQL = "CREATE TABLE IF NOT EXISTS ex_views (page TEXT PRIMARY KEY, views INTEGER NOT NULL)"


# -- reference solutions (self-tested in tests/exercises/test_write_behind.py) ----------------


def record_view(r: redis.Redis, db: Database, prefix: str, page: str) -> int:
    pipe = r.pipeline(transaction=True)  # both or neither
    pipe.incr(f"{prefix}:count:{page}")
    pipe.sadd(f"{prefix}:dirty", page)
    count, _ = pipe.execute()
    return count


def sync(r: redis.Redis, db: Database, prefix: str) -> None:
    dirty, syncing = f"{prefix}:dirty", f"{prefix}:syncing"
    # Resume a batch a crashed worker left behind; otherwise take everything dirty (atomically).
    if not r.exists(syncing) and r.exists(dirty):
        r.rename(dirty, syncing)
    for page in sorted(r.smembers(syncing)):
        count = int(r.get(f"{prefix}:count:{page}") or 0)
        # The absolute count, not "+ delta": applying it twice gives the same row.
        db.execute("INSERT INTO ex_views (page, views) VALUES (?, ?) "
                   "ON CONFLICT(page) DO UPDATE SET views = excluded.views", (page, count))
        r.srem(syncing, page)  # only after the DB has it


# -- helpers ------------------------------------------------------------------------------------


class WorkerCrashed(CheckFailed):
    """Raised by the checker's DB stand-in to simulate the worker dying mid-batch. A CheckFailed
    subclass so the answer wrapper passes it through unchanged (other exceptions raised by the
    learner's code become failed checks; NotImplementedError means "not attempted")."""


class _DbSpy:
    """Forwards to the DB, counts writes, and "crashes" right after the Nth write committed."""

    def __init__(self, db: Database, crash_after: int | None = None) -> None:
        self._db = db
        self.crash_after = crash_after
        self.writes = 0

    def execute(self, sql: str, params=(), **kwargs):
        rows = self._db.execute(sql, params, **kwargs)
        if not sql.lstrip().upper().startswith("SELECT"):
            self.writes += 1
            if self.crash_after is not None and self.writes == self.crash_after:
                raise WorkerCrashed(f"the worker died right after DB write #{self.writes}")
        return rows

    def __getattr__(self, name):
        return getattr(self._db, name)


def _views(db: Database) -> dict[str, int]:
    return dict(db.execute("SELECT page, views FROM ex_views ORDER BY page"))


def _reset(r: redis.Redis, db: Database, prefix: str) -> None:
    db.execute(TABLE_SQL, kind="ddl")
    db.execute("DELETE FROM ex_views", kind="ddl")
    keys = list(r.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        r.delete(*keys)


# -- exercises ----------------------------------------------------------------------------------


def write_path(r: redis.Redis, db: Database, prefix: str = "ex1:views") -> Exercise:
    """Exercise 1: ``record_view(r, db, prefix, page) -> int``: Redis only, page marked dirty."""

    def checker(answer) -> None:
        _reset(r, db, prefix)
        spy = _DbSpy(db)
        got = [answer(r, spy, prefix, "home") for _ in range(3)]
        answer(r, spy, prefix, "about")
        key = f"{prefix}:count:home"
        expect(r.get(key) == "3", f"three views of 'home' make {key!r} = 3",
               expected="3", actual=r.get(key))
        expect(got == [1, 2, 3], "record_view returns the new count", expected=[1, 2, 3], actual=got)
        expect(spy.writes == 0 and _views(db) == {},
               "a write-behind write does not touch the database (the worker does that later)",
               expected="0 DB writes", actual=f"{spy.writes} DB writes")
        dirty = r.smembers(f"{prefix}:dirty")
        expect(dirty == {"home", "about"},
               f"every page written since the last sync is in {prefix + ':dirty'!r}, or the worker "
               "never copies it", expected={"about", "home"}, actual=dirty)

    return Exercise(
        "write-behind write path", checker,
        hints=[
            "Two Redis commands and no database: count the view, and remember the page changed.",
            "INCR <prefix>:count:<page>, and SADD <prefix>:dirty <page>. A set, so 1,000 views of "
            "a page leave it there once.",
            "Send both in one MULTI/EXEC (r.pipeline(transaction=True)) so a crash cannot leave a "
            "count that is not marked dirty.",
        ],
        solution=inspect.getsource(record_view), reference=record_view,
    )


def sync_path(r: redis.Redis, db: Database, prefix: str = "ex2:views") -> Exercise:
    """Exercise 2: ``sync(r, db, prefix)``: dirty pages -> ex_views, crash-safe and idempotent."""

    def seed(counts: dict[str, int]) -> None:
        for page, n in counts.items():
            r.incrby(f"{prefix}:count:{page}", n)
            r.sadd(f"{prefix}:dirty", page)

    def checker(answer) -> None:
        _reset(r, db, prefix)
        seed({"a": 3, "b": 5, "c": 7})
        # 1. The worker dies right after its second DB write committed.
        try:
            answer(r, _DbSpy(db, crash_after=2), prefix)
        except WorkerCrashed:
            pass
        # 2. A new worker runs.
        answer(r, db, prefix)
        want = {"a": 3, "b": 5, "c": 7}
        expect(_views(db) == want,
               "a worker died mid-batch (right after a DB write, before it could note it in Redis); "
               "after the next sync the DB must equal Redis: nothing lost, nothing applied twice",
               expected=want, actual=_views(db))
        # 3. More views, another sync: the DB gets the new totals.
        seed({"a": 10})
        answer(r, db, prefix)
        want = {"a": 13, "b": 5, "c": 7}
        expect(_views(db) == want, "after 10 more views of 'a' and another sync, the DB equals Redis",
               expected=want, actual=_views(db))
        left = r.scard(f"{prefix}:dirty") + r.scard(f"{prefix}:syncing")
        expect(left == 0, "after a complete sync no page is left pending (dirty or syncing)",
               expected=0, actual=left)
        # 4. Coalescing: 100 views of one page are one DB write.
        for _ in range(100):
            seed({"b": 1})
        spy = _DbSpy(db)
        answer(r, spy, prefix)
        expect(spy.writes == 1 and _views(db)["b"] == 105,
               "100 views of 'b' since the last sync become ONE DB write of the total",
               expected="1 write, b = 105", actual=f"{spy.writes} writes, b = {_views(db).get('b')}")

    return Exercise(
        "write-behind sync (crash-safe)", checker,
        hints=[
            "Do not remove a page from Redis's to-do list before the DB has it, and write the "
            "page's total (not a delta), so doing a page twice is harmless.",
            "Move the dirty set aside atomically (RENAME dirty -> syncing); for each page in "
            "syncing, upsert its count, then SREM it. If syncing already exists, a worker died: "
            "finish its pages first.",
            "db.execute(\"INSERT INTO ex_views (page, views) VALUES (?, ?) ON CONFLICT(page) DO "
            "UPDATE SET views = excluded.views\", (page, count))",
        ],
        solution=inspect.getsource(sync), reference=sync,
    )
