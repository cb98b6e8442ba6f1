"""Exercises for notebooks/06-atomic-updates.ipynb.

0. ``round_trips`` (Try it): how many round trips one WATCH update costs when another client
   writes in its gap ``k`` times, checked against a real trace.
1. ``book_seats``: write ``book(r, key, seats, who)``: take every requested seat of a show (a
   hash seat -> holder) or none, even when another booking lands between your read and your
   write. A new case for WATCH (or a Lua script): several fields checked, all written or none.
2. ``lua_withdraw``: write ``withdraw(r, key, amount)``: subtract only if the balance covers it,
   in ONE round trip (a Lua script), so no interleaving is possible.
"""

from __future__ import annotations

import inspect
import threading
from typing import Any

import redis

from ..check import Exercise, expect

# -- reference solutions (self-tested in tests/exercises/test_atomic_updates.py) ----------------


def round_trips(k: int) -> int:
    return 3 * (k + 1)  # each attempt: WATCH, GET, then MULTI/SET/EXEC in one pipeline


def book(r: redis.Redis, key: str, seats: list[str], who: str) -> bool:
    with r.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(key)
                if any(holder is not None for holder in pipe.hmget(key, seats)):
                    pipe.unwatch()
                    return False
                pipe.multi()
                pipe.hset(key, mapping={seat: who for seat in seats})
                pipe.execute()
                return True
            except redis.WatchError:
                continue


BOOK_LUA = """
for i = 2, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then return 0 end
end
for i = 2, #ARGV do redis.call('HSET', KEYS[1], ARGV[i], ARGV[1]) end
return 1
"""


def book_lua(r: redis.Redis, key: str, seats: list[str], who: str) -> bool:
    return bool(r.eval(BOOK_LUA, 1, key, who, *seats))


WITHDRAW_LUA = """
local have = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
if have < amount then return -1 end
return redis.call('DECRBY', KEYS[1], amount)
"""


def withdraw(r: redis.Redis, key: str, amount: int) -> int:
    return r.eval(WITHDRAW_LUA, 1, key, amount)


# -- Try it ----------------------------------------------------------------------------------------


def watch_round_trips(r: redis.Redis, other: redis.Redis, key: str, ks: tuple[int, ...] = (0, 1, 3)) -> Exercise:
    """Try it: ``round_trips(k)`` predicts the round trips of one ``watch_update`` that another
    client interrupts ``k`` times; the checker runs it for each ``k`` and traces the commands."""
    from ..scenarios.atomic_updates import interfered_update

    def checker(answer) -> None:
        for k in ks:
            t, final = interfered_update(r, other, key, k)
            said = answer(k)
            expect(said == t.round_trips, f"with k = {k} interruptions the trace shows {t.round_trips} "
                   f"round trips ({t.count('EXEC')} EXECs, each after a WATCH and a GET)",
                   expected=t.round_trips, actual=said)

    return Exercise(
        "round trips of a WATCH update", checker,
        hints=["Count the round trips of one attempt in the trace above (the MULTI … EXEC block "
               "is sent as one), then count the attempts: every interruption costs one more."],
        solution=inspect.getsource(round_trips), reference=round_trips,
    )


# -- exercises ----------------------------------------------------------------------------------

_READS = {"HGET", "HMGET", "HGETALL", "HEXISTS", "HKEYS", "HVALS", "HLEN", "HSCAN", "HSTRLEN"}


class _Meddler(redis.Redis):
    """A client on the notebook's connection pool that lets another client book ``seat`` right
    after the answer's first read of ``key`` (on the client, or on a pipeline after WATCH)."""

    def __init__(self, base: redis.Redis, other: redis.Redis, key: str, seat: str) -> None:
        super().__init__(connection_pool=base.connection_pool)
        self.other, self.target, self.seat, self.meddled = other, key, seat, False

    def _after(self, args: tuple) -> None:
        if not self.meddled and str(args[0]).upper() in _READS and len(args) > 1 and str(args[1]) == self.target:
            self.meddled = True
            self.other.hset(self.target, self.seat, "intruder")

    def execute_command(self, *args, **options):
        result = super().execute_command(*args, **options)
        self._after(args)
        return result

    def pipeline(self, transaction=True, shard_hint=None):
        pipe = super().pipeline(transaction, shard_hint)
        immediate = pipe.immediate_execute_command

        def meddling(*args, **options):
            result = immediate(*args, **options)
            self._after(args)
            return result

        def execute(raise_on_error=True):  # reads sent in a plain (non-MULTI) pipeline count too
            stack = [args for args, _options in pipe.command_stack]
            result = run(raise_on_error)
            for args in stack:
                self._after(args)
            return result

        run = pipe.execute
        pipe.immediate_execute_command = meddling
        pipe.execute = execute
        return pipe


def book_seats(r: redis.Redis, other: redis.Redis, prefix: str = "ex1") -> Exercise:
    """Exercise 1: ``book(r, key, seats, who)`` takes all requested seats or none.

    The checker's client plays the other customer: right after your first read of the hash, it
    books a seat through a second connection (``other``), exactly in the gap between your read
    and your write.
    """

    def checker(answer) -> None:
        key = f"{prefix}:show"
        r.delete(key)
        got = answer(r, key, ["A1", "A2"], "alice")
        expect(got is True and r.hgetall(key) == {"A1": "alice", "A2": "alice"},
               "free seats are booked: returns True and the hash maps each seat to who booked it",
               expected=(True, {"A1": "alice", "A2": "alice"}), actual=(got, r.hgetall(key)))
        got = answer(r, key, ["A3", "A2"], "bob")
        expect(got is False and r.hgetall(key) == {"A1": "alice", "A2": "alice"},
               "A2 is alice's, so bob gets nothing: returns False and A3 stays free (all or none)",
               expected=(False, "A3 free, A2 alice"), actual=(got, r.hgetall(key)))

        r.delete(key)
        meddler = _Meddler(r, other, key, "B2")  # someone takes B2 right after your first read
        got = answer(meddler, key, ["B1", "B2"], "carol")
        state = r.hgetall(key)
        if meddler.meddled:
            expect(state.get("B2") == "intruder", "another customer booked B2 between your read and "
                   "your write, and you overwrote their booking: WATCH the hash before reading it, so "
                   "that EXEC refuses to write when it changed", expected={"B2": "intruder"}, actual=state)
            expect(got is False and "B1" not in state, "B2 was taken before you wrote, so carol gets "
                   "nothing: read again after an aborted EXEC, and B1 stays free",
                   expected=(False, {"B2": "intruder"}), actual=(got, state))
        else:  # no read on the client (a script): there was no gap to step into
            expect(got is True and state == {"B1": "carol", "B2": "carol"}, "free seats are booked",
                   expected=True, actual=(got, state))

        r.delete(key)
        meddler = _Meddler(r, other, key, "C9")  # someone takes an unrelated seat of the show
        got = answer(meddler, key, ["C1", "C2"], "dave")
        state = r.hgetall(key)
        expect(got is True and state.get("C1") == state.get("C2") == "dave"
               and state.get("C9") == ("intruder" if meddler.meddled else None),
               "another booking (C9) changed the hash, not your seats: after an aborted EXEC, retry "
               "with a fresh read instead of giving up", expected=True, actual=(got, state))

        r.delete(key)  # 8 customers at once, each wanting two seats its neighbours also want
        barrier = threading.Barrier(8, timeout=10)
        results: dict[int, Any] = {}

        def customer(i: int) -> None:
            barrier.wait()
            results[i] = answer(r, key, [f"S{i}", f"S{i + 1}"], f"u{i}")

        threads = [threading.Thread(target=customer, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        state = r.hgetall(key)
        wrong = [i for i, ok in results.items()
                 if (ok and not (state.get(f"S{i}") == state.get(f"S{i + 1}") == f"u{i}"))
                 or (not ok and f"u{i}" in (state.get(f"S{i}"), state.get(f"S{i + 1}")))]
        expect(len(results) == 8 and not wrong, "8 concurrent customers: each True holds both its seats, "
               "each False holds none", expected="no partial bookings", actual={"wrong": wrong, "seats": state})

    return Exercise(
        "book seats: all or none", checker,
        hints=[
            "The read and the write are separate round trips: guard them as watch_update above does. "
            "pipe = r.pipeline(); pipe.watch(key) first, then read the seats with pipe.hmget(key, seats).",
            "If any seat has a holder: pipe.unwatch() and return False. Otherwise pipe.multi(), "
            "pipe.hset(key, mapping={seat: who for seat in seats}), pipe.execute(), return True; on "
            "redis.WatchError, loop and read again. (A Lua script with HEXISTS then HSET works too.)",
        ],
        solution=inspect.getsource(book), reference=book,
    )


class _Recorder(redis.Redis):
    """A client sharing the notebook's connection pool that records every command it sends."""

    def __init__(self, base: redis.Redis) -> None:
        super().__init__(connection_pool=base.connection_pool)
        self.sent: list[str] = []

    def execute_command(self, *args, **options):
        self.sent.append(str(args[0]).upper())
        return super().execute_command(*args, **options)

    def pipeline(self, transaction=True, shard_hint=None):  # pipelines are recorded as one entry
        self.sent.append("PIPELINE")
        return super().pipeline(transaction, shard_hint)


_SCRIPT_CMDS = {"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"}


def lua_withdraw(r: redis.Redis, prefix: str = "ex2") -> Exercise:
    """Exercise 2: ``withdraw(r, key, amount)`` as one Lua call; -1 when the balance is too low."""

    def checker(answer) -> None:
        key = f"{prefix}:wallet"
        r.set(key, 100)
        spy = _Recorder(r)
        got = answer(spy, key, 30)
        scripted = [c for c in spy.sent if c in _SCRIPT_CMDS]
        others = [c for c in spy.sent if c not in _SCRIPT_CMDS and c != "SCRIPT"]
        expect(len(scripted) == 1 and not others,
               "one withdrawal is exactly one script call (EVAL/EVALSHA/FCALL) and no other command: "
               "separate round trips can interleave with other clients",
               expected=["EVAL"], actual=spy.sent)
        expect(int(got) == 70 and r.get(key) == "70", "100 - 30 leaves 70, returned and stored",
               expected=(70, "70"), actual=(got, r.get(key)))
        got = answer(r, key, 80)
        expect(int(got) == -1, "a withdrawal larger than the balance returns -1",
               expected=-1, actual=got)
        expect(r.get(key) == "70", "a refused withdrawal changes nothing (check before writing: Lua "
               "has no rollback)", expected="70", actual=r.get(key))
        missing = f"{prefix}:nobody"
        r.delete(missing)
        got = answer(r, missing, 1)
        expect(int(got) == -1 and r.exists(missing) == 0,
               "a missing wallet has balance 0: refused, and not created",
               expected=(-1, 0), actual=(got, r.exists(missing)))
        # 8 threads x 10 withdrawals of 1 from 50: exactly 50 succeed, the balance ends at 0
        r.set(key, 50)
        barrier = threading.Barrier(8, timeout=10)
        results, lock = [], threading.Lock()

        def worker():
            barrier.wait()
            mine = [int(answer(r, key, 1)) for _ in range(10)]
            with lock:
                results.extend(mine)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        ok = sum(1 for v in results if v >= 0)
        expect(ok == 50 and r.get(key) == "0",
               "8 concurrent clients withdrawing 1 from 50, 80 times: exactly 50 succeed, 0 left",
               expected=(50, "0"), actual=(ok, r.get(key)))

    return Exercise(
        "withdraw in one Lua round trip", checker,
        hints=[
            "r.eval(script, 1, key, amount): inside, KEYS[1] is the key and ARGV[1] the amount "
            "(a string: use tonumber).",
            "GET may return false for a missing key: tonumber(redis.call('GET', KEYS[1]) or '0'). "
            "Compare, return -1 if too low, else return redis.call('DECRBY', KEYS[1], amount).",
        ],
        solution=WITHDRAW_LUA + "\n" + inspect.getsource(withdraw), reference=withdraw,
    )
