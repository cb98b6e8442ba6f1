"""Redis as the system of record: entities in hashes, hand-made indexes, durable acknowledgements.

Redis has no foreign keys and no secondary indexes of its own: a record ``user:<id>`` (a hash)
is found by email through a string ``user:email:<email> -> id`` and by age through a sorted set
``users:by:age``. Nothing keeps the three in step but the code that writes them, so every write
and every delete touches all three in one atomic step.

Why atomic: time 0 a delete removes ``user:7`` · time 1 its process is killed (a deploy, an OOM
kill) before it removes ``user:email:ann@x`` · from then on a lookup by email finds an id whose
record is gone, and the email can never be registered again. One ``MULTI``/``EXEC`` (add) and
one Lua script (delete) run entirely or not at all.

:func:`durable_set` is the write a system of record acknowledges: the ``SET`` and a ``WAITAOF``
on the *same* connection (WAITAOF, like WAIT, counts only the calling connection's writes).

Notebook: notebooks/27-redis-as-primary-database.ipynb
Redis: https://redis.io/docs/latest/operate/oss_and_stack/management/persistence/ and
https://redis.io/commands/waitaof
"""

from __future__ import annotations

import redis

__all__ = ["Users", "durable_set"]


class Users:
    """Users as hashes with two hand-made indexes (email -> id, age -> ids), kept in step."""

    # KEYS: record, email entry, age index. ARGV: id, the email read (0 if it changed since).
    LUA_DELETE = """
    if redis.call('HGET', KEYS[1], 'email') ~= ARGV[2] then return 0 end  -- caller re-reads
    redis.call('DEL', KEYS[1], KEYS[2])
    redis.call('ZREM', KEYS[3], ARGV[1])
    return 1
    """

    def __init__(self, r: redis.Redis, prefix: str = "user") -> None:
        self.r, self.prefix, self._delete = r, prefix, r.register_script(self.LUA_DELETE)

    def keys(self, uid: str, email: str) -> list[str]:
        return [f"{self.prefix}:{uid}", f"{self.prefix}:email:{email}", f"{self.prefix}s:by:age"]

    def add(self, uid: str, email: str, age: int, **fields: str) -> None:
        record, by_email, by_age = self.keys(uid, email)
        with self.r.pipeline(transaction=True) as tx:          # MULTI/EXEC: all three or none
            tx.hset(record, mapping={"email": email, "age": age, **fields})
            tx.set(by_email, uid)
            tx.zadd(by_age, {uid: age})
            tx.execute()

    def delete(self, uid: str) -> bool:
        while (email := self.r.hget(self.keys(uid, "")[0], "email")) is not None:
            if self._delete(keys=self.keys(uid, email), args=[uid, email]):
                return True                                    # record and both entries gone
        return False                                           # no such user


def durable_set(r: redis.Redis, key: str, value: str, *, replicas: int = 0, timeout_ms: int = 1000) -> tuple[int, int]:
    """SET, then WAITAOF 1 <replicas> on the same connection (one pipeline = one connection).

    Returns (local AOFs, replica AOFs) that fsynced the write; fewer than asked means not yet
    durable there (the write is NOT undone: it stays in memory and may still reach the disk).
    """
    with r.pipeline(transaction=False) as p:
        p.set(key, value)
        p.execute_command("WAITAOF", 1, replicas, timeout_ms)
        _, (local, remote) = p.execute()
    return int(local), int(remote)
