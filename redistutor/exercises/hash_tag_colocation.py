"""Exercises for notebooks/11-hash-tag-colocation.ipynb (on the notebook's real cluster).

1. ``hash_rule``: return the part of a key that Redis Cluster hashes; checked against
   ``CLUSTER KEYSLOT`` on a real node for the edge cases ("{}", "{user}{x}", "{a", ...).
2. ``order_keys``: name an order's keys so that one order's keys share a slot (a MULTI over them
   works) while different orders still spread over every master.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Mapping
from typing import Any

import redis

from ..check import Exercise, expect
from ..patterns.hash_tag_colocation import crc16, retry_redirects

EDGE_CASES = [
    "user:123:profile",      # no tag: the whole key
    "user:{123}:profile",    # the tag
    "{user}{x}",             # only the first tag counts
    "{}",                    # empty tag: the whole key
    "a{}b{c}",               # the first "{" has an empty tag: the whole key (not "c")
    "{a",                    # no closing brace: the whole key
    "a}b{c}",                # a "}" before the "{" does not matter: "c"
    "{{x}}",                 # the tag is "{x" (up to the first "}")
    "order:{}:{42}",         # empty first tag: the whole key
    "{ü}:1",                 # bytes, not characters
]


# -- reference solutions (self-tested in tests/exercises/test_hash_tag_colocation.py) -----------


def hashed_part(key: str) -> str:
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1:end]
    return key


def order_keys(order_id: int) -> dict[str, str]:
    return {part: f"order:{{{order_id}}}:{part}" for part in ("header", "items", "status")}


# -- exercises ----------------------------------------------------------------------------------


def hash_rule(node: redis.Redis) -> Exercise:
    """Exercise 1: ``hashed_part(key) -> str``; ``crc16(part) % 16384`` must equal CLUSTER KEYSLOT."""

    def checker(answer) -> None:
        for key in EDGE_CASES:
            part = answer(key)
            expect(isinstance(part, str), f"hashed_part({key!r}) returns a str", expected="str",
                   actual=type(part).__name__)
            mine = crc16(part.encode()) % 16384
            server = int(node.execute_command("CLUSTER", "KEYSLOT", key))
            expect(mine == server, f"the slot of {key!r}: CRC16({part!r}) mod 16384 must match the "
                   f"server's CLUSTER KEYSLOT", expected=server, actual=mine)

    return Exercise(
        "the hash-tag rule", checker,
        hints=[
            "Find the FIRST '{'. Then the first '}' AFTER it. What is between them is the tag.",
            "If there is no '{', no '}' after it, or nothing between them ('{}'), the whole key is hashed.",
            "key.find('{') and key.find('}', start + 1); an empty tag means end == start + 1.",
        ],
        solution=inspect.getsource(hashed_part), reference=hashed_part,
    )


def predict_multi(rc: Any, keys: list[str]) -> Exercise:
    """Try it: the answer is a prediction (True/False): will one MULTI/EXEC over ``keys`` run on
    this cluster? The checker runs it (SET on every key, then deletes them) and compares."""
    keys = list(keys)

    def checker(answer) -> None:
        expect(isinstance(answer, bool), "the prediction is True (the transaction runs) or False "
               "(the cluster refuses it)", actual=answer)
        p = rc.pipeline(transaction=True)
        for k in keys:
            p.set(k, "try-it")
        try:
            p.execute()
            ran, why = True, "every key hashes to one slot, so one node runs the whole transaction"
        except redis.exceptions.RedisClusterException as exc:
            ran, why = False, f"the keys are in different slots ({type(exc).__name__})"
        finally:
            for k in keys:
                rc.delete(k)
        slots = sorted({crc16(_hashed(k)) % 16384 for k in keys})
        expect(answer == ran, f"{why}; their slots: {slots}", expected=ran, actual=answer)

    return Exercise(
        "Try it: will one MULTI/EXEC over these keys run?", checker,
        hints=["Find each key's hashed part: the text in its first non-empty {...}, else the whole key.",
               "One transaction runs only if every key has the same hashed part's slot."],
        solution="all keys share one slot  ->  True; otherwise False", reference=None,
    )


def _hashed(key: str) -> bytes:
    k = key.encode()
    start = k.find(b"{")
    if start != -1:
        end = k.find(b"}", start + 1)
        if end > start + 1:
            return k[start + 1:end]
    return k


def order_keys_exercise(rc: Any, masters: Mapping[str, redis.Redis], orders: int = 300) -> Exercise:
    """Exercise 2: ``order_keys(order_id) -> {"header": k1, "items": k2, "status": k3}``."""

    def checker(answer) -> None:
        names: dict[int, dict[str, str]] = {}
        for oid in range(1, orders + 1):
            keys = answer(oid)
            expect(isinstance(keys, dict) and set(keys) == {"header", "items", "status"},
                   "order_keys returns a dict with the keys 'header', 'items', 'status'",
                   expected=["header", "items", "status"], actual=keys)
            names[oid] = keys
        all_keys = [k for ks in names.values() for k in ks.values()]
        expect(len(set(all_keys)) == len(all_keys), "every order has its own three keys (put the "
               "order id in them)", expected=len(all_keys), actual=len(set(all_keys)))
        try:
            for oid, keys in names.items():
                def tx(keys=keys, oid=oid):
                    p = rc.pipeline(transaction=True)
                    p.hset(keys["header"], mapping={"id": oid, "customer": f"c{oid % 17}"})
                    p.rpush(keys["items"], "sku-1", "sku-2")
                    p.set(keys["status"], "paid")
                    return p.execute()

                try:
                    retry_redirects(tx)
                except redis.exceptions.RedisClusterException as exc:
                    expect(False, f"one MULTI/EXEC over order {oid}'s three keys must work: they "
                           f"have to share a slot ({type(exc).__name__}: {exc})",
                           expected="one slot", actual=sorted(keys.values()))
            wanted = set(all_keys)
            per_node = Counter({name: sum(1 for k in c.scan_iter(count=1000) if k in wanted)
                                for name, c in masters.items()})
            total = sum(per_node.values())
            busiest = max(per_node.values()) / total if total else 1.0
            expect(len(per_node) >= 2 and min(per_node[m] for m in masters) > 0 and busiest < 0.5,
                   f"{orders} orders spread over every master (a tag shared by all orders puts "
                   f"them on one node)", expected="every master holds some", actual=dict(per_node))
        finally:
            for start in range(0, len(all_keys), 500):
                for k in all_keys[start:start + 500]:
                    rc.delete(k)

    return Exercise(
        "order keys in one slot", checker,
        hints=[
            "Multi-key commands need one slot: give the three keys a common {tag}.",
            "Tag with the order id itself, not a constant: order:{<id>}:header, order:{<id>}:items, ...",
        ],
        solution=inspect.getsource(order_keys), reference=order_keys,
    )
