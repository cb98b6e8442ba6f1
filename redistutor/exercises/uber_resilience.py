"""Exercises for notebooks/30-uber-resilience.ipynb.

Try it. ``victim_prediction``: which cache node dies is the knob; predict which DB shard refuses
   queries under aligned sharding; the check kills that node and counts.
1. ``read_many_exercise``: ``read_many(keys, caches, breakers, db, salt)``: a new case, a batch
   read: one ``MGET`` per cache node through that node's breaker, the database for misses and for
   nodes that are down or tripped.
2. ``apply_exercise``: ``apply(changes, r, name, mine)``: a change log that also carries deletes
   (value ``None``), applied with its offset in one ``MULTI``, so a tailer killed mid-batch loses
   nothing and applies nothing twice out of order.
"""

from __future__ import annotations

import socket
from typing import Any

import redis

from ..check import Exercise, expect
from ..patterns.uber_resilience import CircuitBreaker, shard
from ..server import fail_fast_options
from ..tables import Table


def _display(obj: Any) -> None:
    try:
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython is a dependency
        print(obj)
    else:
        display(obj)


# -- reference solutions (self-tested in tests/exercises/test_uber_resilience.py) ----------------


def read_many(keys, caches, breakers, db, salt="cache:"):
    found, by_node = {}, {}
    for key in keys:
        by_node.setdefault(shard(key, len(caches), salt), []).append(key)
    for i, group in by_node.items():
        if not breakers[i].allow():
            continue                                  # tripped: straight to the database
        try:
            values = caches[i].mget(group)            # one round trip per node
            breakers[i].record(True)
            found.update({k: v for k, v in zip(group, values) if v is not None})
        except redis.RedisError:
            breakers[i].record(False)
    return {k: found[k] if k in found else db.get(k) for k in keys}


def apply(changes, r, name, mine, batch=500):
    offset_key = f"cdc:offset:{name}"
    last = offset = int(r.get(offset_key) or 0)
    with r.pipeline(transaction=True) as p:           # all of the batch and the offset, or nothing
        for seq, key, value in changes(offset, batch):
            if mine(key):
                if value is None:
                    p.delete(key)
                else:
                    p.set(key, value)
            last = seq
        if last != offset:
            p.set(offset_key, last)
            p.execute()
    return last - offset


# -- try it ---------------------------------------------------------------------------------------


def victim_prediction(fleet, db, victim: str) -> Exercise:
    """Try it: with aligned sharding and cache node ``victim`` killed, which DB shard refuses?"""
    from ..scenarios import uber_resilience as sc

    def checker(answer) -> None:
        run = sc.hot_shard(fleet, db, sc.ALIGNED, victim=victim)
        refusing = [f"d{j + 1}" for j, n in enumerate(run["after"]["refused"]) if n]
        _display(Table(["DB shard", "queries, all up", f"after {victim} died", "refused"],
                       [(f"d{j + 1}", run["before"]["queries"][j], run["load"][j], run["after"]["refused"][j])
                        for j in range(len(run["load"]))], title=f"aligned sharding, {victim} killed (this run)"))
        expect([answer] == refusing, f"with aligned sharding, {victim}'s misses went to {', '.join(refusing)}",
               expected=refusing[0] if len(refusing) == 1 else refusing, actual=answer)

    return Exercise(
        f"aligned sharding, {victim} killed", checker,
        hints=["Aligned means the cache uses the database's own placement: shard(key, 3) with the same "
               "salt. Cache node c<i> holds exactly the keys of DB shard d<i>."],
        solution="prediction = 'd' + VICTIM[1:]   # aligned: c<i> holds exactly d<i>'s keys",
    )


# -- exercise 1: a batch read through the breakers -----------------------------------------------


class _CountingDB:
    """A database stand-in for the checker: a dict that counts the keys it was asked for."""

    def __init__(self, rows: dict[str, str]) -> None:
        self.rows = rows
        self.asked: list[str] = []

    def get(self, key: str) -> str | None:
        self.asked.append(key)
        return self.rows.get(key)


class _Spy:
    """Counts the calls a cache client receives (the dead one cannot report them)."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.r, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attr(*args, **kwargs)
        return call


def _dead_client() -> redis.Redis:
    """A client to a loopback port where nothing listens: every call is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return redis.Redis(port=port, **fail_fast_options(socket_timeout=0.2, socket_connect_timeout=0.2))


def read_many_exercise(clients) -> Exercise:
    """Exercise 1. ``clients``: two live cache clients (erased); a third node is down."""
    a, b = clients

    def checker(answer) -> None:
        for c in (a, b):
            c.flushall()
            c.config_resetstat()
        caches = [_Spy(a), _Spy(b), _Spy(_dead_client())]
        keys = [f"ride:{i}" for i in range(60)]
        rows = {k: f"db {k}" for k in keys}
        for k in keys[:45]:                            # 45 cached, 15 cold
            i = shard(k, 3, "cache:")
            if i < 2:
                caches[i].r.set(k, rows[k])
        on_dead = [k for k in keys if shard(k, 3, "cache:") == 2]
        cold = [k for k in keys[45:] if shard(k, 3, "cache:") < 2]
        breakers = [CircuitBreaker(threshold=3) for _ in caches]
        rounds = 6
        for n in range(rounds):
            db = _CountingDB(rows)
            got = answer(keys, caches, breakers, db, "cache:")
            sample = {k: got.get(k) for k in list(rows)[:3]} if isinstance(got, dict) else got
            expect(got == rows, f"round {n + 1}: every key's value (the cache's, or the database's)",
                   expected="all 60 values", actual=sample)
            expect(sorted(db.asked) == sorted(on_dead + cold), f"round {n + 1}: the database is asked only for "
                   "the down node's keys and the cache misses", expected=len(on_dead + cold), actual=len(db.asked))
        live = [c.calls for c in caches[:2]]
        expect(all(calls == ["mget"] * rounds for calls in live), "one MGET per live node per call (no GET per key)",
               expected=["mget"] * rounds, actual=live)
        dead = len(caches[2].calls)
        expect(dead == 3 and breakers[2].state == "open", "the down node is tried until its breaker opens "
               "(3 failures), then never again", expected="3 calls, open", actual=f"{dead} calls, {breakers[2].state}")

    return Exercise(
        "a batch read through the breakers", checker,
        hints=["Group the keys by node first (shard(key, len(caches), salt)), then one caches[i].mget(group) "
               "per node, asking breakers[i].allow() before and recording the outcome after.",
               "Collect what the cache returned (None is a miss); the keys still missing go to db.get. "
               "A RedisError from a node counts as a failure and its keys go to the database."],
        solution=_source(read_many), reference=read_many,
    )


# -- exercise 2: a change log with deletes ---------------------------------------------------------


class Killed(BaseException):
    """The checker's stand-in for kill -9 mid-batch (a BaseException: no `except Exception` swallows it)."""


def _log(entries):
    def changes(offset, batch, *, crash_at=None):
        for seq, key, value in entries:
            if seq > offset:
                if crash_at is not None and seq == crash_at:
                    raise Killed(f"tailer killed while reading entry {seq}")
                yield seq, key, value
    return changes


def apply_exercise(r) -> Exercise:
    """Exercise 2. ``r``: a client of one cache node (its cdc:* and user:* keys are erased)."""

    def checker(answer) -> None:
        r.delete("cdc:offset:d1", *[f"user:{i}" for i in range(6)])
        entries = [(1, "user:1", "alice"), (2, "user:2", "bob"), (3, "user:1", "alice v2"),
                   (4, "user:3", "carol"), (5, "user:2", None), (6, "user:4", "dan"), (7, "user:5", "eve")]
        log = _log(entries)
        mine = lambda key: key != "user:5"           # noqa: E731 - user:5 lives on another node
        try:
            answer(lambda off, batch: log(off, batch, crash_at=4), r, "d1", mine)
        except Killed:
            pass
        half = {k: r.get(k) for k in ("user:1", "user:2", "cdc:offset:d1")}
        expect(half == {"user:1": None, "user:2": None, "cdc:offset:d1": None},
               "killed while reading the batch: nothing of it applied and the offset unchanged "
               "(the values and the offset commit together, or not at all)",
               expected={"user:1": None, "user:2": None, "cdc:offset:d1": None}, actual=half)
        answer(lambda off, batch: log(off, batch), r, "d1", mine)
        state = {f"user:{i}": r.get(f"user:{i}") for i in range(1, 6)}
        want = {"user:1": "alice v2", "user:2": None, "user:3": "carol", "user:4": "dan", "user:5": None}
        expect(state == want, "after the restart: the later value wins, the delete removed user:2, "
               "and user:5 (not this node's) was skipped", expected=want, actual=state)
        expect(r.get("cdc:offset:d1") == "7", "the offset is the last entry consumed (7), mine or not",
               expected="7", actual=r.get("cdc:offset:d1"))
        entries.append((8, "user:4", None))
        answer(lambda off, batch: log(off, batch), r, "d1", mine)
        expect(r.get("user:4") is None and r.get("cdc:offset:d1") == "8", "a later run applies only the new "
               "entry (a delete) and moves the offset to 8", expected=(None, "8"),
               actual=(r.get("user:4"), r.get("cdc:offset:d1")))

    return Exercise(
        "a change log with deletes", checker,
        hints=["Start from the pattern's tail(): read the offset, queue every entry of the batch in one "
               "r.pipeline(transaction=True), then the new offset, then execute.",
               "For an entry whose value is None queue p.delete(key) instead of p.set(key, value)."],
        solution=_source(apply), reference=apply,
    )


def _source(fn) -> str:
    import inspect

    return inspect.getsource(fn)
