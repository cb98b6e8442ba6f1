"""Exercises for notebooks/07-distributed-locking.ipynb.

1. ``safe_release``: ``release(r, key, token)`` deletes the lock only if it still holds our token,
   atomically. The checker injects the race between a GET and a DEL: right after your code reads
   the key, the lock "expires" and another client takes it.
2. ``fenced_write``: ``fenced_write(db, name, value, fence)`` stores a value only if its fencing
   token is at least the highest one seen. The checker injects another holder's write between
   your check and your write.
3. ``run_exclusive`` (the pattern on a new case): ``run_exclusive(r, key, job, ttl_ms)`` runs
   ``job()`` under the lock, or not at all if another client holds it. The checker makes the job
   fail, and makes it outlive its lock while another client takes it over.
4. ``watchdog_interval`` (the notebook's "Try it"): ``renew_every_ms(ttl_ms)``, how often a
   watchdog should renew a lock of ``ttl_ms``; checked on the server with a long job and a rival.
"""

from __future__ import annotations

import inspect
from typing import Any

import redis

from ..check import Exercise, expect
from ..db import Database
from ..patterns.distributed_locking import TokenLock
from ..timeline import max_concurrent

TABLE = "fenced"  # the exercise table: (name TEXT PRIMARY KEY, value TEXT, fence INTEGER)

# -- reference solutions (self-tested in tests/exercises/test_distributed_locking.py) ----------

RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def release(r: redis.Redis, key: str, token: str) -> bool:
    return bool(r.eval(RELEASE_SCRIPT, 1, key, token))


def fenced_write(db: Database, name: str, value: str, fence: int) -> bool:
    rows = db.execute(
        "INSERT INTO fenced (name, value, fence) VALUES (?, ?, ?) "
        "ON CONFLICT(name) DO UPDATE SET value = excluded.value, fence = excluded.fence "
        "WHERE excluded.fence >= fenced.fence RETURNING fence",
        (name, value, fence),
    )
    return bool(rows)


# -- exercise 1 ---------------------------------------------------------------------------------


class _SnatchAfterGet:
    """A client that, right after the learner's GET of the lock returns their token, lets the
    lock expire and another client take it: the window between a GET and a DEL.
    ``token=None``: whatever token the learner's own code stored (not ``other``)."""

    def __init__(self, r: redis.Redis, key: str, token: str | None, other: str) -> None:
        self._r, self._key, self._token, self._other = r, key, token, other
        self.snatched = False

    def get(self, name: Any) -> Any:
        value = self._r.get(name)
        ours = value == self._token if self._token is not None else value not in (None, self._other)
        if name == self._key and ours and not self.snatched:
            self._r.set(self._key, self._other, px=10_000)  # expired, and B acquired it
            self.snatched = True
        return value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._r, name)


def safe_release(r: redis.Redis, prefix: str = "ex1:lock") -> Exercise:
    """Exercise 1: ``release(r, key, token) -> bool``."""

    def checker(answer) -> None:
        key = f"{prefix}:report"
        try:
            r.set(key, "token-A", px=10_000)
            got = answer(r, key, "token-A")
            expect(bool(got) is True and r.exists(key) == 0,
                   "releasing your own lock deletes the key and returns True",
                   expected="True, key deleted", actual=f"{got!r}, key {'exists' if r.exists(key) else 'deleted'}")

            r.set(key, "token-B", px=10_000)  # A's lock expired long ago; B holds it now
            got = answer(r, key, "token-A")
            expect(r.get(key) == "token-B",
                   "a late release must not delete someone else's lock (A's lock expired, B acquired "
                   "it; a plain DEL deletes B's lock and lets a third client in)",
                   expected=f"{key} = 'token-B'", actual=r.get(key))
            expect(not got, "releasing a lock that is no longer yours returns False",
                   expected=False, actual=got)

            r.set(key, "token-A", px=10_000)
            spy = _SnatchAfterGet(r, key, "token-A", "token-B")
            answer(spy, key, "token-A")
            if not spy.snatched:  # no separate GET: nothing could happen in between
                expect(r.exists(key) == 0, "releasing your own lock deletes the key",
                       expected="key deleted", actual=r.get(key))
                return
            expect(r.get(key) == "token-B",
                   "the check and the delete must be one atomic step: between your GET and your DEL "
                   "the lock expired and B took it, and your DEL removed B's lock (use a Lua script)",
                   expected=f"{key} = 'token-B'", actual=r.get(key))
        finally:
            r.delete(key)

    return Exercise(
        "token-checked release", checker,
        hints=[
            "Delete the key only if GET key == token, and do both in one atomic step on the server.",
            "A Lua script runs atomically: "
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
            "r.eval(script, 1, key, token) returns 1 or 0; return bool(...) of it.",
        ],
        solution=inspect.getsource(release), reference=release,
    )


# -- exercise 2 ---------------------------------------------------------------------------------


class _WriteAfterCheck:
    """A database that lets another lock holder (fence 9) write right after the learner's first
    SELECT on the table: the window between a check and a write."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.injected = False

    def execute(self, sql: str, params: tuple | dict = (), **kw: Any) -> list[tuple]:
        rows = self._db.execute(sql, params, **kw)
        if not self.injected and sql.lstrip().upper().startswith("SELECT") and TABLE in sql:
            self.injected = True
            self._db.execute("UPDATE fenced SET value = 'from-holder-9', fence = 9 WHERE name = 'row'")
        return rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def _reset(db: Database) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS fenced (name TEXT PRIMARY KEY, value TEXT NOT NULL,"
               " fence INTEGER NOT NULL)")
    db.execute("DELETE FROM fenced")


def _row(db: Database) -> tuple | None:
    rows = db.execute("SELECT value, fence FROM fenced WHERE name = 'row'")
    return tuple(rows[0]) if rows else None


def fenced_write_exercise(db: Database) -> Exercise:
    """Exercise 2: ``fenced_write(db, name, value, fence) -> bool`` on table ``fenced``."""

    def checker(answer) -> None:
        _reset(db)
        ok = answer(db, "row", "from-holder-3", 3)
        expect(bool(ok) and _row(db) == ("from-holder-3", 3), "the first write (fence 3) is stored",
               expected="True, ('from-holder-3', 3)", actual=f"{ok!r}, {_row(db)!r}")
        ok = answer(db, "row", "from-holder-5", 5)
        expect(bool(ok) and _row(db) == ("from-holder-5", 5),
               "a write with a higher fence (5) replaces the value and records fence 5",
               expected="True, ('from-holder-5', 5)", actual=f"{ok!r}, {_row(db)!r}")
        ok = answer(db, "row", "again-holder-5", 5)
        expect(bool(ok) and _row(db) == ("again-holder-5", 5),
               "the same holder may write twice: an equal fence is accepted",
               expected="True, ('again-holder-5', 5)", actual=f"{ok!r}, {_row(db)!r}")
        ok = answer(db, "row", "late-holder-4", 4)
        expect(not ok and _row(db) == ("again-holder-5", 5),
               "a late write from an older holder (fence 4 < 5) is rejected: returns False, row unchanged",
               expected="False, ('again-holder-5', 5)", actual=f"{ok!r}, {_row(db)!r}")
        spy = _WriteAfterCheck(db)
        answer(spy, "row", "late-holder-6", 6)
        if spy.injected:  # you read the row first: holder 9 wrote in between
            expect(_row(db) == ("from-holder-9", 9),
                   "the check and the write must be one statement: after you read the row, holder 9 "
                   "wrote it, and your write (fence 6) overwrote theirs. Put the comparison in the "
                   "UPDATE's WHERE clause", expected="('from-holder-9', 9)", actual=_row(db))
        else:
            expect(_row(db) == ("late-holder-6", 6), "a write with a higher fence (6) is stored",
                   expected="('late-holder-6', 6)", actual=_row(db))
        _reset(db)

    return Exercise(
        "fenced write", checker,
        hints=[
            "Store the fence next to the value, and only overwrite when the new fence is >= the stored one.",
            "Do the comparison inside the write itself (one SQL statement), not in a SELECT before it: "
            "INSERT ... ON CONFLICT(name) DO UPDATE SET ... WHERE excluded.fence >= fenced.fence",
            "Add RETURNING fence: a stored row comes back, a rejected one returns no rows.",
        ],
        solution=inspect.getsource(fenced_write), reference=fenced_write,
    )


# -- exercise 3: the pattern on a new case --------------------------------------------------------


def run_exclusive(r: redis.Redis, key: str, job, ttl_ms: int = 5000):
    lock = TokenLock(r, key, ttl_ms)
    token = lock.acquire()
    if token is None:
        return None          # someone else holds it: do not run the job
    try:
        return job()
    finally:
        lock.release(token)  # token-checked: never deletes the next holder's lock


def run_exclusive_exercise(r: redis.Redis, prefix: str = "ex3:lock") -> Exercise:
    """Exercise 3: ``run_exclusive(r, key, job, ttl_ms) -> job() or None``."""

    def checker(answer) -> None:
        key = f"{prefix}:{{invoice:42}}"
        raw = getattr(answer, "__wrapped__", answer)  # to let the job's own exception through
        seen: list[tuple] = []

        def job():
            seen.append((r.get(key), r.pttl(key)))
            return "charged"

        try:
            r.delete(key)
            got = answer(r, key, job, 5000)
            expect(got == "charged" and len(seen) == 1,
                   "with the lock free, the job runs once and you return its result",
                   expected="'charged', job ran once", actual=f"{got!r}, job ran {len(seen)} time(s)")
            token, pttl = seen[0]
            expect(token is not None, "the lock key holds a token while the job runs",
                   expected=f"{key} set during the job", actual="key missing")
            expect(0 < pttl <= 5000, "the lock has an expiry while the job runs (PX ttl_ms): a crashed "
                   "holder must not block everyone forever", expected="0 < PTTL <= 5000", actual=pttl)
            expect(not r.exists(key), "the lock is released when the job is done",
                   expected="key deleted", actual=r.get(key))
            answer(r, key, job, 5000)
            expect(len(seen) == 2 and seen[1][0] != seen[0][0], "every acquisition uses a new random token "
                   "(a fixed name repeats, and then anyone with that name can release your lock)",
                   expected="two different tokens", actual=[t for t, _ in seen])

            r.set(key, "token-B", px=10_000)
            got = answer(r, key, job, 5000)
            expect(got is None and len(seen) == 2, "while another client holds the lock the job does not "
                   "run, and you return None", expected="None, job not run",
                   actual=f"{got!r}, job ran {len(seen) - 2} time(s)")
            expect(r.get(key) == "token-B", "another client's lock is left in place",
                   expected=f"{key} = 'token-B'", actual=r.get(key))
            r.delete(key)

            def failing():
                raise ValueError("card declined")

            try:
                raw(r, key, failing, 5000)
            except ValueError:
                pass
            expect(not r.exists(key), "a job that raises still releases the lock (release in a finally block)",
                   expected="key deleted", actual=f"{key} still held")

            def overran():  # the job outlived its lock, and client C took it over meanwhile
                r.set(key, "token-C", px=10_000)
                return "late"

            answer(r, key, overran, 5000)
            expect(r.get(key) == "token-C", "a job that outlived its lock must not delete the next holder's "
                   "lock: release only your own token", expected=f"{key} = 'token-C'", actual=r.get(key))
            r.delete(key)
            spy = _SnatchAfterGet(r, key, None, "token-D")
            answer(spy, key, lambda: "ok", 5000)
            if spy.snatched:  # a separate GET before the delete: the lock changed hands in between
                expect(r.get(key) == "token-D", "the token check and the delete must be one atomic step: "
                       "between your GET and your DEL the lock expired and D took it, and your DEL removed "
                       "D's lock", expected=f"{key} = 'token-D'", actual=r.get(key))
        finally:
            r.delete(key)

    return Exercise(
        "run a job under the lock", checker,
        hints=[
            "Acquire with the pattern (SET key <new random token> NX PX ttl_ms). If you did not get "
            "the lock, return None without calling job().",
            "Call job() in a try block and release in finally, with the token-checked release, so a "
            "failing job frees the lock and a late one cannot free someone else's.",
            "The TokenLock class from the pattern cell does both halves: lock = TokenLock(r, key, ttl_ms); "
            "token = lock.acquire(); ... finally: lock.release(token)",
        ],
        solution=inspect.getsource(run_exclusive), reference=run_exclusive,
    )


# -- "Try it": how often should a watchdog renew? -------------------------------------------------


def renew_every_ms(ttl_ms: int) -> float:
    return ttl_ms / 3  # two more chances to renew before the key expires


def watchdog_interval(r: redis.Redis, prefix: str = "try:lock") -> Exercise:
    """Try it: ``renew_every_ms(ttl_ms) -> ms``; checked on the server with a long job and a rival."""
    from ..scenarios.distributed_locking import long_job

    def checker(answer) -> None:
        for ttl in (600, 3000, 30_000):
            ms = answer(ttl)
            expect(isinstance(ms, (int, float)) and ms > 0, "a positive interval in milliseconds",
                   expected="> 0", actual=ms)
            expect(ms < ttl, f"a renewal every {ms:g} ms on a {ttl} ms lock comes after the key has expired: "
                   "a rival gets in before the first renewal", expected=f"< {ttl}", actual=ms)
            expect(ms <= ttl / 2, f"every {ms:g} ms on a {ttl} ms lock leaves no room for one slow or failed "
                   "renewal: the next one comes after the key has expired", expected=f"<= {ttl / 2:g}", actual=ms)
        run = long_job(r, prefix, watchdog=True, ttl_ms=300, interval_ms=answer(300), name="renew-check")
        expect(max_concurrent(run["log"]) == 1 and run["released"],
               "the job stays the only holder for 3 x TTL with your interval",
               expected="1 holder, job still owns its lock", actual=f"{max_concurrent(run['log'])} holders")

    return Exercise(
        "watchdog interval", checker,
        hints=[
            "A renewal must reach Redis before the key expires, even when one renewal is slow or fails.",
            "Renewing at TTL/2 leaves exactly one spare chance; TTL/3 leaves two.",
        ],
        solution=inspect.getsource(renew_every_ms), reference=renew_every_ms,
    )
