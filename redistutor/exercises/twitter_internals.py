"""Exercises for notebooks/29-twitter-internals.ipynb.

Try it. ``nodes_prediction``: under ``list-max-listpack-size fill``, how many quicklist nodes hold
   the integers 1..10,000? (The server answers through DEBUG OBJECT.)
1. ``delete_tweet(tl, author, tweet_id, followers)``: a new case: fan out a *delete* the way the
   pattern fans out a post (every list that may hold the tweet, pipelined), celebrities included.
2. ``follow(tl, user, author)``: a new case: when a user follows someone, merge that author's recent
   posts into the user's home list, newest first, without duplicates, capped at ``tl.length``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import redis

from ..check import Exercise, expect
from ..patterns.twitter_internals import Timelines
from ..scenarios.twitter_internals import CountingClient, clear, config, debug_object, fill

# -- reference solutions (self-tested in tests/exercises/test_twitter_internals.py) --------------


def delete_tweet(tl: Timelines, author: str, tweet_id: int, followers: Sequence[str]) -> None:
    with tl.r.pipeline(transaction=False) as p:
        for key in [tl.posts(author), *map(tl.home, followers)]:
            p.lrem(key, 0, tweet_id)
        p.execute()


def follow(tl: Timelines, user: str, author: str) -> None:
    home, posts = tl.home(user), tl.posts(author)
    ids = {int(x) for x in tl.r.lrange(home, 0, -1) + tl.r.lrange(posts, 0, tl.length - 1)}
    newest = sorted(ids, reverse=True)[: tl.length]
    with tl.r.pipeline(transaction=True) as p:
        p.delete(home)
        if newest:
            p.rpush(home, *newest)
        p.execute()


# -- exercises ------------------------------------------------------------------------------------


def nodes_prediction(r: redis.Redis, fill_size: int, key: str = "try:list") -> Exercise:
    """Try it: the number of quicklist nodes holding 1..10,000 under ``list-max-listpack-size``."""

    def checker(answer: Any) -> None:
        with config(r, list_max_listpack_size=fill_size):
            fill(r, key, 10_000)
            d = debug_object(r, key)
            enc = r.object("encoding", key)
        r.delete(key)
        nodes = int(d["ql_nodes"]) if d else None
        if enc == "listpack":
            nodes = 1
        expect(answer == nodes, f"with list-max-listpack-size {fill_size} the server built {nodes} node(s) "
               f"({d.get('ql_avg_node', '?')} entries each on average)", expected=nodes, actual=answer)

    return Exercise(
        f"nodes for 10,000 integers at list-max-listpack-size {fill_size}", checker,
        hints=["A positive setting is a count of entries per node; a negative one is a size in bytes "
               "(-1 = 4 KB, -2 = 8 KB ... -5 = 64 KB). Small integers take a few bytes each.",
               "For a positive count, nodes = ceil(10,000 / count), but no node grows past 8 KB whatever "
               "the count: a large positive setting behaves like -2."],
        solution="prediction = -(-10_000 // fill)   # for positive fill up to about 1,700",
        reference=None,
    )


def _setup(r: Any, prefix: str, celebrity: int) -> tuple[Timelines, dict[str, list[str]]]:
    clear(r if isinstance(r, redis.Redis) else r.r, f"{prefix}:*")
    tl = Timelines(r, prefix, length=50, celebrity=celebrity)
    graph = {"ann": [f"f{i}" for i in range(300)], "star": [f"f{i}" for i in range(0, 300, 2)]}
    return tl, graph


def delete_exercise(r: redis.Redis, prefix: str = "ex1:tl") -> Exercise:
    """Exercise 1: ``delete_tweet(tl, author, tweet_id, followers)``."""

    def checker(answer: Any) -> None:
        counting = CountingClient(r)
        tl, graph = _setup(cast(redis.Redis, counting), prefix, celebrity=100)   # star is a celebrity
        for i, author in enumerate(["ann", "star", "ann", "star", "ann"]):
            tl.post(author, 100 + i, graph[author])
        before = {u: tl.read(u, ["star"]) for u in ("f0", "f1", "f2")}
        counting.round_trips = 0
        answer(tl, "ann", 102, graph["ann"])
        answer(tl, "star", 101, graph["star"])
        trips = counting.round_trips
        for u in ("f0", "f1", "f2", "f298", "f299"):
            got = tl.read(u, ["star"] if u in graph["star"] else [])
            expect(102 not in got and 101 not in got, f"{u} still sees a deleted tweet", expected="no 101, 102",
                   actual=got)
        for u in ("f0", "f1", "f2"):
            want = [t for t in before[u] if t not in (101, 102)]
            expect(tl.read(u, ["star"]) == want, f"{u} lost tweets that were not deleted", expected=want,
                   actual=tl.read(u, ["star"]))
        expect(r.lrange(tl.posts("ann"), 0, -1) == ["104", "100"], "ann's own list still has the deleted tweet",
               expected=["104", "100"], actual=r.lrange(tl.posts("ann"), 0, -1))
        expect(trips <= 4, "two deletes to 300 followers should take a few round trips (pipeline them)",
               expected="at most 4", actual=trips)
        clear(r, f"{prefix}:*")

    return Exercise(
        "delete a tweet everywhere", checker,
        hints=["A tweet can be in the author's own list and in every follower's home list; a celebrity's "
               "tweet is only in the author's list (readers merge it in).",
               "LREM key 0 id removes every copy of id from one list; queue one per list in a pipeline."],
        solution=_source(delete_tweet), reference=delete_tweet,
    )


def follow_exercise(r: redis.Redis, prefix: str = "ex2:tl") -> Exercise:
    """Exercise 2: ``follow(tl, user, author)``."""

    def checker(answer: Any) -> None:
        tl, _ = _setup(r, prefix, celebrity=10**9)
        tl.length = 6
        tl.post("bob", 10, ["f1"])
        tl.post("cat", 11, ["f1"])
        for t in (1, 5, 9, 12, 13):
            tl.post("ann", t, [])                       # f1 does not follow ann yet
        tl.post("bob", 14, ["f1"])
        answer(tl, "f1", "ann")
        want = [14, 13, 12, 11, 10, 9]
        got = [int(x) for x in r.lrange(tl.home("f1"), 0, -1)]
        expect(got == want, "f1's home should be the newest 6 of its tweets and ann's, newest first",
               expected=want, actual=got)
        expect(r.lrange(tl.posts("ann"), 0, -1) == ["13", "12", "9", "5", "1"], "ann's own list must not change",
               expected=["13", "12", "9", "5", "1"], actual=r.lrange(tl.posts("ann"), 0, -1))
        answer(tl, "f1", "ann")                         # following twice changes nothing
        got = [int(x) for x in r.lrange(tl.home("f1"), 0, -1)]
        expect(got == want, "following twice must not duplicate tweets", expected=want, actual=got)
        answer(tl, "f2", "ann")                         # a user with an empty home
        got = [int(x) for x in r.lrange(tl.home("f2"), 0, -1)]
        expect(got == [13, 12, 9, 5, 1], "an empty home gets ann's tweets", expected=[13, 12, 9, 5, 1], actual=got)
        clear(r, f"{prefix}:*")

    return Exercise(
        "backfill a home timeline on follow", checker,
        hints=["Read both lists, merge the ids, sort newest first (ids grow with time), keep tl.length.",
               "Replace the home list in one MULTI/EXEC (DEL + RPUSH), so no reader sees it half built."],
        solution=_source(follow), reference=follow,
    )


def _source(fn: Any) -> str:
    import inspect

    return inspect.getsource(fn)
