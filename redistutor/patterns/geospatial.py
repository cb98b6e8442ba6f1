"""Geospatial index: the last position of each driver in a geo set, and who is nearby.

Notebook: notebooks/22-geospatial.ipynb
Redis: https://redis.io/docs/latest/develop/data-types/geospatial/

A geo set is a sorted set whose scores are 52-bit geohashes, so a radius query is a few score
ranges plus an exact distance check. Members have no TTL of their own, so a driver whose app died
would stay "nearby" forever: :class:`NearbyDrivers` keeps each driver's last-seen time in a second
sorted set and reaps stale drivers from both keys in one atomic script.

Why the reaper is a script: time 0 the reaper reads "d7 last seen 40 s ago" · time 1 d7 pings its
new position · time 2 the reaper ZREMs d7 from both keys, so a live driver vanished until its next
ping. In the script, reading and removing are one step: d7's ping lands before or after it.

In a cluster, give ``prefix`` a hash tag (``drivers:{paris}``) so both keys share a slot.
"""

from __future__ import annotations


class NearbyDrivers:
    """Drivers' positions (geo set ``prefix:geo``) and last-seen times (sorted set ``prefix:seen``)."""

    # KEYS[1] positions, KEYS[2] last-seen times; ARGV[1] cutoff (s). Drops up to 500 drivers not seen
    # since the cutoff from both keys in one atomic step; returns them.
    LUA_REAP = """
    local stale = redis.call('ZRANGE', KEYS[2], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, 500)
    for _, d in ipairs(stale) do redis.call('ZREM', KEYS[1], d); redis.call('ZREM', KEYS[2], d) end
    return stale"""

    def __init__(self, r, prefix="drivers", max_age=30.0):
        self.r, self.max_age = r, max_age
        self.geo, self.seen = f"{prefix}:geo", f"{prefix}:seen"
        self.reaper = r.register_script(self.LUA_REAP)

    def ping(self, driver, lon, lat, now):
        lon = -180.0 if lon == 180.0 else lon  # the same meridian; stored at +180 no search finds it
        with self.r.pipeline(transaction=True) as p:  # position and time together, one round trip
            p.geoadd(self.geo, [lon, lat, driver])
            p.zadd(self.seen, {driver: now})
            p.execute()

    def nearby(self, lon, lat, radius_m, count=5):
        """The ``count`` nearest drivers within ``radius_m``, nearest first: [[driver, metres], ...]."""
        return self.r.geosearch(self.geo, longitude=lon, latitude=lat, radius=radius_m, unit="m",
                                sort="ASC", count=count, withdist=True)

    def reap(self, now):
        return self.reaper(keys=[self.geo, self.seen], args=[now - self.max_age])
