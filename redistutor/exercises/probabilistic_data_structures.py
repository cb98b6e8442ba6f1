"""Exercises for notebooks/20-probabilistic-data-structures.ipynb.

Try it. ``hll_encoding_prediction``: predict whether a HyperLogLog of ``n`` distinct items is stored
   sparse or dense; the check builds it and reads the header.
1. ``feed_dedup``: ``unseen(r, key, articles)``: a new case for the Bloom filter: a news feed that
   never shows a user the same article twice, in one round trip per page.
2. ``week_uniques``: ``weekly(r, day_keys)``: distinct visitors over several daily HyperLogLogs,
   without summing the days and without changing them.
"""

from __future__ import annotations

import redis

from ..check import Exercise, expect
from ..trace import trace

# -- reference solutions (self-tested in tests/exercises/test_probabilistic_data_structures.py) ---

def unseen(r: redis.Redis, key: str, articles: list[str]) -> list[str]:
    """The articles this user has not been shown, recorded as shown, in one BF.MADD."""
    fresh = r.bf().madd(key, *articles)       # 1 = certainly new (and now added), 0 = maybe seen
    return [a for a, new in zip(articles, fresh) if new]


def weekly(r: redis.Redis, day_keys: list[str]) -> int:
    """Distinct visitors over the days: PFCOUNT of several keys unions them without writing."""
    return r.pfcount(*day_keys)


# -- exercises ----------------------------------------------------------------------------------


def hll_encoding_prediction(r: redis.Redis, n: int, key: str = "try:hll") -> Exercise:
    """Try it: is a HyperLogLog of ``n`` distinct items sparse or dense? The check builds it."""
    from ..scenarios.probabilistic_data_structures import hll_encoding, items

    def checker(answer) -> None:
        r.delete(key)
        values = items(n, seed=77)
        for i in range(0, n, 10_000):
            r.pfadd(key, *values[i:i + 10_000])
        got, size = hll_encoding(r, key), r.strlen(key)
        limit = r.config_get("hll-sparse-max-bytes")["hll-sparse-max-bytes"]
        r.delete(key)
        expect(str(answer).strip().lower() == got,
               f"{n:,} distinct items: the HLL is {size:,} bytes, so it is {got} "
               f"(sparse while it fits in hll-sparse-max-bytes = {limit})", expected=got, actual=answer)

    return Exercise(
        f"HLL encoding at {n:,} items", checker,
        hints=["A sparse HLL stores runs of empty registers compactly; it turns dense (12,304 bytes) "
               "once its sparse form would pass hll-sparse-max-bytes. Look at the growth table above.",
               "In the table, find the last size that was still sparse and the first that was dense."],
        solution="# Sparse while the sparse form fits in hll-sparse-max-bytes. The growth table above brackets\n"
                 "# the switch: its last 'sparse' row and first 'dense' row (in between, build one and look).\n"
                 'prediction = "sparse" if n <= 1_600 else "dense"',
        reference=None,
    )


def feed_dedup(r: redis.Redis, prefix: str = "ex1") -> Exercise:
    """Exercise 1: ``unseen(r, key, articles) -> list[str]``."""

    def checker(answer) -> None:
        key = f"{prefix}:seen:ana"
        r.delete(key)
        r.bf().reserve(key, 0.01, 10_000)
        page1 = [f"article:{i}" for i in range(50)]
        with trace(r) as t:
            got1 = list(answer(r, key, page1))
        expect(t.round_trips == 1, "one page is one round trip (BF.MADD answers and records at once); "
               "checking then adding in two steps lets two requests show the same article",
               expected="1 round trip", actual=f"{t.round_trips}: {[c.line() for c in t.commands]}")
        expect(sorted(got1) == sorted(page1), "on a fresh filter every article is new: all 50 are shown",
               expected=len(page1), actual=len(got1))
        page2 = page1[20:] + [f"article:{i}" for i in range(50, 70)]
        got2 = list(answer(r, key, page2))
        repeats = sorted(set(got2) & set(page1))
        expect(not repeats, "an article shown before must never be shown again: a Bloom filter has no "
               "false negatives, so BF.MADD/BF.EXISTS never call a seen article new",
               expected=[], actual=repeats[:5])
        expect(set(got2) <= set(page2) and len(got2) >= 18,
               "the 20 new articles are shown (a false positive may hide one or two, no more)",
               expected="18..20 of article:50..69", actual=sorted(got2))
        got3 = list(answer(r, key, page2))
        expect(got3 == [], "the articles of page 2 are now recorded as shown: the same page again shows "
               "nothing (remember what you showed)", expected=[], actual=got3[:5])
        kind = r.type(key)
        expect(kind == "MBbloom--", f"{key} stays the Bloom filter: a Set would remember every id "
               "exactly and grow without bound", expected="MBbloom--", actual=kind)
        r.delete(key)

    return Exercise(
        "news feed without repeats", checker,
        hints=["BF.MADD adds several items and answers, per item, 1 if it was certainly new and 0 if it "
               "may have been there already.",
               "r.bf().madd(key, *articles) returns one flag per article: keep the articles whose flag is 1."],
        solution="def unseen(r, key, articles):\n"
                 "    fresh = r.bf().madd(key, *articles)\n"
                 "    return [a for a, new in zip(articles, fresh) if new]",
        reference=unseen,
    )


def week_uniques(r: redis.Redis, prefix: str = "ex2") -> Exercise:
    """Exercise 2: ``weekly(r, day_keys) -> int``."""

    def checker(answer) -> None:
        from ..scenarios.probabilistic_data_structures import items

        people = items(6_000, seed=202, prefix="v:")
        days = {f"{prefix}:day{d}": people[d * 600: d * 600 + 2_400] for d in range(7)}
        for k, v in days.items():
            r.delete(k)
            r.pfadd(k, *v)
        exact = len(set().union(*days.values()))
        before = {k: r.pfcount(k) for k in days}    # (not DUMP: PFCOUNT caches its estimate in the key)
        got = answer(r, list(days))
        changed = sorted(k for k in days if r.type(k) != "string" or r.pfcount(k) != before[k])
        expect(not changed, "the daily HLLs must stay as they were (PFMERGE into a day overwrites that "
               "day with the union)", expected=[], actual=changed)
        total = sum(before.values())
        expect(isinstance(got, int) and abs(got - exact) <= 0.025 * exact,
               f"{exact:,} distinct visitors came during the week (the sum of the days, {total:,}, counts "
               "every regular once per day)", expected=f"{exact:,} ± 2.5 %", actual=got)
        extra = sorted(set(r.keys(f"{prefix}:*")) - set(days))
        for k in list(days) + extra:
            r.delete(k)
        expect(not extra, "a weekly count needs no extra key (or delete the one you made)",
               expected=[], actual=extra)

    return Exercise(
        "distinct visitors over a week", checker,
        hints=["A regular who came every day is one weekly visitor; union the HyperLogLogs, don't add counts.",
               "PFCOUNT accepts several keys and counts their union without storing it."],
        solution="def weekly(r, day_keys):\n    return r.pfcount(*day_keys)",
        reference=weekly,
    )
