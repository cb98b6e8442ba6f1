"""Exercises for notebooks/24-session-management.ipynb.

Try it. ``survives_gap``: a session with a 300 ms idle TTL is read, then read again ``gap_ms``
   later: is it still there? The check runs it on the server.
1. ``issue_csrf``: ``issue_csrf(r, key, ttl_ms)``: a new case: put a fresh CSRF token in a live
   session as a field that expires by itself, without touching the session's own TTL and without
   ever recreating a session that is gone.
2. ``logout_others``: ``logout_others(r, prefix, user_id, keep_sid)``: "log out my other devices":
   delete every session of the user but the current one, and leave an index that lists exactly
   the live sessions, even when a login lands in the middle.
"""

from __future__ import annotations

import inspect
import secrets
import time
from collections.abc import Callable
from typing import Any, cast

import redis

from ..check import Exercise, expect
from ..patterns.session_management import Sessions
from ..scenarios.session_management import _PausingPipeline

# -- reference solutions (self-tested in tests/exercises/test_session_management.py) ---------------

ISSUE_CSRF = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[1], 'csrf', ARGV[1])
redis.call('HPEXPIRE', KEYS[1], ARGV[2], 'FIELDS', 1, 'csrf')
return ARGV[1]
"""


def issue_csrf(r: redis.Redis, key: str, ttl_ms: int) -> str | None:
    token = secrets.token_urlsafe(32)                    # 256 random bits
    # One script: the session cannot expire between the check and the write; HSET alone would
    # recreate a gone session as a one-field hash with no TTL. HPEXPIRE gives the field its own TTL.
    return cast("str | None", r.eval(ISSUE_CSRF, 1, key, token, ttl_ms))


def logout_others(r: redis.Redis, prefix: str, user_id: str, keep_sid: str) -> int:
    index = f"{prefix}:user:{user_id}"
    with r.pipeline(transaction=True) as tx:
        while True:
            try:
                tx.watch(index)                           # a login in between aborts EXEC: read again
                others = [s for s in tx.smembers(index) if s != keep_sid]
                tx.multi()
                if others:
                    tx.delete(*[f"{prefix}:{s}" for s in others])
                    tx.srem(index, *others)               # stale ids too: the index lists live sessions
                tx.execute()
                return len(others)
            except redis.WatchError:
                continue


# -- helpers -----------------------------------------------------------------------------------

def _intruding_client(r: redis.Redis, key: str, act: Callable[[], None]) -> Any:
    """A client like ``r`` that runs ``act()`` right after its first command naming ``key`` (outside
    a transaction), as if another client came in between two of the learner's round trips."""
    state = {"left": 1}

    def after(args: tuple, sent: bool) -> None:
        if state["left"] and sent and key in args[1:]:
            state["left"] = 0
            act()

    class Pipe(redis.client.Pipeline):
        def execute_command(self, *args: Any, **options: Any) -> Any:
            reply = super().execute_command(*args, **options)
            after(args, reply is not self)                # sent at once (WATCH mode), not queued
            return reply

    class Intruded(redis.Redis):
        def execute_command(self, *args: Any, **options: Any) -> Any:
            reply = super().execute_command(*args, **options)
            after(args, True)
            return reply

        def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
            return Pipe(self.connection_pool, self.response_callbacks, transaction, shard_hint)

        def fired(self) -> bool:
            return not state["left"]

    return Intruded(connection_pool=r.connection_pool)


def _login_in_the_middle(r: redis.Redis, act: Callable[[], None]) -> Any:
    """A client like ``r`` that runs ``act()`` right after its first SMEMBERS, sent alone or in a
    WATCHed pipeline (a Lua script's own SMEMBERS is atomic and does not trigger it)."""
    state = {"left": 1}

    def once() -> None:
        if state["left"]:
            state["left"] = 0
            act()

    class Client(redis.Redis):
        def execute_command(self, *args: Any, **options: Any) -> Any:
            reply = super().execute_command(*args, **options)
            if str(args[0]).upper() == "SMEMBERS":
                once()
            return reply

        def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
            p = _PausingPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
            p.hook = once
            return p

    return Client(connection_pool=r.connection_pool)


# -- exercises ---------------------------------------------------------------------------------

def survives_gap(r: redis.Redis, gap_ms: int, prefix: str = "try", idle_ms: int = 300) -> Exercise:
    """Try it: True if a session read, then read again ``gap_ms`` later, is still there."""

    def checker(answer: Any) -> None:
        store = Sessions(r, prefix=prefix, idle_ms=idle_ms, max_ms=60_000)
        sid = store.create(user_id="ada")
        store.get(sid)
        time.sleep(gap_ms / 1000)
        alive = store.get(sid) is not None
        r.delete(f"{prefix}:{sid}", f"{prefix}:user:ada")
        expect(bool(answer) == alive and isinstance(answer, bool),
               f"idle TTL {idle_ms} ms, second read {gap_ms} ms after the first: the session was "
               f"{'still there' if alive else 'gone'}", expected=alive, actual=answer)

    return Exercise(
        f"a {gap_ms} ms gap", checker,
        hints=["Each read restarts the idle TTL: what matters is the longest gap between two reads, not "
               "the session's age.",
               f"Compare gap_ms with the idle TTL ({idle_ms} ms). Near it, a loaded machine can go either way."],
        solution=f"prediction = gap_ms < {idle_ms}", reference=None)


def csrf_exercise(r: redis.Redis, prefix: str = "ex1") -> Exercise:
    """Exercise 1: ``issue_csrf(r, key, ttl_ms) -> str | None``."""

    def checker(answer: Any) -> None:
        store = Sessions(r, prefix=prefix, idle_ms=60_000, max_ms=600_000)
        sid = store.create(user_id="ada", theme="dark")
        key = f"{prefix}:{sid}"
        before = r.pttl(key)
        token = answer(r, key, 5_000)
        expect(isinstance(token, str) and len(token) >= 22,
               "return the token: a string of at least 128 random bits (secrets.token_urlsafe(32) gives 43 "
               "characters)", expected="a long random string", actual=token)
        expect(r.hget(key, "csrf") == token, "the token is stored in the session's csrf field",
               expected=token, actual=r.hget(key, "csrf"))
        field_ttl = r.hpttl(key, "csrf")[0]
        expect(0 < field_ttl <= 5_000, "the csrf field expires by itself after ttl_ms (HPEXPIRE, Redis 7.4+), "
               "while the session lives on", expected="0 < HPTTL <= 5000", actual=field_ttl)
        after = r.pttl(key)
        expect(before - 2_000 < after <= before, "leave the session's own TTL alone (sliding expiry belongs to "
               "reads, and EXPIRE on the key would also cut or stretch the session)",
               expected=f"about {before} ms", actual=after)
        expect(r.hget(key, "user_id") == "ada" and r.hget(key, "theme") == "dark",
               "the session's other fields stay as they were", expected={"user_id": "ada", "theme": "dark"},
               actual=r.hgetall(key))
        again = answer(r, key, 5_000)
        expect(again != token and r.hget(key, "csrf") == again,
               "a second call replaces the token with a new one", expected="a different token", actual=again)
        tokens = {answer(r, key, 5_000) for _ in range(20)}
        expect(len(tokens) == 20, "every token is new (20 calls, 20 tokens)", expected=20, actual=len(tokens))
        gone = f"{prefix}:gone"
        r.delete(gone)
        got = answer(r, gone, 5_000)
        expect(got is None and not r.exists(gone), "a session that does not exist gets no token, and is not "
               "created", expected="None, no key", actual=(got, r.hgetall(gone)))
        sid2 = store.create(user_id="bob")
        key2 = f"{prefix}:{sid2}"
        racy = _intruding_client(r, key2, lambda: r.delete(key2))
        answer(racy, key2, 5_000)
        left = r.hgetall(key2) if racy.fired() else {}
        expect(not left, "the session expired right after your first command on it: nothing may be written "
               "back (a one-field hash with no TTL would be an immortal fragment)", expected={}, actual=left)
        r.delete(key, key2, f"{prefix}:user:ada", f"{prefix}:user:bob")

    return Exercise(
        "a CSRF token with its own TTL", checker,
        hints=["HPEXPIRE key ms FIELDS 1 csrf gives one field a TTL; HSET clears a field's TTL, so set the field "
               "first, then its TTL. The session may expire at any moment: what does HSET do on a missing key?",
               "Generate the token with secrets.token_urlsafe(32); in one Lua script: if EXISTS is 0 return false, "
               "else HSET csrf, HPEXPIRE csrf, return the token. Do not touch the key's TTL."],
        solution=inspect.getsource(issue_csrf), reference=issue_csrf)


def logout_others_exercise(r: redis.Redis, prefix: str = "ex2") -> Exercise:
    """Exercise 2: ``logout_others(r, prefix, user_id, keep_sid)``."""

    def setup() -> tuple[Sessions, list[str], str]:
        for k in r.scan_iter(f"{prefix}:*"):
            r.delete(k)
        store = Sessions(r, prefix=prefix, idle_ms=60_000, max_ms=600_000)
        sids = [store.create(user_id="ada", device=d) for d in ("laptop", "phone", "tablet")]
        stale = store.create(user_id="ada", device="old")
        r.delete(f"{prefix}:{stale}")                        # idled out: still listed in the index
        bob = store.create(user_id="bob")
        return store, sids, bob

    def checker(answer: Any) -> None:
        store, sids, bob = setup()
        keep = sids[1]
        answer(r, prefix, "ada", keep)
        alive = [s for s in sids if r.exists(f"{prefix}:{s}")]
        expect(alive == [keep], "only the current session (the phone) stays logged in",
               expected=[keep], actual=alive)
        expect(r.exists(f"{prefix}:{bob}") == 1, "another user's session is untouched", expected=True, actual=False)
        index = r.smembers(f"{prefix}:user:ada")
        expect(index == {keep}, "the index lists exactly the live sessions: the current one (stale ids of "
               "sessions that idled out are removed too)", expected={keep}, actual=index)
        store, sids, bob = setup()
        keep = sids[0]
        new: list[str] = []
        answer(_login_in_the_middle(r, lambda: new.append(store.create(user_id="ada", device="new"))),
               prefix, "ada", keep)
        index = r.smembers(f"{prefix}:user:ada")
        alive = {s for s in [*sids, *new] if r.exists(f"{prefix}:{s}")}
        unindexed = sorted(alive - index)
        expect(not unindexed, "a login landed between your read of the index and your writes: it may be logged "
               "out or kept, but a live session missing from the index would survive the next \"log out "
               "everywhere\"", expected="every live session indexed", actual=f"{len(unindexed)} live, not indexed")
        expect(keep in alive and not (set(sids) - {keep}) & alive,
               "with a login in the middle, the other old sessions are still logged out and the current one kept",
               expected=[keep], actual=sorted(alive & set(sids)))
        for k in r.scan_iter(f"{prefix}:*"):
            r.delete(k)

    return Exercise(
        "log out my other devices", checker,
        hints=["Read the index, delete the other sessions, and remove exactly those ids from the index (SREM), "
               "not the whole index. What if a login adds an id after your read?",
               "The pattern's logout_everywhere shows the shape: WATCH the index, SMEMBERS, MULTI, DEL the other "
               "sessions and SREM their ids, EXEC; on WatchError start again."],
        solution=inspect.getsource(logout_others), reference=logout_others)
