"""Exercises for notebooks/21-bitmap-patterns.ipynb.

Try it. ``smaller_structure``: for ``active`` random ids below 1,000,000, which costs less memory,
   a bitmap or a set? The check measures both on the server.
1. ``claim_slot``: ``claim_slot(r, key, n)``: a new case: hand out slot numbers 0..n-1 (seats,
   worker ids) with BITPOS, safe when another client takes the same free slot at the same moment.
2. ``churned``: ``churned(r, before, after)``: how many users were active in ``before`` and not in
   ``after``, counted on the server, right even when the two bitmaps have different lengths.
"""

from __future__ import annotations

import inspect
import random
from typing import Any

import redis

from ..check import Exercise, expect
from ..scenarios.bitmap_patterns import set_vs_bitmap, store_bitmap
from ..timeline import run_threads
from ..trace import trace

# -- reference solutions (self-tested in tests/exercises/test_bitmap_patterns.py) ---------------

def claim_slot(r: redis.Redis, key: str, n: int):
    while True:
        slot = r.bitpos(key, 0, 0, -1)         # first free slot inside the string, -1 if none
        if slot == -1:
            slot = r.strlen(key) * 8           # every byte is full: the slot right after the string
        if slot >= n:
            return None                        # slots 0..n-1 are all taken
        if r.setbit(key, slot, 1) == 0:        # SETBIT returns the old bit: 0 means we took it
            return slot                        # 1: another client took it first; look again


def churned(r: redis.Redis, before: str, after: str) -> int:
    tmp = f"{before}:tmp:churn"
    with r.pipeline(transaction=True) as p:
        p.bitcount(before)
        p.bitop("AND", tmp, before, after)     # users in both
        p.bitcount(tmp)
        p.delete(tmp)
        total, _, both, _ = p.execute()
    return total - both                        # |before| - |before AND after|


# -- helpers -----------------------------------------------------------------------------------

class _Intruded(redis.Redis):
    """A client that records the slots another client took right after its BITPOS replies."""

    stolen: list[int]


def _intruding_client(r: redis.Redis, key: str, times: int = 1) -> _Intruded:
    """A client like ``r`` on which, right after the first ``times`` BITPOS replies on ``key``,
    another client takes the slot that BITPOS found (the race a claim must survive)."""
    other = redis.Redis(connection_pool=r.connection_pool)
    state: dict[str, Any] = {"left": times, "stolen": []}

    class Intruded(_Intruded):
        def execute_command(self, *args, **options):
            reply = super().execute_command(*args, **options)
            name = args[0].upper() if isinstance(args[0], str) else args[0]
            if name == "BITPOS" and args[1] == key and state["left"] > 0 and isinstance(reply, int) and reply >= 0:
                state["left"] -= 1
                other.setbit(key, reply, 1)
                state["stolen"].append(reply)
            return reply

    client = Intruded(connection_pool=r.connection_pool)
    client.stolen = state["stolen"]
    return client


def _together(n: int, fn) -> list:
    """Run fn() in n threads released together (the toolkit's run_threads); all their items."""
    return [item for items in run_threads(lambda _actor, _log: fn(), n, timeout=30) for item in items]

# -- exercises ---------------------------------------------------------------------------------

def smaller_structure(r: redis.Redis, active: int, prefix: str = "try") -> Exercise:
    """Try it: ``active`` random ids below 1,000,000; the answer is "bitmap" or "set"."""

    def checker(answer) -> None:
        m = set_vs_bitmap(r, prefix, active)
        smaller = "bitmap" if m["bitmap"] < m["set"] else "set"
        expect(str(answer).strip().lower() == smaller,
               f"{active:,} ids: the bitmap took {m['bitmap']:,} bytes, the set ({m['encoding']}) "
               f"{m['set']:,} bytes", expected=smaller, actual=answer)

    return Exercise(
        f"bitmap or set for {active:,} ids", checker,
        hints=["A bitmap for ids below 1,000,000 is 125,000 bytes however few ids are set; a set grows "
               "with its members: a few bytes each while it is an intset, a few dozen once it is a hash table.",
               "Multiply active by the set's bytes per id printed above the sweep, and compare with the "
               "bitmap's MEMORY USAGE in the same table."],
        solution='prediction = "set" if active < 3_000 else "bitmap"   # near the crossover the sweep printed',
        reference=None,
    )


def claim_exercise(r: redis.Redis, prefix: str = "ex1") -> Exercise:
    """Exercise 1: ``claim_slot(r, key, n) -> int | None``."""

    def checker(answer) -> None:
        key = f"{prefix}:seats"
        r.delete(key)
        got = [answer(r, key, 10) for _ in range(3)]
        expect(got == [0, 1, 2], "on an empty key the first three claims get slots 0, 1, 2",
               expected=[0, 1, 2], actual=got)
        r.setbit(key, 3, 1)
        r.setbit(key, 4, 1)
        nxt = answer(r, key, 10)
        expect(nxt == 5, "slots 0-4 are taken: the next claim gets 5", expected=5, actual=nxt)
        rest = [answer(r, key, 10) for _ in range(5)]
        expect(rest == [6, 7, 8, 9, None], "n = 10: after slot 9 every claim returns None, even though "
               "the string's second byte still has free bits (10-15 are not slots)",
               expected=[6, 7, 8, 9, None], actual=rest)
        r.delete(key)
        r.set(key, b"\xff")
        full8 = answer(r, key, 8)
        expect(full8 is None, "8 slots, all taken (the string is one full byte): None. BITPOS key 0 with no "
               "range answers 8 here, the bit after the string", expected=None, actual=full8)
        r.delete(key)
        racy = _intruding_client(r, key)
        won = answer(racy, key, 10)
        if racy.stolen:  # your BITPOS was a command of its own: another client took its slot at once
            expect(won == racy.stolen[0] + 1, f"another client took slot {racy.stolen[0]} between your BITPOS "
                   "and your SETBIT: your claim must notice (SETBIT's reply is the old bit) and take the next "
                   "slot", expected=racy.stolen[0] + 1, actual=won)
        else:            # one atomic step (a script): nobody could come in between
            expect(won == 0, "on an empty key the first claim gets slot 0", expected=0, actual=won)
        r.delete(key)
        claims = _together(8, lambda: [answer(r, key, 40) for _ in range(6)])
        slots = [c for c in claims if c is not None]
        expect(sorted(slots) == list(range(40)) and claims.count(None) == 8,
               "8 clients x 6 claims at once on 40 slots: each slot handed out exactly once, 8 Nones",
               expected="slots 0..39 once each, 8 None", actual=f"{len(slots)} slots, {len(set(slots))} distinct")
        r.delete(key)

    return Exercise(
        "claim a free slot", checker,
        hints=["BITPOS key 0 finds a free slot, but another client may find the same one before you set it. "
               "What does SETBIT reply?",
               "Loop: find the first 0 bit with BITPOS key 0 0 -1 (with a range, a full string answers -1; "
               "then the next slot is STRLEN * 8); stop with None when the slot is >= n; SETBIT it to 1 and "
               "return it only if SETBIT replied 0, otherwise look again."],
        solution=inspect.getsource(claim_slot), reference=claim_slot,
    )


def churn_exercise(r: redis.Redis, prefix: str = "ex2") -> Exercise:
    """Exercise 2: ``churned(r, before, after) -> int``."""
    rng = random.Random(2)

    def case(before_ids, after_ids, name):
        b, a = f"{prefix}:before", f"{prefix}:after"
        r.delete(b, a)
        if before_ids:
            store_bitmap(r, b, before_ids)
        if after_ids is not None:
            store_bitmap(r, a, after_ids)
        with trace(r) as t:
            got = answer_holder[0](r, b, a)
        want = len(set(before_ids) - set(after_ids or []))
        expect(got == want, f"{name}: users in before and not in after, as Python's set difference counts them",
               expected=want, actual=got)
        fetched = [c.name for c in t.commands if c.name in ("GET", "GETRANGE", "SMEMBERS")]
        expect(not fetched, "count on the server (BITOP, BITCOUNT): do not download the bitmaps",
               expected="no GET", actual=fetched)
        left = sorted(k for k in r.scan_iter(f"{prefix}:*") if k not in (b, a))
        expect(not left, "leave no temporary key behind", expected=[], actual=left)

    answer_holder: list = [None]

    def checker(answer) -> None:
        answer_holder[0] = answer
        before = rng.sample(range(4000), 1500)
        case(before, rng.sample(range(4000), 1500), "same lengths")
        case(before, rng.sample(range(1000), 300), "after is shorter (its highest id is lower)")
        case(rng.sample(range(500), 200), rng.sample(range(4000), 1500), "after is longer")
        case(before, None, "after does not exist (nobody came back)")
        r.delete(f"{prefix}:before", f"{prefix}:after")

    return Exercise(
        "churned users", checker,
        hints=["Users in before and not in after = |before| - |before AND after|: two BITCOUNTs and one BITOP.",
               "In one MULTI pipeline: BITCOUNT before; BITOP AND tmp before after; BITCOUNT tmp; DEL tmp. "
               "Return the first count minus the second."],
        solution=inspect.getsource(churned), reference=churned,
    )
