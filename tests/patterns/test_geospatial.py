"""The geospatial pattern on a real Redis: positions, nearest-first searches and an atomic reaper,
checked against Python's exact answers (Redis's own haversine, GeographicLib for the ellipsoid)."""

from __future__ import annotations

import pytest

from redistutor.patterns.geospatial import NearbyDrivers
from redistutor.scenarios import geospatial as sc
from redistutor.trace import trace


def test_ping_stores_position_and_time_in_one_transaction(r):
    d = NearbyDrivers(r, "drv")
    with trace(r) as t:
        d.ping("d1", 10.75, 59.91, now=12.5)
    assert t.round_trips == 1 and t.names() == ["MULTI", "GEOADD", "ZADD", "EXEC"]
    assert (d.geo, d.seen) == ("drv:geo", "drv:seen")
    lon, lat = r.geopos("drv:geo", "d1")[0]
    assert sc.haversine(10.75, 59.91, lon, lat) < 0.4
    assert r.zscore("drv:seen", "d1") == 12.5 and r.type("drv:geo") == "zset"


def test_defaults(r):
    d = NearbyDrivers(r)
    assert (d.geo, d.seen, d.max_age) == ("drivers:geo", "drivers:seen", 30.0)


def test_a_second_ping_moves_the_driver(r):
    d = NearbyDrivers(r, "drv")
    d.ping("d1", 10.75, 59.91, now=1)
    d.ping("d1", 10.80, 59.95, now=2)
    lon, lat = r.geopos("drv:geo", "d1")[0]
    assert sc.haversine(10.80, 59.95, lon, lat) < 0.4
    assert r.zcard("drv:geo") == 1 and r.zscore("drv:seen", "d1") == 2


def test_longitude_plus_180_is_stored_as_minus_180_and_found(r):
    d = NearbyDrivers(r, "drv")
    d.ping("east", 180.0, 0.0, now=1)
    d.ping("west", -179.9999, 0.0, now=1)
    assert r.zscore("drv:geo", "east") < 2**52
    assert [m for m, _ in d.nearby(179.9995, 0.0, 1_000)] == ["east", "west"]
    r.geoadd("drv:geo", [180.0, 0.0, "raw"])   # what ping avoids: a score past 2**52, never found
    assert r.zscore("drv:geo", "raw") >= 2**52
    assert "raw" not in [m for m, _ in d.nearby(179.9995, 0.0, 1_000, count=10)]


def test_nearby_is_nearest_first_in_metres_and_equals_brute_force(r):
    d = NearbyDrivers(r, "drv")
    pts = sc.random_points(2_000, sc.OSLO, 4_000, seed=1)
    for m, lon, lat in pts:
        d.ping(m, lon, lat, now=0)
    pos = sc.stored(r, d.geo, [m for m, _, _ in pts])
    truth = sorted((sc.haversine(*sc.OSLO, *p), m) for m, p in pos.items())
    got = d.nearby(*sc.OSLO, 1_500, count=25)
    assert [m for m, _ in got] == [m for _, m in truth[:25]]
    assert all(abs(dist - t) < 1e-3 for (_, dist), (t, _) in zip(got, truth))
    assert len(d.nearby(*sc.OSLO, 1_500)) == 5
    inside = [m for t, m in truth if t <= 300]
    assert [m for m, _ in d.nearby(*sc.OSLO, 300, count=1_000)] == inside
    # with no COUNT Redis does not sort unless asked: ASC is what keeps the nearest first
    assert [m for m, _ in d.nearby(*sc.OSLO, 300, count=None)] == inside


def test_nearby_respects_the_radius(r):
    d = NearbyDrivers(r, "drv")
    lon, lat = sc.destination(*sc.OSLO, 90, 1_000)
    d.ping("far", lon, lat, now=0)
    assert d.nearby(*sc.OSLO, 990) == []
    assert [m for m, _ in d.nearby(*sc.OSLO, 1_010)] == ["far"]


def test_reap_removes_only_stale_drivers_from_both_keys(r):
    d = NearbyDrivers(r, "drv", max_age=30)
    d.ping("old", 10.75, 59.91, now=0)
    d.ping("edge", 10.75, 59.92, now=10)
    d.ping("new", 10.76, 59.91, now=35)
    assert d.reap(now=40) == ["old", "edge"]          # seen at or before now - max_age
    assert sorted(r.zrange("drv:geo", 0, -1)) == ["new"] and r.zrange("drv:seen", 0, -1) == ["new"]
    assert d.reap(now=40) == []
    assert d.reap(now=65) == ["new"] and not r.exists("drv:geo", "drv:seen")


def test_reap_is_one_script_call_and_bounded_per_call(r):
    d = NearbyDrivers(r, "drv", max_age=1)
    with r.pipeline(transaction=False) as p:
        p.geoadd("drv:geo", [x for i in range(700) for x in (10.7, 59.9, f"d{i}")])
        p.zadd("drv:seen", {f"d{i}": i / 1000 for i in range(700)})
        p.execute()
    with trace(r) as t:
        first = d.reap(now=100)
    assert len(first) == 500 and t.round_trips == 1 and t.names()[-1] in ("EVALSHA", "EVAL")
    assert first == [f"d{i}" for i in range(500)]
    assert len(d.reap(now=100)) == 200 and r.zcard("drv:geo") == 0


def test_ping_during_a_naive_reap_is_lost_but_not_with_the_script(r):
    race = sc.reaper_race(NearbyDrivers(r, "naive"), NearbyDrivers(r, "lua"))
    naive, before, after = race.values()
    assert naive["reaped"] == ["d7"] and naive["d7 position"] is None and naive["nearby"] == ["d8"]
    assert before["reaped"] == [] and before["d7 last seen"] == 40.0 and before["nearby"] == ["d7", "d8"]
    assert after["reaped"] == ["d7"] and after["d7 position"] is not None and after["nearby"] == ["d7", "d8"]


# -- the scenarios' exact answers agree with the server -----------------------------------------

def test_encode_and_decode_match_the_server(r):
    pts = sc.world_points(500, seed=3)
    sc.load_geo(r, "w", pts)
    scores = dict(r.zrange("w", 0, -1, withscores=True))
    pos = sc.stored(r, "w", [m for m, _, _ in pts])
    assert all(sc.encode(lon, lat) == int(scores[m]) for m, lon, lat in pts)
    assert all(sc.decode(scores[m]) == pos[m] for m, _, _ in pts)
    bound = sc.half_cell_m()["diagonal (m)"]
    assert 0.3 < bound < 0.35
    assert max(sc.haversine(lon, lat, *pos[m]) for m, lon, lat in pts) <= bound


def test_haversine_is_geodist_and_in_box_is_bybox(r):
    pts = sc.random_points(3_000, sc.OSLO, 5_000, seed=4)
    sc.load_geo(r, "p", pts)
    pos = sc.stored(r, "p", [m for m, _, _ in pts])
    r.geoadd("p", [*sc.OSLO, "centre"])
    centre = tuple(r.geopos("p", "centre")[0])
    for m, _, _ in pts[:50]:
        assert abs(float(r.geodist("p", "centre", m)) - sc.haversine(*centre, *pos[m])) < 1e-3
    box = set(r.geosearch("p", longitude=sc.OSLO[0], latitude=sc.OSLO[1], width=4_000, height=2_500, unit="m"))
    assert box - {"centre"} == {m for m, p in pos.items() if sc.in_box(sc.OSLO, p, 4_000, 2_500)}


def test_destination_lands_at_the_distance():
    for bearing in (0, 45, 90, 200):
        lon, lat = sc.destination(*sc.OSLO, bearing, 1234.5)
        assert sc.haversine(*sc.OSLO, lon, lat) == pytest.approx(1234.5, abs=1e-6)
    lon, _ = sc.destination(179.99, 0, 90, 5_000)
    assert lon < -179.9


def test_sphere_error_bounds_contain_every_measured_error(r):
    lo, hi = sc.sphere_error_bounds()
    assert lo == pytest.approx(-0.004187, abs=1e-5) and hi == pytest.approx(0.005897, abs=1e-5)
    rows = sc.geodist_error(r, "gd", pairs=80)
    assert all(lo - 1e-4 <= x["rel"] <= hi + 1e-4 for x in rows)
    assert all(abs(x["geodist"] - x["haversine"]) < 1e-3 for x in rows)


def test_searches_equal_brute_force_on_stored_positions(r):
    s = sc.search_vs_brute(r, "s", n=3_000)
    assert s["radius"] == s["radius_stored"] and s["box"] == s["box_stored"]
    assert all(x["GEOSEARCH"] == x["filter on stored"] for x in s["edges"])


def test_naive_degree_box_misses_drivers_in_oslo(r):
    d = sc.naive_vs_geosearch(r, "n", n=1_000)
    assert d["geosearch"] == d["truth"] and d["truth"] - d["naive"] and d["hash_len"] == 1_000
