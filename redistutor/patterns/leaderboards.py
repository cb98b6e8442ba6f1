"""Leaderboards: players ranked by score in one sorted set.

A sorted set keeps its members ordered by score at every write (a skiplist plus a hash once it
outgrows the small listpack encoding), so an update, a rank, a top-N page and an "around me"
window each cost O(log N) plus the entries returned, however many players there are. ``ZINCRBY``
adds points on the server, so concurrent updates never lose an increment, as a read-modify-write
of a counter in the application does::

    score 10
    time 0  client A: HGET scores alice -> 10
    time 1  client B: HGET scores alice -> 10
    time 2  client A: HSET scores alice 11;  client B: HSET scores alice 11   <- one point lost

Ranks are 0-based in Redis: ``ZREVRANK`` counts from the highest score, ``ZRANK`` from the lowest.
There is no ``ZRANK ... REV`` (the server answers "syntax error"); ``ZRANK``/``ZREVRANK ...
WITHSCORE`` (7.2+) return the rank and the score in one call. Equal scores are ordered by member
name (byte order), reversed in ``REV`` order; to break ties by time instead, fold the time into
the score with :func:`composite_score`, which refuses values a double cannot hold exactly.

Notebook: notebooks/23-leaderboards.ipynb
Redis: https://redis.io/docs/latest/develop/data-types/sorted-sets/ ·
https://redis.io/commands/zrevrank/ · https://redis.io/commands/zadd/ (GT/LT) ·
https://redis.io/commands/zunionstore/
"""

from __future__ import annotations

import redis


class Leaderboard:
    """Highest score first; ranks start at 1. One sorted set: member = player, score = points."""

    def __init__(self, r: redis.Redis, key: str):
        self.r, self.key = r, key

    def add(self, player: str, points: float) -> float:
        return self.r.zincrby(self.key, points, player)          # atomic on the server

    def submit_best(self, player: str, score: float) -> None:
        self.r.zadd(self.key, {player: score}, gt=True)          # keeps the higher of old and new

    def rank(self, player: str) -> int | None:
        i = self.r.zrevrank(self.key, player)                    # 0-based, highest first
        return None if i is None else i + 1

    def top(self, n: int = 10, offset: int = 0) -> list[tuple[str, float]]:
        rows = self.r.zrange(self.key, offset, offset + n - 1, desc=True, withscores=True)
        return [(m, s) for m, s in rows]                         # [(player, score)], best first

    def around(self, player: str, k: int = 5) -> list[tuple[str, float]]:
        i = self.r.zrevrank(self.key, player)
        if i is None:
            return []
        lo = max(0, i - k)                                       # clipped at the top
        return self.top(i + k + 1 - lo, offset=lo)


MAX_TS = 10**10  # timestamps in seconds, below 10**10 (the year 2286)


def composite_score(score: int, ts: int) -> int:
    """Higher score first; on equal scores the earlier ``ts`` first. Exact only below 2**53."""
    value = score * MAX_TS + (MAX_TS - 1 - ts)
    if not 0 <= ts < MAX_TS or value >= 2**53:
        raise OverflowError(f"score {score} at ts {ts} gives {value}, beyond 2**53: a double "
                            "would round it and lose the tie-break")
    return value


def decode_score(value: float) -> tuple[int, int]:
    """(score, ts) back from a composite score read from Redis."""
    score, rest = divmod(int(value), MAX_TS)
    return score, MAX_TS - 1 - rest
