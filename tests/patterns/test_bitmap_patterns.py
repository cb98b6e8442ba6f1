"""The bitmap patterns on a real Redis: bits, counts and set algebra equal Python's exact answers."""

from __future__ import annotations

import random

import pytest

from redistutor.patterns.bitmap_patterns import DailyActive, PackedCounters
from redistutor.scenarios import bitmap_patterns as sc
from redistutor.trace import trace


@pytest.fixture
def days(r):
    rng = random.Random(5)
    truth = [set(rng.sample(range(3000), 900)) for _ in range(4)]
    da = DailyActive(r, "dau")
    for d, users in enumerate(truth):
        for u in users:
            da.mark(d, u)
    return da, truth


def test_mark_sets_one_bit_and_returns_the_old_one(r):
    da = DailyActive(r, "dau")
    assert da.mark("mon", 999_999) == 0 and da.mark("mon", 999_999) == 1
    assert r.strlen("dau:mon") == 125_000 and r.bitcount("dau:mon") == 1
    assert da.was_active("mon", 999_999) and not da.was_active("mon", 999_998)
    assert not da.was_active("tue", 5) and da.key("tue") == "dau:tue"


def test_mark_refuses_ids_outside_the_range(r):
    da = DailyActive(r, "dau", max_id=1000)
    for bad in (1000, -1, 2**32):
        with pytest.raises(ValueError):
            da.mark(0, bad)
    assert da.mark(0, 999) == 0 and r.exists("dau:0") and r.strlen("dau:0") == 125
    assert DailyActive(r, "x").max_id == 2**24


def test_counts_equal_python_set_algebra(r, days):
    da, truth = days
    assert da.count(0) == len(truth[0])
    assert da.count(0, 1, 2, 3) == len(set().union(*truth))
    assert da.count(0, 1, 2, 3, op="OR") == len(set().union(*truth))
    assert da.count(0, 1, 2, 3, op="AND") == len(set.intersection(*truth))
    assert da.count(0, 3, op="AND") == len(truth[0] & truth[3])
    assert da.count(1, 2, op="XOR") == len(truth[1] ^ truth[2])


def test_count_is_one_round_trip_and_leaves_no_key(r, days):
    da, _ = days
    before = sorted(r.keys("*"))
    with trace(r) as t:
        da.count(0, 1, op="AND")
    assert t.round_trips == 1 and t.names() == ["MULTI", "BITOP", "BITCOUNT", "DEL", "EXEC"]
    assert sorted(r.keys("*")) == before


def test_count_temporary_keys_differ_per_query(r, days):
    da, truth = days
    # the temporary key names the op and the days, so two queries never share one
    with trace(r) as t:
        da.count(0, 1, op="AND")
        da.count(0, 1, op="OR")
    dests = [c.args[1] for c in t.commands if c.name == "BITOP"]
    assert dests == ["dau:tmp:AND:0+1", "dau:tmp:OR:0+1"]


def test_packed_counters_saturate_by_default(r):
    c = PackedCounters(r, "views")
    assert c.incr(0, 250) == 250 and c.incr(0, 10) == 255 and c.get(0) == 255
    assert c.incr(3) == 1 and c.get(3) == 1 and c.get(1) == 0
    assert r.strlen("views") == 4            # counters 0..3, 8 bits each
    assert c.incr(0, -300) == 0              # saturates at 0 too


def test_packed_counters_wrap_and_fail(r):
    w = PackedCounters(r, "w", bits=4, overflow="WRAP")
    assert w.incr(1, 15) == 15 and w.incr(1) == 0 and r.strlen("w") == 1
    f = PackedCounters(r, "f", bits=16, overflow="FAIL")
    assert f.incr(2, 65_535) == 65_535 and f.incr(2) is None and f.get(2) == 65_535
    assert r.strlen("f") == 6
    assert PackedCounters(r, "s", bits=8).incr(0, 300) == 255


def test_counter_index_is_a_field_index_not_a_bit_offset(r):
    c = PackedCounters(r, "c", bits=8)
    c.incr(1, 7)
    assert r.getbit("c", 8 + 5) == 1 and r.bitfield_ro("c", "u8", 8)[0] == 7


def test_bit_order_is_most_significant_first(r):
    r.setbit("f", 0, 1)
    r.setbit("f", 2, 1)
    raw = r.connection_pool.connection_kwargs  # the fixture's client decodes; use bytes helpers
    assert sc.bitmap_bytes([0, 2]) == b"\xa0"
    assert sc.bits_of(b"\xa0")[:3] == [1, 0, 1] and sc.bits_of(b"\xa0", msb_first=False)[:3] == [0, 0, 0]
    assert raw is not None


def test_bitmap_bytes_matches_setbit(r, redis_server):
    ids = sc.random_ids(500, 20_000)
    sc.load_bitmap(r, "a", ids)
    sc.store_bitmap(r, "b", ids)
    b = sc.raw(redis_server)
    assert b.get("a") == b.get("b") and r.bitcount("a") == 500
    assert len(sc.bitmap_bytes([3], bits=1_000_000)) == 125_000 and sc.bitmap_bytes([]) == b""


def test_lost_flag_race(r, redis_server):
    out = sc.lost_flag_race(redis_server, "flags:naive", "flags:setbit")
    assert out == {"GET + SET (naive)": [1, 1, 0, 0, 0, 0, 0, 0], "SETBIT": [1, 1, 1, 0, 0, 0, 0, 0]}
    assert sc.flags_table(out).rows[0] == ["GET + SET (naive)", "on", "on", "off"]


def test_growth_and_density(r):
    g = sc.growth_trial(r, "g", n=300)
    assert g["pre-sized"] == (125_000, 131_120) or g["pre-sized"][0] == 125_000
    rows = sc.density_sweep(r, "cmp", actives=(100, 1_000, 100_000))
    assert [x["bitcount"] for x in rows] == [x["scard"] for x in rows] == [100, 1_000, 100_000]
    assert rows[0]["set"] < rows[0]["bitmap"] and rows[-1]["set"] > 5 * rows[-1]["bitmap"]
    assert sc.crossover(rows) == (1_000, 100_000)


def test_defaults(r):
    assert DailyActive(r).key(1) == "dau:1" and DailyActive(r).max_id == 2**24
    c = PackedCounters(r, "k")
    assert (c.type, c.overflow) == ("u8", "SAT")


def test_offset_limits_and_bitpos_facts(r, redis_server):
    limits = sc.offset_limits(redis_server, "limit")
    assert limits["SETBIT 8388607 (1 MB limit)"] == "OK" and "out of range" in limits["SETBIT 8388608 (1 MB limit)"]
    assert "out of range" in limits["SETBIT 4294967296"] and not r.exists("limit")
    assert r.config_get("proto-max-bulk-len")["proto-max-bulk-len"] == limits["proto-max-bulk-len (default)"]
    facts = dict(sc.bitpos_facts(redis_server, "bits"))
    assert facts["BITPOS full 0 (no range)"] == 16 and facts["BITPOS full 0 0 -1 (range)"] == -1


def test_overflow_and_concurrency(r, redis_server):
    assert sc.overflow_trial(r, "v") == [("SAT", 255, 255), ("WRAP", 4, 4), ("FAIL", None, 250)]
    assert sc.concurrent_incr(redis_server, "hits", threads=4, each=50) == 200


def test_default_op_is_or_and_names_the_temporary_key(r, days):
    da, truth = days
    with trace(r) as t:
        n = da.count(0, 1)
    assert n == len(truth[0] | truth[1])
    assert [c.args for c in t.commands if c.name == "BITOP"] == [("OR", "dau:tmp:OR:0+1", "dau:0", "dau:1")]


def test_refusal_names_the_allowed_range(r):
    with pytest.raises(ValueError, match=r"user id 1000 is outside 0\.\.999$"):
        DailyActive(r, "dau", max_id=1000).mark(0, 1000)
