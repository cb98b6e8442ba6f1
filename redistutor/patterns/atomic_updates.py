"""Atomic updates: keep a read-modify-write correct when many clients run it at once.

Every single Redis command is atomic. A *read-modify-write* that spans several round trips is
not: two clients can both read the same old value and both write, and one update is lost::

    time 0  client A: GET counter -> 7
    time 1  client B: GET counter -> 7
    time 2  client A: SET counter 8
    time 3  client B: SET counter 8          <- A's increment is gone (expected 9)

Four ways to put the whole read-modify-write in one indivisible step, all here:

* **Optimistic transaction** (``WATCH`` / ``MULTI`` / ``EXEC``): watch the key, read, compute,
  then ``EXEC``. If anyone changed a watched key in between, ``EXEC`` does nothing and returns
  nil; the client retries. Cheap when conflicts are rare, a retry storm when they are not.
* **A Lua script**: the read, the decision and the write run on the server with no other
  command in between. One round trip, no retries.
* **Shadow key + RENAME**: build the replacement under a temporary name, then ``RENAME`` it over
  the live key. Readers see the old value or the new one, never a half-built one.
* **Idempotency keys** (``SET key pending NX``): a request retried by the network is applied once.

Two facts people get wrong: ``MULTI``/``EXEC`` has no rollback (a command failing at ``EXEC``
time does not undo the others), and neither has Lua (writes before a script's runtime error
stay). Validate first, write last.

The two pieces a learner writes, shown verbatim in the notebook: :func:`watch_update` (the
WATCH/MULTI/EXEC retry loop) and :class:`CompareAndSet` (the Lua compare-and-set). Built on them:
:class:`Counter` (naive / WATCH / Lua / CAS increments), :class:`Accounts` (transfers that must
keep the total constant), :class:`ShadowHash` (rebuild a hash without readers seeing a partial
one), :class:`Idempotency` (run a side effect once per request id), :class:`OneTimeToken`
(``GETDEL``). The notebook's races and measurements are in ``redistutor/scenarios/atomic_updates.py``.

Notebook: notebooks/06-atomic-updates.ipynb
Redis: https://redis.io/docs/latest/develop/interact/transactions/ ·
https://redis.io/docs/latest/develop/interact/programmability/eval-intro/ ·
https://redis.io/commands/rename/ · https://redis.io/commands/set/
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from redis.crc import key_slot

from ..race import call_hook
from ..stats import Stats


class RetriesExhausted(RuntimeError):
    """A WATCH transaction kept aborting: more contention than ``max_retries`` allows."""


class InsufficientFunds(ValueError):
    """A transfer was refused because the source balance is too low (nothing was changed)."""


class InProgress(RuntimeError):
    """Another request with the same idempotency key is still running."""


class LeaseExpired(RuntimeError):
    """The side effect ran, but the claim's lease expired first: the result was not stored, and
    another caller may have claimed the request and run the side effect too."""


def watch_update(r, key, compute, *, max_retries=100, on_abort=None):
    """Set ``key`` to ``compute(current value)`` without losing another client's write.
    ``on_abort()`` is called after each aborted EXEC; RetriesExhausted after ``max_retries``."""
    with r.pipeline(transaction=True) as pipe:  # one pipeline = one connection; WATCH lives on it
        for _ in range(max_retries):
            try:
                pipe.watch(key)               # from now on, any write to key aborts our EXEC
                new = compute(pipe.get(key))  # after WATCH, commands run at once (no queueing)
                pipe.multi()                  # from MULTI on, commands are queued ...
                pipe.set(key, new)
                pipe.execute()                # ... and sent with EXEC: WatchError if aborted
                return new
            except redis.WatchError:          # someone wrote key since WATCH: read it again
                if on_abort:
                    on_abort()
    raise RetriesExhausted(f"{key}: {max_retries} WATCH attempts all aborted")


class CompareAndSet:
    """Write a key only if it still holds the value the caller read: one script, one round trip."""

    # KEYS[1] = the key
    # ARGV[1] = the value the caller expects ('' means "the key must not exist")
    # ARGV[2] = the new value
    # Returns 1 if the key held ARGV[1] and now holds ARGV[2]; 0 (and no change) otherwise.
    LUA_CAS = """
    local cur = redis.call('GET', KEYS[1])
    if (cur or '') == ARGV[1] then
      redis.call('SET', KEYS[1], ARGV[2])
      return 1
    end
    return 0
    """

    def __init__(self, r):
        self.script = r.register_script(self.LUA_CAS)  # EVALSHA, loading it on first use

    def __call__(self, key, expected, new):
        """``expected=None``: the key must not exist."""
        return bool(self.script(keys=[key], args=["" if expected is None else expected, new]))


@dataclass
class TxStats(Stats):
    """Thread-safe counters of what the optimistic transactions did."""

    attempts: int = 0  # EXEC calls (or CAS calls)
    commits: int = 0  # ... that applied
    aborts: int = 0  # ... that found a watched key changed (EXEC returned nil / CAS returned 0)

    def reset(self) -> None:
        with self._lock:
            self.attempts = self.commits = self.aborts = 0


class Counter:
    """An integer counter updated by read-modify-write, four ways.

    ``naive_incr`` is the bug; ``watch_incr``, ``lua_incr`` and ``cas_incr`` are the fixes. (For a
    plain counter ``INCRBY`` is the right answer: it *is* a server-side read-modify-write. The
    counter stands in for any update Redis has no single command for.)

    Hooks (see :mod:`redistutor.race`): ``"after_get"`` is called with ``(name, value_read)``
    between the read and the write of ``naive_incr``, ``watch_incr`` and ``cas_incr``. A
    ``threading.Barrier`` plugged in there makes every thread read before any thread writes.

    Args:
        r: the client.
        prefix: keys are ``<prefix>:<name>``.
        hooks: pause points, e.g. ``{"after_get": barrier.wait}``.
        max_retries: attempts per WATCH / CAS increment before :class:`RetriesExhausted`.
    """

    # KEYS[1] = the counter
    # ARGV[1] = the increment (integer)
    # Returns the new value. GET, add, SET run with no other client's command in between.
    LUA_INCR = """
    local v = tonumber(redis.call('GET', KEYS[1]) or '0')
    v = v + tonumber(ARGV[1])
    redis.call('SET', KEYS[1], v)
    return v
    """

    def __init__(self, r: redis.Redis, *, prefix: str = "counter",
                 hooks: dict[str, Callable[..., Any]] | None = None, max_retries: int = 1000) -> None:
        self.r = r
        self.prefix = prefix
        self.hooks = hooks
        self.max_retries = max_retries
        self.stats = TxStats()
        self._incr = r.register_script(self.LUA_INCR)
        self._cas = CompareAndSet(r)

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def value(self, name: str) -> int:
        return int(self.r.get(self.key(name)) or 0)

    def naive_incr(self, name: str, by: int = 1) -> int:
        """GET, add, SET: two round trips with a gap between them. Loses updates under load."""
        key = self.key(name)
        current = int(self.r.get(key) or 0)
        call_hook(self.hooks, "after_get", name, current)
        self.r.set(key, current + by)
        return current + by

    def watch_incr(self, name: str, by: int = 1) -> int:
        """WATCH, GET, MULTI/SET/EXEC; retry when EXEC aborts because the key changed
        (:func:`watch_update`, with the hook and the counters)."""

        def compute(raw: Any) -> int:
            current = int(raw or 0)
            call_hook(self.hooks, "after_get", name, current)
            self.stats.add("attempts")  # every compute is followed by one EXEC
            return current + by

        new = watch_update(self.r, self.key(name), compute, max_retries=self.max_retries,
                           on_abort=lambda: self.stats.add("aborts"))
        self.stats.add("commits")
        return new

    def lua_incr(self, name: str, by: int = 1) -> int:
        """The whole read-modify-write as one Lua script: one round trip, nothing to retry."""
        self.stats.add("attempts")
        self.stats.add("commits")
        return int(self._incr(keys=[self.key(name)], args=[by]))

    def cas(self, name: str, expected: str | int | None, new: str | int) -> bool:
        """Compare-and-set: write ``new`` only if the key still holds ``expected`` (None: absent)."""
        return self._cas(self.key(name), expected, new)

    def cas_incr(self, name: str, by: int = 1) -> int:
        """Optimistic increment without WATCH: GET, then CAS(old -> old+by); retry if it failed."""
        key = self.key(name)
        for _ in range(self.max_retries):
            raw = self.r.get(key)
            current = int(raw or 0)
            call_hook(self.hooks, "after_get", name, current)
            self.stats.add("attempts")
            if self.cas(name, raw, current + by):
                self.stats.add("commits")
                return current + by
            self.stats.add("aborts")
        raise RetriesExhausted(f"{key}: {self.max_retries} CAS attempts all failed")


class Accounts:
    """Account balances in Redis strings, and money moved between them.

    The invariant: a transfer moves money, it never creates or destroys any, and no balance goes
    below zero. ``naive_transfer`` breaks it when two transfers from the same account overlap::

        time 0  T1: GET acct:a -> 100   (wants to send 80 to b: 100 >= 80, ok)
        time 1  T2: GET acct:a -> 100   (wants to send 80 to c: 100 >= 80, ok)
        time 2  T2: SET acct:a 20, SET acct:c 80
        time 3  T1: SET acct:a 20, SET acct:b 80    <- 160 paid out of 100

    ``watch_transfer`` (WATCH both keys) and ``transfer`` (one Lua script) keep it.

    Hooks: ``"after_read"`` is called with ``(src_balance, dst_balance)`` after the balances are
    read and checked, before anything is written (naive and WATCH paths).

    Cluster note: keys used together in a WATCH or a script must hash to one slot; name accounts
    with a hash tag (``acct:{bank}:a``) there.
    """

    # KEYS[1] = source account, KEYS[2] = destination account
    # ARGV[1] = amount (a positive integer)
    # Returns the source's new balance; or an error reply "INSUFFICIENT_FUNDS <balance>" with
    # nothing changed. The check comes before the first write: Lua has no rollback either.
    LUA_TRANSFER = """
    local amount = tonumber(ARGV[1])
    local have = tonumber(redis.call('GET', KEYS[1]) or '0')
    if have < amount then
      return redis.error_reply('INSUFFICIENT_FUNDS ' .. have)
    end
    redis.call('DECRBY', KEYS[1], amount)
    redis.call('INCRBY', KEYS[2], amount)
    return have - amount
    """

    def __init__(self, r: redis.Redis, *, prefix: str = "acct",
                 hooks: dict[str, Callable[..., Any]] | None = None, max_retries: int = 1000) -> None:
        self.r = r
        self.prefix = prefix
        self.hooks = hooks
        self.max_retries = max_retries
        self.stats = TxStats()
        self._transfer = r.register_script(self.LUA_TRANSFER)

    def key(self, account: str) -> str:
        return f"{self.prefix}:{account}"

    def open(self, **balances: int) -> None:
        """Set opening balances: ``accounts.open(a=100, b=0)``."""
        self.r.mset({self.key(a): int(v) for a, v in balances.items()})

    def balance(self, account: str) -> int:
        return int(self.r.get(self.key(account)) or 0)

    def balances(self, *accounts: str) -> dict[str, int]:
        values = self.r.mget([self.key(a) for a in accounts])
        return {a: int(v or 0) for a, v in zip(accounts, values)}

    def total(self, *accounts: str) -> int:
        return sum(self.balances(*accounts).values())

    @staticmethod
    def _check(amount: int) -> None:
        if amount <= 0:
            raise ValueError("amount must be a positive integer")

    def naive_transfer(self, src: str, dst: str, amount: int) -> int:
        """Read both balances, check, write both: correct alone, wrong when two overlap."""
        self._check(amount)
        s, d = self.balances(src, dst).values()
        if s < amount:
            raise InsufficientFunds(f"{src} has {s}, needs {amount}")
        call_hook(self.hooks, "after_read", s, d)
        self.r.set(self.key(src), s - amount)
        self.r.set(self.key(dst), d + amount)
        return s - amount

    def watch_transfer(self, src: str, dst: str, amount: int) -> int:
        """The same steps inside WATCH src dst ... MULTI ... EXEC, retried on abort."""
        self._check(amount)
        ks, kd = self.key(src), self.key(dst)
        with self.r.pipeline(transaction=True) as pipe:
            for _ in range(self.max_retries):
                try:
                    pipe.watch(ks, kd)
                    s, d = (int(v or 0) for v in pipe.mget(ks, kd))
                    if s < amount:
                        pipe.unwatch()  # leave the connection clean before giving up
                        raise InsufficientFunds(f"{src} has {s}, needs {amount}")
                    call_hook(self.hooks, "after_read", s, d)
                    pipe.multi()
                    pipe.set(ks, s - amount)
                    pipe.set(kd, d + amount)
                    self.stats.add("attempts")
                    pipe.execute()
                    self.stats.add("commits")
                    return s - amount
                except redis.WatchError:
                    self.stats.add("aborts")
        raise RetriesExhausted(f"transfer {src}->{dst}: {self.max_retries} attempts aborted")

    def transfer(self, src: str, dst: str, amount: int) -> int:
        """The check and both writes in one Lua script (one round trip, no retries)."""
        self._check(amount)
        try:
            return int(self._transfer(keys=[self.key(src), self.key(dst)], args=[amount]))
        except redis.ResponseError as exc:
            if str(exc).startswith("INSUFFICIENT_FUNDS"):
                raise InsufficientFunds(f"{src} has {str(exc).split()[1]}, needs {amount}") from None
            raise


class ShadowHash:
    """Replace a whole hash so that readers never see it half-built.

    ``naive_rebuild`` deletes the live hash and writes the new fields in chunks (a big hash is
    written in several round trips). A reader between two chunks sees a missing key or a partial
    hash. ``rebuild`` writes the chunks to a private temporary key and then ``RENAME``s it over
    the live key: one atomic command, so a reader sees the old hash or the new one::

        naive:   DEL live · HSET live chunk1 · [reader: 1/3 of the fields] · HSET live chunk2 ...
        shadow:  HSET tmp chunk1 · [reader: the whole old hash] · ... · RENAME tmp live

    Details that matter: ``RENAME`` gives the live key the *temporary* key's TTL (none, unless
    you set one), so ``rebuild`` sets the TTL on the temporary key inside the same ``MULTI``; the
    temporary key gets a safety TTL while it is built, so a writer that dies mid-build leaves no
    garbage; each rebuild uses its own temporary name, so two writers cannot mix their fields.
    ``RENAME`` frees the old value on the main thread (``lazyfree-lazy-server-del`` is ``no`` by
    default): for a huge hash, turn that on or ``UNLINK`` separately. In a cluster ``RENAME``
    needs both names in one slot (CROSSSLOT otherwise): the temporary name keeps the live key's
    hash tag, or makes the live key's whole name its tag (``{profile:p1}:building:<id>``).

    Hooks: ``"after_chunk"`` is called with ``(chunk_index, fields_written)`` after each chunk.
    """

    def __init__(self, r: redis.Redis, *, prefix: str = "profile", chunk: int = 100,
                 build_ttl: float = 60.0, hooks: dict[str, Callable[..., Any]] | None = None) -> None:
        self.r = r
        self.prefix = prefix
        self.chunk = chunk
        self.build_ttl = build_ttl
        self.hooks = hooks

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    @staticmethod
    def temp_name(key: str) -> str:
        """A private name for a rebuild of ``key``, in the same cluster slot as ``key``."""
        suffix = f":building:{uuid.uuid4().hex[:12]}"
        for tmp in (key + suffix, "{" + key + "}" + suffix):  # keep key's hash tag, or make key the tag
            if key_slot(tmp.encode()) == key_slot(key.encode()):
                return tmp
        raise ValueError(f"{key!r}: give the key a hash tag, e.g. 'profile:{{p1}}'")

    def _chunks(self, mapping: dict[str, Any]):
        items = list(mapping.items())
        for i in range(0, len(items), self.chunk):
            yield dict(items[i:i + self.chunk])

    def naive_rebuild(self, name: str, mapping: dict[str, Any]) -> None:
        """DEL, then HSET chunk by chunk, on the live key."""
        key = self.key(name)
        self.r.delete(key)
        written = 0
        for i, part in enumerate(self._chunks(mapping)):
            self.r.hset(key, mapping=part)
            written += len(part)
            call_hook(self.hooks, "after_chunk", i, written)

    def rebuild(self, name: str, mapping: dict[str, Any], *, ttl: float | None = None) -> str:
        """Build under a temporary name, then RENAME it over the live key. Returns the temp name."""
        key = self.key(name)
        tmp = self.temp_name(key)
        written = 0
        for i, part in enumerate(self._chunks(mapping)):
            with self.r.pipeline(transaction=False) as p:
                p.hset(tmp, mapping=part)
                p.pexpire(tmp, int(self.build_ttl * 1000))  # garbage-collects a crashed build
                p.execute()
            written += len(part)
            call_hook(self.hooks, "after_chunk", i, written)
        with self.r.pipeline(transaction=True) as p:  # MULTI: TTL and swap land together
            if ttl is None:
                p.persist(tmp)
            else:
                p.pexpire(tmp, int(ttl * 1000))
            p.rename(tmp, key)
            p.execute()
        return tmp


@dataclass(frozen=True)
class Outcome:
    """What :meth:`Idempotency.run` did: the result, and whether this call executed it."""

    result: Any
    executed: bool


class Idempotency:
    """Apply a side effect once per request id, however many times the request is retried.

    ``SET idem:<id> <claim> NX PX <lease>`` claims the id; only the caller that gets ``OK`` runs
    the side effect, then stores the result over its claim, *if the key still holds its claim*
    (:attr:`LUA_STORE`). Later calls with the same id get the stored result back without running
    anything. A concurrent call that finds a claim waits for the result (or raises
    :class:`InProgress` with ``wait=0``). If the side effect raises, the claim is deleted so a
    retry can run it.

    The naive check-then-act (GET; if absent, run; SET) lets two overlapping retries both see
    "absent" and both run::

        time 0  retry 1: GET idem:42 -> nil
        time 1  retry 2: GET idem:42 -> nil
        time 2  retry 1: charge card;  retry 2: charge card     <- charged twice

    The lease is a time limit, and a slow side effect can outlive it::

        time 0   A: SET idem:42 claimA NX PX 30000 -> OK; calls the payment provider (slow)
        time 30  the claim expires
        time 31  B (a retry): SET idem:42 claimB NX PX 30000 -> OK; charges again
        time 32  A: store result -> refused (the key holds claimB), LeaseExpired

    Checking the claim when storing keeps A from overwriting B's claim or result, but the card
    was charged twice all the same: no lease can prevent that. The guard for an external side
    effect is at the resource: the payment provider's idempotency key, a UNIQUE index.

    Hooks: ``"after_check"`` is called with ``(request_id,)`` in ``naive_run`` between the GET and
    the side effect.
    """

    PENDING = "__pending__"

    # KEYS[1] = idempotency key
    # ARGV[1] = the claim marker this caller set
    # Deletes the key only if it still holds our claim; returns 1 if deleted, else 0.
    LUA_RELEASE = """
    if redis.call('GET', KEYS[1]) == ARGV[1] then
      return redis.call('DEL', KEYS[1])
    end
    return 0
    """

    # KEYS[1] = idempotency key
    # ARGV[1] = the claim marker this caller set, ARGV[2] = the result (JSON), ARGV[3] = TTL in ms
    # Stores the result only if the key still holds our claim: returns 1 if stored; 0 if our
    # lease expired (the key is gone, or another caller has claimed the id since).
    LUA_STORE = """
    if redis.call('GET', KEYS[1]) == ARGV[1] then
      redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
      return 1
    end
    return 0
    """

    def __init__(self, r: redis.Redis, *, prefix: str = "idem", ttl: float = 86400,
                 lease: float = 30.0, hooks: dict[str, Callable[..., Any]] | None = None) -> None:
        self.r = r
        self.prefix = prefix
        self.ttl = ttl
        self.lease = lease
        self.hooks = hooks
        self._release = r.register_script(self.LUA_RELEASE)
        self._store = r.register_script(self.LUA_STORE)

    def key(self, request_id: str) -> str:
        return f"{self.prefix}:{request_id}"

    def naive_run(self, request_id: str, fn: Callable[[], Any]) -> Outcome:
        key = self.key(request_id)
        stored = self.r.get(key)
        if stored is not None:
            return Outcome(json.loads(stored), False)
        call_hook(self.hooks, "after_check", request_id)
        result = fn()
        self.r.set(key, json.dumps(result), px=int(self.ttl * 1000))
        return Outcome(result, True)

    def run(self, request_id: str, fn: Callable[[], Any], *, wait: float = 10.0) -> Outcome:
        """Run ``fn()`` once for ``request_id``; every call returns the same (JSON-able) result.

        Raises :class:`LeaseExpired` if ``fn`` outlived the lease (its result is then not stored).
        """
        key = self.key(request_id)
        deadline = time.monotonic() + wait
        while True:
            marker = f"{self.PENDING}{uuid.uuid4().hex}"
            if self.r.set(key, marker, nx=True, px=int(self.lease * 1000)):
                try:
                    result = fn()
                except BaseException:
                    self._release(keys=[key], args=[marker])  # let a retry run it
                    raise
                if not self._store(keys=[key], args=[marker, json.dumps(result), int(self.ttl * 1000)]):
                    raise LeaseExpired(
                        f"request {request_id!r}: the side effect ran, but the {self.lease:g} s lease "
                        "expired first, so its result was not stored; another caller may have run it "
                        "too (only a unique constraint at the resource prevents that)")
                return Outcome(result, True)
            stored = self.r.get(key)
            if isinstance(stored, bytes):
                stored = stored.decode()
            if stored is not None and not stored.startswith(self.PENDING):
                return Outcome(json.loads(stored), False)
            if time.monotonic() >= deadline:
                raise InProgress(f"request {request_id!r} is still being processed")
            time.sleep(0.005)  # poll until the first caller stores its result (or gives up)


class OneTimeToken:
    """A token (a password-reset link, an invite code) that may be redeemed exactly once.

    Redis already has single commands that read *and* change a key: ``GETDEL`` (read and delete),
    ``SET ... GET`` (write and return the old value), ``GETEX`` (read and change the TTL),
    ``LMOVE`` (pop from one list, push to another). Where one of them fits, it is the whole
    pattern. The naive redeem is GET then DEL, and two clicks in flight both get the token::

        time 0  click 1: GET token:abc -> "user 42"
        time 1  click 2: GET token:abc -> "user 42"
        time 2  click 1: DEL;  click 2: DEL                 <- redeemed twice

    Hooks: ``"after_get"`` is called with ``(token, value)`` in ``naive_redeem`` between the
    GET and the DEL.
    """

    def __init__(self, r: redis.Redis, *, prefix: str = "token", ttl: float = 900.0,
                 hooks: dict[str, Callable[..., Any]] | None = None) -> None:
        self.r = r
        self.prefix = prefix
        self.ttl = ttl
        self.hooks = hooks

    def key(self, token: str) -> str:
        return f"{self.prefix}:{token}"

    def issue(self, token: str, value: str) -> None:
        self.r.set(self.key(token), value, px=int(self.ttl * 1000))

    def naive_redeem(self, token: str) -> str | None:
        """GET, then DEL: two round trips; overlapping redeems all get the value."""
        value = self.r.get(self.key(token))
        call_hook(self.hooks, "after_get", token, value)
        if value is not None:
            self.r.delete(self.key(token))
        return value

    def redeem(self, token: str) -> str | None:
        """``GETDEL``: the value to exactly one caller, ``None`` to every other."""
        return self.r.getdel(self.key(token))
