"""Exercises for notebooks/02-write-through.ipynb.

1. ``write_path``: write-through update (DB first, then put the new row in Redis).
2. ``versioned_set``: a cache write that never replaces a newer row with an older one.
"""

from __future__ import annotations

import inspect
import json

import redis

from ..check import Exercise, expect
from ..db import Database, DatabaseError


# -- reference solutions (self-tested in tests/exercises/test_write_through.py) ---------------


def write_user_name(r: redis.Redis, db: Database, key: str, user_id: int, name: str) -> None:
    db.update_user(user_id, name=name)  # raises if the DB refuses: Redis is never touched
    row = db.get_user(user_id)
    r.set(key, json.dumps(row), ex=3600)


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
    """Wraps the DB to record what Redis held for the key when the DB was written."""

    def __init__(self, db: Database, r: redis.Redis, key: str) -> None:
        self._db, self._r, self._key = db, r, key
        self.cached_at_write: str | None = None
        self.writes = 0

    def update_user(self, user_id: int, **fields):
        self.writes += 1
        self.cached_at_write = self._r.get(self._key)
        return self._db.update_user(user_id, **fields)

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
        spy = _OrderSpy(db, r, key)
        new_name = f"renamed-{old['version'] + 1}"
        answer(r, spy, key, user_id, new_name)
        row = db.get_user(user_id)
        expect(row["name"] == new_name, "the database holds the new name (the DB is the source of truth)",
               expected=new_name, actual=row["name"])
        raw = r.get(key)
        expect(_name_in(raw) == new_name,
               f"after the write, {key!r} holds the new row, so the next read is a hit "
               "(deleting it is cache-aside, not write-through)",
               expected=f"a JSON row with name {new_name!r}", actual=raw)
        expect(_name_in(spy.cached_at_write) == old["name"],
               "the DB is written before Redis: if Redis goes first and the DB then refuses, "
               "Redis holds a value the DB never stored",
               expected="UPDATE, then SET", actual="SET, then UPDATE")
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
            "Two steps, and the order matters: the database first, then Redis.",
            "db.update_user(user_id, name=name); then read the row back (db.get_user) and "
            "r.set(key, json.dumps(row)).",
            "Do not catch the DB's exception: if update_user raises, the SET must not run.",
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
