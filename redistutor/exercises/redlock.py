"""Exercises for notebooks/08-redlock.ipynb.

1. ``decide``: ``redlock_validity(ok, n, ttl_ms, elapsed_ms)``: the majority rule and the
   validity arithmetic, as a pure function.
2. ``extend_on_majority``: ``redlock_extend(clients, key, token, ttl_ms)``: a new case for the
   majority rule: renew a held lock on the nodes where it is still ours, on real nodes (some
   dead, some holding another client's lock, all slowed down).

Try it. ``majority_prediction``: predict whether a client still gets the lock with ``killed``
   of 5 nodes down; the check kills them and tries.

``acquire_on_majority`` (``redlock_acquire`` on real nodes, dead, pre-locked and slow) is no
longer a notebook exercise (the notebook shows that code); the pattern's tests run the shown
:func:`redistutor.patterns.redlock.redlock_acquire` through it.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from typing import Any

import redis

from ..check import Exercise, expect
from ..server import fail_fast_retry, free_port

# -- reference solutions (self-tested in tests/exercises/test_redlock.py) ----------------------


def redlock_validity(ok: int, n: int, ttl_ms: int, elapsed_ms: float) -> float | None:
    if ok < n // 2 + 1:
        return None
    validity = ttl_ms - elapsed_ms - (int(ttl_ms * 0.01) + 2)
    return validity if validity > 0 else None


RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def redlock_acquire(clients, key, token, ttl_ms):
    start = time.monotonic()
    ok = 0
    for c in clients:
        try:
            if c.set(key, token, nx=True, px=ttl_ms):
                ok += 1
        except redis.RedisError:
            pass  # a node that is down or slow counts as a "no"
    elapsed_ms = (time.monotonic() - start) * 1000
    validity = ttl_ms - elapsed_ms - (int(ttl_ms * 0.01) + 2)
    if ok >= len(clients) // 2 + 1 and validity > 0:
        return validity
    for c in clients:  # failed: undo on every node, even those that seemed down
        try:
            c.eval(RELEASE, 1, key, token)
        except redis.RedisError:
            pass
    return None


# -- exercise 1 ---------------------------------------------------------------------------------

# (ok, n, ttl_ms, elapsed_ms, expected, why)
_CASES = [
    (5, 5, 10_000, 5.0, 10_000 - 5 - 102, "all 5 nodes, 5 ms: 10000 - 5 - (100 + 2)"),
    (3, 5, 10_000, 40.0, 10_000 - 40 - 102, "3 of 5 is a majority"),
    (2, 5, 10_000, 5.0, None, "2 of 5 is not a majority"),
    (2, 4, 10_000, 5.0, None, "2 of 4 is a tie, not a majority (N//2 + 1 = 3)"),
    (3, 4, 1000, 10.0, 1000 - 10 - 12, "3 of 4, TTL 1 s: drift is 1000*0.01 + 2 = 12 ms"),
    (1, 1, 200, 1.0, 200 - 1 - 4, "a single node: 1 of 1; drift 200*0.01 + 2 = 4 ms"),
    (5, 5, 1000, 995.0, None, "the round took 995 ms of a 1000 ms TTL: nothing left after drift"),
    (5, 5, 1000, 1500.0, None, "the round took longer than the TTL: the first keys have already expired"),
]


def decide() -> Exercise:
    """Exercise 1: ``redlock_validity(ok, n, ttl_ms, elapsed_ms) -> float | None``."""

    def checker(answer) -> None:
        for ok, n, ttl, elapsed, want, why in _CASES:
            got = answer(ok, n, ttl, elapsed)
            if want is None:
                expect(got is None, f"redlock_validity(ok={ok}, n={n}, ttl_ms={ttl}, elapsed_ms={elapsed}): {why}",
                       expected=None, actual=got)
            else:
                expect(got is not None and abs(got - want) <= 1,
                       f"redlock_validity(ok={ok}, n={n}, ttl_ms={ttl}, elapsed_ms={elapsed}): {why}",
                       expected=want, actual=got)

    return Exercise(
        "majority and validity", checker,
        hints=[
            "Two conditions: ok >= n // 2 + 1, and some validity left after the time the round took.",
            "validity = ttl_ms - elapsed_ms - drift, with drift = int(ttl_ms * 0.01) + 2. "
            "Return None if it is <= 0.",
        ],
        solution=inspect.getsource(redlock_validity), reference=redlock_validity,
    )


# -- exercise 2 ---------------------------------------------------------------------------------


def _dead_client() -> redis.Redis:
    """A client for a node that is down: nothing listens on its port."""
    return redis.Redis(host="127.0.0.1", port=free_port(), retry=fail_fast_retry(),
                       socket_connect_timeout=0.2, socket_timeout=0.2, decode_responses=True)


class _Slow:
    """A node 40 ms away: every SET takes 40 ms longer."""

    def __init__(self, r: redis.Redis, delay: float = 0.04) -> None:
        self._r, self._delay = r, delay

    def set(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(self._delay)
        return self._r.set(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._r, name)


def acquire_on_majority(clients: Sequence[redis.Redis], prefix: str = "ex2:redlock") -> Exercise:
    """Exercise 2: ``redlock_acquire(clients, key, token, ttl_ms) -> float | None`` on 5 nodes."""
    live = list(clients)

    def values(key: str) -> list:
        return [c.get(key) for c in live]

    def checker(answer) -> None:
        key = f"{prefix}:job"
        n = len(live)
        try:
            for c in live:
                c.delete(key)
            got = answer(live, key, "tok-A", 10_000)
            expect(got is not None and 0 < got <= 10_000 - 102,
                   "all nodes up: the lock is acquired; return its validity (ttl - elapsed - drift)",
                   expected=f"0 < validity <= {10_000 - 102}", actual=got)
            expect(values(key) == ["tok-A"] * n, "the key holds your token on every node",
                   expected=["tok-A"] * n, actual=values(key))
            for c in live:
                c.delete(key)

            two_down = live[:3] + [_dead_client(), _dead_client()]
            got = answer(two_down, key, "tok-B", 10_000)
            expect(got is not None, "2 of 5 nodes down (connection refused): 3 is still a majority, "
                   "the lock is acquired (a down node counts as a 'no', it must not raise)",
                   expected="a validity", actual=got)
            for c in live:
                c.delete(key)

            three_down = live[:2] + [_dead_client() for _ in range(n - 2)]
            got = answer(three_down, key, "tok-C", 10_000)
            expect(got is None, "3 of 5 nodes down: no majority, no lock", expected=None, actual=got)
            expect(values(key)[:2] == [None, None],
                   "a failed attempt releases what it did get: no key of yours is left on the live nodes",
                   expected=[None, None], actual=values(key)[:2])

            for c in live[:3]:
                c.set(key, "someone-else", px=10_000)
            got = answer(live, key, "tok-D", 10_000)
            expect(got is None, "3 nodes already locked by another client: you get 2 of 5, no lock",
                   expected=None, actual=got)
            expect(values(key) == ["someone-else"] * 3 + [None] * (n - 3),
                   "the release after a failed attempt checks the token: the other client's keys stay, "
                   "yours are gone", expected=["someone-else"] * 3 + [None] * (n - 3), actual=values(key))
            for c in live:
                c.delete(key)

            slow = [_Slow(c) for c in live]  # 5 x 40 ms one after the other: at least 200 ms
            got = answer(slow, key, "tok-E", 150)
            expect(got is None, "the round took longer than the 150 ms TTL (5 nodes, 40 ms each): by the "
                   "time you counted the OKs the first keys had expired, so there is no lock",
                   expected=None, actual=got)
            expect(values(key) == [None] * n, "and the keys of that failed round are released",
                   expected=[None] * n, actual=values(key))
        finally:
            for c in live:
                c.delete(key)

    return Exercise(
        "Redlock acquire", checker,
        hints=[
            "Note the time, SET key token NX PX ttl_ms on every client (a RedisError counts as a no), "
            "note the time again.",
            "Held if ok >= len(clients) // 2 + 1 and validity = ttl_ms - elapsed_ms - (int(ttl_ms*0.01) + 2) > 0.",
            "Otherwise run the token-checked Lua release on every client (ignoring errors) and return None.",
        ],
        solution=inspect.getsource(redlock_acquire), reference=redlock_acquire,
    )


# -- exercise 2: extend (a new case) ----------------------------------------------------------------

EXTEND = ("if redis.call('GET', KEYS[1]) == ARGV[1] then "
          "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0")


def redlock_extend(clients, key, token, ttl_ms):
    start = time.monotonic()
    ok = 0
    for c in clients:
        try:
            ok += c.eval(EXTEND, 1, key, token, ttl_ms)  # only where the key still holds our token
        except redis.RedisError:
            pass  # down or slow: a "no"
    elapsed_ms = (time.monotonic() - start) * 1000
    validity = ttl_ms - elapsed_ms - (int(ttl_ms * 0.01) + 2)
    return validity if ok >= len(clients) // 2 + 1 and validity > 0 else None


class _SlowAll(_Slow):
    """A node 40 ms away for every command a solution may use (SET, EVAL, PEXPIRE, GET)."""

    def _late(self, name: str, *args: Any, **kwargs: Any) -> Any:
        time.sleep(self._delay)
        return getattr(self._r, name)(*args, **kwargs)

    def eval(self, *a: Any, **k: Any) -> Any:
        return self._late("eval", *a, **k)

    def evalsha(self, *a: Any, **k: Any) -> Any:
        return self._late("evalsha", *a, **k)

    def pexpire(self, *a: Any, **k: Any) -> Any:
        return self._late("pexpire", *a, **k)

    def get(self, *a: Any, **k: Any) -> Any:
        return self._late("get", *a, **k)


def extend_on_majority(clients: Sequence[redis.Redis], prefix: str = "ex2:extend") -> Exercise:
    """Exercise 2: ``redlock_extend(clients, key, token, ttl_ms) -> float | None`` on 5 nodes."""
    live = list(clients)

    def state(key: str) -> list:
        return [(c.get(key), c.pttl(key)) for c in live]

    def checker(answer) -> None:
        key = f"{prefix}:job"
        n = len(live)
        try:
            for c in live:
                c.set(key, "tok-A", px=1000)
            got = answer(live, key, "tok-A", 10_000)
            expect(got is not None and 0 < got <= 10_000 - 102,
                   "all 5 nodes hold your token: the lock is extended; return the new validity "
                   "(ttl - elapsed - drift)", expected=f"0 < validity <= {10_000 - 102}", actual=got)
            expect(all(v == "tok-A" and 1000 < t <= 10_000 for v, t in state(key)),
                   "every key now has the new TTL (10 s), still with your token",
                   expected="tok-A, 1000 < pttl <= 10000 on all 5", actual=state(key))

            for c in live[:3]:
                c.set(key, "tok-B", px=1000)
            for c in live[3:]:
                c.set(key, "someone-else", px=5000)
            got = answer(live, key, "tok-B", 10_000)
            expect(got is not None, "your token on 3 of 5 nodes: a majority, the lock is extended",
                   expected="a validity", actual=got)
            others = state(key)[3:]
            expect(all(v == "someone-else" and t <= 5000 for v, t in others),
                   "keys that hold another client's token are not yours to extend: check the token "
                   "before changing the TTL, in one script per node", expected="someone-else, pttl <= 5000",
                   actual=others)

            for c in live:
                c.delete(key)
            for c in live[:2]:
                c.set(key, "tok-C", px=1000)
            got = answer(live, key, "tok-C", 10_000)
            expect(got is None, "your token survives on only 2 of 5 nodes (it expired elsewhere): no "
                   "majority, the lock cannot be extended (it is lost)", expected=None, actual=got)
            expect([v for v, _ in state(key)[2:]] == [None] * (n - 2),
                   "an extension renews keys that still hold your token; it does not create keys on "
                   "the nodes where yours expired", expected=[None] * (n - 2), actual=[v for v, _ in state(key)[2:]])

            for c in live:
                c.set(key, "tok-D", px=1000)
            two_down = live[:3] + [_dead_client(), _dead_client()]
            got = answer(two_down, key, "tok-D", 10_000)
            expect(got is not None, "2 of 5 nodes down (connection refused): 3 is still a majority "
                   "(a down node counts as a 'no', it must not raise)", expected="a validity", actual=got)

            for c in live:
                c.set(key, "tok-E", px=5000)
            got = answer([_SlowAll(c) for c in live], key, "tok-E", 150)
            expect(got is None, "5 nodes 40 ms away, one after the other: the round took longer than "
                   "the new 150 ms TTL, so nothing is left after elapsed and drift",
                   expected=None, actual=got)
        finally:
            for c in live:
                c.delete(key)

    return Exercise(
        "Redlock extend", checker,
        hints=[
            "Like an acquire round: note the time, ask every node, note the time again, and count "
            "the nodes that said yes (a RedisError is a no).",
            "On each node, a Lua script that renews the TTL only if the key still holds your token: "
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) "
            "end return 0.",
            "Extended if ok >= len(clients) // 2 + 1 and ttl_ms - elapsed_ms - (int(ttl_ms*0.01) + 2) > 0; "
            "return that validity, else None.",
        ],
        solution=EXTEND_SOLUTION, reference=redlock_extend,
    )


EXTEND_SOLUTION = "EXTEND = " + repr(EXTEND) + "\n\n" + inspect.getsource(redlock_extend)


# -- Try it -------------------------------------------------------------------------------------------

def majority_prediction(fleet: Any, killed: int) -> Exercise:
    """Try it: with ``killed`` of the fleet's nodes down (the last ones), does a client get the
    lock? The answer is True or False; the check kills the nodes, tries, and restarts them."""
    from ..patterns.redlock import redlock_acquire, redlock_release

    nodes = list(fleet)

    def run() -> bool:
        down = nodes[len(nodes) - killed:] if killed else []
        for node in down:
            node.kill()
        try:
            cs = [node.client(socket_timeout=0.5) for node in nodes]
            got = redlock_acquire(cs, "redlock:try-it", "try-it-token", 10_000)
            redlock_release(cs, "redlock:try-it", "try-it-token")
            return got is not None
        finally:
            for node in down:
                node.restart()

    def checker(answer) -> None:
        expect(isinstance(answer, bool), "answer True (the client gets the lock) or False",
               expected="True or False", actual=answer)
        got = run()
        expect(answer == got, f"with {killed} of {len(nodes)} nodes down the client needed "
               f"{len(nodes) // 2 + 1} OKs and {'got' if got else 'did not get'} the lock",
               expected=got, actual=answer)

    return Exercise(
        f"{killed} of {len(nodes)} nodes down", checker,
        hints=["A round needs len(nodes) // 2 + 1 OKs; a node that is down answers nothing."],
        solution=f"prediction = {len(nodes)} - killed >= {len(nodes)} // 2 + 1", reference=None,
    )
