"""Exercises for notebooks/04-cache-stampede-prevention.ipynb.

1. ``single_rebuild``: write a read path that rebuilds an expired hot key once, however many
   readers miss it together (``SET lock token NX PX``, waiters re-read, token-checked release).
2. ``early_refresh``: write the XFetch check with the right sign.
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
from ..race import run_in_thread

# -- reference solutions (self-tested in tests/exercises/test_cache_stampede_prevention.py) ----

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def get_hot(r: redis.Redis, key: str, lock_key: str, rebuild) -> str:
    value = r.get(key)
    while value is None:
        token = uuid.uuid4().hex
        if r.set(lock_key, token, nx=True, px=5000):
            try:
                value = r.get(key)  # someone may have stored it just before we got the lock
                if value is None:
                    value = rebuild()
                    r.set(key, value, ex=60)
            finally:
                r.eval(RELEASE, 1, lock_key, token)  # delete the lock only if it is still ours
        else:
            time.sleep(0.01)  # another reader is rebuilding: re-read
            value = r.get(key)
    return value


def should_refresh(now: float, delta: float, beta: float, expiry: float, rand: float) -> bool:
    return now - delta * beta * math.log(rand) >= expiry


# -- exercise 1 ---------------------------------------------------------------------------------


class _ReaderSpy:
    """Passes everything to the real client; remembers which threads have GET the hot key."""

    def __init__(self, r: redis.Redis, key: str) -> None:
        self._r, self._key = r, key
        self.readers: set[int] = set()
        self._lock = threading.Lock()

    def get(self, name, *args, **kwargs):
        value = self._r.get(name, *args, **kwargs)
        if name == self._key:
            with self._lock:
                self.readers.add(threading.get_ident())
        return value

    def __getattr__(self, name):
        return getattr(self._r, name)


def single_rebuild(r: redis.Redis, db: Database, prefix: str = "ex1", readers: int = 30) -> Exercise:
    """Exercise 1: ``get_hot(r, key, lock_key, rebuild)``: one rebuild for ``readers`` misses."""

    def checker(answer) -> None:
        key, lock_key = f"{prefix}:report", f"{prefix}:lock:report"
        r.delete(key, lock_key)
        spy = _ReaderSpy(r, key)
        calls: list[int | None] = []  # PTTL of the lock seen by each rebuild
        calls_lock = threading.Lock()
        other = f"other-worker-{uuid.uuid4().hex[:6]}"

        def rebuild() -> str:
            # Hold the rebuild until every reader has read the key once (so all of them missed).
            deadline = time.monotonic() + 5
            while len(spy.readers) < readers and time.monotonic() < deadline:
                time.sleep(0.005)
            with calls_lock:
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
            return answer(spy, key, lock_key, rebuild)

        futs = [run_in_thread(reader) for _ in range(readers)]
        deadline = time.monotonic() + 20
        results = []
        for f in futs:
            try:
                results.append(f.result(timeout=max(0.1, deadline - time.monotonic())))
            except TimeoutError:
                expect(False, "every reader returns within 20 s (are waiters re-reading the key?)",
                       expected=f"{readers} values", actual=f"{len(results)} returned")
        try:
            expect(len(calls) == 1,
                   f"{readers} readers missed the key together; it must be rebuilt exactly once",
                   expected=1, actual=len(calls))
            expect(set(results) == {"report-42"}, "every reader gets the rebuilt value",
                   expected={"report-42"}, actual=set(results))
            ttl = r.ttl(key)
            expect(ttl > 0, f"the rebuilt value is stored under {key!r} with a TTL",
                   expected="TTL > 0", actual=ttl)
            expect(calls[0] is not None and calls[0] > 0,
                   "the lock has an expiry (PX/EX), so a crashed holder cannot block the key forever",
                   expected="PTTL > 0 during the rebuild", actual=calls[0])
            expect(r.get(lock_key) == other,
                   "releasing must check the token: your lock had expired and another worker held "
                   "it, and your release deleted that worker's lock",
                   expected=f"{lock_key} = {other!r} after your release", actual=r.get(lock_key))
        finally:
            r.delete(key, lock_key)

    return Exercise(
        "one rebuild per expiry", checker,
        hints=[
            "On a miss, try to become the one rebuilder: r.set(lock_key, token, nx=True, px=5000). "
            "Whoever does not get the lock waits and re-reads the key.",
            "After you get the lock, GET the key once more: someone may have stored it just before. "
            "Store the value with a TTL, then release the lock.",
            "Release with a Lua script that deletes the lock only if GET lock_key == your token: "
            "r.eval(script, 1, lock_key, token).",
        ],
        solution=inspect.getsource(get_hot), reference=get_hot,
    )


# -- exercise 2 ---------------------------------------------------------------------------------

# (now, delta, beta, expiry, rand, expected, why)
_CASES = [
    (9.0, 1.0, 1.0, 10.0, 0.2, True,
     "1 s before expiry, delta 1 s, rand 0.2 (-ln 0.2 = 1.61 s): the jump lands past expiry, refresh early"),
    (9.0, 1.0, 1.0, 10.0, 0.5, False,
     "1 s before expiry, rand 0.5 (-ln 0.5 = 0.69 s): the jump falls short, keep serving"),
    (5.0, 1.0, 1.0, 10.0, 1.0, False, "rand = 1 gives -ln(1) = 0: no refresh before expiry"),
    (10.0, 1.0, 1.0, 10.0, 1.0, True, "at expiry the check always fires"),
    (12.0, 1.0, 1.0, 10.0, 0.9, True, "past expiry the check always fires"),
    (7.0, 1.0, 3.0, 10.0, 0.2, True, "beta = 3 jumps 3x further (4.8 s): refresh 3 s early"),
    (7.0, 1.0, 1.0, 10.0, 0.2, False, "beta = 1 jumps 1.6 s: not yet, 3 s before expiry"),
    (9.9, 0.0, 1.0, 10.0, 0.01, False, "a rebuild that takes no time (delta = 0) needs no early refresh"),
]


def early_refresh() -> Exercise:
    """Exercise 2: ``should_refresh(now, delta, beta, expiry, rand)`` (rand uniform in (0, 1])."""

    def checker(answer) -> None:
        for now, delta, beta, expiry, rand, want, why in _CASES:
            got = answer(now, delta, beta, expiry, rand)
            expect(bool(got) == want,
                   f"should_refresh(now={now}, delta={delta}, beta={beta}, expiry={expiry}, rand={rand}): {why}",
                   expected=want, actual=got)
        # Over many readers one delta*beta before expiry, a fraction exp(-1) = 37% refresh.
        rng = random.Random(7)
        fired = sum(bool(answer(99.0, 1.0, 1.0, 100.0, 1.0 - rng.random())) for _ in range(4000))
        expect(abs(fired / 4000 - math.exp(-1)) < 0.04,
               "one delta before expiry (beta=1), about exp(-1) = 37% of readers refresh",
               expected="0.37", actual=round(fired / 4000, 3))

    return Exercise(
        "XFetch early refresh", checker,
        hints=[
            "-ln(rand) is a positive random 'jump' (rand is in (0, 1], so ln(rand) <= 0). Move the "
            "clock forward by delta * beta * jump and compare with the expiry.",
            "return now - delta * beta * math.log(rand) >= expiry   (note the minus sign)",
        ],
        solution=inspect.getsource(should_refresh), reference=should_refresh,
    )
