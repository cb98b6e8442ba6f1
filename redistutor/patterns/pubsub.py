"""Pub/Sub: fire-and-forget broadcast, made honest with sequence numbers and a gap detector.

``PUBLISH channel message`` hands the message to whoever is subscribed *at that moment* and
stores nothing. Its return value is the number of deliveries it made (one per matching
subscription of each client: a client subscribed to ``news.tech`` and to ``news.*`` counts twice).
A subscriber that is disconnected, restarting, or cut off for reading too slowly
(``client-output-buffer-limit pubsub``) misses messages, and nothing tells it so: redis-py even
reconnects and resubscribes silently. Delivery is at most once.

The pattern numbers every message, so a subscriber can see what it missed::

    publisher  INCR news:seq -> 41, PUBLISH news "41:..."   (one Lua script: numbers go out in order)
    subscriber 40 seen ... connection drops ... 41, 42 published to nobody (PUBLISH returns 0)
    subscriber reconnects; 43 arrives -> the detector reports 41 and 42 missing

Detection is not recovery: the missing messages are gone. When every message matters, write them
to a Stream (``XADD``) and read from the last id seen (``XREAD``), which loses nothing across an
outage (notebooks/14-streams-consumer-patterns.ipynb for consumer groups).

Notebook: notebooks/16-pubsub.ipynb
Redis: https://redis.io/docs/latest/develop/interact/pubsub/ · https://redis.io/commands/publish/ ·
https://redis.io/commands/spublish/ · https://redis.io/docs/latest/develop/reference/clients/
(output buffer limits)
"""

from __future__ import annotations

from typing import Any


class SequencedChannel:
    """PUBLISH with a sequence number from Redis, so that a subscriber can tell what it missed."""

    # KEYS[1] = the channel's counter; ARGV[1] = the channel, ARGV[2] = the payload.
    # Returns {seq, receivers}: INCR and PUBLISH in one step, so numbers go out in order.
    LUA_PUBLISH = """
    local seq = redis.call('INCR', KEYS[1])
    return {seq, redis.call('PUBLISH', ARGV[1], seq .. ':' .. ARGV[2])}
    """

    def __init__(self, r, channel):
        self.r, self.channel, self.counter = r, channel, f"{channel}:seq"
        self.script = r.register_script(self.LUA_PUBLISH)

    def publish(self, payload):  # -> (seq, receivers); receivers 0 = nobody got it, it is gone
        return tuple(self.script(keys=[self.counter], args=[self.channel, payload]))


class GapDetector:
    """A subscriber's bookkeeping: the last number seen, what never came, what came twice."""

    def __init__(self, last_seen=0):
        self.last, self.missed, self.duplicates = last_seen, [], 0

    def feed(self, data):
        seq, _, payload = data.partition(":")
        if int(seq) <= self.last:
            self.duplicates += 1          # e.g. one delivery per matching subscription
        else:
            self.missed += range(self.last + 1, int(seq))
            self.last = int(seq)
        return payload


def parse(data: str) -> tuple[int, str]:
    """``"41:hello"`` -> ``(41, "hello")``: the wire format of :class:`SequencedChannel`."""
    seq, _, payload = data.partition(":")
    return int(seq), payload


def read_messages(pubsub: Any, *, wait: float = 0.2, limit: int = 100_000) -> list[dict]:
    """Every message a redis-py ``PubSub`` has for us now (subscribe confirmations dropped).

    Make the PubSub without ``ignore_subscribe_messages`` (an ignored confirmation reads as None,
    like "nothing there"). Stops at the first empty read of ``wait`` seconds; a subscriber in a lesson reads only after
    the publisher has finished, so an empty read means "nothing more was delivered".
    """
    out: list[dict] = []
    while len(out) < limit:
        msg = pubsub.get_message(timeout=wait)
        if msg is None:
            break
        if msg["type"] in ("message", "pmessage", "smessage"):
            out.append(msg)
    return out
