"""Exercises for notebooks/10-cross-shard-consistency.ipynb.

0. ``backoff_prediction`` (the "Try it" step): predict whether a reader that backs off still
   repairs a write that is only stalled, and whether the account is consistent afterwards.
1. ``stamp_check``: read two stamped parts from two instances and accept them only if they carry
   the same token (``"<token>|<json>"``; the JSON may itself contain ``|``).
2. ``commit_marker``: write two parts under txid-tagged keys and the commit marker last, so a
   shard that is down mid-write leaves readers on the previous complete pair.
"""

from __future__ import annotations

import inspect
import json
import secrets

import redis

from ..check import Exercise, expect
from ..exceptions import CheckFailed
from ..patterns.cross_shard_consistency import SourceOfTruth, StampedSplit
from ..scenarios.cross_shard_consistency import stalled_writer
from ..server import fail_fast_retry, free_port

# -- reference solutions (self-tested in tests/exercises/test_cross_shard_consistency.py) -----------


def verified_read(a: redis.Redis, b: redis.Redis, key_a: str, key_b: str):
    raw_a, raw_b = a.get(key_a), b.get(key_b)
    if raw_a is None or raw_b is None:
        return None
    token_a, _, body_a = raw_a.partition("|")
    token_b, _, body_b = raw_b.partition("|")
    if token_a != token_b:
        return None
    return json.loads(body_a), json.loads(body_b)


def marked_write(a: redis.Redis, b: redis.Redis, prefix: str, txid: str, profile: dict, settings: dict) -> None:
    a.set(f"{prefix}:profile:{txid}", json.dumps(profile))
    b.set(f"{prefix}:settings:{txid}", json.dumps(settings))
    a.set(f"{prefix}:committed", txid)  # last: the write exists only once this succeeds


# -- exercises ----------------------------------------------------------------------------------


_FREE = {"profile": {"plan": "free"}, "settings": {"plan": "free", "max_projects": 3}}
_PRO = {"profile": {"plan": "pro"}, "settings": {"plan": "pro", "max_projects": 50}}


def backoff_prediction(shards, db, held_for: int, *, retries: int = 3, prefix: str = "try:acct") -> Exercise:
    """Try it: the answer is a prediction, ``{"repaired": bool, "consistent": bool}``, for a writer
    stalled between its SETs through ``held_for`` of a patient reader's ``retries`` back-offs."""
    if not 0 <= held_for <= 10:
        raise ValueError(f"held_for is a number of back-offs, 0 to 10; got {held_for!r}")

    def checker(answer) -> None:
        expect(isinstance(answer, dict) and set(answer) == {"repaired", "consistent"},
               'the prediction is a dict {"repaired": True/False, "consistent": True/False}', actual=answer)
        truth = SourceOfTruth(db, "try_it")
        truth.clear()
        split = StampedSplit(shards, prefix=prefix, truth=truth)
        out = stalled_writer(split, 1, _FREE, _PRO, held_for=held_for, retries=retries)
        actual = {"repaired": out["repairs"] > 0, "consistent": out["after"].ok}
        why = (f"the writer stalled through {held_for} back-off(s); the reader gives up after {retries}. "
               + ("It outlasted them, so the reader repaired the in-flight write, and the writer's "
                  "second SET then landed over the repair: a false tear (same data, two stamps)."
                  if actual["repaired"] else
                  "It finished within them, so the reader's re-read found the writer's complete pair."))
        expect(answer == actual, why, expected=actual, actual=answer)

    return Exercise(
        "Try it: does backing off prevent the repair?", checker,
        hints=["Count: the reader re-reads after each back-off, `retries` times, and repairs only "
               "if the last re-read is still torn.",
               "If the writer stays stalled past the last back-off, the repair runs first and the "
               "writer's second SET lands afterwards."],
        solution='{"repaired": HELD_FOR > 3, "consistent": HELD_FOR <= 3}', reference=None,
    )


def stamp_check(a: redis.Redis, b: redis.Redis, prefix: str = "ex1:acct") -> Exercise:
    """Exercise 1: ``verified_read(a, b, key_a, key_b)`` -> ``(profile, settings)`` or None."""

    def checker(answer) -> None:
        ka, kb = f"{prefix}:profile", f"{prefix}:settings"
        t1, t2 = secrets.token_hex(8), secrets.token_hex(8)
        profile = {"name": "Ada | Lovelace", "plan": "pro"}  # a "|" inside the JSON, on purpose
        settings = {"plan": "pro", "max_projects": 50}

        a.set(ka, f"{t1}|{json.dumps(profile)}")
        b.set(kb, f"{t1}|{json.dumps(settings)}")
        got = answer(a, b, ka, kb)
        expect(got is not None and tuple(got) == (profile, settings),
               "a clean pair (same token on both shards) is returned as (profile, settings), "
               "decoded from the JSON after the first '|'", expected=(profile, settings), actual=got)

        b.set(kb, f"{t2}|{json.dumps({'plan': 'free', 'max_projects': 3})}")
        got = answer(a, b, ka, kb)
        expect(got is None, "a torn pair (different tokens) is refused with None: it was never "
               "written together", expected=None, actual=got)

        b.delete(kb)
        got = answer(a, b, ka, kb)
        expect(got is None, "a pair with one part missing (the write died before the second SET) "
               "is refused with None", expected=None, actual=got)
        a.delete(ka)

    return Exercise(
        "transaction stamp check", checker,
        hints=[
            "GET both keys. Each value is '<token>|<json>': compare the tokens, not the values.",
            "Split only at the FIRST '|': raw.partition('|') gives (token, '|', json). "
            "A plain split('|') breaks when the JSON contains '|'.",
            "Return None if either key is missing or the tokens differ; else the two json.loads.",
        ],
        solution=inspect.getsource(verified_read), reference=verified_read,
    )


def _dead_client() -> redis.Redis:
    """A real client to a port nobody listens on: every command fails at once (a dead shard)."""
    return redis.Redis(port=free_port(), decode_responses=True, retry=fail_fast_retry(),
                       socket_connect_timeout=1.0, socket_timeout=1.0)


def _committed(a: redis.Redis, b: redis.Redis, prefix: str):
    """What a marker-following reader sees: (profile, settings), or None (missing or broken)."""
    txid = a.get(f"{prefix}:committed")
    if txid is None:
        return None
    p, s = a.get(f"{prefix}:profile:{txid}"), b.get(f"{prefix}:settings:{txid}")
    if p is None or s is None:
        return None
    return json.loads(p), json.loads(s)


def commit_marker(a: redis.Redis, b: redis.Redis, prefix: str = "ex2:acct") -> Exercise:
    """Exercise 2: ``marked_write(a, b, prefix, txid, profile, settings)`` with the marker last."""

    def checker(answer) -> None:
        for k in list(a.scan_iter(match=f"{prefix}:*")) + [f"{prefix}:committed"]:
            a.delete(k)
        for k in list(b.scan_iter(match=f"{prefix}:*")):
            b.delete(k)
        free = ({"plan": "free"}, {"plan": "free", "max_projects": 3})
        pro = ({"plan": "pro"}, {"plan": "pro", "max_projects": 50})

        tx1 = secrets.token_hex(4)
        answer(a, b, prefix, tx1, *free)
        expect(a.get(f"{prefix}:committed") == tx1,
               f"after a write, {prefix}:committed holds its txid (on shard a)",
               expected=tx1, actual=a.get(f"{prefix}:committed"))
        seen = _committed(a, b, prefix)
        expect(seen is not None and tuple(seen) == free,
               f"a reader following the marker finds both parts ({prefix}:profile:<txid> on a, "
               f"{prefix}:settings:<txid> on b)", expected=free, actual=seen)

        tx2 = secrets.token_hex(4)
        try:
            answer(a, _dead_client(), prefix, tx2, *pro)  # shard b is down for this write
        except (redis.exceptions.ConnectionError, CheckFailed) as exc:
            # The writer may (should) see the failure; what matters is what readers see. (The
            # learner's exceptions reach us as CheckFailed("your code raised ...").)
            if isinstance(exc, CheckFailed) and "ConnectionError" not in str(exc):
                raise
        marker = a.get(f"{prefix}:committed")
        seen = _committed(a, b, prefix)
        expect(marker == tx1 and seen is not None and tuple(seen) == free,
               "with shard b down mid-write, the marker must still point at the previous write so "
               "readers keep the previous complete pair: write both parts, THEN the marker",
               expected=(tx1, free), actual=(marker, seen))

        tx3 = secrets.token_hex(4)
        answer(a, b, prefix, tx3, *pro)
        seen = _committed(a, b, prefix)
        expect(seen is not None and tuple(seen) == pro,
               "once shard b is back, the next write commits", expected=pro, actual=seen)

    return Exercise(
        "commit marker written last", checker,
        hints=[
            "Three SETs: the profile part on a, the settings part on b, then the marker on a.",
            "Keys: f'{prefix}:profile:{txid}', f'{prefix}:settings:{txid}', "
            "f'{prefix}:committed' (value: txid). Store the dicts as json.dumps(...).",
            "If the SET on b raises, the marker must not be written: do not catch the error, or re-raise it.",
        ],
        solution=inspect.getsource(marked_write), reference=marked_write,
    )
