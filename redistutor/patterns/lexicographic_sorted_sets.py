"""Lexicographic sorted sets: one sorted set whose members all share score 0 is an ordered string
index. Redis then orders the members byte by byte (memcmp), so prefix and range queries cost
O(log N + M), like a B-tree scan.

Why score 0 for every member: with mixed scores the set is ordered by score first, and a
ZRANGEBYLEX walk starts at the first member >= min in *score* order and stops at the first member
> max, so it skips matches and returns the wrong slice (the notebook shows it).

Why the prefix bound is sent as bytes: the upper bound ``(prefix + 0xFF`` works because 0xFF never
occurs in UTF-8. As a Python str, ``"\\xff"`` is encoded to the two bytes C3 BF, which sorts
*below* lead bytes such as F0 (emoji), so "red🚀" would be missed.

Notebook: notebooks/18-lexicographic-sorted-sets.ipynb
Redis: https://redis.io/docs/latest/commands/zrangebylex/
"""

from __future__ import annotations

import redis

__all__ = ["AgeIndex", "CaseInsensitiveIndex", "LexIndex", "prefix_range"]


def prefix_range(prefix: str) -> tuple[bytes, bytes]:
    """Lex bounds for "starts with prefix": from [prefix up to (prefix + the byte 0xFF)."""
    p = prefix.encode()              # bytes: the str "\xff" would be sent as the 2 bytes C3 BF
    return b"[" + p, b"(" + p + b"\xff"


class LexIndex:
    """An ordered string index: every member has score 0, so Redis orders them byte by byte."""

    def __init__(self, r: redis.Redis, key: str) -> None:
        self.r, self.key = r, key

    def add(self, *members: str) -> int:
        return self.r.zadd(self.key, {m: 0 for m in members})   # one score for all: byte order

    def prefix(self, prefix: str, limit: int = 10) -> list[str]:
        lo, hi = prefix_range(prefix)
        return self.r.zrange(self.key, lo, hi, bylex=True, offset=0, num=limit)

    def count(self, prefix: str) -> int:
        return self.r.zlexcount(self.key, *prefix_range(prefix))


class CaseInsensitiveIndex(LexIndex):
    """Members are ``normalized:original``: "redis:Redis" is found by "re", "RE" or "Re".

    The normalized form must not contain ":" (here: words without a colon).
    """

    def add(self, *words: str) -> int:
        return super().add(*(f"{w.casefold()}:{w}" for w in words))

    def prefix(self, prefix: str, limit: int = 10) -> list[str]:
        return [m.split(":", 1)[1] for m in super().prefix(prefix.casefold(), limit)]


class AgeIndex:
    """Users by age: members "025:u7", ages zero-padded to 3 digits so byte order is numeric order."""

    # KEYS[1] = the user's hash, KEYS[2] = the index; ARGV[1] = user id, ARGV[2] = the new age.
    # Moves the user's entry and updates the hash in one step: no other client runs in between.
    LUA_SET_AGE = """
    local old = redis.call('HGET', KEYS[1], 'age')
    if old then redis.call('ZREM', KEYS[2], string.format('%03d:%s', old, ARGV[1])) end
    redis.call('HSET', KEYS[1], 'age', ARGV[2])
    return redis.call('ZADD', KEYS[2], 0, string.format('%03d:%s', ARGV[2], ARGV[1]))
    """

    def __init__(self, r: redis.Redis, prefix: str) -> None:
        self.r, self.index = r, f"{prefix}:by_age"
        self.user = lambda uid: f"{prefix}:user:{uid}"
        self.script = r.register_script(self.LUA_SET_AGE)

    def set_age(self, uid: str, age: int) -> None:
        self.script(keys=[self.user(uid), self.index], args=[uid, age])

    def between(self, lo: int, hi: int) -> list[str]:
        """Ids of the users aged lo..hi (inclusive), in age order."""
        entries = self.r.zrange(self.index, f"[{lo:03d}:", f"({hi + 1:03d}:", bylex=True)
        return [e.split(":", 1)[1] for e in entries]
