"""Stream consumer groups in production: recover your own pending entries, claim a dead
consumer's, dead-letter poison entries.

A stream is a log, not a work queue: ``XREADGROUP ... >`` hands each new entry to one consumer
of the group and records it in the group's *pending entries list* (PEL) under that consumer's
name, with a delivery count and the time of the last delivery. The entry stays pending until
``XACK``. Nothing else ever takes it out of the PEL::

    time 0  consumer c1: XREADGROUP GROUP g c1 COUNT 10 STREAMS s >   -> 10 entries, pending (c1)
    time 1  c1 is killed with kill -9 before its XACKs
    time 2  c1 restarts and reads only ">": it gets new entries; its 10 stay pending forever

Three moves fix that, and they are the whole pattern:

* :func:`consume`: the **two-phase start**. A consumer first reads its *own* PEL (``XREADGROUP``
  with id ``0``, then the last id it saw) and processes it, then switches to ``>``.
* :func:`recover`: a healthy consumer takes over entries that have been pending longer than
  ``min_idle_ms`` (a dead consumer's) with ``XAUTOCLAIM`` (6.2+), which also bumps their delivery
  count; deleted (trimmed) entries come back in its third element (7.0+) and leave the PEL.
* :func:`process`: handle, then ``XACK``. An entry whose handler raises stays pending; once it
  has been delivered ``max_deliveries`` times (the count ``XPENDING`` reports) a copy goes to a
  dead-letter stream and the entry is acknowledged, so one poison entry cannot loop forever.

Every entry is processed *at least* once: a consumer killed after its side effect and before its
XACK has the entry delivered again, so the handler must be idempotent.

Notebook: notebooks/14-streams-consumer-patterns.ipynb
Redis: https://redis.io/docs/latest/develop/data-types/streams/ (XREADGROUP:
https://redis.io/commands/xreadgroup, XAUTOCLAIM: https://redis.io/commands/xautoclaim,
XPENDING: https://redis.io/commands/xpending)
"""

from __future__ import annotations

__all__ = ["consume", "process", "recover"]


def process(r, stream, group, entries, handle, dlq, max_deliveries=3):
    for entry_id, fields in entries:                 # handle, then XACK; poison -> dead letters
        try:
            if fields:                               # {}: trimmed while pending, nothing to handle
                handle(entry_id, fields)
        except Exception:
            [p] = r.xpending_range(stream, group, entry_id, entry_id, 1)
            if p["times_delivered"] < max_deliveries:
                continue                             # stays pending: a later claim retries it
            r.xadd(dlq, {"id": entry_id, **fields})  # delivered too often: park a copy, then ack
        r.xack(stream, group, entry_id)


def consume(r, stream, group, me, count=10, **kw):
    """Two-phase start: my own pending entries (from id 0) first, then new ones (">")."""
    for start in ("0", ">"):                         # phase 1: my PEL; phase 2: new entries
        while (reply := r.xreadgroup(group, me, {stream: start}, count=count)) and reply[stream][0]:
            entries = reply[stream][0]               # RESP3 reply {stream: [entries]}; [] or {}: none left
            process(r, stream, group, entries, **kw)
            start = ">" if start == ">" else entries[-1][0]   # walk my PEL forward


def recover(r, stream, group, me, min_idle_ms, **kw):
    """XAUTOCLAIM entries pending for min_idle_ms or more (a dead consumer's), then process them."""
    cursor = None
    while cursor != "0-0":                           # "0-0": the whole PEL has been scanned
        cursor, claimed, deleted = r.xautoclaim(stream, group, me, min_idle_ms, cursor or "0-0")
        process(r, stream, group, claimed, **kw)
