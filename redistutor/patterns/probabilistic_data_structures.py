"""Probabilistic data structures: trade a bounded error for a fixed, small amount of memory.

``DailyUniques`` counts distinct visitors per day in HyperLogLogs and unions days on the server;
``SeenFilter`` answers "have we seen this before?" with a Bloom filter. Both are given a client and
own their key names.

Why not sum daily counts: a visitor seen on Monday and Tuesday is one weekly visitor, but two daily
ones. time 0 Mon PFCOUNT = 1000 · Tue PFCOUNT = 1000 · 600 of them are the same people · the week
has 1400, the sum says 2000. PFCOUNT of several keys (or PFMERGE) unions the registers instead.

Notebook: notebooks/20-probabilistic-data-structures.ipynb
Redis: https://redis.io/docs/latest/develop/data-types/probabilistic/
"""

from __future__ import annotations

import redis

__all__ = ["DailyUniques", "SeenFilter"]


class DailyUniques:
    """Distinct visitors per day: one HyperLogLog per day (12 KB at most), unions on the server."""

    def __init__(self, r: redis.Redis, prefix: str = "uniq") -> None:
        self.r, self.prefix = r, prefix

    def key(self, day: str) -> str:
        return f"{self.prefix}:{day}"

    def add(self, day: str, *visitors: str) -> bool:
        """True if the estimate may have changed (some register grew)."""
        return bool(self.r.pfadd(self.key(day), *visitors))

    def count(self, *days: str) -> int:
        """Distinct visitors over all the days together: PFCOUNT of several keys unions them."""
        return self.r.pfcount(*(self.key(d) for d in days))

    def merge(self, dest: str, *days: str) -> int:
        """Keep the union as its own HLL (e.g. the week) and count it; the days stay untouched."""
        self.r.pfmerge(self.key(dest), *(self.key(d) for d in days))
        return self.r.pfcount(self.key(dest))


class SeenFilter:
    """'Seen before?' in a Bloom filter: false positives near ``error``, never a false negative."""

    def __init__(self, r: redis.Redis, key: str, capacity: int, error: float = 0.01) -> None:
        self.r, self.key = r, key
        try:
            r.bf().reserve(key, error, capacity)   # sized once: error and capacity fix the bits
        except redis.ResponseError as exc:         # "item exists": reserved earlier, keep it
            if "exists" not in str(exc):
                raise

    def add(self, *items: str) -> list[bool]:
        """Add items; True for each that was certainly new (BF.MADD answers 0 if maybe seen)."""
        return [bool(x) for x in self.r.bf().madd(self.key, *items)]

    def seen(self, *items: str) -> list[bool]:
        """False means never added; True means added, or a false positive."""
        return [bool(x) for x in self.r.bf().mexists(self.key, *items)]
