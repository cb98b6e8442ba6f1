"""Exercises for notebooks/15-streams-event-sourcing.ipynb.

1. ``balance_at`` (a new view of the log): ``balance_at(r, key, at_ms)``, the balance as it was at
   time ``at_ms``, replaying only the events up to it. Stream ids start with their time in ms, so
   the checker appends events with known ids, several of them in one millisecond.
2. ``apply_once`` (a new case: a projector fed twice): ``apply_once(r, view, entry_id, amount)``
   applies an event to the read model only if it is newer than the last one applied, atomically.
   The checker redelivers events, orders ids across a digit boundary ("9-0" < "10-0"), and
   redelivers the same event from another consumer right after your code reads the view.
3. ``deliveries_prediction`` (the notebook's "Try it"): how many deliveries do ``groups`` consumer
   groups with ``consumers`` consumers each get from a stream of 100 events? Checked on the server.
"""

from __future__ import annotations

import inspect
from typing import Any

import redis

from ..check import Exercise, expect
from ..patterns.streams_event_sourcing import fold

# -- reference solutions (self-tested in tests/exercises/test_streams_event_sourcing.py) ----------


def balance_at(r: redis.Redis, key: str, at_ms: int) -> int:
    balance = 0
    for _, event in r.xrange(key, "-", at_ms):   # end id "1000" = every entry of ms 1000
        balance = fold(balance, event)
    return balance


APPLY_ONCE = """
local last = redis.call('HGET', KEYS[1], 'last_id') or '0-0'
local lms, lseq = string.match(last, '(%d+)-(%d+)')
local ms, seq = string.match(ARGV[1], '(%d+)-(%d+)')
lms, lseq, ms, seq = tonumber(lms), tonumber(lseq), tonumber(ms), tonumber(seq)
if ms < lms or (ms == lms and seq <= lseq) then
  return 0
end
redis.call('HINCRBY', KEYS[1], 'balance', ARGV[2])
redis.call('HSET', KEYS[1], 'last_id', ARGV[1])
return 1
"""


def apply_once(r: redis.Redis, view: str, entry_id: str, amount: int) -> bool:
    return bool(r.eval(APPLY_ONCE, 1, view, entry_id, amount))


# -- exercise 1 ---------------------------------------------------------------------------------

HISTORY = [("1000-0", "deposited", 100), ("1000-1", "deposited", 50), ("2000-0", "withdrawn", 30),
           ("3500-0", "deposited", 200), ("5000-0", "withdrawn", 120)]
QUERIES = {999: 0, 1000: 150, 1999: 150, 2000: 120, 3000: 120, 5000: 200, 10_000: 200}


class _ReadCounter:
    """A client that notes the latest event time any stream read returned."""

    def __init__(self, r: redis.Redis) -> None:
        self._r, self.latest_ms = r, -1

    def _note(self, entries: Any) -> Any:
        for entry_id, _ in entries or []:
            self.latest_ms = max(self.latest_ms, int(entry_id.split("-")[0]))
        return entries

    def xrange(self, *args: Any, **kwargs: Any) -> Any:
        return self._note(self._r.xrange(*args, **kwargs))

    def xrevrange(self, *args: Any, **kwargs: Any) -> Any:
        return self._note(self._r.xrevrange(*args, **kwargs))

    def xread(self, *args: Any, **kwargs: Any) -> Any:
        reply = self._r.xread(*args, **kwargs)   # RESP3: {key: [entries]}; RESP2: [[key, entries]]
        batches = [b for v in reply.values() for b in v] if isinstance(reply, dict) else [e for _, e in reply]
        for batch in batches:
            self._note(batch)
        return reply

    def __getattr__(self, name: str) -> Any:
        return getattr(self._r, name)


def balance_at_exercise(r: redis.Redis, prefix: str = "ex1") -> Exercise:
    """Exercise 1: ``balance_at(r, key, at_ms) -> int``."""

    def checker(answer) -> None:
        key = f"{prefix}:account:9:events"
        r.delete(key)
        try:
            for entry_id, kind, amount in HISTORY:
                r.xadd(key, {"type": kind, "amount": amount}, id=entry_id)
            for at_ms, want in QUERIES.items():
                spy = _ReadCounter(r)
                got = answer(spy, key, at_ms)
                expect(got == want, f"the balance at {at_ms} ms counts every event with an id up to "
                       f"{at_ms}-<any sequence> (events 1000-0 and 1000-1 share a millisecond)",
                       expected=want, actual=got)
                expect(spy.latest_ms <= at_ms, f"replay only what happened up to {at_ms} ms: your code "
                       f"read an event of {spy.latest_ms} ms (XRANGE's end id can be a time)",
                       expected=f"no event after {at_ms} ms read", actual=f"read up to {spy.latest_ms} ms")
        finally:
            r.delete(key)

    return Exercise(
        "balance at a point in time", checker,
        hints=[
            "An entry id is <milliseconds>-<sequence>: the log is already sorted by time.",
            "XRANGE key - <at_ms> returns every entry up to and including that millisecond "
            "(an end id without a sequence means all sequences of that ms); fold them from 0.",
        ],
        solution=inspect.getsource(balance_at), reference=balance_at,
    )


# -- exercise 2 ---------------------------------------------------------------------------------


class _RedeliverAfterRead:
    """A client on which, right after the learner's code first reads the view, another consumer
    applies the same event (a redelivery), with the reference solution."""

    def __init__(self, r: redis.Redis, view: str, entry_id: str, amount: int) -> None:
        self._r, self._view, self._event = r, view, (entry_id, amount)
        self.injected = False

    def _after_read(self, value: Any) -> Any:
        if not self.injected:
            self.injected = True
            apply_once(self._r, self._view, *self._event)
        return value

    def hget(self, name: str, *args: Any) -> Any:
        return self._after_read(self._r.hget(name, *args)) if name == self._view else self._r.hget(name, *args)

    def hgetall(self, name: str) -> Any:
        return self._after_read(self._r.hgetall(name)) if name == self._view else self._r.hgetall(name)

    def hmget(self, name: str, *args: Any) -> Any:
        return self._after_read(self._r.hmget(name, *args)) if name == self._view else self._r.hmget(name, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._r, name)


def apply_once_exercise(r: redis.Redis, prefix: str = "ex2") -> Exercise:
    """Exercise 2: ``apply_once(r, view, entry_id, amount) -> bool``."""

    def checker(answer) -> None:
        view = f"{prefix}:account:9:view"
        r.delete(view)

        def state() -> tuple:
            return int(r.hget(view, "balance") or 0), r.hget(view, "last_id")

        try:
            steps = [("9-0", 100, True, (100, "9-0"), "the first event is applied"),
                     ("9-0", 100, False, (100, "9-0"), "the same event delivered again is skipped"),
                     ("10-0", -30, True, (70, "10-0"), "10-0 is newer than 9-0 (compare the numbers, "
                      "not the strings: '10-0' < '9-0' as text)"),
                     ("10-1", 5, True, (75, "10-1"), "10-1 is newer than 10-0 (same ms, next sequence)"),
                     ("10-0", -30, False, (75, "10-1"), "an older event delivered late is skipped")]
            for entry_id, amount, applied, want, what in steps:
                got = answer(r, view, entry_id, amount)
                expect(bool(got) is applied and state() == want, what,
                       expected=f"{applied}, (balance, last_id) = {want}", actual=f"{got!r}, {state()}")
            spy = _RedeliverAfterRead(r, view, "20-0", 40)
            answer(spy, view, "20-0", 40)
            expect(state() == (115, "20-0"),
                   "the check and the update must be one atomic step: right after your code read the "
                   "view, another consumer applied the same event 20-0 (+40), and it was applied twice",
                   expected="(115, '20-0')", actual=state())
        finally:
            r.delete(view)

    return Exercise(
        "apply each event once", checker,
        hints=[
            "Keep last_id in the view and apply an event only if its id is greater; both in one step.",
            "Compare ids as two numbers (milliseconds, then sequence), in a Lua script that also does "
            "the HINCRBY and the HSET: string.match(id, '(%d+)-(%d+)') splits one.",
        ],
        solution=inspect.getsource(apply_once).replace(
            "def apply_once", f"APPLY_ONCE = '''{APPLY_ONCE}'''\n\n\ndef apply_once"),
        reference=apply_once,
    )


# -- Try it -------------------------------------------------------------------------------------


def deliveries_prediction(server: Any, groups: int, consumers: int, prefix: str = "try") -> Exercise:
    """Try it: ``groups`` consumer groups, each with ``consumers`` consumers, read a stream of 100
    events to the end. The answer is the total number of entries delivered (over every consumer)."""
    from ..scenarios.streams_event_sourcing import append_all, generate_events, groups_trial

    def run() -> int:
        key = f"{prefix}:account:8:events"
        c = server.client()
        c.delete(key)
        append_all(c, key, generate_events(100, seed=8))
        got = groups_trial(server, key, groups={f"g{i}": consumers for i in range(1, groups + 1)})
        c.delete(key)
        c.close()
        return sum(len(ids) for per_group in got.values() for ids in per_group.values())

    def checker(answer) -> None:
        got = run()
        expect(answer == got, f"{groups} group(s) x {consumers} consumer(s) on 100 events: the server "
               f"delivered {got} entries in total", expected=got, actual=answer)

    return Exercise(
        f"deliveries to {groups} groups of {consumers}", checker,
        hints=["Each group gets its own copy of the stream; inside a group each entry goes to one consumer.",
               "The number of consumers per group does not change how many entries the group receives."],
        solution="prediction = groups * 100", reference=None,
    )
