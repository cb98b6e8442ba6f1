"""Timelines (capped home lists, batched fan-out on write, celebrities merged at read time) on a real
Redis: the keys and commands each call makes, the cap, the batches, and the hybrid rule's equality
with full fan-out."""

from __future__ import annotations

import pytest

from redistutor import trace
from redistutor.patterns.twitter_internals import Timelines


@pytest.fixture
def tl(r):
    return Timelines(r, "t", length=3, celebrity=4)


def test_defaults(r):
    t = Timelines(r)
    assert (t.prefix, t.length, t.celebrity) == ("tl", 800, 10_000)
    assert t.home("bob") == "tl:home:bob" and t.posts("ann") == "tl:posts:ann"


def test_post_pushes_to_author_and_followers_in_one_round_trip(r, tl):
    with trace(r) as t:
        assert tl.post("ann", 7, ["bob", "cat"]) == 2
    assert t.round_trips == 1
    assert t.names() == ["LPUSH", "LTRIM"] * 3
    assert r.lrange("t:posts:ann", 0, -1) == ["7"]
    assert r.lrange("t:home:bob", 0, -1) == ["7"] and r.lrange("t:home:cat", 0, -1) == ["7"]
    assert not r.exists("t:home:ann")


def test_post_trims_every_list_to_length(r, tl):
    for i in range(1, 6):
        tl.post("ann", i, ["bob"])
    assert r.lrange("t:home:bob", 0, -1) == ["5", "4", "3"]
    assert r.lrange("t:posts:ann", 0, -1) == ["5", "4", "3"]
    with trace(r) as t:
        tl.post("ann", 6, ["bob"])
    ltrims = [c for c in t.commands if c.name == "LTRIM"]
    assert [list(c.args) for c in ltrims] == [["t:posts:ann", "0", "2"], ["t:home:bob", "0", "2"]]


def test_length_one_keeps_only_the_newest(r):
    one = Timelines(r, "o", length=1, celebrity=100)
    one.post("a", 1, ["b"])
    one.post("a", 2, ["b"])
    assert r.lrange("o:home:b", 0, -1) == ["2"]


def test_celebrity_threshold_is_inclusive(r, tl):
    assert tl.post("star", 9, ["a", "b", "c", "d"]) == 0       # 4 followers = celebrity
    assert r.lrange("t:posts:star", 0, -1) == ["9"]
    assert not any(r.exists(f"t:home:{u}") for u in "abcd")
    assert tl.post("ann", 8, ["a", "b", "c"]) == 3              # 3 followers: fanned out
    assert r.lrange("t:home:c", 0, -1) == ["8"]


def test_post_sends_in_batches(r):
    big = Timelines(r, "b", length=5, celebrity=10**9)
    followers = [f"f{i}" for i in range(9)]
    with trace(r) as t:
        big.post("ann", 1, followers, batch=4)                  # 10 lists: 4 + 4 + 2
    assert t.round_trips == 3 and len(t.commands) == 20
    assert all(r.lrange(f"b:home:{f}", 0, -1) == ["1"] for f in followers)
    with trace(r) as t:
        big.post("ann", 2, followers[:3], batch=4)              # 4 lists: one full batch, nothing after
    assert t.round_trips == 1


def test_default_batch_is_1000(r):
    big = Timelines(r, "d", length=5, celebrity=10**9)
    with trace(r) as t:
        big.post("ann", 1, [f"f{i}" for i in range(1000)])      # 1001 lists
    assert t.round_trips == 2
    with trace(r) as t:
        big.post("ann", 2, [f"f{i}" for i in range(999)])       # 1000 lists: exactly one batch
    assert t.round_trips == 1


def test_read_merges_home_and_celebrities_newest_first(r, tl):
    tl.post("ann", 10, ["bob"])
    tl.post("star", 12, ["a", "b", "c", "bob"])
    tl.post("ann", 13, ["bob"])
    tl.post("star", 11, ["a", "b", "c", "bob"])
    assert tl.read("bob") == [13, 10]
    assert tl.read("bob", ["star"]) == [13, 12, 11, 10]
    assert tl.read("bob", ["star"], n=2) == [13, 12]
    with trace(r) as t:
        tl.read("bob", ["star", "other"], n=2)
    assert t.round_trips == 1
    assert [list(c.args) for c in t.commands] == [["t:home:bob", "0", "1"], ["t:posts:star", "0", "1"],
                                           ["t:posts:other", "0", "1"]]


def test_read_default_n_is_50_and_dedups(r):
    t = Timelines(r, "n", length=100, celebrity=2)
    for i in range(60):
        t.post("ann", i, ["bob"])
    r.lpush("n:posts:star", 59, 58)                             # duplicates of home entries
    got = t.read("bob", ["star"])
    assert got == list(range(59, 9, -1)) and len(got) == 50


def test_read_of_unknown_user_is_empty(tl):
    assert tl.read("nobody") == []


def test_hybrid_equals_full_fan_out(r):
    from redistutor.scenarios import twitter_internals as sc

    graph = sc.follower_graph(users=120, seed=3)
    stream = sc.tweets(graph, count=300, seed=5)
    full = Timelines(r, "full", length=10, celebrity=10**9)
    hybrid = Timelines(r, "hyb", length=10, celebrity=20)
    a = sc.run_timelines(full, graph, stream)
    b = sc.run_timelines(hybrid, graph, stream)
    same = sc.compare_reads(full, hybrid, graph, n=10)
    assert same["mismatched"] == [] and same["celebrities"]
    assert b["pushes"] < a["pushes"] and a["longest"] == 10
