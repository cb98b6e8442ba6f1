"""Exercises for notebooks/07-distributed-locking.ipynb.

1. ``safe_release``: ``release(r, key, token)`` deletes the lock only if it still holds our token,
   atomically. The checker injects the race between a GET and a DEL: right after your code reads
   the key, the lock "expires" and another client takes it.
2. ``fenced_write``: ``fenced_write(db, name, value, fence)`` stores a value only if its fencing
   token is at least the highest one seen. The checker injects another holder's write between
   your check and your write.
"""

from __future__ import annotations

import inspect
from typing import Any

import redis

from ..check import Exercise, expect
from ..db import Database

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
    lock expire and another client take it: the window between a GET and a DEL."""

    def __init__(self, r: redis.Redis, key: str, token: str, other: str) -> None:
        self._r, self._key, self._token, self._other = r, key, token, other
        self.snatched = False

    def get(self, name: Any) -> Any:
        value = self._r.get(name)
        if name == self._key and value == self._token and not self.snatched:
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
