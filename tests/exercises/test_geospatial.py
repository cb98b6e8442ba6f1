"""Self-tests of the geospatial exercise checkers: the reference passes, known-wrong answers fail."""

from __future__ import annotations

import math

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import geospatial as ex


def test_delivery_reference_passes(r):
    assert ex.delivery_exercise(r).evaluate(ex.can_deliver).outcome == CORRECT


def test_delivery_starter_is_not_attempted(r):
    def starter(r, stores, radii, lon, lat):
        raise NotImplementedError

    assert ex.delivery_exercise(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_delivery_with_one_radius_for_every_store_fails(r):
    def can_deliver(r, stores, radii, lon, lat):   # the largest radius for everyone
        widest = r.zrange(radii, -1, -1, withscores=True)
        if not widest:
            return []
        return sorted(r.geosearch(stores, longitude=lon, latitude=lat, radius=widest[0][1], unit="m"))

    res = ex.delivery_exercise(r).evaluate(can_deliver)
    assert res.outcome == INCORRECT and "own radius" in res.message


def test_delivery_with_degrees_as_kilometres_fails(r):
    def can_deliver(r, stores, radii, lon, lat):   # candidates by a degree box, 111 km per degree
        widest = r.zrange(radii, -1, -1, withscores=True)
        if not widest:
            return []
        deg = widest[0][1] / 111_000
        hits = r.geosearch(stores, longitude=lon, latitude=lat, radius=widest[0][1] * 2, unit="m", withcoord=True)
        out = []
        for store, (x, y) in hits:
            own = r.zscore(radii, store)
            if abs(x - lon) <= deg * own / widest[0][1] and abs(y - lat) <= deg * own / widest[0][1]:
                out.append(store)
        return sorted(out)

    assert ex.delivery_exercise(r).evaluate(can_deliver).outcome == INCORRECT


def test_delivery_downloading_every_store_fails(r):
    def can_deliver(r, stores, radii, lon, lat):   # right answer, computed in Python over everything
        own = dict(r.zrange(radii, 0, -1, withscores=True))
        if not own:
            return []
        pos = dict(zip(own, r.geopos(stores, *own)))
        return sorted(m for m, p in pos.items() if ex.haversine(lon, lat, *p) <= own[m])

    res = ex.delivery_exercise(r).evaluate(can_deliver)
    assert res.outcome == INCORRECT and "download" in res.message


def test_delivery_with_distances_cut_to_whole_metres_fails(r):
    def can_deliver(r, stores, radii, lon, lat):   # int(distance): 0.5 m past the edge counts as on it
        widest = r.zrange(radii, -1, -1, withscores=True)
        if not widest:
            return []
        hits = r.geosearch(stores, longitude=lon, latitude=lat, radius=widest[0][1], unit="m", withdist=True)
        own = r.zmscore(radii, [s for s, _ in hits]) if hits else []
        return sorted(s for (s, d), rad in zip(hits, own) if int(d) <= rad)

    res = ex.delivery_exercise(r).evaluate(can_deliver)
    assert res.outcome == INCORRECT and "edge" in res.message


def test_nearest_reference_passes(r):
    assert ex.nearest_exercise(r).evaluate(ex.nearest).outcome == CORRECT


def test_nearest_starter_is_not_attempted(r):
    def starter(r, key, lon, lat, k):
        raise NotImplementedError

    assert ex.nearest_exercise(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_nearest_with_count_any_fails(r):
    def nearest(r, key, lon, lat, k):
        hits = r.geosearch(key, longitude=lon, latitude=lat, radius=21_000, unit="km", count=k, any=True,
                           sort="ASC", withdist=True)
        return [(m, d * 1000) for m, d in hits]

    res = ex.nearest_exercise(r).evaluate(nearest)
    assert res.outcome == INCORRECT and "nearest first" in res.message


def test_nearest_with_a_fixed_radius_fails_far_from_everyone(r):
    def nearest(r, key, lon, lat, k):   # "nearby" means 50 km: fine in a city, empty in the Pacific
        hits = r.geosearch(key, longitude=lon, latitude=lat, radius=50_000, unit="m", sort="ASC", count=k,
                           withdist=True)
        return [(m, d) for m, d in hits]

    res = ex.nearest_exercise(r).evaluate(nearest)
    assert res.outcome == INCORRECT and "Suva" in res.message


def test_nearest_in_km_fails(r):
    def nearest(r, key, lon, lat, k):
        return r.geosearch(key, longitude=lon, latitude=lat, radius=21_000, unit="km", sort="ASC", count=k,
                           withdist=True)

    res = ex.nearest_exercise(r).evaluate(nearest)
    assert res.outcome == INCORRECT and "metres" in res.message


def test_nearest_by_a_degree_box_fails(r):
    def nearest(r, key, lon, lat, k):   # plane geometry on degrees: wrong near 180 and far north
        pts = r.geosearch(key, longitude=lon, latitude=lat, radius=21_000, unit="km", withcoord=True)
        best = sorted(pts, key=lambda p: math.hypot(p[1][0] - lon, p[1][1] - lat))[:k]
        return [(m, ex.haversine(lon, lat, *xy)) for m, xy in best]

    assert ex.nearest_exercise(r).evaluate(nearest).outcome == INCORRECT


def test_nearest_downloading_everything_fails(r):
    def nearest(r, key, lon, lat, k):
        members = r.zrange(key, 0, -1)
        pos = dict(zip(members, r.geopos(key, *members)))
        return sorted(((m, ex.haversine(lon, lat, *p)) for m, p in pos.items()), key=lambda x: x[1])[:k]

    res = ex.nearest_exercise(r).evaluate(nearest)
    assert res.outcome == INCORRECT and "download" in res.message


def test_try_it_is_checked_with_geographiclib(r):
    assert ex.over_or_under(r, 0, "north-south").evaluate("over").outcome == CORRECT
    assert ex.over_or_under(r, 0, "north-south").evaluate("under").outcome == INCORRECT
    assert ex.over_or_under(r, 80, "north-south").evaluate("under").outcome == CORRECT
    assert ex.over_or_under(r, 0, "east-west").evaluate("under").outcome == CORRECT
    assert ex.over_or_under(r, 60, "east-west").evaluate("over").outcome == INCORRECT
    assert ex.over_or_under(r, 45, "north-south").evaluate("over").outcome == CORRECT
    assert ex.over_or_under(r, 55, "north-south").evaluate("under").outcome == CORRECT
    assert ex.over_or_under(r, -60, "north-south").evaluate("under").outcome == CORRECT
    assert ex.over_or_under(r, 30, "north-south").evaluate(None).outcome == NOT_ATTEMPTED
