"""Exercises for notebooks/16-pubsub.ipynb (on the notebook's server and its real cluster).

Try it. ``predict_deliveries``: a client subscribes to some channels and patterns; predict what
   ``PUBLISH`` returns (deliveries, one per matching subscription); the check does it on the server.
1. ``resume``: a subscriber that comes back after an outage must learn what it missed *at the
   end* of the outage, which no later message reveals: subscribe, then read the publisher's
   counter. The checker publishes one message between the learner's read of the counter and its
   return, so reading the counter before subscribing loses a message unnoticed and fails.
2. ``room_channels`` (a new case): name a chat room's sharded channels so that one SSUBSCRIBE
   takes all three (one slot) while rooms spread over every master of the cluster.
"""

from __future__ import annotations

import inspect
from collections import Counter
from typing import Any

import redis

from ..check import Exercise, expect
from ..patterns.pubsub import SequencedChannel, parse, read_messages

# -- reference solutions (self-tested in tests/exercises/test_pubsub.py) ----------------------------


def resume(r, channel, last_seen):
    p = r.pubsub()
    p.subscribe(channel)
    while (m := p.get_message(timeout=1.0)) is None or m["type"] != "subscribe":
        pass                                   # wait until the server has subscribed us
    published = int(r.get(f"{channel}:seq") or 0)   # everything after this will reach us
    return p, list(range(last_seen + 1, published + 1))


def room_channels(room_id):
    return {part: f"room:{{{room_id}}}:{part}" for part in ("messages", "typing", "presence")}


# -- Try it ------------------------------------------------------------------------------------------


def predict_deliveries(server: Any, channels: list[str], patterns: list[str], publish_to: str) -> Exercise:
    """The answer is an int: what PUBLISH ``publish_to`` returns for one client subscribed to
    ``channels`` and ``patterns``. The checker subscribes a fresh client, publishes once and
    compares with PUBLISH's return value and with the messages that arrived."""
    channels, patterns = list(channels), list(patterns)

    def checker(answer) -> None:
        expect(isinstance(answer, int) and not isinstance(answer, bool),
               "the prediction is a number: what PUBLISH returns", actual=answer)
        r = server.client()
        p = server.client().pubsub()
        try:
            if channels:
                p.subscribe(*channels)
            if patterns:
                p.psubscribe(*patterns)
            confirmations = 0
            while confirmations < len(channels) + len(patterns):
                m = p.get_message(timeout=2.0)
                expect(m is not None, "the subscriptions were confirmed")
                confirmations += m["type"] in ("subscribe", "psubscribe")
            got = r.publish(publish_to, "1:try it")
            arrived = read_messages(p, wait=0.2)
        finally:
            p.close()
            r.close()
        how = ", ".join(f"{m['type']} via {m.get('pattern') or m['channel']}" for m in arrived) or "nothing"
        expect(answer == got, f"PUBLISH {publish_to} returned {got}: one delivery per matching "
               f"subscription (the client received: {how})", expected=got, actual=answer)

    return Exercise(
        "Try it: how many deliveries does PUBLISH report?", checker,
        hints=["PUBLISH counts deliveries, not clients: one per channel subscription that matches "
               "exactly, plus one per pattern that matches.",
               "A pattern is a glob: '*' matches any run of characters, dots included; '?' one "
               "character; '[abc]' one of a set."],
        solution="exact channel matches + matching patterns", reference=None,
    )


# -- Exercise 1: resume after an outage ----------------------------------------------------------------


class _PublishAfterCounterRead(redis.Redis):
    """A client that, right after the learner's first read of the counter key, has another
    client publish the next message: the moment between "read the counter" and "subscribed"."""

    def __init__(self, *args: Any, counter: str, fire: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._counter, self._fire, self.fired = counter, fire, False

    def execute_command(self, *args: Any, **options: Any) -> Any:
        result = super().execute_command(*args, **options)
        name = str(args[0]).upper() if args else ""
        if not self.fired and name in ("GET", "MGET") and self._counter in map(str, args[1:]):
            self.fired = True
            self._fire()
        return result


def resume_exercise(server: Any, channel: str, *, published: int = 6, last_seen: int = 4) -> Exercise:
    """Exercise 1: ``resume(r, channel, last_seen) -> (pubsub, missed)``."""

    def checker(answer) -> None:
        admin = server.client()
        admin.delete(f"{channel}:seq")
        feed = SequencedChannel(admin, channel)
        for i in range(published):                         # the outage: published to nobody
            feed.publish(f"during the outage {i + 1}")
        racy = _PublishAfterCounterRead(host=server.host, port=server.port, password=server.password,
                                        decode_responses=True, counter=feed.counter,
                                        fire=lambda: feed.publish("while you resumed"))
        p = None
        try:
            out = answer(racy, channel, last_seen)
            expect(isinstance(out, tuple) and len(out) == 2, "resume returns (pubsub, missed)", actual=out)
            p, missed = out
            expect(hasattr(p, "get_message"), "the first item is the subscribed PubSub", actual=type(p).__name__)
            expect(racy.fired, "resume reads the publisher's counter "
                   f"(GET {feed.counter}) to learn what was published while it was away")
            final = feed.publish("after you resumed")[0]
            got = [parse(m["data"])[0] for m in read_messages(p, wait=0.3) if m["channel"] == channel]
            missed = list(missed)
            expect(missed == list(range(last_seen + 1, published + 1)),
                   f"missed lists exactly the numbers after last_seen={last_seen} up to what was "
                   f"published before you subscribed", expected=list(range(last_seen + 1, published + 1)),
                   actual=missed)
            lost = [s for s in range(last_seen + 1, final + 1) if s not in got and s not in missed]
            expect(not lost, f"message {lost[0] if lost else ''}, published while resume ran, was neither "
                   "received nor reported missed: subscribe first (and wait for the confirmation), "
                   "then read the counter", expected="every number received or reported", actual=
                   {"received": got, "missed": missed})
        finally:
            if p is not None:
                try:
                    p.close()
                except Exception:
                    pass
            racy.close()
            admin.delete(f"{channel}:seq")
            admin.close()

    return Exercise(
        "resume after an outage", checker,
        hints=["The publisher's counter (GET <channel>:seq) says how many were published. Whatever is "
               "above last_seen and at most that number was missed.",
               "Order matters: a message published between your GET and your SUBSCRIBE is neither "
               "counted nor received. Subscribe first, wait for the 'subscribe' confirmation, then GET."],
        solution=inspect.getsource(resume), reference=resume,
    )


# -- Exercise 2: a chat room's sharded channels --------------------------------------------------------


def _slot_owners(cluster: Any):
    """slot -> the name of the master that owns it, from one look at the slot map."""
    ranges = []
    for name in cluster.masters():
        for part in cluster.slots_of(name):
            lo, _, hi = part.partition("-")
            ranges.append((int(lo), int(hi or lo), name))
    return lambda slot: next(name for lo, hi, name in ranges if lo <= slot <= hi)


def room_channels_exercise(cluster: Any, *, rooms: int = 300, live: int = 4) -> Exercise:
    """Exercise 2: ``room_channels(room_id) -> {"messages": ..., "typing": ..., "presence": ...}``."""

    def checker(answer) -> None:
        names = {}
        for room in range(1, rooms + 1):
            chans = answer(room)
            expect(isinstance(chans, dict) and set(chans) == {"messages", "typing", "presence"},
                   "room_channels returns a dict with 'messages', 'typing' and 'presence'",
                   expected=["messages", "presence", "typing"], actual=chans)
            names[room] = chans
        every = [c for chans in names.values() for c in chans.values()]
        expect(len(set(every)) == len(every), "every room has its own three channels (put the room id in them)",
               expected=len(every), actual=len(set(every)))
        probe = next(n for n in cluster if n.running).r
        pipe = probe.pipeline(transaction=False)
        for c in every:
            pipe.execute_command("CLUSTER", "KEYSLOT", c)
        slots = iter(int(s) for s in pipe.execute())
        room_slot = {room: {part: next(slots) for part in chans} for room, chans in names.items()}
        owner_of = _slot_owners(cluster)
        for room in list(names)[:live]:                 # one SSUBSCRIBE for the room's three channels
            chans = list(names[room].values())
            owner = cluster[owner_of(room_slot[room]["messages"])]
            sub = owner.client(protocol=2)
            try:
                sub.execute_command("SSUBSCRIBE", *chans)
                ok = True
            except redis.exceptions.ResponseError:
                ok = False
            finally:
                sub.close()
            expect(ok, f"one SSUBSCRIBE takes room {room}'s three channels: they must hash to one slot",
                   expected="one slot", actual=room_slot[room])
        expect(all(len(set(s.values())) == 1 for s in room_slot.values()),
               "every room's three channels share one slot", actual=next(
                   (s for s in room_slot.values() if len(set(s.values())) > 1), None))
        per_master = Counter(owner_of(s["messages"]) for s in room_slot.values())
        busiest = max(per_master.values()) / rooms
        expect(len(per_master) == len(cluster.masters()) and busiest < 0.5,
               f"{rooms} rooms spread over every master (a tag shared by all rooms puts all their "
               "traffic on one node)", expected="every master serves some rooms", actual=dict(per_master))

    return Exercise(
        "a chat room's sharded channels", checker,
        hints=["SSUBSCRIBE of several channels needs them in one slot, like a multi-key command: a {tag}.",
               "Tag with the room id itself: room:{<id>}:messages, room:{<id>}:typing, ..."],
        solution=inspect.getsource(room_channels), reference=room_channels,
    )
