"""Exercises for notebooks/14-streams-consumer-patterns.ipynb.

Try it. ``trim_prediction``: predict the largest XLEN a stream reaches while entries are added
   with ``MAXLEN ~ bound``; the check runs it on the server.
1. ``retire_consumer`` (a new case): ``retire(r, stream, group, name, heir)`` removes a consumer
   from its group (scaling down) without losing its pending entries: ``XGROUP DELCONSUMER`` alone
   discards them. The checker gives the consumer more pending entries than one XPENDING page.
2. ``dead_letter_sweep`` (a new case): ``sweep(r, stream, group, dlq, max_deliveries)`` moves every
   pending entry delivered ``max_deliveries`` times or more to a dead-letter stream and acks it,
   leaving every other pending entry exactly as it was (owner and delivery count).
"""

from __future__ import annotations

import inspect

import redis

from ..check import Exercise, expect

# -- reference solutions (self-tested in tests/exercises/test_streams_consumer_patterns.py) ----


def retire(r: redis.Redis, stream: str, group: str, name: str, heir: str) -> int:
    moved = 0
    while True:
        page = r.xpending_range(stream, group, "-", "+", 100, consumername=name)
        if not page:
            break
        ids = [p["message_id"] for p in page]
        r.xclaim(stream, group, heir, 0, ids, justid=True)   # JUSTID: the count stays as it was
        moved += len(ids)
    r.xgroup_delconsumer(stream, group, name)                # now it has nothing left to discard
    return moved


def sweep(r: redis.Redis, stream: str, group: str, dlq: str, max_deliveries: int) -> int:
    moved, start = 0, "-"
    while True:
        page = r.xpending_range(stream, group, start, "+", 100)
        for p in page:
            if p["times_delivered"] >= max_deliveries:
                entry_id = p["message_id"]
                found = r.xrange(stream, entry_id, entry_id)
                if found:
                    r.xadd(dlq, {"id": entry_id, **found[0][1]})
                r.xack(stream, group, entry_id)
                moved += 1
        if len(page) < 100:
            return moved
        start = "(" + page[-1]["message_id"]                  # the next page, after this one


# -- helpers ------------------------------------------------------------------------------------


def _fill(r: redis.Redis, stream: str, group: str, n: int) -> list[str]:
    r.delete(stream)
    with r.pipeline(transaction=False) as p:
        for i in range(1, n + 1):
            p.xadd(stream, {"n": i}, id=f"{i}-0")
        p.execute()
    r.xgroup_create(stream, group, id="0")
    return [f"{i}-0" for i in range(1, n + 1)]


def _pel(r: redis.Redis, stream: str, group: str) -> dict[str, tuple[str, int]]:
    return {p["message_id"]: (p["consumer"], p["times_delivered"])
            for p in r.xpending_range(stream, group, "-", "+", 100_000)}


def _consumers(r: redis.Redis, stream: str, group: str) -> list[str]:
    return sorted(c["name"] for c in r.xinfo_consumers(stream, group))


def largest_xlen(r: redis.Redis, key: str, bound: int, adds: int) -> int:
    """Add ``adds`` entries with ``MAXLEN ~ bound``; the largest XLEN seen after any add."""
    r.delete(key)
    with r.pipeline(transaction=False) as p:
        for i in range(adds):
            p.xadd(key, {"n": i}, maxlen=bound, approximate=True)
            p.xlen(key)
        most = max(p.execute()[1::2])
    r.delete(key)
    return most


# -- exercises ----------------------------------------------------------------------------------


def trim_prediction(r: redis.Redis, bound: int, prefix: str = "try") -> Exercise:
    """Try it: the largest XLEN over ``bound + 500`` XADDs with ``MAXLEN ~ bound``."""

    def checker(answer) -> None:
        got = largest_xlen(r, f"{prefix}:trim", bound, bound + 500)
        expect(answer == got, f"over {bound + 500} XADDs with MAXLEN ~ {bound}, the server's largest XLEN",
               expected=got, actual=answer)

    return Exercise(
        f"MAXLEN ~ {bound}", checker,
        hints=["Approximate trimming only removes whole nodes of the stream's radix tree, and never "
               "goes below the bound. How many entries does a node hold (CONFIG GET "
               "stream-node-max-entries)?",
               "The oldest node (100 entries) can go only once the stream holds bound + 100 entries; "
               "just before that it holds one fewer."],
        solution="prediction = bound + 100 - 1   # stream-node-max-entries is 100 by default",
        reference=None,
    )


def retire_consumer(r: redis.Redis, prefix: str = "ex1") -> Exercise:
    """Exercise 1: ``retire(r, stream, group, name, heir) -> int`` (entries handed over)."""

    def checker(answer) -> None:
        stream, group = f"{prefix}:orders", "billing"
        ids = _fill(r, stream, group, 200)
        r.xreadgroup(group, "old", {stream: ">"}, count=150)      # old: 150 delivered ...
        r.xack(stream, group, *ids[:10])                           # ... 10 acked: 140 pending
        r.xreadgroup(group, "other", {stream: ">"}, count=20)     # another live consumer's 20
        r.xclaim(stream, group, "old", 0, ids[40:45], retrycount=2, justid=True)
        before = _pel(r, stream, group)
        moved = answer(r, stream, group, "old", "heir")
        after = _pel(r, stream, group)
        expect(set(after) == set(before), "every pending entry is still pending: XGROUP DELCONSUMER "
               "alone discards a consumer's pending entries, and nothing ever delivers them again",
               expected=f"{len(before)} pending", actual=f"{len(after)} pending")
        old = {i for i, (c, _) in before.items() if c == "old"}
        kept = {i for i in old if after[i][0] == "heir"}
        expect(kept == old, "the heir owns every entry the retired consumer had pending (all 140: "
               "more than one page of XPENDING, which returns at most COUNT entries)",
               expected=len(old), actual=len(kept))
        expect(all(after[i] == before[i] for i in before if before[i][0] == "other"),
               "the other consumer's pending entries stay its own: take over only the retired "
               "consumer's (XAUTOCLAIM with min-idle 0 takes everyone's)",
               expected="other: 20 untouched",
               actual=sum(after[i] == before[i] for i in before if before[i][0] == "other"))
        expect(all(after[i][1] == before[i][1] for i in old), "delivery counts unchanged: the "
               "entries were not delivered again (XCLAIM ... JUSTID), so a poison counter stays right",
               expected=[before[i][1] for i in ids[40:45]], actual=[after[i][1] for i in ids[40:45]])
        consumers = _consumers(r, stream, group)
        expect("old" not in consumers, "the retired consumer is removed from the group "
               "(XGROUP DELCONSUMER), once it has nothing pending", expected=["heir", "other"],
               actual=consumers)
        expect(moved == len(old), "retire returns how many entries it handed over",
               expected=len(old), actual=moved)

    return Exercise(
        "retire a consumer", checker,
        hints=["List the consumer's own pending entries with XPENDING and its consumer filter "
               "(r.xpending_range(stream, group, '-', '+', 100, consumername=name)), hand them to "
               "the heir with XCLAIM (min-idle 0), and repeat until none is left.",
               "XCLAIM with justid=True moves ownership without delivering the entry again, so the "
               "delivery count is kept. Only when the consumer's PEL is empty, XGROUP DELCONSUMER."],
        solution=inspect.getsource(retire), reference=retire,
    )


def dead_letter_sweep(r: redis.Redis, prefix: str = "ex2") -> Exercise:
    """Exercise 2: ``sweep(r, stream, group, dlq, max_deliveries) -> int`` (entries moved)."""

    def checker(answer) -> None:
        stream, group, dlq = f"{prefix}:jobs", "workers", f"{prefix}:jobs:dead"
        r.delete(dlq)
        ids = _fill(r, stream, group, 150)
        r.xreadgroup(group, "a", {stream: ">"}, count=110)
        r.xreadgroup(group, "b", {stream: ">"}, count=20)
        counts = {ids[4]: 3, ids[9]: 7, ids[57]: 2, ids[114]: 4, ids[20]: 1}  # 115-0 is past page 1
        for entry_id, n in counts.items():
            owner = "a" if int(entry_id.split("-")[0]) <= 110 else "b"
            r.xclaim(stream, group, owner, 0, [entry_id], retrycount=n, justid=True)
        poison = sorted((i for i, n in counts.items() if n >= 3), key=lambda i: int(i.split("-")[0]))
        before = _pel(r, stream, group)
        moved = answer(r, stream, group, dlq, 3)
        after = _pel(r, stream, group)
        parked = [f["id"] for _, f in r.xrange(dlq)]
        expect(sorted(parked, key=lambda i: int(i.split("-")[0])) == poison,
               "the dead-letter stream gets one copy of each entry delivered 3 times or more "
               "(a count of exactly 3 included; 115-0 is on XPENDING's second page of 100)",
               expected=poison, actual=parked)
        copies = {f["id"]: f.get("n") for _, f in r.xrange(dlq)}
        expect(all(copies.get(i) == i.split("-")[0] for i in poison), "each copy keeps the entry's "
               "fields (read them with XRANGE id id) and its id", expected="n=<entry number>",
               actual=copies)
        expect(not set(poison) & set(after), "a dead-lettered entry is acknowledged: no longer pending",
               expected=[], actual=sorted(set(poison) & set(after)))
        rest = {i: v for i, v in before.items() if i not in poison}
        expect(after == rest, "every other pending entry stays exactly as it was: same owner, same "
               "delivery count (claiming entries to inspect them delivers them again)",
               expected=f"{len(rest)} entries unchanged",
               actual=f"{sum(after.get(i) == v for i, v in rest.items())} unchanged")
        expect(moved == len(poison), "sweep returns how many entries it moved", expected=len(poison),
               actual=moved)
        again = answer(r, stream, group, dlq, 3)
        expect(again == 0 and r.xlen(dlq) == len(poison), "a second sweep finds nothing to move",
               expected=(0, len(poison)), actual=(again, r.xlen(dlq)))

    return Exercise(
        "dead-letter sweep", checker,
        hints=["XPENDING (extended form) returns each pending entry's delivery count without "
               "delivering it: r.xpending_range(stream, group, start, '+', 100). Page through it: "
               "the next page starts after the last id, '(' + last_id.",
               "For each entry with times_delivered >= max_deliveries: read its fields with "
               "XRANGE id id, XADD a copy (with its id) to dlq, then XACK it. Touch nothing else."],
        solution=inspect.getsource(sweep), reference=sweep,
    )
