"""Exercise for notebooks/00-tour.ipynb: take a lock with one atomic command.

``acquire(r, key, token, ttl_ms) -> bool`` must take the lock only if nobody holds it, store the
caller's token (so only the owner can release it), and give it an expiry (so a crashed owner
cannot hold it forever), all in one command: ``SET key token NX PX ttl_ms``. The checker looks
at Redis (value, TTL), at the command trace (one SET with NX and PX/EX, not SETNX then EXPIRE),
and at behaviour under a race (20 threads: never two holders at once).
"""

from __future__ import annotations

import inspect
import time

import redis

from .. import check as C
from ..check import Exercise, expect
from ..events import EventLog
from ..timeline import run_threads
from ..trace import trace

# KEYS[1] = lock key, ARGV[1] = the caller's token. Deletes the key only if it holds that token.
# Returns 1 if released, 0 if the lock was not (or no longer) ours.
LUA_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def acquire(r: redis.Redis, key: str, token: str, ttl_ms: int) -> bool:
    return bool(r.set(key, token, nx=True, px=ttl_ms))


def lock_exercise(r: redis.Redis, prefix: str = "tour:lock", *, threads: int = 20) -> Exercise:
    """The tour's exercise: ``acquire(r, key, token, ttl_ms)`` with SET NX PX."""

    def checker(answer) -> None:
        key = f"{prefix}:exercise"
        r.delete(key)
        with trace(r) as t:
            got = answer(r, key, "token-1", 5000)
        expect(bool(got) is True, "acquire returns True when the lock is free", expected=True, actual=got)
        C.key_equals(r, key, "token-1", show=False)
        C.ttl_between(r, key, 1, 5, show=False)
        sets = t.select("SET")
        expect(len(t) == 1 and len(sets) == 1 and sets[0].has("NX") and (sets[0].has("PX") or sets[0].has("EX")),
               "the lock is taken with one SET ... NX PX command (SETNX then EXPIRE leaves a lock "
               "without expiry if the client dies in between; GET then SET lets two clients in)",
               expected=["SET key token NX PX ttl"], actual=[c.line() for c in t.commands])
        again = answer(r, key, "token-2", 5000)
        expect(not again, "a second acquire while the lock is held returns False", expected=False, actual=again)
        C.key_equals(r, key, "token-1", show=False)
        r.delete(key)

        release = r.register_script(LUA_RELEASE)
        log = EventLog()

        def worker(actor: str, log: EventLog) -> int:
            wins = 0
            for _ in range(5):
                if answer(r, key, actor, 2000):
                    log.record(actor, "acquire")
                    time.sleep(0.001)  # hold it briefly, as real work would
                    log.record(actor, "release")
                    release(keys=[key], args=[actor])
                    wins += 1
            return wins

        wins = sum(run_threads(worker, threads, log=log))
        expect(wins >= 1, f"under {threads} threads at least one acquire succeeds", expected=">= 1", actual=wins)
        C.at_most_concurrent(log, 1, show=False)

    return Exercise(
        "atomic lock acquire", checker,
        hints=[
            "One command can do it all: SET has options for 'only if absent' and 'expire after'.",
            "r.set(key, token, nx=True, px=ttl_ms) returns True if it set the key, None if not.",
        ],
        solution=inspect.getsource(acquire), reference=acquire,
    )


# -- Try it: predict what a trace shows -------------------------------------------------------------

def trace_prediction(t) -> Exercise:
    """Predict ``(commands, round_trips)`` of the trace ``t`` the learner just recorded."""
    truth = (len(t), t.round_trips)

    def checker(answer) -> None:
        ok = isinstance(answer, tuple) and len(answer) == 2
        expect(ok, "the answer is a pair (commands, round trips)", expected="(commands, round_trips)", actual=answer)
        expect(answer == truth,
               "the trace lists every command the client sent (a transaction adds MULTI and EXEC) and "
               "counts a whole pipeline as one round trip",
               expected=truth, actual=answer)

    return Exercise("predict the trace", checker, hints=[
        "A pipeline is sent in one write and answered in one read.",
        "transaction=True wraps the same commands in MULTI ... EXEC.",
    ], solution=f"my_answer = {truth}", reference=truth)


# -- Exercise 2: a batch of visits in one round trip ------------------------------------------------

def add_visits(r: redis.Redis, key: str, visitors: list[str], ttl_s: int) -> None:
    p = r.pipeline(transaction=False)
    p.sadd(key, *visitors)
    p.expire(key, ttl_s)
    p.execute()


def visits_exercise(r: redis.Redis, prefix: str = "tour:ex2") -> Exercise:
    """``add_visits(r, key, visitors, ttl_s)``: add to a set and (re)set its TTL, in one round trip."""

    def checker(answer) -> None:
        key = f"{prefix}:visits"
        r.delete(key)
        with trace(r) as t:
            answer(r, key, ["ada", "grace", "ada", "linus"], 60)
        C.type_is(r, key, "set", show=False)
        C.key_equals(r, key, {"ada", "grace", "linus"}, show=False)
        C.ttl_between(r, key, 1, 60, show=False)
        expect(t.round_trips == 1,
               "the visits and the TTL travel in one round trip (one pipeline)",
               expected=1, actual=f"{t.round_trips}: {[c.line() for c in t.commands]}")
        r.expire(key, 5)
        answer(r, key, ["ken"], 60)
        C.key_equals(r, key, {"ada", "grace", "linus", "ken"}, show=False)
        C.ttl_between(r, key, 6, 60, show=False)
        r.delete(key)

    return Exercise("a batch of visits in one round trip", checker, hints=[
        "A set keeps each visitor once; SADD takes many members at once.",
        "Put SADD and EXPIRE in one pipeline: p = r.pipeline(transaction=False) ... p.execute().",
    ], solution=inspect.getsource(add_visits), reference=add_visits)
