"""Distributed locking on one Redis: ``SET key token NX PX ttl``, token-checked release, a
watchdog that extends the lock, and fencing tokens for the resource the lock protects.

Why the token (the unsafe ``DEL``)::

    time 0.0  A: SET lock A NX PX 200 -> OK        A starts a job that takes 300 ms
    time 0.2  the key expires (A is still working)
    time 0.2  B: SET lock B NX PX 200 -> OK        B starts working
    time 0.3  A: DEL lock                          <- deletes B's lock
    time 0.3  C: SET lock C NX PX 200 -> OK        B and C now both "hold" the lock

Releasing through a Lua script that deletes the key only if it still holds *our* token makes A's
late release a no-op (it returns 0), so B keeps its lock. :class:`TokenLock` is that core, the
code the notebook shows: a plain ``SET NX PX`` to acquire (as redis-py's own ``Lock`` does; only
its release and extend are scripts) and the token-checked release script.

A still overran its lock, though: a watchdog (:class:`Watchdog`) that extends the TTL while the
job runs prevents that, and nothing on the client side can prevent a process that is *paused*
(GC, SIGSTOP, a swapped-out VM) past its TTL from acting late. Only the resource can: every
acquisition of :class:`Lock` also gets a fencing token (an ``INCR`` counter), and the resource
(:class:`FencedResource`) refuses writes carrying a token lower than the highest it has seen.

Notebook: notebooks/07-distributed-locking.ipynb
Redis: https://redis.io/docs/latest/develop/use/patterns/distributed-locks/
(SET: https://redis.io/commands/set, EVAL: https://redis.io/commands/eval)
"""

from __future__ import annotations

import random
import secrets
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from ..db import Database


class TokenLock:
    """One lock on one Redis: SET NX PX with a random token, released by a token-checked script."""

    # KEYS[1] = lock key, ARGV[1] = our token
    # Returns 1 if the key held our token and was deleted; 0 if it was not ours (any more):
    # it expired, or another client took it since, and that client's lock must survive.
    LUA_RELEASE = """
    if redis.call('GET', KEYS[1]) == ARGV[1] then
      return redis.call('DEL', KEYS[1])
    end
    return 0
    """

    def __init__(self, r, key, ttl_ms=10_000):
        self.r, self.key, self.ttl_ms = r, key, ttl_ms

    def acquire(self):
        """One attempt: our token if the lock was free, else None."""
        token = secrets.token_hex(16)  # new per acquisition: a name or PID would repeat
        # NX: only one client wins; PX: a crashed holder's lock expires by itself.
        ok = self.r.set(self.key, token, nx=True, px=self.ttl_ms)
        return token if ok else None

    def release(self, token):
        """Delete the lock only if it still holds our token; True if it did."""
        return bool(self.r.eval(self.LUA_RELEASE, 1, self.key, token))


@dataclass
class Lease:
    """One acquisition of a lock: what the holder needs to release, extend, and fence."""

    key: str
    token: str  # random, unique to this acquisition (never the worker's name: names repeat)
    fence: int  # strictly increasing across acquisitions: hand it to the protected resource
    ttl_ms: int
    acquired_at: float = field(default_factory=time.monotonic)
    replicas: int | None = None  # WAIT's answer: replicas that had the lock key (None: not asked)


class Lock:
    """:class:`TokenLock` plus what production needs: a fencing token, retries, extend, WAIT.

    The acquire is one Lua script over two keys, ``SET lock NX PX`` and, only if it won,
    ``INCR`` of the fencing counter. A script's keys must live in one hash slot in a Redis
    Cluster, so both names share a hash tag: ``<prefix>:{<name>}`` and ``<prefix>:{<name>}:fence``.

    Example::

        lock = Lock(r, "report", prefix=server.key("lock"), ttl_ms=10_000)
        lease = lock.acquire(timeout=5)
        try:
            ...  # the critical section; pass lease.fence to whatever you write
        finally:
            lock.release(lease)

    Args:
        r: a redis-py client (``decode_responses=True``).
        name: what is locked; the key is ``<prefix>:{<name>}`` and the fencing counter
            ``<prefix>:{<name>}:fence`` (one hash tag: one cluster slot for the two-key script).
        prefix: key prefix, e.g. ``server.key("lock")``.
        ttl_ms: how long the lock lives if its holder never releases it (crash, pause).
        retry_delay: a blocking acquire sleeps a random time in this range (seconds) between
            attempts, so waiters do not retry in lockstep.
        fair: waiters get the lock in the order they arrived (a hand-off, see below) instead of
            whoever retries first after a release; every client of one lock must use the same mode.
        patience_ms: fair mode: a waiter that has not asked again for this long (it gave up, or
            died) loses its place in line. Waiters ask again every ``patience_ms / 3``.

    Fair hand-off: a random-sleep retry lets the releaser (already awake, one round trip away)
    win again and again while a waiter sleeps, so the unlucky waiter's wait has a long tail. With
    ``fair=True`` a refused acquire joins a line (a list, ``<key>:queue``, arrival order); only the
    client at the head may take the lock; the release script deletes the lock and PUBLISHes on
    the head's own channel, ``<key>:released:<token>``, and each waiter blocks on its channel
    instead of sleeping: the head wakes and takes it in one round trip, the others sleep on.
    """

    # KEYS[1] = lock key, KEYS[2] = fencing counter (same hash tag: a cluster needs one slot)
    # ARGV[1] = random token of this acquisition, ARGV[2] = TTL in milliseconds
    # Returns the new fencing token (an integer, INCR of KEYS[2]) if the lock was free and is now
    # ours; false (nil) if someone holds it. One script, so a fence is never handed out for a
    # lock we did not get, and never missing for one we did.
    LUA_ACQUIRE = """
    -- KEYS: lock, fence counter (one hash tag: one slot); ARGV: token, ttl ms
    -- returns the new fence number, or false if the lock is held
    if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
      return redis.call('INCR', KEYS[2])
    end
    return false
    """

    # the token-checked release of TokenLock (KEYS[1] = lock key, ARGV[1] = our token; 1/0)
    LUA_RELEASE = TokenLock.LUA_RELEASE

    # KEYS[1] = lock key, ARGV[1] = our token, ARGV[2] = new TTL in milliseconds
    # Returns 1 if the key held our token and its TTL was reset, 0 otherwise (we lost the lock:
    # it expired, or another client holds it now; never resurrect or extend someone else's).
    LUA_EXTEND = """
    -- KEYS: lock; ARGV: our token, new ttl ms
    -- returns 1 if the lock was ours and its TTL was reset, 0 if it is not ours (any more)
    if redis.call('GET', KEYS[1]) == ARGV[1] then
      return redis.call('PEXPIRE', KEYS[1], ARGV[2])
    end
    return 0
    """

    # Fair mode. KEYS[1] = lock, KEYS[2] = fence counter, KEYS[3] = the line (list of waiters'
    # tokens, arrival order), KEYS[4] = hash token -> the server time (ms) until which that waiter
    # keeps its place. ARGV[1] = token, ARGV[2] = TTL ms, ARGV[3] = patience ms.
    # Returns the new fence if the lock was free and we were first in line (or the line was
    # empty); otherwise false, and we are in line (at the tail if we were not yet).
    LUA_ACQUIRE_FAIR = """
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    local head = redis.call('LINDEX', KEYS[3], 0)
    while head and head ~= ARGV[1] and (tonumber(redis.call('HGET', KEYS[4], head)) or 0) < now do
      redis.call('LPOP', KEYS[3])                     -- that waiter gave up or died: skip it
      redis.call('HDEL', KEYS[4], head)
      head = redis.call('LINDEX', KEYS[3], 0)
    end
    if (not head or head == ARGV[1]) and redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
      if head then
        redis.call('LPOP', KEYS[3])
        redis.call('HDEL', KEYS[4], ARGV[1])
      end
      return redis.call('INCR', KEYS[2])
    end
    if redis.call('HSET', KEYS[4], ARGV[1], now + ARGV[3]) == 1 then
      redis.call('RPUSH', KEYS[3], ARGV[1])           -- first refusal: join the line
    end
    redis.call('PEXPIRE', KEYS[3], ARGV[3] + ARGV[2])
    redis.call('PEXPIRE', KEYS[4], ARGV[3] + ARGV[2])
    return false
    """

    # Fair mode. KEYS[1] = lock, KEYS[2] = the line; ARGV[1] = our token, ARGV[2] = the channel
    # prefix. Deletes the lock if it holds our token, then wakes the first waiter in line (the
    # only one allowed to take it): PUBLISH on its own channel, <prefix>:<its token>.
    # Returns 1 if the lock was ours, else 0.
    LUA_RELEASE_FAIR = """
    if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
    redis.call('DEL', KEYS[1])
    local head = redis.call('LINDEX', KEYS[2], 0)
    if head then redis.call('PUBLISH', ARGV[2] .. ':' .. head, 1) end
    return 1
    """

    SCRIPTS = ("LUA_ACQUIRE", "LUA_RELEASE", "LUA_EXTEND", "LUA_ACQUIRE_FAIR", "LUA_RELEASE_FAIR")
    # clients whose server got the scripts from a Lock already (a Lock per request costs nothing)
    _loaded: weakref.WeakSet[redis.Redis] = weakref.WeakSet()

    def __init__(self, r: redis.Redis, name: str, *, prefix: str = "lock", ttl_ms: int = 10_000,
                 retry_delay: tuple[float, float] = (0.005, 0.02), fair: bool = False,
                 patience_ms: int = 1000) -> None:
        if ttl_ms <= 0:
            raise ValueError("ttl_ms must be positive: a lock without expiry outlives a crashed holder")
        self.r = r
        self.name = name
        self.prefix = prefix
        self.ttl_ms = int(ttl_ms)
        self.retry_delay = retry_delay
        self.fair = fair
        self.patience_ms = int(patience_ms)
        self._local = threading.local()
        self._acquire = r.register_script(self.LUA_ACQUIRE)
        self._release = r.register_script(self.LUA_RELEASE)
        self._extend = r.register_script(self.LUA_EXTEND)
        self._acquire_fair = r.register_script(self.LUA_ACQUIRE_FAIR)
        self._release_fair = r.register_script(self.LUA_RELEASE_FAIR)
        # Load the scripts now, in one round trip (once per client): the first acquire is then one
        # EVALSHA (not EVALSHA -> NOSCRIPT -> SCRIPT LOAD -> EVALSHA while another client waits).
        if r not in Lock._loaded:
            with r.pipeline(transaction=False) as pipe:
                for attr in self.SCRIPTS:
                    pipe.script_load(getattr(self, attr))
                pipe.execute()
            Lock._loaded.add(r)

    @property
    def key(self) -> str:
        return f"{self.prefix}:{{{self.name}}}"

    @property
    def fence_key(self) -> str:
        return f"{self.prefix}:{{{self.name}}}:fence"

    @property
    def queue_key(self) -> str:
        """Fair mode: the waiters' tokens in arrival order."""
        return f"{self.prefix}:{{{self.name}}}:queue"

    @property
    def channel(self) -> str:
        """Fair mode: a release wakes the first waiter in line on ``<channel>:<its token>``."""
        return f"{self.prefix}:{{{self.name}}}:released"

    def waiting(self) -> list[str]:
        """Fair mode: the tokens in line, first to be served first."""
        return cast(list[str], self.r.lrange(self.queue_key, 0, -1))

    @staticmethod
    def new_token() -> str:
        """128 random bits from the OS: unique per acquisition, unguessable by other clients."""
        return secrets.token_hex(16)

    def try_acquire(self, token: str | None = None, *, wait_replicas: int = 0,
                    wait_ms: int = 100) -> Lease | None:
        """One attempt: the lock's lease if it was free, else None.

        With ``wait_replicas`` > 0 the acquire script and ``WAIT wait_replicas wait_ms`` go out in
        one pipeline: one connection from the pool carries both (WAIT counts the replicas that
        have *this connection's* writes; sent on another connection it counts nothing), and
        ``lease.replicas`` says how many replicas had the lock key. It
        only reports: a lease with ``replicas == 0`` is still returned. See
        :meth:`try_acquire_replicated` for a lock that refuses to be trusted on the primary alone.
        """
        token = token or self.new_token()
        keys: list[str] = [self.key, self.fence_key]
        args: list[str | int] = [token, self.ttl_ms]
        if self.fair and wait_replicas <= 0:
            fence = self._acquire_fair(keys=[*keys, self.queue_key, f"{self.queue_key}:until"],
                                       args=[*args, self.patience_ms])
            return None if fence is None else Lease(self.key, token, int(fence), self.ttl_ms)
        acked = None
        if wait_replicas > 0:
            pipe = self.r.pipeline(transaction=False)
            self._acquire(keys=keys, args=args, client=pipe)
            pipe.execute_command("WAIT", wait_replicas, wait_ms)
            fence, acked = pipe.execute()
        else:
            fence = self._acquire(keys=keys, args=args)
        if fence is None:
            return None
        return Lease(self.key, token, int(fence), self.ttl_ms,
                     replicas=None if acked is None else int(acked))

    def try_acquire_replicated(self, replicas: int = 1, *, wait_ms: int = 100) -> Lease | None:
        """Like :meth:`try_acquire`, but the lock counts only once ``replicas`` replicas have it.

        If WAIT reports fewer, the lock is released again (token-checked) and None returned: a
        failover right now could promote a replica without it. This narrows the failover window;
        it does not close it (WAIT is not a durability or consensus guarantee: the replica that
        acked may not be the one promoted, or may itself restart empty).
        """
        lease = self.try_acquire(wait_replicas=replicas, wait_ms=wait_ms)
        if lease is not None and (lease.replicas or 0) < replicas:
            self.release(lease)
            return None
        return lease

    def acquire(self, *, blocking: bool = True, timeout: float | None = None) -> Lease | None:
        """Take the lock, retrying until ``timeout`` (None: forever): after a jittered sleep, or
        in fair mode when a release names us (see the class docstring)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.fair and blocking:
            return self._acquire_in_line(deadline)
        while True:
            lease = self.try_acquire()
            if lease is not None or not blocking:
                return lease
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(random.uniform(*self.retry_delay))

    def _subscriber(self) -> Any:
        """This thread's pub/sub connection (kept: a wait costs no new connection)."""
        sub = getattr(self._local, "sub", None)
        if sub is None:
            sub = self._local.sub = self.r.pubsub(ignore_subscribe_messages=True)
        return sub

    def _acquire_in_line(self, deadline: float | None) -> Lease | None:
        token = self.new_token()
        lease = self.try_acquire(token)              # free and nobody in line: one round trip
        if lease is not None:
            return lease
        sub, mine = self._subscriber(), f"{self.channel}:{token}"
        sub.subscribe(mine)                          # only our own wake-up: other waiters sleep on
        try:
            while True:
                lease = self.try_acquire(token)      # again: a release before we subscribed is not missed
                if lease is not None:
                    return lease
                wait = self.patience_ms / 3000
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:                    # give up our place at once
                        with self.r.pipeline() as tx:
                            tx.lrem(self.queue_key, 0, token)
                            tx.hdel(f"{self.queue_key}:until", token)
                            tx.execute()
                        return None
                end = time.monotonic() + wait
                while (left := end - time.monotonic()) > 0:
                    msg = sub.get_message(timeout=left)
                    if msg is not None and msg["channel"] == mine:
                        break                        # our turn: the holder released, we are first
        finally:
            sub.unsubscribe(mine)

    def release(self, lease: Lease) -> bool:
        """Give the lock back; True if it was still ours (False: it had expired or moved on).
        In fair mode the first waiter in line is told at once."""
        if self.fair:
            return bool(self._release_fair(keys=[lease.key, self.queue_key], args=[lease.token, self.channel]))
        return bool(self._release(keys=[lease.key], args=[lease.token]))

    def extend(self, lease: Lease, ttl_ms: int | None = None) -> bool:
        """Reset the TTL to ``ttl_ms`` (default: the lock's) if we still hold it."""
        return bool(self._extend(keys=[lease.key], args=[lease.token, ttl_ms or lease.ttl_ms]))

    def holder(self) -> str | None:
        """The token currently stored in the lock key (None: free)."""
        return self.r.get(self.key)

    @contextmanager
    def held(self, *, timeout: float | None = None, watchdog: bool = True) -> Iterator[Lease]:
        """``with lock.held() as lease:``: acquire, keep it alive with a watchdog, release."""
        lease = self.acquire(timeout=timeout)
        if lease is None:
            raise TimeoutError(f"could not acquire {self.key!r} within {timeout} s")
        dog = Watchdog(self, lease).start() if watchdog else None
        try:
            yield lease
        finally:
            if dog is not None:
                dog.stop()
            self.release(lease)


class Watchdog:
    """Extends a held lock every ``ttl/3`` until stopped, so a long job never outlives its TTL.

    If an extension finds the lock is no longer ours (it expired, e.g. the process was paused
    longer than the TTL), :attr:`lost` is set and the watchdog stops: the job should check it
    and abort before writing. The TTL stays short, so a *crashed* holder still frees the lock
    quickly: only a live process keeps extending it.
    """

    def __init__(self, lock: Lock, lease: Lease, *, interval: float | None = None) -> None:
        self.lock = lock
        self.lease = lease
        self.interval = interval if interval is not None else lease.ttl_ms / 3000
        self.renewals = 0
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Watchdog:
        self._thread = threading.Thread(target=self._run, name=f"watchdog-{self.lock.name}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                ok = self.lock.extend(self.lease)
            except redis.RedisError:
                ok = False
            if not ok:
                self.lost.set()
                return
            self.renewals += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


class FencedResource:
    """A row in SQLite that only accepts writes carrying a fencing token >= the highest seen.

    This is the protected resource, outside Redis: Redis hands out the tokens (:class:`Lock`), the
    database enforces them, in the same statement as the write (an ``UPSERT ... WHERE``), so
    there is no check-then-write window. Equal tokens are accepted: one holder may write twice.

    Args:
        db: the :class:`~redistutor.db.Database` (its file can be opened by worker processes too).
        table: table name (created if missing).
    """

    def __init__(self, db: Database, table: str = "fenced_resource") -> None:
        self.db = db
        self.table = table
        db.execute(f"CREATE TABLE IF NOT EXISTS {table} (name TEXT PRIMARY KEY, value TEXT NOT NULL,"
                   " fence INTEGER NOT NULL)")

    def write(self, name: str, value: str, fence: int) -> bool:
        """Store ``value`` if ``fence`` is at least the highest token seen; True if stored."""
        rows = self.db.execute(
            f"INSERT INTO {self.table} (name, value, fence) VALUES (?, ?, ?) "
            f"ON CONFLICT(name) DO UPDATE SET value = excluded.value, fence = excluded.fence "
            f"WHERE excluded.fence >= {self.table}.fence RETURNING fence",
            (name, value, int(fence)),
        )
        return bool(rows)

    def write_unfenced(self, name: str, value: str, fence: int = 0) -> bool:
        """The naive write: last writer wins, whatever its token (for the lesson)."""
        self.db.execute(
            f"INSERT INTO {self.table} (name, value, fence) VALUES (?, ?, ?) "
            f"ON CONFLICT(name) DO UPDATE SET value = excluded.value, fence = excluded.fence",
            (name, value, int(fence)),
        )
        return True

    def read(self, name: str) -> tuple[str, int] | None:
        rows = self.db.execute(f"SELECT value, fence FROM {self.table} WHERE name = ?", (name,))
        return (rows[0][0], rows[0][1]) if rows else None
