"""Exercises for notebooks/06-atomic-updates.ipynb.

1. ``watch_update``: write ``update(r, key, fn)``: read the key, compute ``fn(old)``, write the
   result, and retry with WATCH when someone else wrote the key in between.
2. ``lua_withdraw``: write ``withdraw(r, key, amount)``: subtract only if the balance covers it,
   in ONE round trip (a Lua script), so no interleaving is possible.
"""

from __future__ import annotations

import inspect
import threading

import redis

from ..check import Exercise, expect


# -- reference solutions (self-tested in tests/exercises/test_atomic_updates.py) ----------------


def update(r: redis.Redis, key: str, fn) -> str:
    with r.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(key)
                new = fn(pipe.get(key))
                pipe.multi()
                pipe.set(key, new)
                pipe.execute()
                return new
            except redis.WatchError:
                continue


WITHDRAW_LUA = """
local have = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
if have < amount then return -1 end
return redis.call('DECRBY', KEYS[1], amount)
"""


def withdraw(r: redis.Redis, key: str, amount: int) -> int:
    return r.eval(WITHDRAW_LUA, 1, key, amount)


# -- exercises ----------------------------------------------------------------------------------


def watch_update(r: redis.Redis, other: redis.Redis, prefix: str = "ex1") -> Exercise:
    """Exercise 1: ``update(r, key, fn)`` survives a write that lands between its read and write.

    The checker's ``fn`` plays the other client: the first time it is called it writes the key
    through a second connection (``other``), exactly in the gap a naive GET/SET leaves open.
    """

    def checker(answer) -> None:
        key = f"{prefix}:stock"
        r.set(key, "10")
        calls = []

        def double(old):
            calls.append(old)
            if len(calls) == 1:
                other.incrby(key, 5)  # another client sells... no, restocks 5, right now
            return str(int(old) * 2)

        returned = answer(r, key, double)
        final = r.get(key)
        expect(calls[:1] == ["10"], "fn is called with the value read from Redis (a str)",
               expected="first call: '10'", actual=calls[:1])
        expect(final != "20", "the other client's +5 was lost: you wrote 2 x 10 over 15. Watch the "
               "key before reading it, so EXEC refuses to write when the key changed",
               expected="30", actual=final)
        expect(final == "30", f"{key} ends at 2 x (10 + 5) = 30: retry with the fresh value",
               expected="30", actual=final)
        expect(len(calls) == 2, "fn runs once per attempt: once on the stale value, once on the "
               "fresh one", expected=2, actual=len(calls))
        expect(str(returned) == "30", "update returns the value it wrote", expected="30", actual=returned)
        # and without interference it is a plain read-modify-write
        r.set(key, "7")
        answer(r, key, lambda old: str(int(old) + 1))
        expect(r.get(key) == "8", "with no other writer, one update is applied once",
               expected="8", actual=r.get(key))

    return Exercise(
        "WATCH/MULTI/EXEC with retry", checker,
        hints=[
            "Use one pipeline for the whole attempt: pipe = r.pipeline(transaction=True); "
            "pipe.watch(key) puts it in immediate mode, so pipe.get(key) returns the value now.",
            "After computing, pipe.multi(), pipe.set(key, new), pipe.execute(). If the key changed "
            "since WATCH, execute() raises redis.WatchError: catch it and loop.",
        ],
        solution=inspect.getsource(update), reference=update,
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
