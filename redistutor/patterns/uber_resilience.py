"""Resilience in front of a sharded database: staggered shards, a circuit breaker, a CDC-fed cache.

Why aligned shards hurt, as a timeline::

    time 0  cache node c1 holds the keys of DB shard d1 (same hash, same count: "aligned")
    time 1  c1 dies; every read of a c1 key misses and goes to the database
    time 2  all of those misses land on d1, which was sized for its cache's misses only:
            d1 overloads while d2 and d3 idle, and its slowness spreads to every caller

Staggered sharding places cache keys with a different hash from the database's
(``shard(key, n, salt)`` with another salt), so a dead cache node's keys are spread over every
DB shard. :class:`CircuitBreaker` stops a hung node from costing each request a full timeout:
after ``threshold`` failures within ``window`` seconds it opens (requests skip that node and go
to the database), after ``cooldown`` seconds one probe is let through (half-open), and a success
closes it. :func:`tail` keeps the cache fresh from the database's change log (CDC): writes never
touch the cache, and each cache node stores its own log offset in the same ``MULTI`` as the
values, so a tailer killed at any point resumes right after the last entry it applied.

Notebook: notebooks/30-uber-resilience.ipynb
Redis: https://redis.io/docs/latest/develop/interact/transactions/ (MULTI/EXEC),
https://www.uber.com/blog/how-uber-serves-over-40-million-reads-per-second-using-an-integrated-cache/
"""

from __future__ import annotations

import time
import zlib

import redis

__all__ = ["CircuitBreaker", "read", "shard", "tail"]


def shard(key, n, salt=""):
    """Which of ``n`` shards holds ``key``. Same salt for cache and DB: aligned; different: staggered."""
    return zlib.crc32((salt + key).encode()) % n


def read(key, caches, breakers, db, salt="cache:"):
    """Cache first, through that node's breaker; the database if the node is down, hung or tripped."""
    i = shard(key, len(caches), salt)
    if breakers[i].allow():
        try:
            value = caches[i].get(key)
            breakers[i].record(True)
            if value is not None:
                return value
        except redis.RedisError:          # refused, reset or timed out: count it, fall through
            breakers[i].record(False)
    return db.get(key)                    # the cache is filled by the change log, not here


class CircuitBreaker:
    """Open after ``threshold`` failures within ``window`` s; after ``cooldown`` s, probe (half-open)."""

    def __init__(self, threshold=5, window=1.0, cooldown=2.0, clock=time.monotonic):
        self.threshold, self.window, self.cooldown, self.clock = threshold, window, cooldown, clock
        self.state, self.failures, self.opened = "closed", [], 0.0

    def allow(self):
        if self.state == "open" and self.clock() - self.opened >= self.cooldown:
            self.state = "half-open"      # the next request probes the node
        return self.state != "open"

    def record(self, ok):
        now = self.clock()
        if ok:
            if self.state == "half-open":
                self.state, self.failures = "closed", []
            return
        self.failures = [t for t in self.failures if now - t < self.window] + [now]
        if self.state == "half-open" or len(self.failures) >= self.threshold:
            self.state, self.opened = "open", now


def tail(changes, r, name, mine, batch=500):
    """Apply one change log to one cache node in log order, from the offset kept on that node.

    ``changes(offset, batch)`` yields ``(seq, key, value)`` after ``offset``; ``mine(key)`` says
    whether this node caches the key. Returns how many log entries were consumed.
    """
    offset_key = f"cdc:offset:{name}"
    last = offset = int(r.get(offset_key) or 0)
    with r.pipeline(transaction=True) as p:   # values and offset commit together, or not at all
        for seq, key, value in changes(offset, batch):
            if mine(key):
                p.set(key, value)
            last = seq
        if last != offset:
            p.set(offset_key, last)
            p.execute()
    return last - offset
