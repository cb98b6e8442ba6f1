"""The lexicographic index patterns, asserted on Redis state against Python's exact answers."""

from __future__ import annotations

from redistutor.patterns.lexicographic_sorted_sets import AgeIndex, CaseInsensitiveIndex, LexIndex, prefix_range
from redistutor.scenarios import lexicographic_sorted_sets as sc

WORDS = ["re", "rea", "red", "redis", "redlock", "reduce", "redo", "redé", "red🚀", "ree", "Red", "zebra"]


def test_prefix_range_is_bytes_with_a_single_ff_byte():
    assert prefix_range("red") == (b"[red", b"(red\xff")
    assert prefix_range("é") == (b"[\xc3\xa9", b"(\xc3\xa9\xff")


def test_members_get_score_zero_and_byte_order(r):
    idx = LexIndex(r, "ix")
    assert idx.add(*WORDS) == len(WORDS)
    assert {s for _, s in r.zrange("ix", 0, -1, withscores=True)} == {0.0}
    assert r.zrange("ix", 0, -1) == sc.byte_sorted(WORDS)


def test_prefix_finds_every_match_including_4_byte_characters(r):
    idx = LexIndex(r, "ix")
    idx.add(*WORDS)
    want = ["red", "redis", "redlock", "redo", "reduce", "redé", "red🚀"]
    assert idx.prefix("red", 100) == want and idx.count("red") == 7
    assert idx.prefix("red", 3) == want[:3]
    assert idx.prefix("R", 10) == ["Red"] and idx.count("x") == 0 and idx.prefix("x") == []


def test_prefix_on_a_random_vocabulary_equals_python(r):
    words = sc.vocabulary(3000, seed=4)
    sc.load(r, "v", words)
    ordered = sc.byte_sorted(words)
    idx = LexIndex(r, "v")
    for p in sc.sample_prefixes(words, 20):
        exact = sc.starts_with(ordered, p)
        assert idx.prefix(p, 10_000) == exact and idx.count(p) == len(exact)


def test_case_insensitive_index_returns_originals(r):
    ci = CaseInsensitiveIndex(r, "ci")
    ci.add("Redis", "REDLOCK", "redo", "Émile", "zoe")
    assert ci.prefix("RED") == ["Redis", "REDLOCK", "redo"] and ci.prefix("ém") == ["Émile"]
    assert r.zrange("ci", 0, -1) == ["redis:Redis", "redlock:REDLOCK", "redo:redo", "zoe:zoe", "émile:Émile"]
    assert ci.count("re") == 3


def test_age_index_moves_the_entry_and_pads(r):
    idx = AgeIndex(r, "a")
    idx.set_age("ada", 25)
    idx.set_age("bob", 7)
    idx.set_age("cy", 120)
    idx.set_age("ada", 31)
    assert r.zrange("a:by_age", 0, -1) == ["007:bob", "031:ada", "120:cy"]
    assert r.hget("a:user:ada", "age") == "31"
    assert idx.between(7, 31) == ["bob", "ada"] and idx.between(8, 30) == []
    assert idx.between(0, 200) == ["bob", "ada", "cy"]
    assert idx.between(120, 120) == ["cy"]


def test_age_index_survives_concurrent_updates(redis_server, r):
    res = sc.update_storm(redis_server, "st", lambda c, p: AgeIndex(c, p), threads=4, each=30, users=3)
    assert res["entries"] == 3 and res["consistent"] == 3


def test_naive_index_update_leaves_a_stale_entry(r):
    out = sc.naive_update_race(r, "nu")
    assert out == {"entries": ["031:ada", "040:ada"], "age": "31"}


def test_mixed_scores_and_unpadded_numbers_go_wrong(r):
    scores = {"apple": 0, "apricot": 5, "banana": 0, "avocado": 2, "aardvark": 0}
    got, exact = sc.mixed_scores(r, "m", scores, "[a", "(b")
    assert got == ["aardvark", "apple"] and exact == ["aardvark", "apple", "apricot", "avocado"]
    ages = sc.random_ages()
    got, exact = sc.age_query(r, "q", ages, 3, 25, 30)
    assert got == exact
    got, exact = sc.age_query(r, "q", ages, 0, 25, 30)
    assert "u93" in got and "u93" not in exact      # age 2 is "2:u93", between "25" and "31"


def test_page_zremrangebylex_example(r):
    r.zadd("ac", {w: 0 for w in ["redis", "redlock", "reduce", "red", "ree"]})
    assert r.zremrangebylex("ac", "[reda", "(redm") == 2
    assert r.zrange("ac", 0, -1) == ["red", "reduce", "ree"]


def test_str_ff_bound_misses_four_byte_members(r):
    LexIndex(r, "ix").add(*WORDS)
    assert "red🚀" not in r.zrange("ix", "[red", "(red\xff", bylex=True)
    t = sc.bound_forms(r, "ix", "red")
    assert [row[1] for row in t.rows] == [7, 7, 6] and t.rows[2][2] == "red🚀"


def test_latency_sweep_checks_answers(r):
    words = sc.vocabulary(2000, seed=9)
    sc.load(r, "sw", words)
    rows = sc.latency_sweep(r, "sw", words, [200, 2000], sc.sample_prefixes(words, 3), reps=3)
    assert all(d["lex_ok"] and d["scan_ok"] for d in rows)
    assert rows[0]["scan_trips"] == 1 and rows[1]["scan_trips"] >= 2


def test_window_view_and_autocomplete(r):
    LexIndex(r, "ix").add(*WORDS)
    t = sc.window_view(r, "ix", *prefix_range("red"))
    assert sum(1 for row in t.rows if row[3]) == 7
    ac = sc.Autocomplete(LexIndex(r, "ix"), demo=("re", "redl"))
    assert [row[1] for row in ac.table().rows] == [10, 1] and "redlock" in repr(ac)


def test_default_limit_is_ten_and_limit_is_passed_through(r):
    idx, ci = LexIndex(r, "many"), CaseInsensitiveIndex(r, "many:ci")
    idx.add(*(f"w{i:02d}" for i in range(12)))
    ci.add(*(f"W{i:02d}" for i in range(12)))
    assert idx.prefix("w") == [f"w{i:02d}" for i in range(10)] and idx.count("w") == 12
    assert ci.prefix("w") == [f"W{i:02d}" for i in range(10)] and ci.prefix("w", 2) == ["W00", "W01"]
    assert len(ci.prefix("w", 12)) == 12


def test_ids_may_contain_the_separator(r):
    # Only the first ":" separates the padded age from the id: "025:org:7" belongs to "org:7".
    idx = AgeIndex(r, "c")
    idx.set_age("org:7", 25)
    idx.set_age("a:b:c", 26)
    assert idx.between(20, 30) == ["org:7", "a:b:c"]
    assert r.zrange("c:by_age", 0, -1) == ["025:org:7", "026:a:b:c"]


def test_python_answer_equals_a_plain_filter():
    words = sc.vocabulary(5000, seed=11)
    ordered = sc.byte_sorted(words)
    for p in sc.sample_prefixes(words, 30) + ["", "🚀", "中", "zzzzzzzzzz"]:
        assert sc.starts_with(ordered, p) == [w for w in ordered if w.startswith(p)]


def test_pagination_offset_repeats_keyset_does_not(r):
    words = sc.vocabulary(2000, seed=12)
    sc.load(r, "pg", words)
    out = sc.pagination_trial(r, "pg", page=100)
    assert out["keyset"]["members"] == sc.byte_sorted(words) and out["keyset"]["calls"] == 21
    offset = out["offset"]["members"]
    assert set(offset) == set(words) and len(offset) - len(set(offset)) == 20
    assert r.exists("pg:paging") == 0 and r.zcard("pg") == 2000


def test_sweep_reads_server_time(r):
    words = sc.vocabulary(1500, seed=13)
    sc.load(r, "sw", words)
    rows = sc.latency_sweep(r, "sw", words, [300, 1500], sc.sample_prefixes(words, 2), reps=2)
    assert all(d["lex_server_us"] > 0 and d["scan_server_us"] > 0 for d in rows)
    assert r.exists("sw:first300") == 0
