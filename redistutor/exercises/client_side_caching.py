"""Exercises for notebooks/05-client-side-caching.ipynb.

1. ``invalidation_handler``: apply a real invalidation message to a local cache dict.
2. ``in_flight_read``: a local-cache read that cannot store a value invalidated while in flight.
3. ``own_writes``: the pattern applied to a new case, writes from an instance whose tracking uses
   NOLOOP (its own writes send it nothing, yet the server stops tracking the key).
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import time
import uuid

import redis

from ..check import Exercise, expect
from ..patterns.client_side_caching import InvalidationListener
from ..race import PausePoint, RaceTimeout, run_in_thread
from ..scenarios.client_side_caching import command_calls

# -- reference solutions (self-tested in tests/exercises/test_client_side_caching.py) ----------


def apply_invalidation(local: dict, keys: list | None) -> None:
    if keys is None:  # FLUSHALL / FLUSHDB: the server says "forget everything"
        local.clear()
        return
    for key in keys:
        local.pop(key, None)  # a key we never cached (or already dropped) is fine


def cached_get(local: dict, lock: threading.Lock, r: redis.Redis, key: str):
    with lock:
        value = local.get(key)
        if value is not None and not isinstance(value, Placeholder):
            return value
        mark = Placeholder()
        local[key] = mark  # "a read of key is in flight"
    value = r.get(key)
    with lock:
        if local.get(key) is mark:  # no invalidation removed our mark meanwhile
            if value is None:
                del local[key]
            else:
                local[key] = value
    return value


def write_value(local: dict, lock: threading.Lock, r: redis.Redis, key: str, value: str) -> None:
    r.set(key, value)          # NOLOOP: this write sends us no invalidation ...
    with lock:
        local.pop(key, None)   # ... and the server stopped tracking key: drop our copy, so the
                               # next read GETs it again (and is tracked again)


class Placeholder:
    """Put one in the local dict while a read is in flight (exercise 2)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<in flight>"


# -- exercise 1 ---------------------------------------------------------------------------------


def invalidation_handler(r: redis.Redis, prefix: str = "ex1") -> Exercise:
    """Exercise 1: ``apply_invalidation(local, keys)``; ``keys`` is a list, or None = drop all."""

    def checker(answer) -> None:
        names = [f"{prefix}:{n}" for n in ("a", "b", "c", "d")]
        r.delete(*names)
        r.mset({n: f"v-{n}" for n in names})
        listener = InvalidationListener(r)
        try:
            listener.tracking("ON")
            local = {n: listener.command("GET", n) for n in names[:3]}  # read (and tracked) a, b, c
            local["unrelated"] = "kept"
            r.set(names[0], "new-a")
            r.set(names[1], "new-b")
            r.set(names[3], "new-d")  # never read: no message for it in default mode
            expect(listener.wait_for(2), "the server pushed two invalidation messages",
                   expected=2, actual=len(listener.messages))
            for keys in listener.messages:
                answer(local, keys)
            expect(names[0] not in local and names[1] not in local,
                   "the keys named in the messages are gone from the local cache",
                   expected=f"no {names[0]!r}, {names[1]!r}", actual=sorted(local))
            expect(local.get(names[2]) == f"v-{names[2]}" and local.get("unrelated") == "kept",
                   "other keys stay cached (dropping everything on every message defeats the cache)",
                   expected=[names[2], "unrelated"], actual=sorted(local))
            answer(local, [names[0]])  # a key already dropped: nothing to do, and no error
            answer(local, None)  # what FLUSHALL / FLUSHDB send
            expect(local == {}, "a message with keys = None (FLUSHALL) empties the local cache",
                   expected={}, actual=local)
        finally:
            listener.close()
            r.delete(*names)

    return Exercise(
        "apply an invalidation", checker,
        hints=[
            "A message names the keys that changed. Remove exactly those; keep everything else.",
            "local.pop(key, None) does not fail for a key you never cached. keys is None means "
            "the whole database was flushed: local.clear().",
        ],
        solution=inspect.getsource(apply_invalidation), reference=apply_invalidation,
    )


# -- exercise 2 ---------------------------------------------------------------------------------


class _PausingClient:
    """The tracked client, paused (once) between a GET's reply and the caller getting it."""

    def __init__(self, r: redis.Redis, pause: PausePoint) -> None:
        self._r, self._pause = r, pause

    def get(self, name):
        value = self._r.get(name)
        self._pause(name, value)
        return value

    def __getattr__(self, name):
        return getattr(self._r, name)


@contextlib.contextmanager
def _tracked_local(r: redis.Redis, tracked_client, key: str, *options: str):
    """A local dict kept fresh by a listener thread (tracking REDIRECTed to it), torn down after."""
    listener = InvalidationListener(r)
    local: dict = {}
    lock = threading.Lock()

    def on_invalidate(keys):  # what the listener thread does with each message
        with lock:
            apply_invalidation(local, keys)

    listener.subscribe(on_invalidate)
    listener.start()
    tracked_client.execute_command("CLIENT", "TRACKING", "ON", "REDIRECT", listener.client_id, *options)
    try:
        yield local, lock, listener
    finally:
        try:
            tracked_client.execute_command("CLIENT", "TRACKING", "OFF")
        except redis.exceptions.RedisError:
            pass
        listener.close()
        r.delete(key)


def in_flight_read(r: redis.Redis, tracked_client, prefix: str = "ex2") -> Exercise:
    """Exercise 2: ``cached_get(local, lock, r, key)`` that never stores a value invalidated in flight.

    Args:
        r: any client (the checker writes through it).
        tracked_client: a single-connection client; the checker turns on tracking with REDIRECT.
    """

    def checker(answer) -> None:
        key = f"{prefix}:user:{uuid.uuid4().hex[:6]}"
        r.set(key, "v1")
        with _tracked_local(r, tracked_client, key) as (local, lock, listener):
            pause = PausePoint("after_reply", timeout=10)
            reader = run_in_thread(answer, local, lock, _PausingClient(tracked_client, pause), key)
            deadline = time.monotonic() + 10
            while True:  # until the reader is paused after its GET, or has finished without one
                try:
                    pause.wait_reached(timeout=0.05)
                    break
                except RaceTimeout:
                    if reader.done() or time.monotonic() > deadline:
                        reader.result(timeout=1)  # surfaces NotImplementedError / the learner's error
                        expect(False, "on a miss your function reads the key with r.get(key)",
                               expected="r.get called", actual="no r.get")
            n = len(listener.messages)
            r.set(key, "v2")  # a writer changes the key while the reply "v1" is in flight
            expect(listener.wait_for(n + 1), "the invalidation for the write arrived",
                   expected=n + 1, actual=len(listener.messages))
            pause.release()
            first = reader.result(timeout=10)
            expect(first in ("v1", "v2"), "the read in flight returns the key's value",
                   expected="'v1' (what it read)", actual=first)
            expect(local.get(key) != "v1",
                   "the value 'v1' was invalidated while your GET was in flight; storing it leaves "
                   "the cache stale for good (the server will not send another invalidation)",
                   expected="not 'v1'", actual=local.get(key))
            second = answer(local, lock, tracked_client, key)
            expect(second == "v2", "the next read returns the new value", expected="v2", actual=second)
            before = command_calls(r, "get")
            third = [answer(local, lock, tracked_client, key) for _ in range(20)]
            calls = command_calls(r, "get") - before
            expect(third == ["v2"] * 20 and calls == 0,
                   "once cached, reads are served from the local dict: no GET reaches the server",
                   expected="20 x 'v2', 0 GETs", actual=f"{third[:2]}..., {calls} GETs")

    return Exercise(
        "no stale fill from a read in flight", checker,
        hints=[
            "Before sending GET, put a fresh Placeholder() in local[key] (under the lock). The "
            "listener thread removes local[key] when an invalidation for key arrives.",
            "After the reply, store it only if local.get(key) is still *your* placeholder "
            "(compare with `is`). Otherwise an invalidation came in between: return the value "
            "but do not cache it.",
            "A hit is a value that is not a Placeholder: return it without touching Redis.",
        ],
        solution=inspect.getsource(cached_get), reference=cached_get,
    )


# -- exercise 3 ---------------------------------------------------------------------------------


def own_writes(r: redis.Redis, tracked_client, prefix: str = "ex3") -> Exercise:
    """Exercise 3: ``write_value(local, lock, r, key, value)`` on a connection tracked with NOLOOP.

    Args:
        r: any client (the checker plays the other application instance through it).
        tracked_client: a single-connection client; the checker turns on tracking with
            ``REDIRECT <listener> NOLOOP``.
    """

    def checker(answer) -> None:
        key = f"{prefix}:user:{uuid.uuid4().hex[:6]}"
        r.set(key, "v1")
        with _tracked_local(r, tracked_client, key, "NOLOOP") as (local, lock, listener):
            first = cached_get(local, lock, tracked_client, key)  # cached and tracked
            expect(first == "v1", "the key is read and cached", expected="v1", actual=first)
            answer(local, lock, tracked_client, key, "mine")
            expect(r.get(key) == "mine", "your write reaches Redis", expected="mine", actual=r.get(key))
            mine = cached_get(local, lock, tracked_client, key)
            expect(mine == "mine", "this instance reads its own write at once (NOLOOP sent it no "
                   "invalidation, so a stale local copy would still be served)", expected="mine", actual=mine)
            n = len(listener.messages)
            r.set(key, "theirs")  # another instance writes the key
            listener.wait_for(n + 1, timeout=1.0)
            theirs = cached_get(local, lock, tracked_client, key)
            expect(theirs == "theirs",
                   "after another instance writes the key, this instance sees the new value: with NOLOOP "
                   "your own write removed the key from the server's tracking table, so a value you kept "
                   "locally is never invalidated again", expected="theirs", actual=theirs)

    return Exercise(
        "writes under NOLOOP", checker,
        hints=[
            "Write the value to Redis with r.set. Then think about what the local dict holds for key, "
            "and whether the server will ever tell you it changed.",
            "Under NOLOOP your own write sends you nothing, and the server forgets that you read the key. "
            "Keeping your value locally means nobody will invalidate it.",
            "After r.set, drop the key from local (under the lock): the next read fetches it and is tracked again.",
        ],
        solution=inspect.getsource(write_value), reference=write_value,
    )
