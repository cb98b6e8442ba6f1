"""Exercises for notebooks/23-leaderboards.ipynb.

Try it. ``composite_prediction``: for a raw score (the knob), predict whether the composite
   ``score * 1e10 + (MAX_TS - 1 - ts)`` stays below 2**53 (exact, so the tie-break holds); the
   check computes it exactly and shows what the server stored.
1. ``fastest_around``: ``around_fastest(r, key, player, k)``: a new case, a speedrun board where
   the lowest time ranks first: the player and up to k neighbours each side, fastest first.
2. ``weekly_best``: ``best_of_week(r, day_keys, dest, ttl_s)``: merge daily best-game boards into
   one with ZUNIONSTORE ... AGGREGATE MAX and a TTL, and return the week's top 3.
"""

from __future__ import annotations

import inspect
import random

import redis

from ..check import Exercise, expect
from ..trace import trace

# -- reference solutions (self-tested in tests/exercises/test_leaderboards.py) -----------------


def around_fastest(r: redis.Redis, key: str, player: str, k: int) -> list[tuple[str, float]]:
    i = r.zrank(key, player)                    # lowest time first
    if i is None:
        return []
    return r.zrange(key, max(0, i - k), i + k, withscores=True)


def best_of_week(r: redis.Redis, day_keys: list[str], dest: str, ttl_s: int) -> list[tuple[str, float]]:
    with r.pipeline(transaction=True) as tx:
        tx.zunionstore(dest, day_keys, aggregate="MAX")
        tx.expire(dest, ttl_s)
        tx.zrange(dest, 0, 2, desc=True, withscores=True)
        return tx.execute()[-1]


# -- helpers ------------------------------------------------------------------------------------


def _pairs(rows) -> list[tuple[str, float]]:
    return [(m, float(s)) for m, s in (rows or [])]


# -- exercises ----------------------------------------------------------------------------------


def composite_prediction(r: redis.Redis, raw_score: int, prefix: str = "try") -> Exercise:
    """Try it: does ``raw_score * 1e10 + (MAX_TS - 1 - ts)`` stay below 2**53? Answer True/False."""
    from ..patterns.leaderboards import MAX_TS

    ts = 1_700_000_000

    def checker(answer) -> None:
        value = raw_score * MAX_TS + (MAX_TS - 1 - ts)
        key = f"{prefix}:composite"
        r.zadd(key, {"me": value})
        stored = r.zscore(key, "me")
        r.delete(key)
        exact = value < 2**53
        expect(isinstance(answer, bool), "answer True (exact: below 2**53) or False",
               expected="True or False", actual=answer)
        expect(answer == exact,
               f"raw score {raw_score:,} gives {value:,}; 2**53 is {2**53:,}, and the server stored "
               f"{stored:,.0f}" + ("" if int(stored) == value else f" (off by {int(stored) - value:+,})"),
               expected=exact, actual=answer)

    return Exercise(
        f"composite score at raw {raw_score:,}", checker,
        hints=["Multiply the raw score by 1e10 and add a number below 1e10; compare with "
               "2**53 = 9,007,199,254,740,992.",
               "The largest raw score that fits is (2**53 - 1e10) // 1e10, about 900,718."],
        solution="prediction = raw_score * 10**10 + (10**10 - 1 - 1_700_000_000) < 2**53",
        reference=None,
    )


def fastest_around(r: redis.Redis, prefix: str = "ex1") -> Exercise:
    """Exercise 1: ``around_fastest(r, key, player, k) -> [(player, seconds), ...]``."""

    def checker(answer) -> None:
        key = f"{prefix}:speedrun"
        rnd = random.Random(5)
        times = {f"runner:{i:04d}": float(rnd.randint(600, 900)) for i in range(2000)}  # many ties
        r.delete(key)
        r.zadd(key, times)
        order = sorted(times.items(), key=lambda ms: (ms[1], ms[0]))
        pos = {m: i for i, (m, _) in enumerate(order)}

        def exact(player, k):
            i = pos[player]
            return order[max(0, i - k): i + k + 1]

        middle = order[1000][0]
        with trace(r) as t:
            got = _pairs(answer(r, key, middle, 3))
        expect(t.round_trips <= 2, "two round trips at most: the rank, then the window",
               expected="<= 2", actual=t.round_trips)
        moved = max((abs(int(c.args[2]) - int(c.args[1])) + 1 for c in t.commands
                     if c.name in ("ZRANGE", "ZREVRANGE") and len(c.args) >= 3 and c.args[1].lstrip("-").isdigit()
                     and c.args[2].lstrip("-").isdigit() and "-1" not in c.args[1:3]), default=0)
        fetched_all = any(c.name in ("ZRANGE", "ZREVRANGE", "HGETALL", "ZSCAN")
                          and ("-1" in c.args[1:3] or c.name in ("HGETALL", "ZSCAN"))
                          for c in t.commands)
        expect(not fetched_all and moved <= 7, "fetch only the window (ZRANGE start..stop around the "
               "rank), not the whole board", expected="a window of 2k+1", actual=[c.line() for c in t.commands])
        expect(got == exact(middle, 3), f"{middle}, fastest first, with 3 runners each side (equal times "
               "in member order, as ZRANGE orders them)", expected=exact(middle, 3), actual=got)
        for who, k in ((order[0][0], 2), (order[1][0], 3), (order[-1][0], 2)):
            got = _pairs(answer(r, key, who, k))
            expect(got == exact(who, k), f"near an end of the board the window is cut short: {who}, k={k}",
                   expected=exact(who, k), actual=got)
        missing = answer(r, key, "runner:nobody", 3)
        expect(not missing, "a runner with no time gets an empty window", expected=[], actual=missing)
        r.delete(key)

    return Exercise(
        "around me on a fastest-first board", checker,
        hints=["Lowest time first is the sorted set's natural order: use ZRANK (not ZREVRANK), and "
               "ZRANGE without REV.",
               "i = r.zrank(key, player); then r.zrange(key, max(0, i - k), i + k, withscores=True). "
               "Mind a player who is not on the board (ZRANK returns None) and a window that would "
               "start before rank 0."],
        solution=inspect.getsource(around_fastest), reference=around_fastest,
    )


def weekly_best(r: redis.Redis, prefix: str = "ex2") -> Exercise:
    """Exercise 2: ``best_of_week(r, day_keys, dest, ttl_s) -> top 3 [(player, score), ...]``."""

    def checker(answer) -> None:
        rnd = random.Random(9)
        days = [f"{prefix}:best:{d}" for d in range(7)]
        best: dict[str, float] = {}
        for key in days:
            r.delete(key)
            day = {f"p{i:02d}": float(rnd.randint(1, 1000)) for i in rnd.sample(range(40), 25)}
            r.zadd(key, day)
            r.expire(key, 8 * 86400)
            for m, s in day.items():
                best[m] = max(best.get(m, 0), s)
        dest = f"{prefix}:best:week"
        r.delete(dest)
        exact = sorted(best.items(), key=lambda ms: (ms[1], ms[0]), reverse=True)
        got = _pairs(answer(r, days, dest, 3600))
        expect(r.exists(dest) == 1, f"the week's board is stored at {dest}", expected=1, actual=r.exists(dest))
        stored = dict(r.zrange(dest, 0, -1, withscores=True))
        expect(stored == best, "each player's week score is their best single game of the week (the "
               "highest of their daily bests, not their sum)",
               expected=dict(exact[:3]), actual=dict(sorted(stored.items(), key=lambda ms: -ms[1])[:3]))
        expect(got == exact[:3], "return the top 3, highest first, with their scores",
               expected=exact[:3], actual=got)
        ttl = r.ttl(dest)
        expect(0 < ttl <= 3600, f"{dest} expires (ttl_s), so old weeks do not pile up",
               expected="1..3600", actual=ttl)
        r.delete(dest, *days)

    return Exercise(
        "best game of the week", checker,
        hints=["ZUNIONSTORE combines sorted sets into a new one; its AGGREGATE option says what to do "
               "with a member that appears in several (SUM, MIN or MAX).",
               "r.zunionstore(dest, day_keys, aggregate='MAX'), then r.expire(dest, ttl_s) and "
               "r.zrange(dest, 0, 2, desc=True, withscores=True); one MULTI pipeline sends all three."],
        solution=inspect.getsource(best_of_week), reference=best_of_week,
    )
