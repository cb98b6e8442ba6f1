"""Exercises for notebooks/01-cache-aside.ipynb.

1. ``batch_read``: the read path applied to a new case, a page of users in one round trip
   (MGET, then the DB for the misses only, then SET each with a TTL in one pipeline).
2. ``write_path``: write the update (DB first, then invalidate the key).

``read_path`` (the single-key read) is kept for reuse; the notebook shows that path as the pattern.
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


def get_users(r: redis.Redis, db: Database, prefix: str, user_ids: list[int]) -> list[dict | None]:
    cached = r.mget([f"{prefix}:{i}" for i in user_ids])       # one round trip for all keys
    rows = [json.loads(c) if c is not None else None for c in cached]
    pipe = r.pipeline(transaction=False)
    for n, user_id in enumerate(user_ids):
        if rows[n] is None:
            rows[n] = db.get_user(user_id)                      # the DB only for the misses
            if rows[n] is not None:
                pipe.set(f"{prefix}:{user_id}", json.dumps(rows[n]), ex=60)
    pipe.execute()                                              # one round trip for all fills
    return rows


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


def batch_read(r: redis.Redis, db: Database, prefix: str = "ex1:user") -> Exercise:
    """Exercise 1: ``get_users(r, db, prefix, user_ids)``: a page of users, cache-aside, in few round trips."""

    def checker(answer) -> None:
        from ..trace import trace

        ids = [1, 2, 3, 4, 5, 999999]
        r.delete(*[f"{prefix}:{i}" for i in ids])
        for i in (2, 4):  # already cached, as after earlier reads
            r.set(f"{prefix}:{i}", json.dumps(db.get_user(i)), ex=60)
        truth = [db.get_user(i) for i in ids]
        before = db.counts["read"]
        with trace(r) as t:
            rows = answer(r, db, prefix, ids)
        reads = db.counts["read"] - before
        expect(rows == truth, "the rows come back in the order asked, None for a user that does not exist",
               expected=truth, actual=rows)
        expect(reads == 4, "the DB is queried only for the ids Redis did not have (1, 3, 5 and 999999)",
               expected=4, actual=reads)
        for i in (1, 3, 5):
            ttl = r.ttl(f"{prefix}:{i}")
            expect(0 < ttl <= 60, f"{prefix}:{i} is cached and expires within 60 s",
                   expected="1..60", actual=ttl)
        expect(t.round_trips <= 2, "Redis is read in one round trip (MGET) and filled in at most one more "
               "(a pipeline), not once per user", expected="at most 2", actual=t.round_trips)
        expect(r.exists(f"{prefix}:999999") == 0 or (r.ttl(f"{prefix}:999999") > 0),
               "a missing user is not cached forever", expected="no key, or a TTL", actual=r.ttl(f"{prefix}:999999"))

    return Exercise(
        "cache-aside for a page of users", checker,
        hints=[
            "Read every key at once with r.mget(list_of_keys); it returns None where Redis has nothing.",
            "Only the None entries need db.get_user. Queue their SETs (ex=60) on r.pipeline() and execute once.",
            "Keep the order of user_ids in the result, and do not cache None.",
        ],
        solution=inspect.getsource(get_users), reference=get_users,
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
