"""The experiments of notebooks/22-geospatial.ipynb, each behind a one-line helper.

The pattern (:class:`~redistutor.patterns.geospatial.NearbyDrivers`) lives in the pattern module.
This module holds Python's exact answers (Redis's own haversine and geohash arithmetic, copied from
src/geohash_helper.c and src/geohash.c of Redis 8.0, and GeographicLib's ellipsoidal geodesics as
the ground truth for distances), the brute-force filters the searches are compared with, the
reaper race staged with a pause point, the timings and the charts. Helpers return plain data or a
:class:`~redistutor.Table`.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Iterable, Sequence
from typing import Any, cast

from ..race import PausePoint, run_in_thread
from ..tables import Table

# -- Redis's model of the earth (src/geohash.h, src/geohash_helper.c) ---------------------------

EARTH_RADIUS_M = 6372797.560856          # EARTH_RADIUS_IN_METERS: one sphere for every distance
LAT_MIN, LAT_MAX = -85.05112878, 85.05112878
LON_MIN, LON_MAX = -180.0, 180.0
STEP = 26                                 # bits per coordinate: 26 * 2 = 52 bits in a score
OSLO = (10.7522, 59.9139)                 # the notebook's city (lon, lat): far enough north to matter

Point = tuple[float, float]


def haversine(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Redis's distance in metres, operation for operation (geohashGetDistance)."""
    lon1r, lon2r = math.radians(lon1), math.radians(lon2)
    v = math.sin((lon2r - lon1r) / 2)
    if v == 0.0:
        return EARTH_RADIUS_M * abs(math.radians(lat2) - math.radians(lat1))
    lat1r, lat2r = math.radians(lat1), math.radians(lat2)
    u = math.sin((lat2r - lat1r) / 2)
    a = u * u + math.cos(lat1r) * math.cos(lat2r) * v * v
    return 2.0 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def in_box(center: Point, point: Point, width_m: float, height_m: float) -> bool:
    """Redis's BYBOX rule (geohashGetDistanceIfInRectangle): north-south distance along the meridian,
    east-west distance measured at the *point's* latitude."""
    (x1, y1), (x2, y2) = center, point
    if EARTH_RADIUS_M * abs(math.radians(y1) - math.radians(y2)) > height_m / 2:
        return False
    return haversine(x2, y2, x1, y2) <= width_m / 2


def destination(lon: float, lat: float, bearing_deg: float, metres: float) -> Point:
    """The point ``metres`` from (lon, lat) along ``bearing_deg`` on Redis's sphere."""
    d, b = metres / EARTH_RADIUS_M, math.radians(bearing_deg)
    la1, lo1 = math.radians(lat), math.radians(lon)
    la2 = math.asin(math.sin(la1) * math.cos(d) + math.cos(la1) * math.sin(d) * math.cos(b))
    lo2 = lo1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(la1), math.cos(d) - math.sin(la1) * math.sin(la2))
    return (math.degrees(lo2) + 540) % 360 - 180, math.degrees(la2)


def encode(lon: float, lat: float) -> int:
    """The 52-bit score GEOADD stores (geohashEncode: truncate each offset to 26 bits, interleave)."""
    lat_i = int((lat - LAT_MIN) / (LAT_MAX - LAT_MIN) * (1 << STEP))
    lon_i = int((lon - LON_MIN) / (LON_MAX - LON_MIN) * (1 << STEP))
    bits = 0
    for i in range(32):
        bits |= ((lat_i >> i) & 1) << (2 * i) | ((lon_i >> i) & 1) << (2 * i + 1)
    return bits


def decode(score: float) -> Point:
    """GEOPOS from a score (geohashDecode + the centre of the cell, clamped to the valid range)."""
    bits = int(score)
    lat_i = sum(((bits >> (2 * i)) & 1) << i for i in range(32))
    lon_i = sum(((bits >> (2 * i + 1)) & 1) << i for i in range(32))
    cells = float(1 << STEP)
    lat = ((LAT_MIN + lat_i / cells * (LAT_MAX - LAT_MIN)) + (LAT_MIN + (lat_i + 1) / cells * (LAT_MAX - LAT_MIN))) / 2
    lon = ((LON_MIN + lon_i / cells * (LON_MAX - LON_MIN)) + (LON_MIN + (lon_i + 1) / cells * (LON_MAX - LON_MIN))) / 2
    return min(max(lon, LON_MIN), LON_MAX), min(max(lat, LAT_MIN), LAT_MAX)


def half_cell_m() -> dict[str, float]:
    """How far GEOPOS can be from the input: half a 52-bit cell, in metres, at the equator (widest)."""
    lon_deg = (LON_MAX - LON_MIN) / (1 << STEP) / 2
    lat_deg = (LAT_MAX - LAT_MIN) / (1 << STEP) / 2
    x, y = EARTH_RADIUS_M * math.radians(lon_deg), EARTH_RADIUS_M * math.radians(lat_deg)
    return {"east-west (m)": x, "north-south (m)": y, "diagonal (m)": math.hypot(x, y)}


def geodesic_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """The WGS84 ellipsoidal distance (GeographicLib, Karney's algorithm: accurate to nanometres)."""
    from geographiclib.geodesic import Geodesic

    return float(Geodesic.WGS84.Inverse(lat1, lon1, lat2, lon2)["s12"])


def sphere_error_bounds() -> tuple[float, float]:
    """(lowest, highest) relative error a sphere of Redis's radius can have against WGS84 over a short
    distance: the ellipsoid's radius of curvature runs from a(1-e^2) (north-south, equator) to
    a/sqrt(1-e^2) (at the poles)."""
    from geographiclib.geodesic import Geodesic

    a, f = Geodesic.WGS84.a, Geodesic.WGS84.f
    e2 = f * (2 - f)
    return EARTH_RADIUS_M / (a / math.sqrt(1 - e2)) - 1, EARTH_RADIUS_M / (a * (1 - e2)) - 1


# -- loading -------------------------------------------------------------------------------------

def random_points(n: int, center: Point = OSLO, half_m: float = 8_000,
                  seed: int = 22) -> list[tuple[str, float, float]]:
    """``n`` points (name, lon, lat) spread evenly over a square of +-``half_m`` around ``center``."""
    rng = random.Random(seed * 7919 + n)
    lon0, lat0 = center
    dlat = math.degrees(half_m / EARTH_RADIUS_M)
    dlon = dlat / math.cos(math.radians(lat0))
    out: list[tuple[str, float, float]] = []
    while len(out) < n:
        lon = (lon0 + rng.uniform(-dlon, dlon) + 540) % 360 - 180
        lat = lat0 + rng.uniform(-dlat, dlat)
        if LAT_MIN < lat < LAT_MAX and lon < LON_MAX:  # strictly inside: see edges_of_the_map
            out.append((f"p{len(out)}", lon, lat))
    return out


def world_points(n: int, seed: int = 52) -> list[tuple[str, float, float]]:
    """``n`` points anywhere Redis accepts (uniform in longitude and latitude)."""
    rng = random.Random(seed)
    return [(f"w{i}", rng.uniform(-180, 180), rng.uniform(LAT_MIN, LAT_MAX)) for i in range(n)]


def load_geo(r: Any, key: str, points: Sequence[tuple[str, float, float]], chunk: int = 5_000) -> None:
    """GEOADD every point, ``chunk`` points per command, pipelined."""
    p = r.pipeline(transaction=False)
    for i in range(0, len(points), chunk):
        p.geoadd(key, [x for m, lon, lat in points[i:i + chunk] for x in (lon, lat, m)])
    p.execute()


def stored(r: Any, key: str, members: Sequence[str]) -> dict[str, Point]:
    """GEOPOS of every member: where Redis keeps it (the centre of its 52-bit cell)."""
    out: dict[str, Point] = {}
    for i in range(0, len(members), 10_000):
        batch = members[i:i + 10_000]
        out.update({m: (p[0], p[1]) for m, p in zip(batch, r.geopos(key, *batch)) if p})
    return out


def brute_radius(points: dict[str, Point], center: Point, radius_m: float) -> set[str]:
    return {m for m, (lon, lat) in points.items() if haversine(center[0], center[1], lon, lat) <= radius_m}


# -- a geo set is a sorted set ------------------------------------------------------------------

CITIES = [("oslo", 10.7522, 59.9139), ("paris", 2.3522, 48.8566), ("quito", -78.4678, -0.1807),
          ("suva", 178.4419, -18.1416)]


def cities(r: Any, key: str) -> list[dict[str, Any]]:
    """GEOADD four cities; per member its score, the score decoded in Python, GEOPOS and GEOHASH."""
    r.delete(key)
    r.geoadd(key, [x for m, lon, lat in CITIES for x in (lon, lat, m)])
    names = [m for m, _, _ in CITIES]
    pos = dict(zip(names, r.geopos(key, *names)))
    hashes = dict(zip(names, r.geohash(key, *names)))
    rows = []
    for m, score in r.zrange(key, 0, -1, withscores=True):
        rows.append({"member": m, "score": int(score), "decoded": decode(score), "GEOPOS": tuple(pos[m]),
                     "GEOHASH": hashes[m], "encoded": encode(*next((lo, la) for n, lo, la in CITIES if n == m))})
    return rows


def cities_table(rows: list[dict[str, Any]]) -> Table:
    return Table(["member", "ZSCORE (52-bit integer)", "score decoded in Python", "GEOPOS", "GEOHASH"],
                 [[x["member"], x["score"], f"{x['decoded'][0]:.6f}, {x['decoded'][1]:.6f}",
                   f"{x['GEOPOS'][0]:.6f}, {x['GEOPOS'][1]:.6f}", x["GEOHASH"]] for x in rows],
                 title="ZRANGE ... WITHSCORES of a geo set (ascending score = a walk along a Z-order curve)")


def precision(r: Any, key: str, n: int = 5_000) -> dict[str, Any]:
    """``n`` random points anywhere: how far is GEOPOS from what GEOADD was given (metres)?"""
    r.delete(key)
    pts = world_points(n)
    load_geo(r, key, pts)
    pos = stored(r, key, [m for m, _, _ in pts])
    errors = [haversine(lon, lat, *pos[m]) for m, lon, lat in pts]
    scores = dict(r.zrange(key, 0, -1, withscores=True))
    exact = sum(1 for m, _, _ in pts if decode(scores[m]) == pos[m])
    encoded = sum(1 for m, lon, lat in pts if encode(lon, lat) == int(scores[m]))
    r.delete(key)
    return {"points": n, "max error (m)": max(errors), "median error (m)": statistics.median(errors),
            "GEOPOS == decode(ZSCORE)": exact, "ZSCORE == encode(input)": encoded,
            "max score": max(scores.values()), "bound": half_cell_m()}


def precision_table(p: dict[str, Any]) -> Table:
    b = p["bound"]
    return Table(["measure", "value"], [
        ["points (random, anywhere)", p["points"]],
        ["GEOPOS equal to the score decoded in Python", p["GEOPOS == decode(ZSCORE)"]],
        ["score equal to Python's encoding of the input", p["ZSCORE == encode(input)"]],
        ["median distance input -> GEOPOS (m)", round(p["median error (m)"], 3)],
        ["max distance input -> GEOPOS (m)", round(p["max error (m)"], 3)],
        ["half a cell at the equator, diagonal (m)", round(b["diagonal (m)"], 3)],
    ], title="The 52-bit geohash's precision, measured")


def swapped(r: Any, key: str) -> dict[str, Any]:
    """Coordinates given latitude first: one accepted at the wrong place, one refused."""
    r.delete(key)
    r.geoadd(key, [2.3522, 48.8566, "paris"])
    out: dict[str, Any] = {"paris (lat, lon) accepted": r.geoadd(key, [48.8566, 2.3522, "paris-swapped"])}
    out["km between them"] = float(r.geodist(key, "paris", "paris-swapped", "km"))
    for name, lon, lat in (("sydney (lat, lon)", -33.8688, 151.2093), ("latitude 85.06", 2.35, 85.06),
                           ("latitude 89", 2.35, 89.0), ("latitude 85.05112878", 2.35, LAT_MAX)):
        try:
            out[name] = r.geoadd(key, [lon, lat, name])
        except Exception as exc:  # redis.ResponseError: the server's own words
            out[name] = str(exc)
    return out


# -- the naive way: degrees as if they were kilometres ------------------------------------------

def naive_nearby(r: Any, hash_key: str, lon: float, lat: float, radius_m: float) -> set[str]:
    """Download every position (HGETALL) and keep those within radius / 111 km degrees both ways."""
    deg = radius_m / 111_000
    out = set()
    for m, v in r.hgetall(hash_key).items():
        x, y = map(float, v.split(","))
        if abs(x - lon) <= deg and abs(y - lat) <= deg:
            out.add(m)
    return out


def naive_vs_geosearch(r: Any, prefix: str, n: int = 4_000, radius_m: float = 5_000) -> dict[str, Any]:
    """The same ``n`` drivers around Oslo in a hash (naive) and a geo set; both asked for 5 km."""
    hkey, gkey = f"{prefix}:hash", f"{prefix}:geo"
    r.delete(hkey, gkey)
    pts = random_points(n)
    r.hset(hkey, mapping={m: f"{lon},{lat}" for m, lon, lat in pts})
    load_geo(r, gkey, pts)
    truth = brute_radius(stored(r, gkey, [m for m, _, _ in pts]), OSLO, radius_m)
    naive = naive_nearby(r, hkey, *OSLO, radius_m)
    geo = set(r.geosearch(gkey, longitude=OSLO[0], latitude=OSLO[1], radius=radius_m, unit="m"))
    return {"points": pts, "truth": truth, "naive": naive, "geosearch": geo, "radius_m": radius_m,
            "hash_len": r.hlen(hkey), "keys": (hkey, gkey)}


def naive_table(d: dict[str, Any]) -> Table:
    rows = []
    for name, got, sent in (("HGETALL + degrees box (naive)", d["naive"], d["hash_len"]),
                            ("GEOSEARCH BYRADIUS", d["geosearch"], len(d["geosearch"]))):
        rows.append([name, len(got), len(d["truth"] - got), len(got - d["truth"]), sent])
    return Table(["query", "found", "missed", "wrongly included", "positions sent to the client"], rows,
                 title=f"Drivers within {d['radius_m'] / 1000:g} km of central Oslo "
                       f"(truth: {len(d['truth'])}, by haversine over all {len(d['points'])})")


def _local_km(lon: float, lat: float, center: Point = OSLO) -> Point:
    """Equirectangular x/y in km around ``center`` (east, north): a circle looks like a circle."""
    k = EARTH_RADIUS_M / 1000 * math.pi / 180
    return (lon - center[0]) * k * math.cos(math.radians(center[1])), (lat - center[1]) * k


def plot_naive(d: dict[str, Any]) -> None:
    from .. import charts

    fig, ax = charts.figure(f"Nearby drivers in Oslo: a {d['radius_m'] / 1000:g} km circle",
                            xlabel="east of the centre (km)", ylabel="north of the centre (km)", width=7.5, height=5.5)
    xy = {m: _local_km(lon, lat) for m, lon, lat in d["points"]}
    other = [xy[m] for m in xy if m not in d["truth"] and m not in d["naive"]]
    ax.scatter(*zip(*other), s=3, color="#bbbbbb", label="other drivers")
    ax.scatter(*zip(*[xy[m] for m in d["geosearch"]]), s=5, color=charts.OK, label="GEOSEARCH (= exact)")
    missed = [xy[m] for m in d["truth"] - d["naive"]]
    extra = [xy[m] for m in d["naive"] - d["truth"]]
    if missed:
        ax.scatter(*zip(*missed), s=14, marker="x", color=charts.BAD, label="naive box: missed")
    if extra:
        ax.scatter(*zip(*extra), s=14, marker="+", color="#E69F00", label="naive box: wrongly included")
    ring = [_local_km(*destination(*OSLO, b, d["radius_m"])) for b in range(0, 361, 3)]
    ax.plot(*zip(*ring), color="black", lw=1, label=f"{d['radius_m'] / 1000:g} km")
    ax.set_aspect("equal")
    charts.finish(ax, summary=f"in this run the naive box missed {len(d['truth'] - d['naive'])} of "
                  f"{len(d['truth'])} drivers and included {len(d['naive'] - d['truth'])} too far away; "
                  f"GEOSEARCH missed 0")


def latency_vs_n(r: Any, prefix: str, sizes: Iterable[int] = (1_000, 4_000, 16_000),
                 radius_m: float = 1_000, repeats: int = 3) -> list[dict[str, Any]]:
    """Median time of the naive HGETALL + filter and of GEOSEARCH, as the number of drivers grows."""
    out = []
    hkey, gkey = f"{prefix}:hash", f"{prefix}:geo"
    for n in sizes:
        r.delete(hkey, gkey)
        pts = random_points(n, seed=5)
        r.hset(hkey, mapping={m: f"{lon},{lat}" for m, lon, lat in pts})
        load_geo(r, gkey, pts)
        t_naive, t_geo = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            naive = naive_nearby(r, hkey, *OSLO, radius_m)
            t1 = time.perf_counter()
            geo = r.geosearch(gkey, longitude=OSLO[0], latitude=OSLO[1], radius=radius_m, unit="m")
            t2 = time.perf_counter()
            t_naive.append((t1 - t0) * 1000)
            t_geo.append((t2 - t1) * 1000)
        out.append({"n": n, "naive ms": statistics.median(t_naive), "geosearch ms": statistics.median(t_geo),
                    "naive found": len(naive), "geosearch found": len(geo), "sent naive": r.hlen(hkey)})
    r.delete(hkey, gkey)
    return out


def plot_latency(rows: list[dict[str, Any]]) -> None:
    from .. import charts

    fig, ax = charts.figure("Nearby query time vs number of drivers (1 km radius)", xlabel="drivers (log)",
                            ylabel="median time per query (ms, log)")
    ns = [x["n"] for x in rows]
    ax.plot(ns, [x["naive ms"] for x in rows], "o-", color=charts.BAD, label="HGETALL + filter in Python")
    ax.plot(ns, [x["geosearch ms"] for x in rows], "s-", color=charts.OK, label="GEOSEARCH")
    ax.set_xscale("log")
    ax.set_yscale("log")
    last = rows[-1]
    charts.finish(ax, summary=f"in this run, at {last['n']:,} drivers the naive query took "
                  f"{last['naive ms']:.1f} ms and GEOSEARCH {last['geosearch ms']:.2f} ms "
                  f"({last['naive ms'] / max(last['geosearch ms'], 1e-6):.0f}x)")


# -- searches against brute force ---------------------------------------------------------------

def edge_points(center: Point, radius_m: float, offsets: Sequence[float] = (-2, -0.5, -0.2, -0.05, 0.05, 0.2, 0.5, 2),
                bearings: int = 24) -> list[tuple[str, float, float, float]]:
    """Points placed ``radius + offset`` metres from ``center`` on Redis's sphere, at many bearings."""
    out = []
    for off in offsets:
        for k in range(bearings):
            lon, lat = destination(*center, 360 * k / bearings + 7.5, radius_m + off)
            out.append((f"edge{off:+g}m:{k}", lon, lat, off))
    return out


def search_vs_brute(r: Any, key: str, n: int = 20_000, radius_m: float = 3_000,
                    box_m: tuple[float, float] = (6_000, 4_000)) -> dict[str, Any]:
    """``n`` random points around Oslo plus points on the circle's edge; GEOSEARCH BYRADIUS and BYBOX
    against Python filters over the positions Redis stored (GEOPOS) and over the raw inputs."""
    r.delete(key)
    pts = random_points(n)
    edges = edge_points(OSLO, radius_m)
    load_geo(r, key, pts + [(m, lon, lat) for m, lon, lat, _ in edges])
    raw = {m: (lon, lat) for m, lon, lat in pts} | {m: (lon, lat) for m, lon, lat, _ in edges}
    pos = stored(r, key, list(raw))
    radius = set(r.geosearch(key, longitude=OSLO[0], latitude=OSLO[1], radius=radius_m, unit="m"))
    w, h = box_m
    box = set(r.geosearch(key, longitude=OSLO[0], latitude=OSLO[1], width=w, height=h, unit="m"))
    edge_rows = []
    for off in sorted({o for *_, o in edges}):
        names = {m for m, _, _, o in edges if o == off}
        edge_rows.append({"offset (m)": off, "points": len(names), "GEOSEARCH": len(radius & names),
                          "filter on stored": len(brute_radius({m: pos[m] for m in names}, OSLO, radius_m)),
                          "filter on input": len(brute_radius({m: raw[m] for m in names}, OSLO, radius_m))})
    return {"n": len(raw), "radius_m": radius_m, "box_m": box_m, "radius": radius, "box": box,
            "radius_stored": brute_radius(pos, OSLO, radius_m), "radius_input": brute_radius(raw, OSLO, radius_m),
            "box_stored": {m for m, p in pos.items() if in_box(OSLO, p, w, h)},
            "box_input": {m for m, p in raw.items() if in_box(OSLO, p, w, h)},
            "edges": edge_rows, "max_shift_m": max(haversine(*raw[m], *pos[m]) for m in raw)}


def search_table(s: dict[str, Any]) -> Table:
    w, h = s["box_m"]
    rows = [
        [f"BYRADIUS {s['radius_m']:g} m", len(s["radius"]), len(s["radius_stored"]),
         len(s["radius"] ^ s["radius_stored"]), len(s["radius"] ^ s["radius_input"])],
        [f"BYBOX {w:g} x {h:g} m", len(s["box"]), len(s["box_stored"]), len(s["box"] ^ s["box_stored"]),
         len(s["box"] ^ s["box_input"])],
    ]
    return Table(["search", "GEOSEARCH", "Python filter", "differ (on GEOPOS)", "differ (on the inputs)"],
                 rows, title=f"{s['n']:,} points: GEOSEARCH vs a brute-force filter in Python")


def edge_table(s: dict[str, Any]) -> Table:
    return Table(["distance from the edge (m)", "points", "GEOSEARCH found", "filter on GEOPOS", "filter on the input"],
                 [[f"{x['offset (m)']:+g}", x["points"], x["GEOSEARCH"], x["filter on stored"], x["filter on input"]]
                  for x in s["edges"]],
                 title=f"Points placed just inside (-) and outside (+) the {s['radius_m']:g} m circle")


def nearest(r: Any, key: str, n: int = 20_000, k: int = 10, radius_m: float = 2_000) -> dict[str, Any]:
    """ASC COUNT k vs COUNT k ANY vs Python's k nearest (by Redis's distance on stored positions)."""
    r.delete(key)
    pts = random_points(n, seed=9)
    load_geo(r, key, pts)
    pos = stored(r, key, [m for m, _, _ in pts])
    dist = sorted((haversine(*OSLO, *p), m) for m, p in pos.items())
    python = [m for d, m in dist[:k]]
    asc = r.geosearch(key, longitude=OSLO[0], latitude=OSLO[1], radius=radius_m, unit="m", sort="ASC",
                      count=k, withdist=True)
    anyk = r.geosearch(key, longitude=OSLO[0], latitude=OSLO[1], radius=radius_m, unit="m", count=k, any=True,
                       withdist=True)
    r.delete(key)
    rank = {m: i + 1 for i, (_, m) in enumerate(dist)}
    return {"python": python, "python_dist": [d for d, _ in dist[:k]], "asc": [m for m, _ in asc],
            "asc_dist": [d for _, d in asc], "any": [m for m, _ in anyk], "any_rank": sorted(rank[m] for m, _ in anyk),
            "any_dist": [d for _, d in anyk], "radius_m": radius_m, "k": k}


def nearest_table(d: dict[str, Any]) -> Table:
    rows = [[i + 1, d["python"][i], round(d["python_dist"][i], 1), d["asc"][i], round(d["asc_dist"][i], 1),
             d["any"][i] if i < len(d["any"]) else "", d["any_rank"][i] if i < len(d["any_rank"]) else ""]
            for i in range(d["k"])]
    return Table(["#", "Python's nearest", "m", "ASC COUNT 10", "m", "COUNT 10 ANY", "its true rank"], rows,
                 title=f"The {d['k']} nearest of 20,000 drivers within {d['radius_m']:,.0f} m")


# -- GEODIST vs the ellipsoid -------------------------------------------------------------------

def geodist_error(r: Any, key: str, pairs: int = 240, seed: int = 7) -> list[dict[str, Any]]:
    """GEODIST vs GeographicLib's WGS84 geodesic between the same stored positions, for pairs from 10 m to
    19,000 km apart in every direction, in four regions: anywhere, near the poles' limit (|lat| 80-85),
    across the antimeridian, and short hops due north or due east. Returns one row per pair."""
    rng = random.Random(seed)
    specs: list[tuple[str, float, float, float, float]] = []
    longest = {"anywhere": 19_000_000, "near the poles": 400_000, "across the antimeridian": 2_000_000,
               "due north / due east": 100_000}
    for i in range(pairs):
        region = ("anywhere", "near the poles", "across the antimeridian", "due north / due east")[i % 4]
        metres = 10 ** rng.uniform(1, math.log10(longest[region]))   # log-uniform: as many short as long
        bearing = rng.uniform(0, 360)
        if region == "anywhere":
            lon, lat = rng.uniform(-180, 180), rng.uniform(-80, 80)
        elif region == "near the poles":
            lon, lat = rng.uniform(-180, 180), rng.choice((-1, 1)) * rng.uniform(80, 84.9)
        elif region == "across the antimeridian":
            lon, lat, bearing = rng.choice((179.9, -179.9)), rng.uniform(-70, 70), rng.uniform(45, 135)
            bearing = bearing if lon > 0 else -bearing
            metres = max(metres, 12_000)   # far enough to reach the other side
        else:
            lon, lat, bearing = rng.uniform(-180, 180), rng.uniform(-80, 80), rng.choice((0.0, 90.0))
        lon2, lat2 = destination(lon, lat, bearing, metres)
        if not LAT_MIN <= lat2 <= LAT_MAX:
            continue
        specs.append((region, lon, lat, lon2, lat2))
    r.delete(key)
    load_geo(r, key, [x for i, (_, lo, la, lo2, la2) in enumerate(specs)
                      for x in ((f"a{i}", lo, la), (f"b{i}", lo2, la2))])
    p = r.pipeline(transaction=False)
    for i in range(len(specs)):
        p.geodist(key, f"a{i}", f"b{i}")
    dists = p.execute()
    a = stored(r, key, [f"a{i}" for i in range(len(specs))])
    b = stored(r, key, [f"b{i}" for i in range(len(specs))])
    rows = []
    for i, (region, *_rest) in enumerate(specs):
        (x1, y1), (x2, y2) = a[f"a{i}"], b[f"b{i}"]
        truth = geodesic_m(x1, y1, x2, y2)
        redis_m = float(dists[i])
        rows.append({"region": region, "geodist": redis_m, "geodesic": truth, "haversine": haversine(x1, y1, x2, y2),
                     "rel": (redis_m - truth) / truth, "lat": (y1 + y2) / 2,
                     "crosses": (x1 > 0) != (x2 > 0) and abs(x1) > 170})
    r.delete(key)
    return rows


def plot_geodist(rows: list[dict[str, Any]]) -> None:
    from .. import charts

    fig, ax = charts.figure("GEODIST's error against the WGS84 ellipsoid (GeographicLib)",
                            xlabel="distance (m, log)", ylabel="GEODIST error (%)", width=8.5, height=4.2)
    for i, region in enumerate(("anywhere", "near the poles", "across the antimeridian", "due north / due east")):
        sel = [x for x in rows if x["region"] == region]
        ax.scatter([x["geodesic"] for x in sel], [x["rel"] * 100 for x in sel], s=12, color=charts.PALETTE[i],
                   marker="os^D"[i], label=region)
    for n, y in enumerate((0.5, -0.5)):
        ax.axhline(y, color="black", lw=0.8, ls="--", label="+-0.5 %" if n == 0 else None)
    for n, y in enumerate(sphere_error_bounds()):
        ax.axhline(y * 100, color=charts.NEUTRAL, lw=0.8, ls=":", label="the sphere's bounds" if n == 0 else None)
    ax.set_xscale("log")
    hi = max(rows, key=lambda x: x["rel"])
    lo = min(rows, key=lambda x: x["rel"])
    charts.finish(ax, summary=f"in this run the error ran from {lo['rel']:+.3%} ({lo['region']}, lat {lo['lat']:.0f}) "
                  f"to {hi['rel']:+.3%} ({hi['region']}, lat {hi['lat']:.0f})")


def geodist_table(rows: list[dict[str, Any]]) -> Table:
    out = []
    for region in ("anywhere", "near the poles", "across the antimeridian", "due north / due east"):
        sel = [x for x in rows if x["region"] == region]
        out.append([region, len(sel), f"{min(x['rel'] for x in sel):+.3%}", f"{max(x['rel'] for x in sel):+.3%}",
                    round(max(abs(x["geodist"] - x["geodesic"]) for x in sel))])
    return Table(["pairs", "n", "lowest error", "highest error", "largest error (m)"], out,
                 title="GEODIST - geodesic, relative to the geodesic")


# -- poles and the antimeridian -----------------------------------------------------------------

def edges_of_the_map(r: Any, key: str, n: int = 5_000) -> dict[str, Any]:
    """Searches across the antimeridian and near the latitude limit against brute force, and the
    point stored at longitude +180 that no search returns."""
    out: dict[str, Any] = {}
    for name, center, radius_m in (("across the antimeridian (Fiji)", (179.99, -17.8), 30_000),
                                   ("at the latitude limit", (25.0, 85.0), 100_000)):
        r.delete(key)
        pts = random_points(n, center, half_m=radius_m * 1.5, seed=3)
        load_geo(r, key, pts)
        pos = stored(r, key, [m for m, _, _ in pts])
        got = set(r.geosearch(key, longitude=center[0], latitude=center[1], radius=radius_m, unit="m"))
        truth = brute_radius(pos, center, radius_m)
        west = sum(1 for m in got if pos[m][0] < 0)
        out[name] = {"found": len(got), "python": len(truth), "differ": len(got ^ truth), "other side": west}
    r.delete(key)
    r.geoadd(key, [180.0, 0.0, "lon +180", -180.0, 0.0, "lon -180", 179.999, 0.0, "lon 179.999",
                   25.0, LAT_MAX, "lat 85.05112878", 25.0, 85.05, "lat 85.05"])
    scores = dict(r.zrange(key, 0, -1, withscores=True))
    out["scores"] = {m: int(s) for m, s in scores.items()}
    out["GEODIST +180 -180 (m)"] = float(r.geodist(key, "lon +180", "lon -180"))
    near = {"lon +180": (179.9995, 0.0), "lat 85.05112878": (25.0, 85.0)}
    out["near"] = {m: sorted(r.geosearch(key, longitude=c[0], latitude=c[1], radius=10, unit="km"))
                   for m, c in near.items()}
    out["whole earth"] = sorted(r.geosearch(key, longitude=0.0, latitude=0.0, radius=21_000, unit="km"))
    r.delete(key)
    return out


def boundary_table(e: dict[str, Any]) -> Table:
    found = set(e["whole earth"])
    return Table(["member", "score", "score < 2^52", "found by a 21,000 km search"],
                 [[m, s, s < 2**52, m in found] for m, s in sorted(e["scores"].items(), key=lambda x: x[1])],
                 title="Points on the map's upper edges: accepted by GEOADD, found by no search")


def map_edges_table(e: dict[str, Any]) -> Table:
    rows = [[name, v["found"], v["python"], v["differ"], v["other side"]]
            for name, v in e.items() if isinstance(v, dict) and "found" in v]
    return Table(["search", "GEOSEARCH", "Python filter", "differ", "found west of 180 (lon < 0)"], rows,
                 title="Searches at the edges of the map, against brute force")


# -- drivers: updates and the reaper race -------------------------------------------------------

def ping_rate(drivers: Any, n: int = 2_000, batches: Sequence[int] = (1, 10, 100, 1000),
              seed: int = 4) -> list[dict[str, Any]]:
    """``n`` drivers each send one position: one MULTI round trip per ping (``drivers.ping``), then
    pings grouped ``batch`` per round trip. Returns pings/s per batch size and the final state."""
    rng = random.Random(seed)
    out = []
    for batch in batches:
        moves = [(f"d{i}", *destination(*OSLO, rng.uniform(0, 360), rng.uniform(0, 8_000))) for i in range(n)]
        now = 1_000.0 + batch
        t0 = time.perf_counter()
        if batch == 1:
            for d, lon, lat in moves:
                drivers.ping(d, lon, lat, now)
        else:
            for i in range(0, n, batch):
                chunk = moves[i:i + batch]
                with drivers.r.pipeline(transaction=True) as p:
                    p.geoadd(drivers.geo, [x for d, lon, lat in chunk for x in (lon, lat, d)])
                    p.zadd(drivers.seen, {d: now for d, _, _ in chunk})
                    p.execute()
        secs = time.perf_counter() - t0
        pos = stored(drivers.r, drivers.geo, [d for d, _, _ in moves])
        moved = sum(1 for d, lon, lat in moves if haversine(lon, lat, *pos[d]) < 1.0)
        seen = drivers.r.zrange(drivers.seen, 0, -1, withscores=True)
        out.append({"batch": batch, "pings": n, "round trips": -(-n // batch), "pings/s": n / secs,
                    "at last position": moved, "seen at this round": sum(1 for _, s in seen if s == now),
                    "members": drivers.r.zcard(drivers.geo)})
    return out


def plot_ping_rate(rows: list[dict[str, Any]]) -> None:
    from .. import charts

    fig, ax = charts.figure(f"Position updates per second ({rows[0]['pings']:,} drivers, one client)",
                            xlabel="pings per round trip (log)", ylabel="pings per second (log)")
    ax.plot([x["batch"] for x in rows], [x["pings/s"] for x in rows], "o-", label="GEOADD + ZADD in MULTI")
    ax.set_xscale("log")
    ax.set_yscale("log")
    charts.finish(ax, summary=f"in this run one ping per round trip gave {rows[0]['pings/s']:,.0f} pings/s, "
                  f"{rows[-1]['batch']} per round trip {rows[-1]['pings/s']:,.0f} pings/s")


def ping_table(rows: list[dict[str, Any]]) -> Table:
    return Table(["pings per round trip", "round trips", "pings/s", "at their last position", "seen this round",
                  "members"],
                 [[x["batch"], x["round trips"], round(x["pings/s"]), x["at last position"],
                   x["seen at this round"], x["members"]] for x in rows],
                 title="Every driver pings once per round of the test", fmt={"pings/s": ",.0f"})


def naive_reap(r: Any, geo: str, seen: str, cutoff: float, between: Any = None) -> list[str]:
    """Read the stale drivers, then remove them: two steps, with room for a ping in between."""
    stale = r.zrange(seen, "-inf", cutoff, byscore=True)
    if between:
        between()
    if stale:
        r.zrem(geo, *stale)
        r.zrem(seen, *stale)
    return cast(list[str], stale)


def reaper_race(drivers_naive: Any, drivers_lua: Any) -> dict[str, dict[str, Any]]:
    """d7 was last seen at t=0 s; at t=40 s a reaper (max age 30 s) runs while d7 pings again.

    Naive: the reaper reads "d7 is stale", is paused there (a pause point), d7 pings, and the reaper
    removes it. Script: nothing can run between its read and its ZREMs, so the ping lands either
    before the script or after it; both orders are run."""
    def setup(drivers: Any) -> None:
        drivers.r.delete(drivers.geo, drivers.seen)
        drivers.ping("d7", *OSLO, now=0.0)
        drivers.ping("d8", 10.76, 59.92, now=35.0)

    def ping_d7(drivers: Any) -> None:
        drivers.ping("d7", 10.7600, 59.9200, now=40.0)  # d7 is alive and moving

    def state(drivers: Any, reaped: list[str]) -> dict[str, Any]:
        return {"reaped": sorted(reaped), "d7 position": drivers.r.geopos(drivers.geo, "d7")[0],
                "d7 last seen": drivers.r.zscore(drivers.seen, "d7"),
                "nearby": [m for m, _ in drivers.nearby(*OSLO, 2_000)]}

    out = {}
    d = drivers_naive
    setup(d)
    pause = PausePoint("reaper between its read and its ZREM")
    job = run_in_thread(naive_reap, d.r, d.geo, d.seen, 40.0 - d.max_age, pause, thread_name="reaper")
    pause.wait_reached()
    ping_d7(d)
    pause.release()
    out["read, then ZREM (naive): ping in between"] = state(d, job.result(timeout=10))
    d = drivers_lua
    setup(d)
    ping_d7(d)
    out["LUA_REAP: ping just before"] = state(d, d.reap(now=40.0))
    setup(d)
    reaped = d.reap(now=40.0)
    ping_d7(d)
    out["LUA_REAP: ping just after"] = state(d, reaped)
    return out


def race_table(race: dict[str, dict[str, Any]]) -> Table:
    return Table(["reaper", "reaped", "d7 in the geo set", "d7 last seen (s)", "nearby(Oslo, 2 km)"],
                 [[k, ", ".join(v["reaped"]) or "-", "yes" if v["d7 position"] else "no (gone)",
                   v["d7 last seen"] if v["d7 last seen"] is not None else "-", ", ".join(v["nearby"]) or "-"]
                  for k, v in race.items()],
                 title="d7 pings at t=40 s while a reaper (max age 30 s) is between its read and its ZREM")
