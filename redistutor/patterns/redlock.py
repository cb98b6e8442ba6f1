"""Redlock: one lock over N independent Redis masters, held when a majority agreed in time.

A lock on one Redis is gone when that Redis dies (or fails over to a replica that never got the
key). Redlock sets the same key, with the same random token, on N independent nodes (5 here) and
counts the lock as held only if

1. at least ``N // 2 + 1`` nodes answered OK to ``SET key token NX PX ttl``, and
2. the whole round took less than the TTL.

It is then valid for ``validity = ttl - elapsed - drift`` with ``drift = ttl * 0.01 + 2 ms``
(the reference implementations' allowance for clocks that run at different rates, plus 2 ms for
Redis's 1 ms expiry precision). If the round fails, the client releases on *all* nodes (including
those that looked down or timed out: the SET may have landed) and retries after a random delay.

Where it breaks (each one reproduced in the notebook)::

    node restart without persistence:
    t0  client 1: OK on A, B, C (D, E down)        -> holds the lock (3/5)
    t1  C crashes and restarts empty; D, E are back
    t2  client 2: A, B refuse; OK on C, D, E       -> holds the lock too (3/5)

    a client whose clock runs slow:
    it measures less time than has passed, so it believes its validity lasts longer than the
    keys on the nodes do, and keeps using the lock after another client took it.

Both are timing/persistence assumptions (Kleppmann's critique); fencing tokens (notebook 07) are
what makes a late holder harmless.

Notebook: notebooks/08-redlock.ipynb
Redis: https://redis.io/docs/latest/develop/use/patterns/distributed-locks/
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import redis

NODE_TIMEOUT = 0.05  # seconds: the default per-node socket and connect timeout of a Redlock


def with_timeout(client: redis.Redis, seconds: float) -> redis.Redis:
    """``client``'s node and settings, with socket and connect timeouts of at most ``seconds``.

    The same client if its timeouts are already that short; otherwise a new client (its own
    connection pool), so the caller's client keeps its own settings.
    """
    pool = client.connection_pool
    kwargs = dict(pool.connection_kwargs)
    if all(kwargs.get(k) is not None and kwargs[k] <= seconds for k in ("socket_timeout", "socket_connect_timeout")):
        return client
    kwargs["socket_timeout"] = kwargs["socket_connect_timeout"] = seconds
    return redis.Redis(connection_pool=type(pool)(connection_class=pool.connection_class, **kwargs))


def drift_ms(ttl_ms: int, factor: float = 0.01) -> int:
    """The clock-drift allowance: ``int(ttl * factor) + 2`` ms."""
    return int(ttl_ms * factor) + 2


def validity_ms(ttl_ms: int, elapsed_ms: float, factor: float = 0.01) -> float:
    """How long a lock acquired in ``elapsed_ms`` may be used: ttl - elapsed - drift."""
    return ttl_ms - elapsed_ms - drift_ms(ttl_ms, factor)


# -- the pattern: one round and the release, as a learner writes them (shown in the notebook) ----

def redlock_acquire(clients, key, token, ttl_ms, clock=time.monotonic):
    """One Redlock round: the validity in ms if a majority said OK in time, else None."""
    t1 = clock()                                  # validity counts from here: the first key dies first
    ok = 0
    for c in clients:
        try:
            ok += bool(c.set(key, token, nx=True, px=ttl_ms))
        except redis.RedisError:                  # down or timed out: a "no" (the SET may still land)
            pass
    elapsed_ms = (clock() - t1) * 1000
    validity = ttl_ms - elapsed_ms - drift_ms(ttl_ms)
    if ok >= len(clients) // 2 + 1 and validity > 0:
        return validity
    redlock_release(clients, key, token)          # failed: undo everywhere, "failed" nodes too
    return None


def redlock_release(clients, key, token):
    """Delete the key on every node where it still holds our token; returns how many did."""
    script = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
    released = 0
    for c in clients:
        try:
            released += c.eval(script, 1, key, token)
        except redis.RedisError:                  # a node that is down keeps nothing of ours for long
            pass
    return released


@dataclass
class Attempt:
    """One round over all nodes, whatever its outcome (what the notebook draws)."""

    token: str
    ok: list[str]  # names of the nodes that said OK
    refused: list[str]  # nodes that answered nil: someone else holds the key there
    failed: dict[str, str]  # nodes that errored or timed out: name -> exception class
    elapsed_ms: float  # measured by this client's clock
    validity_ms: float
    quorum: int
    started_at: float  # this client's clock, seconds
    ended_at: float
    pending: list[str] = field(default_factory=list)  # parallel rounds: not answered when a majority had


    @property
    def acquired(self) -> bool:
        return len(self.ok) >= self.quorum and self.validity_ms > 0


@dataclass
class RedlockLease:
    """A held Redlock: the token, where it was set, and until when (by this client's clock)."""

    key: str
    token: str
    nodes: list[str]
    validity_ms: float
    acquired_at: float  # this client's clock (seconds) when the round ended
    attempt: Attempt = field(repr=False)

    def valid_until(self) -> float:
        return self.acquired_at + self.validity_ms / 1000


class Redlock:
    """The Redlock algorithm over independent nodes, instrumented for the notebook's experiments.

    The same rule as :func:`redlock_acquire` / :func:`redlock_release` (which are what a learner
    writes), plus what the experiments need: per-node outcomes (:class:`Attempt`), node names,
    retries with random delays, parallel rounds, an injectable clock, and :meth:`holders`.

    Example::

        dlm = Redlock([n.client() for n in fleet], "report", ttl_ms=10_000)
        lease = dlm.acquire()
        if lease:
            ...  # finish before dlm.remaining_ms(lease) reaches 0
            dlm.release(lease)

    Args:
        clients: one redis-py client per node (``decode_responses=True``).
        node_timeout: seconds; each node is reached with socket and connect timeouts of at most
            this (a copy of its client with shorter timeouts if needed; None: the clients as
            given). The validity counts from before the first SET, so every second spent waiting
            for a node that does not answer (frozen, partitioned) is a second of lock lost: with
            1 s timeouts two frozen nodes cost 2 s of a 10 s lock, with 50 ms they cost 0.1 s.
        name: what is locked; the key on every node is ``<prefix>:<name>``.
        names: node names for reports (default n1..nN).
        ttl_ms: the keys' PX.
        clock: seconds, monotonic; inject a :class:`~redistutor.clocks.SkewedClock` to model a
            drifting client.
        drift_factor: the drift allowance is ``int(ttl * drift_factor) + 2`` ms.
        retries: rounds :meth:`acquire` tries before giving up.
        retry_delay: random sleep between rounds, seconds (min, max).
        parallel: (default) send the N SETs from N threads at once, and end the round as soon
            as a majority said OK (the nodes that have not answered yet are
            :attr:`Attempt.pending`; the release still goes to them), so a round costs the
            third-fastest node's round trip, as in ``pottery``. A node whose previous request is
            still waiting (frozen) is skipped: its answer could not come in time. ``False``: one
            node after another, each answer waited for; the notebook's experiments use it to
            show every node's answer, and a frozen node then costs its whole timeout.
    """

    # KEYS[1] = lock key, ARGV[1] = our token
    # Returns 1 if the key held our token and was deleted, 0 if not ours (or absent).
    LUA_RELEASE = """
    if redis.call('GET', KEYS[1]) == ARGV[1] then
      return redis.call('DEL', KEYS[1])
    end
    return 0
    """

    def __init__(self, clients: Sequence[redis.Redis], name: str, *, prefix: str = "redlock",
                 names: Sequence[str] | None = None, ttl_ms: int = 10_000,
                 clock: Callable[[], float] = time.monotonic, drift_factor: float = 0.01,
                 retries: int = 3, retry_delay: tuple[float, float] = (0.05, 0.2),
                 parallel: bool = True, node_timeout: float | None = NODE_TIMEOUT) -> None:
        if not clients:
            raise ValueError("Redlock needs at least one node")
        self.node_timeout = node_timeout
        self.clients = [c if node_timeout is None else with_timeout(c, node_timeout) for c in clients]
        self.names = list(names) if names else [f"n{i}" for i in range(1, len(self.clients) + 1)]
        self.name = name
        self.prefix = prefix
        self.ttl_ms = int(ttl_ms)
        self.clock = clock
        self.drift_factor = drift_factor
        self.retries = retries
        self.retry_delay = retry_delay
        self.parallel = parallel
        # parallel: one thread per node, so a frozen node delays only its own queue
        self._pools = [ThreadPoolExecutor(max_workers=1) for _ in self.clients] if parallel else None
        self._last: list[Future[Any] | None] = [None] * len(self.clients)
        # EVALSHA, not EVAL: the script text goes to a node once (again after a restart emptied
        # its script cache: redis-py reloads it on NOSCRIPT), then only its SHA1.
        self._release_scripts = [c.register_script(self.LUA_RELEASE) for c in self.clients]

    @property
    def key(self) -> str:
        return f"{self.prefix}:{self.name}"

    @property
    def quorum(self) -> int:
        return len(self.clients) // 2 + 1

    @staticmethod
    def new_token() -> str:
        """20 random bytes from the OS (the algorithm asks for at least 20)."""
        return secrets.token_hex(20)

    # -- one node -------------------------------------------------------------------------------
    def _set(self, i: int, token: str) -> tuple[int, object]:
        try:
            return i, bool(self.clients[i].set(self.key, token, nx=True, px=self.ttl_ms))
        except redis.RedisError as exc:  # down, refused, timed out: counts as "no"
            return i, exc

    def _release_one(self, i: int, token: str) -> int:
        try:
            return int(self._release_scripts[i](keys=[self.key], args=[token]))
        except redis.RedisError:
            return 0

    def _submit(self, i: int, fn: Callable[[], Any]) -> Future[Any]:
        assert self._pools is not None
        fut = self._last[i] = self._pools[i].submit(fn)
        return fut

    def _busy(self, i: int) -> bool:
        last = self._last[i]
        return last is not None and not last.done()

    def _round(self, token: str) -> tuple[dict[int, object], list[int]]:
        """The SETs of one round: ({node: True/False/exception}, nodes still pending)."""
        if self._pools is None:
            return dict(self._set(i, token) for i in range(len(self.clients))), []
        results: dict[int, object] = {}
        futures = {}
        for i in range(len(self.clients)):
            if self._busy(i):                        # still stuck on an earlier request
                results[i] = redis.TimeoutError("busy")
            else:
                futures[self._submit(i, lambda i=i: self._set(i, token))] = i
        ok = 0
        for fut in as_completed(futures):
            i, res = fut.result()
            results[i] = res
            ok += res is True
            if ok >= self.quorum:
                break
        return results, [i for i in futures.values() if i not in results]

    def _release_all(self, token: str) -> int:
        if self._pools is None:
            return sum(self._release_one(i, token) for i in range(len(self.clients)))
        waiting = {i: self._busy(i) for i in range(len(self.clients))}
        futures = {i: self._submit(i, lambda i=i: self._release_one(i, token)) for i in waiting}
        # do not wait behind a node that is stuck: its release runs when the node answers
        return sum(int(f.result()) for i, f in futures.items() if not waiting[i])

    # -- the algorithm --------------------------------------------------------------------------
    def attempt(self, token: str | None = None) -> Attempt:
        """One round: SET NX PX on every node, timed with this client's clock. Does not release."""
        token = token or self.new_token()
        t1 = self.clock()
        results, pending = self._round(token)
        t2 = self.clock()
        elapsed = (t2 - t1) * 1000
        ok: list[str] = []
        refused: list[str] = []
        failed: dict[str, str] = {}
        for i, res in sorted(results.items()):
            if res is True:
                ok.append(self.names[i])
            elif res is False:
                refused.append(self.names[i])
            else:
                failed[self.names[i]] = type(res).__name__
        return Attempt(token, ok, refused, failed, elapsed, validity_ms(self.ttl_ms, elapsed, self.drift_factor),
                       self.quorum, t1, t2, [self.names[i] for i in pending])

    def try_acquire(self) -> tuple[RedlockLease | None, Attempt]:
        """One round; on failure release everywhere. Returns (lease or None, the attempt)."""
        att = self.attempt()
        if att.acquired:
            return RedlockLease(self.key, att.token, att.ok, att.validity_ms, att.ended_at, att), att
        self._release_all(att.token)  # every node, even "failed" and pending ones
        return None, att

    def acquire(self) -> RedlockLease | None:
        """Up to ``retries`` rounds with random delays in between; the lease or None."""
        for n in range(self.retries):
            lease, _ = self.try_acquire()
            if lease is not None:
                return lease
            if n + 1 < self.retries:
                time.sleep(random.uniform(*self.retry_delay))
        return None

    def release(self, lease: RedlockLease) -> int:
        """Release on every node (token-checked); returns how many nodes still held our key."""
        return self._release_all(lease.token)

    def remaining_ms(self, lease: RedlockLease) -> float:
        """Validity left, by this client's clock (<= 0: stop using the lock)."""
        return (lease.valid_until() - self.clock()) * 1000

    def holders(self) -> dict[str, str | None]:
        """What each node's key holds now: a token, None (free), or "down"."""
        out: dict[str, str | None] = {}
        for name, c in zip(self.names, self.clients):
            try:
                out[name] = c.get(self.key)
            except redis.RedisError:
                out[name] = "down"
        return out

    def close(self) -> None:
        if self._pools is not None:
            for pool in self._pools:
                pool.shutdown(wait=True)
            self._pools = None
