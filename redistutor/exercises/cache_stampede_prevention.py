"""Exercises for notebooks/04-cache-stampede-prevention.ipynb: the patterns applied to new cases.

1. ``stale_rebuild``: ``get_report(r, key, lock_key, rebuild)``: serve a *stale* report at once
   while exactly one caller refreshes it behind the lock (``SET lock token NX PX``, token-checked
   release). The notebook's lock makes every loser wait; here the losers must not wait.
2. ``refresh_chance``: ``refresh_probability(time_to_expiry, delta, beta)``: how likely one
   reader is to refresh early under XFetch, derived from the check the notebook shows.

``will_wait`` is the "Try it" question: with a given beta, does any reader wait for a rebuild?
"""

from __future__ import annotations

import inspect
import math
import random
import threading
import time
import uuid

import redis

from ..check import Exercise, expect
from ..db import Database
from ..patterns.cache_stampede_prevention import xfetch_should_refresh
from ..race import run_in_thread

# -- reference solutions (self-tested in tests/exercises/test_cache_stampede_prevention.py) ----

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def get_report(r: redis.Redis, key: str, lock_key: str, rebuild) -> str:
    if r.exists(f"{key}:fresh"):
        return r.get(key)                      # fresh: the common case
    token = uuid.uuid4().hex
    if not r.set(lock_key, token, nx=True, px=5000):
        return r.get(key)                      # someone else is refreshing: serve the stale report
    try:
        if r.exists(f"{key}:fresh"):           # refreshed while we raced for the lock
            return r.get(key)
        value = rebuild()
        pipe = r.pipeline(transaction=True)
        pipe.set(key, value)
        pipe.set(f"{key}:fresh", 1, px=60_000)
        pipe.execute()
        return value
    finally:
        r.eval(RELEASE, 1, lock_key, token)    # delete the lock only if it is still ours


def refresh_probability(time_to_expiry: float, delta: float, beta: float) -> float:
    # A reader refreshes when -ln(rand) >= time_to_expiry / (delta * beta); -ln(rand) is
    # exponentially distributed with mean 1, so P = exp(-time_to_expiry / (delta * beta)).
    if time_to_expiry <= 0:
        return 1.0
    if delta * beta <= 0:
        return 0.0
    return math.exp(-time_to_expiry / (delta * beta))


# -- exercise 1 ---------------------------------------------------------------------------------


def stale_rebuild(r: redis.Redis, db: Database, prefix: str = "ex1", readers: int = 30) -> Exercise:
    """Exercise 1: ``get_report(r, key, lock_key, rebuild)``: one refresh, nobody waits."""

    def checker(answer) -> None:
        key, lock_key, fresh = f"{prefix}:report", f"{prefix}:lock:report", f"{prefix}:report:fresh"
        r.delete(key, lock_key, fresh)
        r.set(key, "report-old")               # a stale report: its ":fresh" marker has expired
        returned: list[str] = []
        guard = threading.Lock()
        calls: list[int | None] = []           # PTTL of the lock seen by each rebuild
        other = f"other-worker-{uuid.uuid4().hex[:6]}"

        def rebuild() -> str:
            # Hold the rebuild until the other callers have returned (or 3 s): they must not wait.
            deadline = time.monotonic() + 3
            while len(returned) < readers - 1 and time.monotonic() < deadline:
                time.sleep(0.005)
            with guard:
                calls.append(r.pttl(lock_key))
                first = len(calls) == 1
            (n,) = db.execute("SELECT 42")[0]
            if first:
                # Our lock "expires" while we rebuild and another worker takes it: the release at
                # the end must leave that worker's lock alone.
                r.set(lock_key, other, px=5000)
            return f"report-{n}"

        go = threading.Barrier(readers, timeout=10)

        def reader():
            go.wait()
            value = answer(r, key, lock_key, rebuild)
            with guard:
                returned.append(value)
            return value

        futs = [run_in_thread(reader) for _ in range(readers)]
        deadline = time.monotonic() + 20
        for f in futs:
            try:
                f.result(timeout=max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                expect(False, "every caller returns within 20 s", expected=f"{readers} values",
                       actual=f"{len(returned)} returned")
        try:
            expect(len(calls) == 1,
                   f"{readers} callers found the report stale together; it must be rebuilt exactly once",
                   expected=1, actual=len(calls))
            stale = returned.count("report-old")
            expect(stale == readers - 1,
                   "callers that find the report stale while another one refreshes it return the "
                   "stale report at once: they must not wait for the rebuild",
                   expected=f"{readers - 1} x 'report-old'", actual=f"{stale} x 'report-old'")
            expect(r.get(key) == "report-42" and "report-42" in returned,
                   f"the refreshed report is stored in {key!r} (and returned to the caller that built it)",
                   expected="report-42", actual=r.get(key))
            ttl = r.pttl(fresh)
            expect(ttl > 0, f"the report is marked fresh again: {fresh!r} with a TTL",
                   expected="PTTL > 0", actual=ttl)
            expect(calls[0] is not None and calls[0] > 0,
                   "the lock has an expiry (PX/EX), so a crashed holder cannot block refreshes forever",
                   expected="PTTL > 0 during the rebuild", actual=calls[0])
            expect(r.get(lock_key) == other,
                   "releasing must check the token: your lock had expired and another worker held "
                   "it, and your release deleted that worker's lock",
                   expected=f"{lock_key} = {other!r} after your release", actual=r.get(lock_key))
            r.delete(lock_key)
            again = answer(r, key, lock_key, rebuild)
            expect(again == "report-42" and len(calls) == 1,
                   "while the report is fresh, a call returns it without rebuilding",
                   expected="report-42, no rebuild", actual=f"{again!r}, {len(calls)} rebuilds")
        finally:
            r.delete(key, lock_key, fresh)

    return Exercise(
        "stale while one refreshes", checker,
        hints=[
            "Fresh (the ':fresh' key exists)? Return the report. Stale? Try to become the one "
            "refresher with r.set(lock_key, token, nx=True, px=5000); if you lose, return the "
            "stale report right away.",
            "The winner rebuilds, stores the report, sets f'{key}:fresh' with px=60_000, and "
            "releases the lock. Check ':fresh' once more after winning: someone may have just "
            "refreshed it.",
            "Release with a Lua script that deletes the lock only if GET lock_key == your token: "
            "r.eval(script, 1, lock_key, token), in a finally block.",
        ],
        solution=inspect.getsource(get_report), reference=get_report,
    )


# -- exercise 2 ---------------------------------------------------------------------------------

# (time_to_expiry, delta, beta, expected, why)
_CASES = [
    (0.0, 0.2, 1.0, 1.0, "at the expiry every reader refreshes"),
    (-1.0, 0.2, 1.0, 1.0, "past the expiry every reader refreshes"),
    (0.2, 0.2, 1.0, math.exp(-1), "one delta*beta before expiry: exp(-1), about 0.37"),
    (0.4, 0.2, 1.0, math.exp(-2), "two delta*beta before expiry: exp(-2), about 0.14"),
    (0.4, 0.2, 2.0, math.exp(-1), "beta = 2 doubles the jump: 0.4 s before expiry is one delta*beta"),
    (1.0, 0.0, 1.0, 0.0, "a rebuild that takes no time (delta = 0) is never refreshed early"),
]


def refresh_chance() -> Exercise:
    """Exercise 2: ``refresh_probability(time_to_expiry, delta, beta)``."""

    def checker(answer) -> None:
        for tte, delta, beta, want, why in _CASES:
            got = answer(tte, delta, beta)
            expect(isinstance(got, (int, float)) and abs(got - want) < 1e-6,
                   f"refresh_probability({tte}, {delta}, {beta}): {why}",
                   expected=round(want, 4), actual=got)
        # Against the check itself: the fraction of 20,000 seeded readers that refresh.
        rng = random.Random(7)
        for tte, delta, beta in ((0.1, 0.2, 1.0), (0.5, 0.2, 2.0), (0.3, 0.5, 0.5)):
            draws = [1.0 - rng.random() for _ in range(20_000)]
            frac = sum(xfetch_should_refresh(100.0 - tte, delta, beta, 100.0, u) for u in draws) / len(draws)
            got = answer(tte, delta, beta)
            expect(abs(got - frac) < 0.02,
                   f"{tte} s before expiry (delta {delta}, beta {beta}), {frac:.3f} of 20,000 simulated "
                   "readers refreshed: your probability should match", expected=round(frac, 3),
                   actual=got)

    return Exercise(
        "XFetch: one reader's chance to refresh", checker,
        hints=[
            "A reader refreshes when -ln(rand) >= time_to_expiry / (delta * beta). What is the "
            "chance that -ln(rand) exceeds some x, for rand uniform in (0, 1]?",
            "-ln(rand) >= x  <=>  rand <= exp(-x), and P(rand <= p) = p. Handle time_to_expiry <= 0 "
            "(always 1) and delta * beta == 0 (never early) first.",
        ],
        solution=inspect.getsource(refresh_probability), reference=refresh_probability,
    )


# -- Try it -------------------------------------------------------------------------------------


def will_wait(beta: float, misses: int, requests: int) -> Exercise:
    """Try it: with ``beta``, did any reader of the simulated run wait for a rebuild (a miss)?"""

    def checker(answer) -> None:
        expect(isinstance(answer, bool), "answer True (some reader waits) or False (none does)",
               expected="True or False", actual=answer)
        expect(answer == (misses > 0),
               f"with beta = {beta}, {misses} of {requests} readers found the value expired and "
               "waited for a rebuild: a refresh started with less than delta to go lands after the expiry",
               expected=misses > 0, actual=answer)

    return Exercise("XFetch: does anyone wait?", checker,
                    hints=["Compare the typical lead, about delta * beta, with delta (200 ms).",
                           "A small beta starts refreshes late; those land after the expiry."],
                    solution=f"{misses > 0}  # {misses} of {requests} readers waited", reference=misses > 0)
