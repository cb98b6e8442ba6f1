"""Exercises for notebooks/01-cache-aside.ipynb.

1. ``read_path``: write the cache-aside read (GET, on a miss SELECT then SET with a TTL).
2. ``write_path``: write the update (DB first, then invalidate the key).
"""

from __future__ import annotations

import inspect
import json

import redis

from ..check import Exercise, expect
from ..db import Database


# -- reference solutions (self-tested in tests/exercises/test_cache_aside.py) ----------------


def get_user(r: redis.Redis, db: Database, key: str, user_id: int) -> dict | None:
    cached = r.get(key)
    if cached is not None:
        return json.loads(cached)
    row = db.get_user(user_id)
    if row is not None:
        r.set(key, json.dumps(row), ex=60)
    return row


def update_user_name(r: redis.Redis, db: Database, key: str, user_id: int, name: str) -> None:
    db.update_user(user_id, name=name)
    r.delete(key)


# -- exercises ----------------------------------------------------------------------------------


def read_path(r: redis.Redis, db: Database, prefix: str = "ex1:user") -> Exercise:
    """Exercise 1: ``get_user(r, db, key, user_id)`` with a 60 s TTL."""

    def checker(answer) -> None:
        user_id = 7
        key = f"{prefix}:{user_id}"
        r.delete(key)
        truth = db.get_user(user_id)
        before = db.counts["read"]
        first = answer(r, db, key, user_id)
        expect(first == truth, "the first call returns the user's row from the DB",
               expected=truth, actual=first)
        expect(r.exists(key) == 1, f"after a miss, the row is stored in Redis under {key!r}",
               expected=1, actual=r.exists(key))
        ttl = r.ttl(key)
        expect(0 < ttl <= 60, f"{key!r} expires within 60 s (a cache entry must not live forever)",
               expected="1..60", actual=ttl)
        second = answer(r, db, key, user_id)
        reads = db.counts["read"] - before
        expect(reads == 1, "two calls read the DB once: the second must be served from Redis",
               expected=1, actual=reads)
        expect(second == first, "the cached row equals the DB row", expected=first, actual=second)
        missing = answer(r, db, f"{prefix}:999999", 999999)
        expect(missing is None, "a user that does not exist gives None", expected=None, actual=missing)

    return Exercise(
        "cache-aside read path", checker,
        hints=[
            "Try Redis first with r.get(key); only on None go to the DB.",
            "Store the row as JSON: r.set(key, json.dumps(row), ex=60). Decode with json.loads on a hit.",
            "Do not cache None for a missing user (or, if you do, give it a short TTL).",
        ],
        solution=inspect.getsource(get_user), reference=get_user,
    )


class _OrderSpy:
    """Wraps the DB to record whether the cache key still existed when the DB was written."""

    def __init__(self, db: Database, r: redis.Redis, key: str) -> None:
        self._db, self._r, self._key = db, r, key
        self.key_present_at_write: bool | None = None

    def update_user(self, user_id: int, **fields):
        self.key_present_at_write = bool(self._r.exists(self._key))
        return self._db.update_user(user_id, **fields)

    def __getattr__(self, name):
        return getattr(self._db, name)


def write_path(r: redis.Redis, db: Database, prefix: str = "ex2:user") -> Exercise:
    """Exercise 2: ``update_user_name(r, db, key, user_id, name)``: DB first, then invalidate."""

    def checker(answer) -> None:
        user_id = 8
        key = f"{prefix}:{user_id}"
        old = db.get_user(user_id)
        r.set(key, json.dumps(old), ex=60)  # a cached copy, as after a read
        spy = _OrderSpy(db, r, key)
        new_name = f"renamed-{old['version'] + 1}"
        answer(r, spy, key, user_id, new_name)
        row = db.get_user(user_id)
        expect(row["name"] == new_name, "the database holds the new name (the DB is the source of truth)",
               expected=new_name, actual=row["name"])
        cached = r.get(key)
        expect(cached is None or json.loads(cached).get("name") == new_name,
               f"after the update, {key!r} no longer holds the old row",
               expected="deleted (or the new row)", actual=cached)
        expect(spy.key_present_at_write is True,
               "the DB is written before the cache is invalidated; deleting first lets a reader "
               "cache the old row again in between", expected="DB write, then DEL",
               actual="DEL, then DB write")

    return Exercise(
        "cache-aside write path", checker,
        hints=[
            "Two steps: change the row in the DB, then make Redis forget its copy.",
            "db.update_user(user_id, name=name), then r.delete(key). The order matters.",
        ],
        solution=inspect.getsource(update_user_name), reference=update_user_name,
    )
