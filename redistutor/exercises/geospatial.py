"""Exercises for notebooks/22-geospatial.ipynb.

Try it. ``over_or_under``: two points 1 km apart, due north or due east, at a latitude you choose:
   does GEODIST give more or less than the true (ellipsoidal) distance? Checked with GeographicLib.
1. ``can_deliver``: a new case: each store has its own delivery radius (a sorted set of radii);
   which stores deliver to an address? On the server, by Redis's own distances.
2. ``nearest``: the k nearest members with no radius given, anywhere on earth (across the
   antimeridian too), nearest first, with distances in metres.
"""

from __future__ import annotations

import inspect
import math
import random
from typing import Any

import redis

from ..check import Exercise, expect
from ..scenarios.geospatial import (
    CITIES,
    EARTH_RADIUS_M,
    OSLO,
    destination,
    geodesic_m,
    haversine,
    load_geo,
    random_points,
    stored,
)
from ..trace import trace

# -- reference solutions (self-tested in tests/exercises/test_geospatial.py) ---------------------


def can_deliver(r: redis.Redis, stores: str, radii: str, lon: float, lat: float) -> list[str]:
    widest = r.zrange(radii, -1, -1, withscores=True)          # the largest radius: one member
    if not widest:
        return []
    hits = r.geosearch(stores, longitude=lon, latitude=lat, radius=widest[0][1], unit="m", withdist=True)
    if not hits:
        return []
    own = r.zmscore(radii, [store for store, _ in hits])       # each candidate's own radius
    return sorted(store for (store, dist), radius in zip(hits, own) if radius is not None and dist <= radius)


def nearest(r: redis.Redis, key: str, lon: float, lat: float, k: int) -> list[tuple[str, float]]:
    half_the_earth = math.pi * 6_372_797.560856 + 1            # metres: no two points are farther apart
    hits = r.geosearch(key, longitude=lon, latitude=lat, radius=half_the_earth, unit="m",
                       sort="ASC", count=k, withdist=True)     # COUNT without ANY: the k nearest
    return [(m, d) for m, d in hits]


# -- helpers -------------------------------------------------------------------------------------

READ_ALL = {"ZRANGEBYSCORE", "ZSCAN", "ZRANDMEMBER", "HGETALL", "SORT"}


def _read_everything(t: Any, key: str, limit: int = 50) -> list[str]:
    """Commands that fetch (nearly) every member of ``key`` instead of asking the server."""
    bad = []
    for c in t.commands:
        if not c.args or c.args[0] != key:
            continue
        if c.name in READ_ALL or (c.name == "GEOPOS" and len(c.args) > limit) or (
                c.name == "ZRANGE" and c.args[1:3] not in (("-1", "-1"),)):
            bad.append(c.line())
    return bad


def _sphere_pair(lat: float, direction: str, metres: float = 1_000.0) -> tuple[float, float, float, float]:
    """Two points ``metres`` apart on Redis's sphere, centred on ``lat``, due north or due east."""
    if direction.startswith("n"):
        d = math.degrees(metres / EARTH_RADIUS_M) / 2
        return 10.0, lat - d, 10.0, lat + d
    d = math.degrees(metres / EARTH_RADIUS_M / math.cos(math.radians(lat))) / 2
    return 10.0 - d, lat, 10.0 + d, lat


# -- exercises -------------------------------------------------------------------------------------

def over_or_under(r: redis.Redis, lat: float, direction: str = "north-south", key: str = "try:pair") -> Exercise:
    """Try it: does GEODIST over- or underestimate a 1 km hop at latitude ``lat`` in ``direction``?"""

    def checker(answer: Any) -> None:
        lon1, lat1, lon2, lat2 = _sphere_pair(lat, direction)
        r.delete(key)
        r.geoadd(key, [lon1, lat1, "a", lon2, lat2, "b"])
        redis_m = float(r.geodist(key, "a", "b") or 0)
        (x1, y1), (x2, y2) = r.geopos(key, "a", "b")
        truth = geodesic_m(x1, y1, x2, y2)
        r.delete(key)
        right = "over" if redis_m > truth else "under"
        expect(str(answer).strip().lower() == right,
               f"{direction} at latitude {lat:g}: GEODIST {redis_m:.2f} m, WGS84 geodesic {truth:.2f} m "
               f"({(redis_m - truth) / truth:+.3%})", expected=right, actual=answer)

    return Exercise(
        f"GEODIST over or under, {direction} at latitude {lat:g}", checker,
        hints=["Redis uses one sphere of radius 6,372,797.56 m. Over a short hop the earth's true radius of "
               "curvature is what counts: is it larger or smaller than Redis's radius there?",
               "East-west, the ellipsoid's radius of curvature is at least 6,378,137 m everywhere. North-south "
               "it is about 6,335 km at the equator and about 6,400 km at the poles, so it crosses Redis's "
               "radius somewhere in between: where a(1 - e^2) / (1 - e^2 sin^2(lat))^1.5 reaches 6,372.8 km."],
        solution='prediction = "under" if direction == "east-west" or abs(latitude) > 50 else "over"'
                 '  # north-south crosses over near 49.9 degrees',
        reference=None,
    )


def _delivery_world(rng: random.Random, n: int = 150) -> tuple[list[tuple[str, float, float]], dict[str, float]]:
    spread = random_points(n, OSLO, 6_000, seed=rng.randint(1, 9999))
    pts = [(f"store{i}", lon, lat) for i, (_, lon, lat) in enumerate(spread)]
    radii = {m: float(rng.choice((800, 1_500, 2_500, 4_000, 6_000))) for m, _, _ in pts}
    return pts, radii


def delivery_exercise(r: redis.Redis, prefix: str = "ex1") -> Exercise:
    """Exercise 1: ``can_deliver(r, stores, radii, lon, lat) -> sorted list of stores``."""
    stores, radii = f"{prefix}:stores", f"{prefix}:radii"

    def expected(lon: float, lat: float) -> list[str]:
        pos = stored(r, stores, [m for m, _ in r.zrange(radii, 0, -1, withscores=True)])
        own = dict(r.zrange(radii, 0, -1, withscores=True))
        return sorted(m for m, p in pos.items() if haversine(lon, lat, *p) <= own[m])

    def ask(answer: Any, lon: float, lat: float, what: str) -> None:
        want = expected(lon, lat)
        with trace(r) as t:
            got = answer(r, stores, radii, lon, lat)
        missing, extra = sorted(set(want) - set(got or []))[:5], sorted(set(got or []) - set(want))[:5]
        expect(sorted(got or []) == want, f"{what}: the stores whose own radius covers the address "
               f"(missing {missing}, not delivering {extra})",
               expected=f"{len(want)} stores", actual=f"{len(got or [])} stores")
        fetched = _read_everything(t, stores) + _read_everything(t, radii)
        expect(not fetched, "ask the server (GEOSEARCH, ZMSCORE): do not download every store or radius",
               expected="no full reads", actual=fetched[:3])

    def checker(answer: Any) -> None:
        rng = random.Random(11)
        r.delete(stores, radii)
        pts, rad = _delivery_world(rng)
        load_geo(r, stores, pts)
        r.zadd(radii, rad)
        ask(answer, *OSLO, "central Oslo")
        for i in range(6):
            lon, lat = destination(*OSLO, rng.uniform(0, 360), rng.uniform(0, 7_000))
            ask(answer, lon, lat, f"address {i + 1}")
        inner = next(m for m, _, _ in pts if rad[m] == 2_500)
        outer = next(m for m, _, _ in pts if rad[m] == 1_500)
        pos = stored(r, stores, [inner, outer])
        for store, off in ((inner, -0.5), (outer, 0.5)):   # just inside / just outside its own radius
            lon, lat = destination(*pos[store], 200.0, rad[store] + off)
            ask(answer, lon, lat, f"{off:+g} m from {store}'s {rad[store]:g} m edge")
        lon, lat = destination(*OSLO, 90, 40_000)
        ask(answer, lon, lat, "an address 40 km out of town (no store delivers)")
        r.delete(stores, radii)
        expect(answer(r, stores, radii, *OSLO) in ([], None), "no stores at all: an empty list",
               expected=[], actual="something else")

    return Exercise(
        "stores that deliver to an address", checker,
        hints=["Each store has its own radius, so one GEOSEARCH with a single radius is not the answer, but it "
               "can find the candidates: which radius finds every store that might deliver?",
               "GEOSEARCH BYRADIUS with the largest radius (the last member of the radii sorted set) WITHDIST, then "
               "ZMSCORE radii for those candidates, and keep a store when its distance <= its own radius."],
        solution=inspect.getsource(can_deliver), reference=can_deliver,
    )


def nearest_exercise(r: redis.Redis, prefix: str = "ex2") -> Exercise:
    """Exercise 2: ``nearest(r, key, lon, lat, k) -> [(member, metres), ...]``."""
    key = f"{prefix}:places"

    def ask(answer: Any, lon: float, lat: float, k: int, what: str) -> None:
        pos = stored(r, key, [m for m in r.zrange(key, 0, -1)])
        want = sorted((haversine(lon, lat, *p), m) for m, p in pos.items())[:k]
        with trace(r) as t:
            got = list(answer(r, key, lon, lat, k) or [])
        names = [m for m, *_ in got]
        expect(names == [m for _, m in want], f"{what}: the {k} nearest, nearest first",
               expected=[m for _, m in want][:6], actual=names[:6])
        far = [(m, d, w) for (m, d), (w, _) in zip(got, want) if abs(float(d) - w) > 0.01]
        expect(not far, f"{what}: distances in metres, as Redis measures them",
               expected=[round(w, 1) for w, _ in want][:3], actual=[d for _, d, _ in far][:3])
        fetched = _read_everything(t, key)
        expect(not fetched, "ask the server (GEOSEARCH): do not download every member", expected="no full reads",
               actual=fetched[:3])

    def checker(answer: Any) -> None:
        r.delete(key)
        load_geo(r, key, random_points(3_000, OSLO, 10_000, seed=8))
        ask(answer, *OSLO, 5, "3,000 places around Oslo")
        r.delete(key)
        load_geo(r, key, CITIES + [("auckland", 174.7633, -36.8485), ("apia", -171.7513, -13.8333),
                                   ("honolulu", -157.8583, 21.3069), ("tokyo", 139.6503, 35.6762)])
        ask(answer, 178.4419, -18.1416, 3, "from Suva: the nearest cities are thousands of km away, across 180")
        ask(answer, -78.4678, -0.1807, 8, "k is the whole set")
        ask(answer, 0.0, 0.0, 20, "k larger than the set (every member, nearest first)")
        r.delete(key)

    return Exercise(
        "k nearest, anywhere", checker,
        hints=["GEOSEARCH needs a radius (or a box); COUNT k then keeps the k nearest inside it. What radius can "
               "never leave anyone out?",
               "No two points on Redis's sphere are more than pi * 6,372.8 km apart: BYRADIUS that many km, ASC, "
               "COUNT k (without ANY), WITHDIST; convert km to metres (or ask in metres)."],
        solution=inspect.getsource(nearest), reference=nearest,
    )
