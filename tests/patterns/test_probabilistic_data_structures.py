"""DailyUniques and SeenFilter on a real Redis: estimates against Python's exact answers, key state,
round trips, and the experiments' helpers the notebook's assertions rely on."""

from __future__ import annotations

import math

import pytest
import redis

from redistutor import trace
from redistutor.patterns.probabilistic_data_structures import DailyUniques, SeenFilter
from redistutor.scenarios import probabilistic_data_structures as sc


def test_daily_uniques_owns_its_keys(r):
    u = DailyUniques(r, prefix="site")
    assert u.key("mon") == "site:mon"
    assert u.add("mon", "a", "b") is True
    assert u.add("mon", "a") is False           # a duplicate changes no register
    assert sorted(r.keys("*")) == ["site:mon"] and r.type("site:mon") == "string"
    assert r.getrange("site:mon", 0, 3) == "HYLL"


def test_counts_are_unions_not_sums(r):
    u = DailyUniques(r, prefix="u")
    week = sc.week_of_visitors(population=3_000, per_day=1_500, days=3, seed=4)
    for day, visitors in week.items():
        u.add(day, *visitors)
    exact = len(set().union(*week.values()))
    together = u.count(*week)
    assert abs(together - exact) <= 0.025 * exact
    assert sum(u.count(d) for d in week) > 1.3 * exact
    assert abs(u.count("day1") - 1_500) <= 0.025 * 1_500


def test_merge_stores_the_union_and_leaves_the_days(r):
    u = DailyUniques(r, prefix="u")
    u.add("d1", *[f"x{i}" for i in range(1000)])
    u.add("d2", *[f"x{i}" for i in range(500, 1500)])
    before = {k: r.dump(k) for k in ("u:d1", "u:d2")}
    got = u.merge("week", "d1", "d2")
    assert got == r.pfcount("u:week") == u.count("d1", "d2")
    assert abs(got - 1500) <= 0.025 * 1500
    assert {k: r.dump(k) for k in before} == before
    assert sorted(r.keys("*")) == ["u:d1", "u:d2", "u:week"]


def test_merge_is_two_commands_count_one(r):
    u = DailyUniques(r, prefix="u")
    u.add("d1", "a")
    with trace(r) as t:
        u.count("d1", "d2")
    assert t.names() == ["PFCOUNT"]
    with trace(r) as t:
        u.merge("w", "d1", "d2")
    assert t.names() == ["PFMERGE", "PFCOUNT"]


def test_seen_filter_reserves_once_with_the_given_error_and_capacity(r):
    f = SeenFilter(r, "seen", capacity=1000, error=0.01)
    info = r.bf().info("seen")
    assert info["Capacity"] == 1000 and r.type("seen") == "MBbloom--"
    f.add("a")
    SeenFilter(r, "seen", capacity=5, error=0.5)   # a second instance keeps the existing filter
    assert r.bf().info("seen")["Capacity"] == 1000 and f.seen("a") == [True]


def test_seen_filter_reserve_error_other_than_exists_is_raised(r):
    r.set("plain", "x")
    with pytest.raises(redis.ResponseError):
        SeenFilter(r, "plain", capacity=10)     # WRONGTYPE must not be swallowed


def test_seen_filter_add_and_seen(r):
    f = SeenFilter(r, "seen", capacity=10_000, error=0.01)
    names = sc.items(5_000, seed=1, prefix="n:")
    others = sc.items(5_000, seed=2, prefix="o:")
    new = f.add(*names)
    assert all(isinstance(x, bool) for x in new) and sum(new) >= 4_950
    assert f.add(names[0]) == [False]
    assert f.seen(*names) == [True] * 5_000           # no false negatives
    fp = sum(f.seen(*others))
    assert fp < 100                                   # under 2 %: reserved at 1 % (first layer at 0.5 %)
    with trace(r) as t:
        f.seen("a", "b", "c")
    assert t.round_trips == 1 and t.names() == ["BF.MEXISTS"]


def test_items_are_distinct_and_reproducible():
    a = sc.items(10_000, seed=3, prefix="p:")
    assert len(set(a)) == 10_000 and a == sc.items(10_000, seed=3, prefix="p:")
    assert a != sc.items(10_000, seed=4, prefix="p:")
    assert all(x.startswith("p:") for x in a)


def test_hll_encoding_and_dense_size(r):
    r.pfadd("h", "a")
    assert sc.hll_encoding(r, "h") == "sparse"
    r.pfadd("h", *sc.items(5_000, seed=5))
    assert sc.hll_encoding(r, "h") == "dense" and r.strlen("h") == sc.HLL_DENSE_BYTES == 12_304


def test_hll_growth_flips_once_at_the_threshold(r):
    rows = sc.hll_growth(r, "g", sizes=(10, 100, 1_000, 3_000))
    enc = [row[3] for row in rows]
    assert enc == ["sparse", "sparse", "sparse", "dense"]
    assert [row[0] for row in rows] == [10, 100, 1_000, 3_000] and rows[-1][1] == 12_304


def test_hll_error_runs_measure_relative_errors(r):
    errs = sc.hll_error_runs(r, "run", runs=3, n=2_000)
    assert len(errs) == 3 and all(abs(e) < 0.05 for e in errs) and not r.keys("run:*")


def test_bloom_sizes_match_the_formulas(r):
    bits = sc.bloom_sizes(r, "bs", capacity=100_000, error=0.01)
    assert abs(bits["NONSCALING"] - (-math.log(0.01) / math.log(2) ** 2)) < 0.1
    assert abs(bits["scaling (default)"] - (-math.log(0.005) / math.log(2) ** 2)) < 0.1


def test_bloom_fill_trial_nonscaling_stops_at_the_first_refused_item(r):
    t = sc.bloom_fill_trial(r, "bf", capacity=1_000, nonscaling=True, steps=2, probes=1_000)
    assert t["inserted"] == 1_000 and "full" in t["error"] and t["reply length"] < 100
    assert t["false negatives"] == 0 and [row[0] for row in t["rows"]] == [500, 1_000]


def test_bloom_fill_trial_scaling_grows(r):
    t = sc.bloom_fill_trial(r, "bf", capacity=1_000, nonscaling=False, fill_to=3.0, steps=3, probes=1_000)
    assert t["error"] is None and t["reply length"] == 1_000 and t["rows"][-1][4] >= 2
    assert t["false negatives"] == 0


def test_bloom_theory():
    assert abs(sc.bloom_theory(1.0, 0.01) - 0.01) < 0.002
    assert sc.bloom_theory(0.5) < sc.bloom_theory(1.0) < sc.bloom_theory(2.0)


def test_cuckoo_trial_finds_the_delete_hazard(r):
    c = sc.cuckoo_trial(r, "cf", n=200)
    assert c["deleted"] == 20 and c["kept found"] == c["kept"] == 180
    assert len(c["lost"]) == 1 and c["stranger"].startswith("stranger:")


def test_cms_never_under_and_within_bound(r):
    stream = sc.zipf_stream(events=20_000, universe=1_000, seed=1)
    c = sc.cms_trial(r, "cms", stream, error=0.01, prob=0.01)
    assert c["under"] == 0 and c["N"] == 20_000 and c["bound"] == 200
    assert c["width"] == 200 and c["depth"] == 7 and c["over bound"] <= 0.01 * c["items"]
    assert len(c["over"]) == len(c["true"]) == c["items"]


def test_topk_trial_finds_the_true_top(r):
    stream = sc.zipf_stream(events=20_000, universe=1_000, seed=2)
    t = sc.topk_trial(r, "tk", stream, k=5)
    assert [p for p, _ in t["topk"]] == [p for p, _ in t["exact"]]


def test_tdigest_trial_is_close_to_numpy(r):
    t = sc.tdigest_trial(r, "td", n=20_000)
    assert all(abs(k - q) <= 0.01 for q, k in zip(t["q"], t["rank"]))
    assert all(abs(e - x) / x < 0.05 for e, x in zip(t["estimate"], t["exact"]))


def test_memory_trial_orders_the_structures(r):
    mem = sc.memory_trial(r, "m", sizes=(100, 5_000))
    assert mem["Set"][-1] > mem["Bloom 1 %"][-1] and mem["Set"][-1] > mem["HyperLogLog"][-1]
    assert not r.keys("m:*")


def test_naive_week_sum_vs_union(r):
    week = sc.week_of_visitors(population=1_000, per_day=600, days=3, seed=3)
    n = sc.naive_week(r, "nv", week)
    assert n["sum of daily counts"] == 1_800 and n["exact (SUNION)"] == len(set().union(*week.values()))
    assert n["bytes"] > 0


def test_defaults_prefix_and_one_percent(r):
    assert DailyUniques(r).key("mon") == "uniq:mon"
    SeenFilter(r, "default", capacity=1000)
    r.bf().reserve("explicit", 0.01, 1000)
    assert r.bf().info("default")["Size"] == r.bf().info("explicit")["Size"]
