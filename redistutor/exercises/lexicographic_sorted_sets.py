"""Exercises for notebooks/18-lexicographic-sorted-sets.ipynb.

Try it. ``padding_prediction``: with ages zero-padded to ``width`` digits, how many users does the
   lex query for ages ``lo``..``hi`` return? The check runs it on the server.
1. ``events_on_days``: ``between_days(r, key, first_day, last_day)``: a new case: an event log
   indexed by ISO timestamp ("2026-03-07T09:15:00Z:evt42"), every event of a range of days.
2. ``remove_prefix``: ``remove_prefix(r, key, prefix) -> int``: delete every member that starts
   with a prefix in one command.
"""

from __future__ import annotations

import inspect

import redis

from ..check import Exercise, expect
from ..trace import trace

# -- reference solutions (self-tested in tests/exercises/test_lexicographic_sorted_sets.py) ---------

def between_days(r: redis.Redis, key: str, first_day: str, last_day: str) -> list[str]:
    """Every event of first_day..last_day (inclusive, "YYYY-MM-DD"), in time order."""
    return r.zrange(key, f"[{first_day}", b"(" + last_day.encode() + b"\xff", bylex=True)


def remove_prefix(r: redis.Redis, key: str, prefix: str) -> int:
    """Delete every member that starts with prefix; return how many went."""
    p = prefix.encode()
    return r.zremrangebylex(key, b"[" + p, b"(" + p + b"\xff")


# -- helpers ------------------------------------------------------------------------------------

def _lex_round_trip(r: redis.Redis, call, what: str, commands: tuple[str, ...]):
    with trace(r) as t:
        result = call()
    lines = [c.line() for c in t.commands]
    expect(t.round_trips == 1 and len(t.commands) == 1, f"{what} is one command: the server finds the "
           "range in O(log N) and returns only it", expected="1 command", actual=lines)
    c = t.commands[0]
    lex = c.name in commands or (c.name == "ZRANGE" and c.has("BYLEX"))
    expect(lex, f"{what} is a lex range query ({' / '.join(commands)}), not a fetch of the whole "
           "set filtered in Python", expected=" or ".join(commands), actual=lines)
    return result


EVENTS = [
    "2026-02-28T23:59:59Z:e01", "2026-03-01T00:00:00Z:e02", "2026-03-01T12:30:00Z:e03",
    "2026-03-02T08:00:00Z:e04", "2026-03-03T23:59:59Z:e05", "2026-03-04T00:00:00Z:e06",
    "2026-03-10T09:00:00Z:e07", "2026-03-31T23:00:00Z:e08", "2026-04-01T00:00:00Z:e09",
    "2026-12-31T23:59:59Z:e10",
]

WORDS = ["re", "rea", "red", "redis", "redlock", "reduce", "redé", "red🚀", "ree", "Red", "credit",
         "zebra", "été", "étoile", "étude", "eta"]


# -- exercises ----------------------------------------------------------------------------------

def padding_prediction(r: redis.Redis, width: int, lo: int, hi: int, prefix: str = "try") -> Exercise:
    """Try it: users aged 1..120 indexed as "age:id" with the age padded to ``width`` digits; the
    answer is how many users the lex query for ages lo..hi returns (right or wrong)."""
    from ..scenarios.lexicographic_sorted_sets import age_query, random_ages

    def checker(answer) -> None:
        got, exact = age_query(r, f"{prefix}:ages", random_ages(), width, lo, hi)
        expect(answer == len(got), f"with width {width} the query [{lo}..{hi}] returned {len(got)} users "
               f"({len(exact)} are really aged {lo}-{hi})", expected=len(got), actual=answer)

    return Exercise(
        f"padding {width}, ages {lo}-{hi}", checker,
        hints=["Write a few members by hand at this width (2, 25, 30, 100, 120) and sort them as strings, "
               "character by character; ':' sorts after every digit.",
               "Only when every age has the same number of digits is string order the same as numeric "
               "order; count the users aged lo..hi, then add those whose shorter or longer string lands "
               "inside the range."],
        solution="got, exact = sc.age_query(r, K('try:ages'), sc.random_ages(), width, lo, hi)\n"
                 "prediction = len(got)",
        reference=None,
    )


def events_on_days(r: redis.Redis, prefix: str = "ex1") -> Exercise:
    """Exercise 1: ``between_days(r, key, first_day, last_day) -> list[str]``."""

    def checker(answer) -> None:
        key = f"{prefix}:events"
        r.delete(key)
        r.zadd(key, {e: 0 for e in EVENTS})
        got = _lex_round_trip(r, lambda: answer(r, key, "2026-03-01", "2026-03-03"), "one query",
                              ("ZRANGEBYLEX",))
        want = EVENTS[1:5]
        expect(got == want, "1-3 March includes midnight on the 1st and 23:59:59 on the 3rd, and nothing "
               "of 28 February or 4 March", expected=want, actual=got)
        for first, last, want in [("2026-03-04", "2026-03-31", EVENTS[5:8]),
                                  ("2026-03-05", "2026-03-09", []),
                                  ("2026-01-01", "2026-12-31", EVENTS)]:
            got = answer(r, key, first, last)
            expect(got == want, f"{first} .. {last}", expected=want, actual=got)
        r.delete(key)

    return Exercise(
        "events of a range of days", checker,
        hints=["ISO timestamps are fixed-width and big-endian (year, month, day, time), so byte order "
               "is time order: the days you want are one lex range of the index.",
               "From [first_day (every member starting with that day is greater) up to just past "
               "everything that starts with last_day: ( + last_day + the byte 0xFF, sent as bytes."],
        solution=inspect.getsource(between_days), reference=between_days,
    )


def prefix_removal(r: redis.Redis, prefix: str = "ex2") -> Exercise:
    """Exercise 2: ``remove_prefix(r, key, prefix) -> int``."""

    def checker(answer) -> None:
        key = f"{prefix}:words"
        for pre in ("red", "été", "ét", "x"):
            r.delete(key)
            r.zadd(key, {w: 0 for w in WORDS})
            n = _lex_round_trip(r, lambda pre=pre: answer(r, key, pre), "the removal", ("ZREMRANGEBYLEX",))
            want = sorted(w for w in WORDS if not w.startswith(pre))
            left = sorted(r.zrange(key, 0, -1))
            gone = sorted(set(WORDS) - set(left))
            expect(left == want, f"removing prefix {pre!r} deletes exactly the members that start with "
                   f"it (here {sorted(set(WORDS) - set(want))})", expected=sorted(set(WORDS) - set(want)),
                   actual=gone)
            expect(n == len(WORDS) - len(want), f"the return value is how many went for {pre!r}",
                   expected=len(WORDS) - len(want), actual=n)
        r.delete(key)

    return Exercise(
        "remove a prefix", checker,
        hints=["ZREMRANGEBYLEX takes the same bounds as ZRANGEBYLEX and returns how many it removed.",
               "The bounds for 'starts with p' are [p and ( + p + the byte 0xFF; build them from "
               "p.encode() so the 0xFF is one byte."],
        solution=inspect.getsource(remove_prefix), reference=remove_prefix,
    )
