"""Functional partitioning: one Redis per job (cache, sessions, queue), and sharding by key inside one.

Why one shared instance hurts, as a timeline::

    time 0  a deploy: the workers stop; 200 tasks wait in tasks:* on the shared Redis
    time 1  cache traffic fills maxmemory; allkeys-lru evicts the least recently used keys:
            the idle task lists first (and the sessions)
    time 2  the workers come back: the lists are gone. LPUSH had said OK for every task, nobody
            was told, and only a count kept outside Redis shows the loss

A cache *wants* eviction (``allkeys-lru``), a queue must never lose a key (``noeviction``: a full
instance refuses the write with an OOM error, so the producer is told), sessions sit in between
(``volatile-lru`` or their TTLs). One instance has one ``maxmemory-policy`` and one event loop:
a heavy cache command also delays every queue command behind it. So each function gets its own
instances, and the application asks a router for "the client for this function (and this key)".

Inside one function, keys are spread over its instances by a *virtual shard*:
``crc32(key) % shards`` picks one of a fixed number of shards (64 here), and a placement table
says which instance holds each shard. Growing from 2 to 3 instances moves whole shards (about a
third of the keys), where ``crc32(key) % instances`` would move about two thirds.

The reliable jobs themselves are :class:`redistutor.patterns.reliable_queue.ReliableQueue`
(notebook 13), given the queue function's client.

Notebook: notebooks/17-pinterest-task-queue.ipynb
Redis: https://redis.io/docs/latest/develop/reference/eviction/ (maxmemory policies),
https://redis.io/docs/latest/operate/oss_and_stack/management/scaling/ (partitioning)
"""

from __future__ import annotations

import zlib

__all__ = ["Partitioned"]


class Partitioned:
    """A client per function (cache, sessions, queue); inside a function, keys go by virtual shard."""

    def __init__(self, routes, shards=64):
        # routes: {"cache": [r1, r2], "sessions": [r3], "queue": [r4]}, each function's instances.
        # One instance for everything is {"cache": [r], "sessions": [r], "queue": [r]}.
        self.routes, self.shards = routes, shards
        # placement[function][shard] = index (in routes[function]) of the instance holding it
        self.placement = {f: [s % len(rs) for s in range(shards)] for f, rs in routes.items()}

    def shard(self, key):
        """The key's virtual shard: fixed for ever, however many instances there are."""
        return zlib.crc32(key.encode()) % self.shards

    def client(self, function, key=""):
        """The client for this function's data, and for this key's shard of it."""
        return self.routes[function][self.placement[function][self.shard(key)]]
