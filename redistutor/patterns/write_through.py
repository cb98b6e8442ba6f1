"""Write-through: every write updates the database and then Redis before it returns.

Write: ``UPDATE users ... RETURNING *`` in the DB, then ``SET user:1 <row json> [PX ttl]``.
Read:  ``GET user:1`` -> a hit right after any write; a miss (cold key, expired, evicted) falls
back to the DB and fills the cache.

Why the DB goes first: if the DB refuses the write (constraint, outage, timeout), nothing has
touched Redis yet, so the cache never holds a value the DB does not have. Cache-first does the
opposite: ``SET`` succeeds, ``UPDATE`` fails, and readers are served a row that was never stored.

The ordering race between two writers, with a plain ``SET`` as the cache write::

    time 0  writer A: UPDATE -> row version 2 (name "A")
    time 1  writer B: UPDATE -> row version 3 (name "B");  SET user:1 <version 3>
    time 2  writer A: SET user:1 <version 2>              <- the cache now disagrees with the DB

The DB committed A then B; the cache saw B then A. With ``versioned=True`` the cache write is a
Lua script that compares the version stored in the cached row with the one being written and
refuses to go backwards, so A's late ``SET`` at time 2 is rejected.

``write_through`` is the write path in a dozen lines, as the notebook shows it. ``WriteThrough``
is the same write plus the read path, a TTL, the versioned cache write, race hooks and ``warm``.

Notebook: notebooks/02-write-through.ipynb
Redis: https://redis.io/docs/latest/develop/use/patterns/ (SET: https://redis.io/commands/set,
EVALSHA: https://redis.io/commands/evalsha)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from ..db import Database
from ..race import call_hook
from ..stats import Stats

_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def write_through(r, db, user_id, name, *, prefix="user", ttl=None):
    """Write-through: commit to the database first, then SET the committed row in Redis."""
    rows = db.execute(
        "UPDATE users SET name = ?, version = version + 1 WHERE id = ? "
        "RETURNING id, name, email, version",   # the row THIS write committed: a
        (name, user_id))                        # later SELECT could see another writer's
    if not rows:                                # (if the DB refuses, it raises here and
        raise KeyError(user_id)                 #  Redis is never touched)
    uid, name, email, version = rows[0]
    row = {"id": uid, "name": name, "email": email, "version": version}
    r.set(f"{prefix}:{user_id}", json.dumps(row), ex=ttl)   # then the cache, same row
    return row


@dataclass
class WriteStats(Stats):
    writes: int = 0  # write() calls whose DB write committed
    db_failures: int = 0  # write() calls the DB refused (nothing was written anywhere)
    cache_errors: int = 0  # DB committed but Redis could not be updated
    rejected_sets: int = 0  # versioned cache writes refused because Redis held a newer row
    hits: int = 0
    misses: int = 0


class WriteThrough:
    """Keep ``db.users`` rows in Redis under ``<prefix>:<id>``, written on every update.

    Args:
        r: a redis-py client (``decode_responses=True``).
        db: the :class:`~redistutor.db.Database` that owns the truth.
        prefix: key prefix, e.g. ``server.key("user")``.
        ttl: seconds a cached row lives (None: no expiry). A TTL bounds "cache pollution": rows
            that are written but never read leave Redis on their own.
        versioned: write the cache through :attr:`LUA_SET_IF_NEWER` (refuses older versions)
            instead of a plain ``SET``.
        hooks: pause points for race labs: "after_db_write" (row, after the UPDATE committed,
            before the cache write) and "after_warm_read" (rows, after :meth:`warm` read them
            from the DB, before it writes them to Redis).

    Example:
        >>> wt = WriteThrough(r, db, prefix=server.key("user"), versioned=True)
        >>> wt.write(1, name="Ada")      # UPDATE, then SET user:1
        >>> wt.get(1)                    # a cache hit
    """

    # KEYS[1] = cache key
    # ARGV[1] = the row's version (the DB's users.version after this write)
    # ARGV[2] = the row as JSON; it contains the same "version" field
    # ARGV[3] = TTL in milliseconds, or 0 for no expiry
    # Returns 1 if stored; 0 if the key already holds a row with a version >= ARGV[1]
    # (a later write got there first: ours is older and must not overwrite it).
    LUA_SET_IF_NEWER = """
    local cur = redis.call('GET', KEYS[1])
    if cur then
      local ok, doc = pcall(cjson.decode, cur)
      if ok and type(doc) == 'table' and tonumber(doc['version'])
         and tonumber(doc['version']) >= tonumber(ARGV[1]) then
        return 0
      end
    end
    if tonumber(ARGV[3]) > 0 then
      redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
    else
      redis.call('SET', KEYS[1], ARGV[2])
    end
    return 1
    """

    # RETURNING gives the committed row in the same statement: reading it back with a second
    # SELECT could return another writer's newer row.
    SQL_UPDATE = ("UPDATE users SET {sets}, version = version + 1 WHERE id = ? "
                  "RETURNING id, name, email, version")

    def __init__(
        self,
        r: redis.Redis,
        db: Database,
        *,
        prefix: str = "user",
        ttl: float | None = None,
        versioned: bool = True,
        hooks: dict[str, Callable[..., Any]] | None = None,
    ) -> None:
        self.r = r
        self.db = db
        self.prefix = prefix
        self.ttl = ttl
        self.versioned = versioned
        self.hooks = hooks
        self.stats = WriteStats()
        self._set_if_newer = r.register_script(self.LUA_SET_IF_NEWER)

    def key(self, user_id: Any) -> str:
        return f"{self.prefix}:{user_id}"

    # -- write path --------------------------------------------------------------------------
    def write(self, user_id: int, **fields: Any) -> dict[str, Any]:
        """Update the row in the DB, then in Redis. Returns the committed row.

        Raises the DB's exception if the DB refuses (Redis is then untouched) and KeyError if
        there is no such user. If Redis fails after the DB committed, the write still succeeds
        (the DB is the truth); the stale key is deleted if possible, and ``stats.cache_errors``
        counts it.
        """
        allowed = {"name", "email"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"write takes {sorted(allowed)}, got {sorted(fields)}")
        names = sorted(fields)
        sql = self.SQL_UPDATE.format(sets=", ".join(f"{k} = ?" for k in names))
        try:
            rows = self.db.execute(sql, (*[fields[k] for k in names], user_id))
        except Exception:
            self.stats.add("db_failures")
            raise  # nothing reached Redis: cache and DB still agree
        if not rows:
            raise KeyError(user_id)
        uid, name, email, version = rows[0]
        row = {"id": uid, "name": name, "email": email, "version": version}
        self.stats.add("writes")
        call_hook(self.hooks, "after_db_write", row)
        self._cache(row)
        return row

    def _cache(self, row: dict[str, Any]) -> bool:
        key = self.key(row["id"])
        payload = json.dumps(row, sort_keys=True)
        ttl_ms = int(self.ttl * 1000) if self.ttl else 0
        try:
            if self.versioned:
                stored = bool(self._set_if_newer(keys=[key], args=[row["version"], payload, ttl_ms]))
                if not stored:
                    self.stats.add("rejected_sets")
                return stored
            self.r.set(key, payload, px=ttl_ms or None)
            return True
        except redis.exceptions.RedisError:
            # Down, timed out, or refused (OOM under maxmemory): the DB has the new row, and an
            # old cached copy must not outlive this write (DEL is allowed even when SET is not).
            self.stats.add("cache_errors")
            try:
                self.r.delete(key)
            except redis.exceptions.RedisError:
                pass  # Redis is down: the TTL (or a restart without persistence) clears it
            return False

    # -- cold start --------------------------------------------------------------------------
    SQL_WARM = "SELECT id, name, email, version FROM users WHERE id IN ({marks})"

    def warm(self, user_ids: list[int]) -> int:
        """Load rows into an empty (cold) cache: one DB query, one pipelined round trip to Redis.

        After a Redis restart without persistence, or a new node, every read is a miss until it
        is refilled. Warming the hot keys first avoids that burst of DB reads. The rows go through
        the same versioned write as :meth:`write`, so a write that commits while the warm-up is
        in flight is never overwritten by the older row the warm-up read. Returns the rows stored.
        """
        ids = list(user_ids)
        if not ids:
            return 0
        found = self.db.execute(self.SQL_WARM.format(marks=", ".join("?" * len(ids))), tuple(ids))
        rows = [{"id": i, "name": n, "email": e, "version": v} for i, n, e, v in found]
        call_hook(self.hooks, "after_warm_read", rows)
        ttl_ms = int(self.ttl * 1000) if self.ttl else 0
        pipe = self.r.pipeline(transaction=False)
        for row in rows:
            payload = json.dumps(row, sort_keys=True)
            if self.versioned:
                self._set_if_newer(keys=[self.key(row["id"])], args=[row["version"], payload, ttl_ms],
                                   client=pipe)
            else:
                pipe.set(self.key(row["id"]), payload, px=ttl_ms or None)
        stored = sum(bool(x) for x in pipe.execute())
        self.stats.add("rejected_sets", len(rows) - stored)
        return stored

    # -- read path ---------------------------------------------------------------------------
    def get(self, user_id: int) -> dict[str, Any] | None:
        """The row from Redis; on a miss from the DB (then cached, versioned like a write)."""
        try:
            cached = self.r.get(self.key(user_id))
        except _REDIS_DOWN:
            cached = None
        if cached is not None:
            self.stats.add("hits")
            return json.loads(cached)
        self.stats.add("misses")
        row = self.db.get_user(user_id)
        if row is not None:
            self._cache(row)
        return row
