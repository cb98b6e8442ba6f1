"""Cache-aside (lazy loading): the application reads Redis first and fills it from the DB on a miss.

Read:  GET user:1 -> hit: done · miss: SELECT from the DB, then SET user:1 <json> EX ttl.
Write: UPDATE the DB, then invalidate user:1 (the next read reloads it).

``read_user`` and ``write_user`` are the pattern in a dozen lines, as the notebook shows them.
``CacheAside`` is the same read and write path with the production extras: hit/miss stats, TTL
jitter, negative caching, a fail-fast fallback to the DB when Redis is down, pause-point hooks
for race labs, and versioned invalidation.

The classic race, with plain DEL as the invalidation::

    time 0  reader: GET user:1 -> miss
    time 1  reader: SELECT -> {"name": "old", v1}
    time 2  writer: UPDATE -> {"name": "new", v2};  DEL user:1
    time 3  reader: SET user:1 {"name": "old", v1}      <- stale until the TTL runs out

With ``invalidation="versioned"`` the writer leaves a tombstone carrying the new version instead
of deleting, and readers fill the cache through a Lua script that refuses to write a version
older than what the key holds. The reader's SET at time 3 is then rejected.

Notebook: notebooks/01-cache-aside.ipynb
Redis: https://redis.io/docs/latest/develop/use/patterns/ (SET: https://redis.io/commands/set)
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from ..db import Database
from ..race import call_hook
from ..stats import Stats

INVALIDATIONS = ("delete", "versioned")


def read_user(r, db, user_id, *, prefix="user", ttl=3600):
    """Cache-aside read: Redis first; on a miss, the DB, then SET with an expiry."""
    key = f"{prefix}:{user_id}"
    cached = r.get(key)
    if cached is not None:
        return json.loads(cached)            # hit: the database is not touched
    row = db.get_user(user_id)               # miss: the database is the source of truth
    if row is not None:
        r.set(key, json.dumps(row), ex=ttl)  # always with a TTL: it bounds any mistake
    return row


def write_user(r, db, user_id, *, prefix="user", **fields):
    """Cache-aside write: the database first, then invalidate; the next read reloads the row."""
    version = db.update_user(user_id, **fields)
    r.delete(f"{prefix}:{user_id}")
    return version


@dataclass
class CacheStats(Stats):
    hits: int = 0
    misses: int = 0
    negative_hits: int = 0  # hits on a cached "no such row"
    degraded: int = 0  # reads served from the DB because Redis was unreachable
    rejected_fills: int = 0  # versioned fills refused because the cache held something newer

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.negative_hits + self.misses
        return (self.hits + self.negative_hits) / total if total else 0.0


class CacheAside:
    """Cache rows of ``db.users`` in Redis under ``<prefix>:<id>``.

    Args:
        r: a redis-py client (``decode_responses=True``). Use ``server.client(fail_fast=True)``
            so reads fall back to the DB at once when Redis is down.
        db: the :class:`~redistutor.db.Database` that owns the truth.
        prefix: key prefix, e.g. ``server.key("user")``.
        ttl: seconds a cached row lives.
        jitter: spread TTLs by ±jitter (0.1 = ±10%) so keys loaded together expire apart.
        negative_ttl: seconds to cache "no such row" (None: do not cache misses of the DB).
        invalidation: "delete" (DEL on write) or "versioned" (tombstone + Lua fill).
        hooks: pause points for race labs: "after_db_read" (row, after SELECT, before SET).
        rng: random source for the jitter (seed it for reproducible TTLs).
    """

    # KEYS[1] = cache key
    # ARGV[1] = version of the row just read from the DB (0 for "no such row")
    # ARGV[2] = JSON document to cache: {"v": version, "row": {...}} or {"v": 0, "missing": true}
    # ARGV[3] = TTL in milliseconds
    # Returns 1 if stored; 0 if the key already holds a newer version, or a tombstone of a newer
    # version than ARGV[1] (a writer changed the row after we read it: our copy is stale).
    LUA_FILL = """
    local cur = redis.call('GET', KEYS[1])
    if cur then
      local ok, doc = pcall(cjson.decode, cur)
      if ok and type(doc) == 'table' and tonumber(doc['v']) then
        local have, mine = tonumber(doc['v']), tonumber(ARGV[1])
        if doc['tombstone'] then
          if mine < have then return 0 end
        elseif mine <= have then
          return 0
        end
      end
    end
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
    return 1
    """

    # KEYS[1] = cache key
    # ARGV[1] = the row's new version after the writer's UPDATE
    # ARGV[2] = tombstone TTL in milliseconds
    # Returns 1 if the tombstone was written, 0 if the key already records a newer version.
    LUA_INVALIDATE = """
    local cur = redis.call('GET', KEYS[1])
    if cur then
      local ok, doc = pcall(cjson.decode, cur)
      if ok and type(doc) == 'table' and tonumber(doc['v']) and tonumber(doc['v']) > tonumber(ARGV[1]) then
        return 0
      end
    end
    redis.call('SET', KEYS[1], cjson.encode({v = tonumber(ARGV[1]), tombstone = true}), 'PX', ARGV[2])
    return 1
    """

    def __init__(
        self,
        r: redis.Redis,
        db: Database,
        *,
        prefix: str = "user",
        ttl: float = 3600,
        jitter: float = 0.0,
        negative_ttl: float | None = None,
        invalidation: str = "delete",
        hooks: dict[str, Callable[..., Any]] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if invalidation not in INVALIDATIONS:
            raise ValueError(f"invalidation must be one of {INVALIDATIONS}, got {invalidation!r}")
        if not 0 <= jitter < 1:
            raise ValueError("jitter is a fraction of the TTL: 0 <= jitter < 1")
        self.r = r
        self.db = db
        self.prefix = prefix
        self.ttl = ttl
        self.jitter = jitter
        self.negative_ttl = negative_ttl
        self.invalidation = invalidation
        self.hooks = hooks
        self.rng = rng or random.Random()
        self.stats = CacheStats()
        self.last_degraded = False
        self._fill = r.register_script(self.LUA_FILL)
        self._invalidate = r.register_script(self.LUA_INVALIDATE)

    def key(self, user_id: Any) -> str:
        return f"{self.prefix}:{user_id}"

    def ttl_ms(self) -> int:
        """The TTL for the next fill, with jitter applied."""
        spread = self.rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0
        return max(1, int(self.ttl * (1 + spread) * 1000))

    # -- read path ---------------------------------------------------------------------------
    def get(self, user_id: int) -> dict[str, Any] | None:
        """The user row, from Redis if cached, else from the DB (then cached)."""
        key = self.key(user_id)
        self.last_degraded = False
        try:
            cached = self.r.get(key)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            # Redis is down: serve from the DB, slower but correct.
            self.last_degraded = True
            self.stats.add("degraded")
            return self.db.get_user(user_id)
        if cached is not None:
            doc = json.loads(cached)
            if doc.get("missing"):
                self.stats.add("negative_hits")
                return None
            if not doc.get("tombstone"):
                self.stats.add("hits")
                return doc["row"]
        self.stats.add("misses")
        row = self.db.get_user(user_id)
        call_hook(self.hooks, "after_db_read", row)
        if row is None:
            if self.negative_ttl:
                self._store(key, 0, {"v": 0, "missing": True}, int(self.negative_ttl * 1000))
            return None
        self._store(key, row["version"], {"v": row["version"], "row": row}, self.ttl_ms())
        return row

    def _store(self, key: str, version: int, doc: dict, ttl_ms: int) -> None:
        payload = json.dumps(doc, sort_keys=True)
        try:
            if self.invalidation == "versioned":
                if not self._fill(keys=[key], args=[version, payload, ttl_ms]):
                    self.stats.add("rejected_fills")
            else:
                self.r.set(key, payload, px=ttl_ms)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            self.last_degraded = True
            self.stats.add("degraded")

    # -- write path --------------------------------------------------------------------------
    def update(self, user_id: int, **fields: Any) -> int:
        """Write to the DB first, then invalidate the cache. Returns the new version."""
        version = self.db.update_user(user_id, **fields)
        key = self.key(user_id)
        if self.invalidation == "versioned":
            # The tombstone outlives any reader that started before the write.
            self._invalidate(keys=[key], args=[version, self.ttl_ms()])
        else:
            self.r.delete(key)
        return version
