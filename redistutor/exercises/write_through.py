"""Exercises for notebooks/02-write-through.ipynb.

1. ``write_path``: write-through update (DB first, then put the row *that write committed* in
   Redis: ``UPDATE ... RETURNING``, never a separate SELECT that can see another writer's row).
2. ``versioned_set``: a cache write that never replaces a newer row with an older one.
3. ``signup``: the pattern applied to a new case, an INSERT (a new user's first read is a hit).
"""

from __future__ import annotations

import inspect
import json

import redis

from ..check import Exercise, expect
from ..db import Database, DatabaseError

# -- reference solutions (self-tested in tests/exercises/test_write_through.py) ---------------


def write_user_name(r: redis.Redis, db: Database, key: str, user_id: int, name: str) -> dict:
    rows = db.execute(  # raises if the DB refuses: Redis is never touched
        "UPDATE users SET name = ?, version = version + 1 WHERE id = ? "
        "RETURNING id, name, email, version", (name, user_id))
    uid, name, email, version = rows[0]  # the row this UPDATE committed, not a later SELECT's
    row = {"id": uid, "name": name, "email": email, "version": version}
    r.set(key, json.dumps(row), ex=3600)
    return row


def create_user(r: redis.Redis, db: Database, prefix: str, name: str, email: str) -> dict:
    rows = db.execute(  # raises if the DB refuses: nothing reaches Redis
        "INSERT INTO users (name, email, version) VALUES (?, ?, 1) "
        "RETURNING id, name, email, version", (name, email))
    uid, name, email, version = rows[0]  # the id the DB assigned, from the same statement
    row = {"id": uid, "name": name, "email": email, "version": version}
    r.set(f"{prefix}:{uid}", json.dumps(row), ex=3600)
    return row


SET_IF_NEWER = """
local cur = redis.call('GET', KEYS[1])
if cur and tonumber(cjson.decode(cur)['version']) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


def set_if_newer(r: redis.Redis, key: str, row: dict) -> bool:
    return bool(r.eval(SET_IF_NEWER, 1, key, row["version"], json.dumps(row)))


# -- exercises ----------------------------------------------------------------------------------


class _OrderSpy:
    """Wraps the DB to record what Redis held for the key when the DB was written, and to let
    another writer commit right after the answer's write (as a concurrent request would)."""

    ANOTHER_WRITER = "written by another request"

    def __init__(self, db: Database, r: redis.Redis, key: str, user_id: int) -> None:
        self._db, self._r, self._key, self._user_id = db, r, key, user_id
        self.cached_at_write: str | None = None
        self.writes = 0

    def _before_write(self) -> None:
        self.writes += 1
        self.cached_at_write = self._r.get(self._key)

    def _after_write(self) -> None:
        if self.writes == 1:  # another request commits a newer row right after this one
            self._db.update_user(self._user_id, name=self.ANOTHER_WRITER)

    def update_user(self, user_id: int, **fields):
        self._before_write()
        version = self._db.update_user(user_id, **fields)
        self._after_write()
        return version

    def execute(self, sql: str, params=(), **kwargs):
        write = not sql.lstrip().upper().startswith("SELECT")
        if write:
            self._before_write()
        rows = self._db.execute(sql, params, **kwargs)
        if write:
            self._after_write()
        return rows

    def __getattr__(self, name):
        return getattr(self._db, name)


def _name_in(raw: str | None) -> str | None:
    try:
        return json.loads(raw).get("name") if raw else None
    except (ValueError, AttributeError):
        return None


def write_path(r: redis.Redis, db: Database, prefix: str = "ex1:user") -> Exercise:
    """Exercise 1: ``write_user_name(r, db, key, user_id, name)``: DB first, then SET the row."""

    def checker(answer) -> None:
        user_id = 11
        key = f"{prefix}:{user_id}"
        old = db.get_user(user_id)
        r.set(key, json.dumps(old))  # the row as a previous write-through left it
        spy = _OrderSpy(db, r, key, user_id)
        new_name = f"renamed-{old['version'] + 1}"
        committed = {**old, "name": new_name, "version": old["version"] + 1}
        reads = db.counts["read"]
        returned = answer(r, spy, key, user_id, new_name)
        reads = db.counts["read"] - reads
        expect(spy.writes >= 1, "the database is written (it is the source of truth)",
               expected="an UPDATE", actual="no write")
        expect(_name_in(spy.cached_at_write) == old["name"],
               "the DB is written before Redis: if Redis goes first and the DB then refuses, "
               "Redis holds a value the DB never stored",
               expected="UPDATE, then SET", actual="SET, then UPDATE")
        raw = r.get(key)
        expect(_name_in(raw) != spy.ANOTHER_WRITER,
               "the row you cache is the one YOUR update committed: another request committed right "
               "after it, and a separate SELECT read that request's row (use UPDATE ... RETURNING)",
               expected=committed, actual=raw)
        expect(_name_in(raw) == new_name,
               f"after the write, {key!r} holds the new row, so the next read is a hit "
               "(deleting it is cache-aside, not write-through)",
               expected=f"a JSON row with name {new_name!r}", actual=raw)
        expect(returned == committed and json.loads(raw) == committed,
               "the function returns, and caches, exactly the row its UPDATE committed (version included)",
               expected=committed, actual=returned)
        expect(reads == 0, "one write is one DB statement: UPDATE ... RETURNING hands back the committed "
               "row, and any separate SELECT can see another writer's row",
               expected=0, actual=f"{reads} SELECT(s)")
        # The DB refuses the next write: Redis must still hold the last committed row.
        db.fail_next("write")
        raw_answer = getattr(answer, "__wrapped__", answer)
        try:
            raw_answer(r, db, key, user_id, "refused-by-db")
        except DatabaseError:
            pass  # letting the DB's error through is right: the caller must know
        finally:
            db._failures["write"] = 0  # the answer may not have written at all
        after = r.get(key)
        expect(_name_in(after) == new_name,
               f"when the DB refuses a write, {key!r} keeps the last committed row",
               expected=new_name, actual=_name_in(after))

    return Exercise(
        "write-through write path", checker,
        hints=[
            "Two steps, and the order matters: the database first, then Redis, with the row the "
            "database committed.",
            "Get the committed row from the UPDATE itself: db.execute(\"UPDATE users SET name = ?, "
            "version = version + 1 WHERE id = ? RETURNING id, name, email, version\", (name, user_id)). "
            "Do not read it back with a separate SELECT: another writer may have committed in between.",
            "Build the dict from that one returned tuple, r.set(key, json.dumps(row)), and return row. "
            "Do not catch the DB's exception: if the UPDATE raises, the SET must not run.",
        ],
        solution=inspect.getsource(write_user_name), reference=write_user_name,
    )


def versioned_set(r: redis.Redis, prefix: str = "ex2:user") -> Exercise:
    """Exercise 2: ``set_if_newer(r, key, row) -> bool``: never go back to an older version."""

    def row(version: int) -> dict:
        return {"id": 12, "name": f"v{version}", "email": "u12@example.com", "version": version}

    def checker(answer) -> None:
        key = f"{prefix}:12"
        r.delete(key)
        steps = [(9, True, 9), (10, True, 10), (9, False, 10), (10, False, 10), (11, True, 11)]
        held = None
        for version, should_store, holds in steps:
            stored = answer(r, key, row(version))
            raw = r.get(key)
            try:
                now = json.loads(raw)["version"] if raw else None
            except (ValueError, KeyError, TypeError):
                now = raw
            what = f"writing version {version} when Redis held {'nothing' if held is None else f'version {held}'}"
            expect(now == holds, f"{what}: {key!r} then holds version {holds}",
                   expected=holds, actual=now)
            expect(bool(stored) is should_store, f"{what}: the function returns {should_store}",
                   expected=should_store, actual=stored)
            held = now

    return Exercise(
        "versioned cache write", checker,
        hints=[
            "Read what Redis holds, compare its version with row['version'], write only if yours is "
            "newer. Do the compare and the SET in one Lua script, so no other client can write in between.",
            "r.eval(script, 1, key, row['version'], json.dumps(row)); inside: redis.call('GET', KEYS[1]), "
            "cjson.decode, then redis.call('SET', KEYS[1], ARGV[2]).",
            "ARGV values arrive as strings: compare tonumber(...) with tonumber(...).",
        ],
        solution=inspect.getsource(set_if_newer).replace(
            "def set_if_newer", f"SET_IF_NEWER = '''{SET_IF_NEWER}'''\n\ndef set_if_newer"),
        reference=set_if_newer,
    )


def signup(r: redis.Redis, db: Database, prefix: str = "ex3:user") -> Exercise:
    """Exercise 3: ``create_user(r, db, prefix, name, email) -> row``: INSERT, then SET."""

    def checker(answer) -> None:
        name = "Signup Sam"
        email = f"sam-{db.counts['write']}@example.com"
        reads = db.counts["read"]
        row = answer(r, db, prefix, name, email)
        reads = db.counts["read"] - reads
        found = db.execute("SELECT id, name, email, version FROM users WHERE email = ?", (email,), kind="check")
        expect(len(found) == 1, "the new user is in the database (exactly once)", expected=1, actual=len(found))
        uid, n, e, v = found[0]
        committed = {"id": uid, "name": n, "email": e, "version": v}
        expect(row == committed, "the function returns the row the database committed, with the id it assigned",
               expected=committed, actual=row)
        key = f"{prefix}:{uid}"
        raw = r.get(key)
        expect(raw is not None and json.loads(raw) == committed,
               f"the new row is cached under {key!r} at once, so the user's first read is a hit",
               expected=committed, actual=raw)
        expect(reads == 0, "one INSERT ... RETURNING gives the id and the row; no separate SELECT",
               expected=0, actual=f"{reads} SELECT(s)")
        before = set(r.scan_iter(f"{prefix}:*"))
        db.fail_next("write")
        raw_answer = getattr(answer, "__wrapped__", answer)
        try:
            raw_answer(r, db, prefix, "Refused Rita", "rita@example.com")
        except DatabaseError:
            pass
        finally:
            db._failures["write"] = 0
        after = set(r.scan_iter(f"{prefix}:*"))
        expect(after == before, "when the DB refuses the INSERT, nothing new appears in Redis",
               expected=sorted(before), actual=sorted(after))

    return Exercise(
        "write-through for a new user", checker,
        hints=[
            "Same order as the pattern: the database first (an INSERT), then Redis.",
            "db.execute(\"INSERT INTO users (name, email, version) VALUES (?, ?, 1) RETURNING id, name, "
            "email, version\", (name, email)) returns [(id, name, email, version)].",
            "Cache it under f\"{prefix}:{id}\" with a TTL, and return the dict.",
        ],
        solution=inspect.getsource(create_user), reference=create_user,
    )
