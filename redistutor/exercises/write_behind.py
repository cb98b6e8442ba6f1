"""Exercises for notebooks/03-write-behind.ipynb: the pattern applied to a new case.

The notebook's counters only grow; these exercises write behind a value that is *overwritten*:
each user's status ("online", "away", ...), where only a version can tell a newer copy from an
older one.

1. ``status_write``: ``set_status(r, prefix, user, status) -> int``: the write path. Redis only:
   the hash ``<prefix>:user:<user>`` gets ``status`` and a version ``ver`` bumped by 1, and the
   user goes into the set ``<prefix>:dirty``. Returns the new version.
2. ``status_sync``: ``sync(r, db, prefix)``: the worker's sync into the DB table
   ``ex_status (user_id TEXT PRIMARY KEY, status TEXT NOT NULL, ver INTEGER NOT NULL)``. A crash
   mid-batch loses nothing and applies nothing twice, and a worker that stalled between its read
   and its write must not move the DB back to an older status (the notebook's late worker): an
   unversioned upsert fails this check.

``write_bound`` is the "Try it" question: the most DB writes a number of views can cost.
"""

from __future__ import annotations

import inspect
import math
import threading

import redis

from ..check import Exercise, expect
from ..db import Database
from ..exceptions import CheckFailed
from ..race import run_in_thread

TABLE_SQL = ("CREATE TABLE IF NOT EXISTS ex_status (user_id TEXT PRIMARY KEY, status TEXT NOT NULL,"
             " ver INTEGER NOT NULL)")


# -- reference solutions (self-tested in tests/exercises/test_write_behind.py) ----------------


def set_status(r: redis.Redis, prefix: str, user: str, status: str) -> int:
    key = f"{prefix}:user:{user}"
    pipe = r.pipeline(transaction=True)  # value, version and dirty mark: all or nothing
    pipe.hset(key, "status", status)
    pipe.hincrby(key, "ver", 1)
    pipe.sadd(f"{prefix}:dirty", user)
    _, ver, _ = pipe.execute()
    return ver


def sync(r: redis.Redis, db: Database, prefix: str) -> None:
    dirty, syncing = f"{prefix}:dirty", f"{prefix}:syncing"
    # Resume a batch a crashed worker left behind; otherwise take everything dirty (atomically).
    if not r.exists(syncing) and r.exists(dirty):
        r.rename(dirty, syncing)
    for user in sorted(r.smembers(syncing)):
        status, ver = r.hmget(f"{prefix}:user:{user}", "status", "ver")
        # The whole value with its version; the DB keeps it only if it is newer than its row,
        # so a re-applied copy changes nothing and a stalled worker's older copy is refused.
        db.execute("INSERT INTO ex_status (user_id, status, ver) VALUES (?, ?, ?) "
                   "ON CONFLICT(user_id) DO UPDATE SET status = excluded.status, ver = excluded.ver "
                   "WHERE excluded.ver > ex_status.ver", (user, status, int(ver)))
        r.srem(syncing, user)  # only after the DB has it


# -- helpers ------------------------------------------------------------------------------------


class WorkerCrashed(CheckFailed):
    """Raised by the checker's DB stand-in to simulate the worker dying mid-batch. A CheckFailed
    subclass so the answer wrapper passes it through unchanged (other exceptions raised by the
    learner's code become failed checks; NotImplementedError means "not attempted")."""


class _DbSpy:
    """Forwards to the DB and counts writes; can "crash" right after the Nth write committed, or
    hold the first write (before it runs) until released: a worker that stalled."""

    def __init__(self, db: Database, crash_after: int | None = None, stall_first: bool = False) -> None:
        self._db = db
        self.crash_after = crash_after
        self.writes = 0
        self.stall_first = stall_first
        self.stalled = threading.Event()
        self.go = threading.Event()

    def execute(self, sql: str, params=(), **kwargs):
        is_write = not sql.lstrip().upper().startswith("SELECT")
        if is_write and self.stall_first and not self.stalled.is_set():
            self.stalled.set()
            self.go.wait(10)
        rows = self._db.execute(sql, params, **kwargs)
        if is_write:
            self.writes += 1
            if self.crash_after is not None and self.writes == self.crash_after:
                raise WorkerCrashed(f"the worker died right after DB write #{self.writes}")
        return rows

    def __getattr__(self, name):
        return getattr(self._db, name)


def _rows(db: Database) -> dict[str, str]:
    return dict(db.execute("SELECT user_id, status FROM ex_status ORDER BY user_id"))


def _redis_rows(r: redis.Redis, prefix: str) -> dict[str, str]:
    out = {}
    for key in r.scan_iter(match=f"{prefix}:user:*", count=1000):
        out[key[len(prefix) + len(":user:"):]] = r.hget(key, "status")
    return dict(sorted(out.items()))


def _reset(r: redis.Redis, db: Database, prefix: str) -> None:
    db.execute(TABLE_SQL, kind="ddl")
    db.execute("DELETE FROM ex_status", kind="ddl")
    keys = list(r.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        r.delete(*keys)


# -- exercise 1 ---------------------------------------------------------------------------------


def status_write(r: redis.Redis, db: Database, prefix: str = "ex1:status") -> Exercise:
    """Exercise 1: ``set_status(r, prefix, user, status) -> int``: Redis only, versioned, dirty."""

    def checker(answer) -> None:
        _reset(r, db, prefix)
        db.reset_counts()
        got = [answer(r, prefix, "alice", s) for s in ("online", "away", "busy")]
        answer(r, prefix, "bob", "online")
        key = f"{prefix}:user:alice"
        expect(r.hget(key, "status") == "busy", f"the last status set is the one in {key!r}",
               expected="busy", actual=r.hget(key, "status"))
        expect(got == [1, 2, 3] and r.hget(key, "ver") == "3",
               "every write bumps the version by one and returns it: the DB uses it to refuse "
               "older copies", expected=[1, 2, 3], actual=f"{got}, ver = {r.hget(key, 'ver')}")
        expect(db.counts["write"] == 0 and _rows(db) == {},
               "a write-behind write does not touch the database (the worker does that later)",
               expected="0 DB writes", actual=f"{db.counts['write']} DB writes")
        dirty = r.smembers(f"{prefix}:dirty")
        expect(dirty == {"alice", "bob"},
               f"every user written since the last sync is in {prefix + ':dirty'!r}, or the worker "
               "never copies it", expected={"alice", "bob"}, actual=dirty)

    return Exercise(
        "write-behind write path (user status)", checker,
        hints=[
            "Three Redis commands and no database: store the status, bump its version, and "
            "remember the user changed.",
            "HSET <prefix>:user:<user> status <status>; HINCRBY ... ver 1; SADD <prefix>:dirty <user>.",
            "Send them in one MULTI/EXEC (r.pipeline(transaction=True)) so a crash cannot leave a "
            "new status without its version or its dirty mark; return the HINCRBY result.",
        ],
        solution=inspect.getsource(set_status), reference=set_status,
    )


# -- exercise 2 ---------------------------------------------------------------------------------


def status_sync(r: redis.Redis, db: Database, prefix: str = "ex2:status") -> Exercise:
    """Exercise 2: ``sync(r, db, prefix)``: dirty users -> ex_status, crash-safe, versioned."""

    def write(user: str, status: str) -> None:
        set_status(r, prefix, user, status)

    def pending() -> int:
        return r.scard(f"{prefix}:dirty") + r.scard(f"{prefix}:syncing")

    def checker(answer) -> None:
        _reset(r, db, prefix)
        for user, status in (("alice", "online"), ("bob", "away"), ("carol", "online")):
            write(user, status)
        # 1. The worker dies right after its second DB write committed; a new worker runs.
        try:
            answer(r, _DbSpy(db, crash_after=2), prefix)
        except WorkerCrashed:
            pass
        answer(r, db, prefix)
        want = {"alice": "online", "bob": "away", "carol": "online"}
        expect(_rows(db) == want,
               "a worker died mid-batch (right after a DB write, before it could note it in Redis); "
               "after the next sync the DB must equal Redis: nothing lost",
               expected=want, actual=_rows(db))
        expect(pending() == 0, "after a complete sync no user is left pending (dirty or syncing)",
               expected=0, actual=pending())
        # 2. Coalescing: 100 changes of one user since the last sync are ONE DB write.
        for i in range(100):
            write("bob", f"status-{i}")
        spy = _DbSpy(db)
        answer(r, spy, prefix)
        expect(spy.writes == 1 and _rows(db)["bob"] == "status-99",
               "100 status changes of 'bob' since the last sync become ONE DB write of the latest",
               expected="1 write, bob = 'status-99'",
               actual=f"{spy.writes} writes, bob = {_rows(db).get('bob')!r}")
        # 3. The late worker: A reads alice = 'busy' and stalls before its write; alice becomes
        #    'offline'; worker B syncs until nothing is pending; then A's write lands.
        write("alice", "busy")
        stall = _DbSpy(db, stall_first=True)
        worker_a = run_in_thread(answer, r, stall, prefix)
        try:
            expect(stall.stalled.wait(10), "your sync writes alice's new status to the DB",
                   expected="a DB write", actual="none within 10 s")
            write("alice", "offline")
            for _ in range(5):
                answer(r, db, prefix)
                if pending() == 0:
                    break
            after_b = _rows(db).get("alice")
        finally:
            stall.go.set()
        worker_a.result(timeout=15)
        expect(after_b == "offline" and _rows(db).get("alice") == "offline",
               "worker A read alice = 'busy', stalled before its DB write, and wrote it after "
               "worker B had synced the newer 'offline': the DB must keep the newer status (carry "
               "the version into the DB and refuse an older one)",
               expected="alice = 'offline'", actual=f"alice = {_rows(db).get('alice')!r}")
        expect(_rows(db) == _redis_rows(r, prefix), "in the end the DB equals Redis",
               expected=_redis_rows(r, prefix), actual=_rows(db))

    return Exercise(
        "write-behind sync (crash-safe, versioned)", checker,
        hints=[
            "Do not remove a user from Redis's to-do list before the DB has it; write the whole "
            "status with its version, and let the DB keep a row only if the version is newer.",
            "Move the dirty set aside atomically (RENAME dirty -> syncing); for each user in "
            "syncing, HMGET status and ver, upsert them, then SREM the user. If syncing already "
            "exists, a worker died: finish its users first.",
            "db.execute(\"INSERT INTO ex_status (user_id, status, ver) VALUES (?, ?, ?) ON "
            "CONFLICT(user_id) DO UPDATE SET status = excluded.status, ver = excluded.ver WHERE "
            "excluded.ver > ex_status.ver\", (user, status, int(ver)))",
        ],
        solution=inspect.getsource(sync), reference=sync,
    )


# -- Try it -------------------------------------------------------------------------------------


def write_bound(views: int, pages: int, sync_every: int, measured: int | None = None) -> Exercise:
    """Try it: the most DB writes ``views`` views over ``pages`` pages can cost with a sync
    every ``sync_every`` views (one write per page per sync)."""
    syncs = math.ceil(views / sync_every)
    bound = pages * syncs

    def checker(answer) -> None:
        expect(isinstance(answer, int) and not isinstance(answer, bool),
               "answer with a whole number of DB writes", expected="an int", actual=answer)
        expect(answer == bound,
               f"{views} views with a sync every {sync_every} views are {syncs} syncs; each sync "
               f"writes each of the {pages} pages at most once, however many views it had",
               expected=bound, actual=answer)
        if measured is not None:
            expect(measured <= bound, "the run stayed within the bound", expected=f"<= {bound}",
                   actual=measured)

    return Exercise("write-behind: DB writes are bounded by pages x syncs", checker,
                    hints=["How many syncs are there? How many times can one sync write one page?",
                           "pages x ceil(views / sync_every)"],
                    solution=f"{pages} * math.ceil({views} / {sync_every})  # = {bound}", reference=bound)
