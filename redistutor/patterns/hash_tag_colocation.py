"""Hash-tag co-location: put an entity's keys in one cluster slot so multi-key commands work.

Redis Cluster splits the keyspace into 16384 slots, ``slot = CRC16(key) mod 16384``, and every
command that touches several keys (MSET, MGET, MULTI/EXEC, Lua with several KEYS, LMOVE, RENAME,
SUNIONSTORE...) must find them all in one slot. If a key contains ``{...}``, only the part between
the first ``{`` and the next ``}`` is hashed, so ``user:{123}:profile`` and
``user:{123}:settings`` always share a slot. The rule, exactly as the server applies it::

    "user:{123}:profile"  -> hashes "123"
    "{user}{x}"           -> hashes "user"      (the first "{" and the "}" after it)
    "a{}b", "{}"          -> hashes the whole key (an empty tag does not count)
    "{a", "a}b"           -> hashes the whole key (no closing "}" after a "{")

What goes wrong:

* no tag: the keys scatter, and every multi-key command is refused (CROSSSLOT);
* a tag that is too coarse (``{US}``, ``{global}``): every key of it is in one slot, on one node,
  which becomes the hot and full one; an entity can never be split across nodes;
* resharding moves a slot as a whole, so tagged keys move together; while it moves, multi-key
  commands on it get ASK/TRYAGAIN, and clients with a stale slot map get MOVED: a transaction
  has to be retried (:func:`retry_redirects`).

Measurements and views (keys per node and per slot, load, probes of a half-moved slot, charts)
live in :mod:`redistutor.scenarios.hash_tag_colocation`.

Notebook: notebooks/11-hash-tag-colocation.ipynb
Redis: https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/#hash-tags ·
CLUSTER KEYSLOT: https://redis.io/commands/cluster-keyslot
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from redis.exceptions import AskError, ClusterError, MovedError, TryAgainError, WatchError

from ..race import call_hook

SLOTS = 16384
T = TypeVar("T")


# -- the hashing rule ---------------------------------------------------------------------------


def crc16(data: bytes) -> int:
    """CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection (cluster spec)."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def hashed_part(key: str | bytes) -> bytes:
    """The bytes Redis hashes: the first ``{...}`` if non-empty, else the whole key."""
    k = key.encode() if isinstance(key, str) else key
    start = k.find(b"{")
    if start != -1:
        end = k.find(b"}", start + 1)
        if end > start + 1:
            return k[start + 1:end]
    return k


def key_slot(key: str | bytes) -> int:
    """What ``CLUSTER KEYSLOT key`` answers, computed locally."""
    return crc16(hashed_part(key)) % SLOTS


# -- keys of one entity -------------------------------------------------------------------------


class EntityKeys:
    """An entity's key names, tagged so that they share one cluster slot.

    ``EntityKeys("user").key(123, "profile")`` is ``user:{123}:profile``: only ``123`` is hashed.
    With ``tagged=False`` it is ``user:123:profile`` (the parts scatter over slots).
    """

    def __init__(self, prefix="user", *, tagged=True):
        self.prefix, self.tagged = prefix, tagged

    def key(self, entity, part):
        ident = f"{{{entity}}}" if self.tagged else str(entity)
        return f"{self.prefix}:{ident}:{part}"

    def keys(self, entity, *parts):
        return [self.key(entity, p) for p in parts]


def update_user(rc, names, user_id, profile, settings):
    """One transaction over three of the user's keys: it runs only if they share a slot."""
    p = rc.pipeline(transaction=True)  # MULTI ... EXEC
    p.hset(names.key(user_id, "profile"), mapping=dict(profile))
    p.hset(names.key(user_id, "settings"), mapping=dict(settings))
    p.incr(names.key(user_id, "stats:updates"))
    return p.execute()


# -- retrying multi-key work across redirects -----------------------------------------------------


REDIRECTS = (MovedError, AskError, TryAgainError, ClusterError)


def retry_redirects(fn: Callable[[], T], *, attempts: int = 5, backoff: float = 0.05,
                    on_retry: Callable[[int, Exception], None] | None = None) -> T:
    """Call ``fn()``; on MOVED / ASK / TRYAGAIN (a slot that moved or is moving) back off and retry.

    A single-key command follows redirects by itself. A transaction or a multi-key command cannot:
    on MOVED the client refreshes its slot map and the next attempt goes to the new owner; on
    ASK/TRYAGAIN the slot is half-migrated and the command works again once it has moved.
    """
    if attempts < 1:
        raise ValueError(f"attempts={attempts}: pass 1 or more (1 = a single try, no retry)")
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except REDIRECTS as exc:
            if attempt == attempts:
                raise
            if on_retry is not None:
                on_retry(attempt, exc)
            time.sleep(backoff * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


class UserStore:
    """A user's profile, settings, counters and sessions, co-located by the ``{user_id}`` tag.

    Every method touches several keys at once, which only works in a cluster when they share a
    slot: :meth:`update` (MULTI/EXEC), :meth:`merge` (one Lua script over 3 keys) and
    :meth:`activate_session` (LMOVE). Pass ``tagged=False`` to watch each one be refused.

    Args:
        rc: a cluster client (``redis.cluster.RedisCluster``) or a plain client.
        prefix: key prefix (``user`` -> ``user:{42}:profile``).
        tagged: put the user id in braces (the pattern) or not (the failure).
        attempts: tries per multi-key operation across MOVED/ASK/TRYAGAIN (1 = no retry).
        hooks: ``"after_watch"(user_id, balance)`` in :meth:`reserve`, between WATCH and MULTI.
    """

    # KEYS[1] = user:{id}:profile (hash)   KEYS[2] = user:{id}:settings (hash)
    # KEYS[3] = user:{id}:cache (hash, overwritten)
    # ARGV    = none
    # Returns the number of fields written to the cache: profile's fields, then settings' (a
    # settings field wins on a name clash). Atomic: no writer can change either hash in between.
    LUA_MERGE = """
    redis.call('DEL', KEYS[3])
    local n = 0
    for i = 1, 2 do
      local fields = redis.call('HGETALL', KEYS[i])
      for j = 1, #fields, 2 do
        redis.call('HSET', KEYS[3], fields[j], fields[j + 1])
      end
      n = n + #fields / 2
    end
    return n
    """

    def __init__(self, rc: Any, *, prefix: str = "user", tagged: bool = True, attempts: int = 3,
                 hooks: dict[str, Callable[..., Any]] | None = None) -> None:
        self.rc = rc
        self.names = EntityKeys(prefix, tagged=tagged)
        self.attempts = attempts
        self.hooks = hooks
        self.retries = 0
        self.conflicts = 0  # EXECs aborted by WATCH in reserve()

    def key(self, user_id: Any, part: str) -> str:
        return self.names.key(user_id, part)

    def _retry(self, fn: Callable[[], T]) -> T:
        def count(attempt: int, exc: Exception) -> None:
            self.retries += 1

        return retry_redirects(fn, attempts=self.attempts, on_retry=count)

    def update(self, user_id: Any, profile: Mapping[str, Any], settings: Mapping[str, Any]) -> list:
        """:func:`update_user`: MULTI · HSET profile · HSET settings · INCR stats:updates · EXEC,
        retried across redirects."""
        return self._retry(lambda: update_user(self.rc, self.names, user_id, profile, settings))

    def merge(self, user_id: Any) -> int:
        """EVAL :attr:`LUA_MERGE` over profile, settings and cache: one atomic 3-key script."""
        keys = self.names.keys(user_id, "profile", "settings", "cache")
        return int(self._retry(lambda: self.rc.eval(self.LUA_MERGE, 3, *keys)))

    def activate_session(self, user_id: Any) -> str | None:
        """LMOVE the oldest pending session to the active list (two keys, one command)."""
        src, dst = self.names.keys(user_id, "sessions:pending", "sessions:active")
        return self._retry(lambda: self.rc.lmove(src, dst, "LEFT", "RIGHT"))

    def reserve(self, user_id: Any, amount: int, *, max_tries: int = 10) -> tuple[int, int] | None:
        """Move ``amount`` from ``balance`` to ``pending``, optimistically: WATCH both keys, read the
        balance, then MULTI · DECRBY balance · INCRBY pending · EXEC. If another client changed
        either key after WATCH, EXEC aborts (WatchError) and we re-read and decide again.

        Returns ``(balance, pending)`` after the move, or None if the balance is too small.
        """
        balance_key, pending_key = self.names.keys(user_id, "balance", "pending")
        for _ in range(max_tries):
            with self.rc.pipeline(transaction=True) as p:
                p.watch(balance_key, pending_key)
                balance = int(p.get(balance_key) or 0)
                call_hook(self.hooks, "after_watch", user_id, balance)
                if balance < amount:
                    return None
                p.multi()
                p.decrby(balance_key, amount)
                p.incrby(pending_key, amount)
                try:
                    new_balance, new_pending = p.execute()
                    return int(new_balance), int(new_pending)
                except WatchError:
                    self.conflicts += 1
        raise WatchError(f"reserve({user_id!r}): {max_tries} tries, every one lost to a concurrent write")

    def read(self, user_id: Any) -> dict[str, Any]:
        """Every part, one key at a time (single-key reads follow redirects on their own)."""
        return {
            "profile": self.rc.hgetall(self.key(user_id, "profile")),
            "settings": self.rc.hgetall(self.key(user_id, "settings")),
            "updates": self.rc.get(self.key(user_id, "stats:updates")),
        }


# -- the slot map ----------------------------------------------------------------------------------


def parse_ranges(slots_of: Mapping[str, Iterable[str]]) -> list[tuple[int, int, str]]:
    """``{"m1": ["0-5460"], ...}`` (as ``Cluster.slots_of`` gives) -> sorted (start, end, node)."""
    out = []
    for node, ranges in slots_of.items():
        for r in ranges:
            a, _, b = r.partition("-")
            out.append((int(a), int(b or a), node))
    return sorted(out)


def owner_of(slot: int, ranges: list[tuple[int, int, str]]) -> str:
    for a, b, node in ranges:
        if a <= slot <= b:
            return node
    raise KeyError(f"slot {slot} has no owner")
