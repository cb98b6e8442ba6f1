"""Event sourcing on a Redis stream: an account is its log of events, and its state is a fold.

Each account's events go into one stream (``XADD``): ``deposited 100``, ``withdrawn 30``... The
balance is never stored as the truth; it is derived by replaying the log (``XRANGE`` in batches)
through :func:`fold`. A snapshot (state + the id of the last event in it) shortens the replay to
the tail after it; a projector keeps a read model up to date and must never apply an event twice.

Why appends need an expected version (two writers, one account with 100)::

    time 0  A: replay -> balance 100, version 5      A may withdraw 80
    time 1  B: replay -> balance 100, version 5      B may withdraw 80
    time 2  B: XADD withdrawn 80 -> ok               version 6
    time 3  A: XADD withdrawn 80 -> ok               balance -60: a rule the writers checked is broken

:class:`EventStore` appends with a Lua script that compares the stream's length (the version) with
the version the writer decided on, and refuses the append (``VERSION <n>``) if another writer got
there first. The loser re-reads and decides again (:func:`withdraw`).

Why the projector's checkpoint must move with its projection: a projector that updates the read
model and *then* records "last applied id" can die in between; restarted from the old checkpoint,
it applies that event a second time. :func:`apply_event` writes both in one ``MULTI``/``EXEC``.

Notebook: notebooks/15-streams-event-sourcing.ipynb
Redis: https://redis.io/docs/latest/develop/data-types/streams/ (XADD: https://redis.io/commands/xadd,
XRANGE: https://redis.io/commands/xrange, EVAL: https://redis.io/commands/eval)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from ..race import call_hook

__all__ = [
    "EventStore", "NaiveEventStore", "VersionConflict", "apply_event", "apply_event_naive",
    "fold", "project", "take_snapshot", "version_of", "withdraw",
]


class EventStore:
    """One account's events in one stream; an append needs the version its writer read."""

    # KEYS[1] = the account's stream; ARGV[1] = the expected version (how many events the
    # writer read before deciding); ARGV[2..] = the event's field/value pairs.
    # Returns the new entry's id, or the error "VERSION <n>" if the stream holds n events instead.
    LUA_APPEND = """
    local version = redis.call('XLEN', KEYS[1])
    if version ~= tonumber(ARGV[1]) then
      return redis.error_reply('VERSION ' .. version)
    end
    return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
    """

    def __init__(self, r, key):
        self.r, self.key = r, key

    def append(self, expected_version, **event):
        pairs = [x for field in event.items() for x in field]
        return self.r.eval(self.LUA_APPEND, 1, self.key, expected_version, *pairs)

    def replay(self, fold, state, after="0-0", batch=500):
        """Fold the events after id `after` into state: (state, last id, entries read)."""
        read = 0
        while entries := self.r.xrange(self.key, f"({after}", "+", count=batch):
            for _, event in entries:
                state = fold(state, event)
            after, read = entries[-1][0], read + len(entries)
        return state, after, read


def fold(balance, event):
    """The projection's one rule: how an event changes the balance."""
    amount = int(event["amount"])
    return balance + amount if event["type"] == "deposited" else balance - amount


def apply_event(r, view, entry_id, event):
    """Apply one event to the read model `view` and record it as applied, in one MULTI/EXEC."""
    with r.pipeline(transaction=True) as tx:          # queued here, sent together at execute()
        tx.hincrby(view, "balance", fold(0, event))
        tx.hincrby(view, "events", 1)
        tx.hset(view, "last_id", entry_id)           # the checkpoint moves with the balance
        tx.execute()


# -- beyond the cells: the naive variants, a command handler, snapshots, a projector loop ----------


class VersionConflict(Exception):
    """Another writer appended first: re-read the account and decide again."""

    def __init__(self, actual: int) -> None:
        super().__init__(f"another writer appended first: the stream now holds {actual} events")
        self.actual = actual


def version_of(exc: redis.ResponseError) -> int | None:
    """The actual version in a ``VERSION <n>`` error from :attr:`EventStore.LUA_APPEND`, else None."""
    text = str(exc)
    return int(text.split()[1]) if text.startswith("VERSION ") else None


class NaiveEventStore(EventStore):
    """The naive append, for the lesson and its tests: a plain XADD, whatever the version is now."""

    def append(self, expected_version, **event):
        return self.r.xadd(self.key, event)


def withdraw(store: EventStore, amount: int, *, retries: int = 3,
             hooks: dict[str, Callable[..., Any]] | None = None) -> str | None:
    """The command handler: replay, check the rule (no overdraft), append with the version read.

    Returns the new event's id, or None if the funds do not cover ``amount``. On a version
    conflict it re-reads and decides again, up to ``retries`` times (then raises
    :class:`VersionConflict`). Hook ``"before_append"`` (balance, version) runs between the
    decision and the append, where a race can slip in.
    """
    for _ in range(retries + 1):
        balance, _, version = store.replay(fold, 0)
        if balance < amount:
            return None
        call_hook(hooks, "before_append", balance, version)
        try:
            return store.append(version, type="withdrawn", amount=amount)
        except redis.ResponseError as exc:
            actual = version_of(exc)
            if actual is None:
                raise
            conflict = VersionConflict(actual)
    raise conflict


def apply_event_naive(r: redis.Redis, view: str, entry_id: str, event: dict) -> None:
    """The naive projector step: update the read model, *then* write the checkpoint (2 round trips).

    A crash between the two leaves the event applied but not recorded, so a projector restarted
    from the checkpoint applies it again.
    """
    r.hincrby(view, "balance", fold(0, event))
    r.hincrby(view, "events", 1)
    r.hset(view, "last_id", entry_id)


def project(r: redis.Redis, stream: str, view: str, *,
            apply: Callable[[Any, str, str, dict], None] = apply_event, batch: int = 100) -> int:
    """A projector run: read the stream after the view's checkpoint and ``apply`` every event
    (:func:`apply_event`, or :func:`apply_event_naive`). Returns the events applied."""
    after = r.hget(view, "last_id") or "0-0"
    applied = 0
    while entries := r.xrange(stream, f"({after}", "+", count=batch):
        for entry_id, event in entries:
            apply(r, view, entry_id, event)
            applied += 1
        after = entries[-1][0]
    return applied


def take_snapshot(store: EventStore, snapshot_key: str, *, upto: str = "+") -> dict:
    """Fold the events up to id ``upto`` and store {balance, last_id, version} in a hash."""
    balance, last_id, read = 0, "0-0", 0
    for entry_id, event in store.r.xrange(store.key, "-", upto):
        balance, last_id, read = fold(balance, event), entry_id, read + 1
    snap = {"balance": balance, "last_id": last_id, "version": read}
    store.r.hset(snapshot_key, mapping=snap)
    return snap
