"""Exercises for notebooks/12-delayed-queue.ipynb.

Try it. ``drain_round_trips``: predict how many round trips one worker needs to drain 100 due
   tasks with ``claim(n=batch)``; the check traces it on the server.
1. ``snooze_exercise`` (a new case): ``snooze(r, key, task, due_ms)`` postpones a reminder that is
   still scheduled and refuses one a worker has already claimed. The checker claims the task
   between your read and your write, if they are separate commands.
2. ``backoff_exercise``: ``fail(q, task, dead_key, max_attempts, base_ms)`` re-schedules a failed
   task with exponential back-off and dead-letters it after ``max_attempts`` runs, atomically,
   and never re-adds a task that the reaper has already taken back.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import redis

from ..check import Exercise, expect
from ..patterns.delayed_queue import DelayedQueue, now_ms, reap
from ..trace import trace

# -- reference solutions (self-tested in tests/exercises/test_delayed_queue.py) -----------------


def snooze(r: redis.Redis, key: str, task: str, due_ms: int) -> bool:
    # XX: only update a member that is still there (never re-add a claimed task);
    # CH: the reply counts changed members, so 1 means "postponed".
    return r.zadd(key, {task: due_ms}, xx=True, ch=True) == 1


FAIL_LUA = """
-- KEYS[1] = processing, KEYS[2] = schedule, KEYS[3] = dead-letter list
-- ARGV[1] = the task as claimed, ARGV[2] = the task with its new attempt count,
-- ARGV[3] = delay in ms, or -1 to dead-letter it. Returns 1, or 0 if the task was not ours.
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if tonumber(ARGV[3]) < 0 then
  redis.call('RPUSH', KEYS[3], ARGV[2])
  return 1
end
local t = redis.call('TIME')
redis.call('ZADD', KEYS[2], t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[3]), ARGV[2])
return 1
"""


def fail(q: DelayedQueue, task: str, dead_key: str, max_attempts: int = 3, base_ms: int = 100) -> str | None:
    t = json.loads(task)
    t["attempts"] = t.get("attempts", 0) + 1
    new = json.dumps(t)
    delay = -1 if t["attempts"] >= max_attempts else base_ms * 2 ** (t["attempts"] - 1)
    ok = q.r.eval(FAIL_LUA, 3, q.processing, q.key, dead_key, task, new, delay)
    return new if ok and delay >= 0 else None


# -- Try it -------------------------------------------------------------------------------------


def drain_round_trips(r: redis.Redis, batch: int, prefix: str = "try") -> Exercise:
    """Try it: 100 due tasks, one worker claiming ``claim(n=batch)`` until a claim returns nothing.
    The answer is the number of round trips it takes."""

    def run() -> int:
        q = DelayedQueue(r, f"{prefix}:drain")
        r.delete(q.key, q.processing)
        r.zadd(q.key, {json.dumps({"id": f"{i:03}", "job": "thumbnail"}): 0 for i in range(100)})
        with trace(r) as t:
            while q.claim(n=batch):
                pass
        r.delete(q.key, q.processing)
        return t.round_trips

    def checker(answer) -> None:
        got = run()
        expect(answer == got, f"with claim(n={batch}) one worker drained 100 due tasks in {got} round trips "
               "(each claim is one EVAL)", expected=got, actual=answer)

    return Exercise(
        f"round trips to drain 100 tasks, batch {batch}", checker,
        hints=["Each claim is one round trip and returns at most `batch` tasks.",
               "How does the worker learn that the queue is empty? Only from a claim that returns "
               "nothing: count that one too."],
        solution="import math\nprediction = math.ceil(100 / BATCH) + 1   # the last claim returns nothing",
        reference=None,
    )


# -- exercise 1: snooze ---------------------------------------------------------------------------

_READS = {"zscore", "zmscore", "zrank", "zrange", "zrangebyscore", "zcount", "zcard", "exists", "type"}


class _ClaimAfterRead:
    """A client that, right after the learner's first read of the schedule, lets a worker claim
    the task (it moves to processing): the gap between a read and a write."""

    def __init__(self, r: redis.Redis, q: DelayedQueue, task: str) -> None:
        self._r, self._q, self._task = r, q, task
        self.claimed = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._r, name)
        if name not in _READS or not callable(attr):
            return attr

        def read(*args: Any, **kwargs: Any) -> Any:
            value = attr(*args, **kwargs)
            if not self.claimed:
                self.claimed = True
                with self._r.pipeline(transaction=True) as tx:   # what the claim script does
                    tx.zrem(self._q.key, self._task)
                    tx.zadd(self._q.processing, {self._task: 0})
                    tx.execute()
            return value

        return read


def snooze_exercise(r: redis.Redis, prefix: str = "ex1") -> Exercise:
    """Exercise 1: ``snooze(r, key, task, due_ms) -> bool``."""

    def checker(answer) -> None:
        q = DelayedQueue(r, f"{prefix}:reminders")
        r.delete(q.key, q.processing)
        far = now_ms(r) + 3_600_000
        task = q.schedule("reminder:dentist", far)
        ok = answer(r, q.key, task, far + 600_000)
        expect(bool(ok) is True, "a reminder still on the schedule is postponed: return True",
               expected=True, actual=ok)
        expect(r.zscore(q.key, task) == far + 600_000, "the task's score is its new due time",
               expected=far + 600_000, actual=r.zscore(q.key, task))
        expect(r.zcard(q.key) == 1, "postponing changes the score of the same member, it adds none",
               expected=1, actual=r.zcard(q.key))

        due = q.schedule("reminder:call-mum", 0)
        claimed = q.claim()
        expect(claimed == [due], "(checker) a worker claimed the due reminder", expected=[due], actual=claimed)
        late = answer(r, q.key, due, far)
        expect(not late, "a reminder a worker has already claimed cannot be postponed: return False",
               expected=False, actual=late)
        expect(r.zscore(q.key, due) is None, "a claimed task must not come back on the schedule: it "
               "would run twice (once now, once at the new time)", expected=None, actual=r.zscore(q.key, due))

        racy = q.schedule("reminder:pay-rent", far)
        proxy = _ClaimAfterRead(r, q, racy)
        raced = answer(proxy, q.key, racy, far + 1000)
        back = r.zscore(q.key, racy)
        if proxy.claimed:   # the answer read first, and a worker claimed the task right after the read
            expect(not raced and back is None,
                   "a worker claimed the reminder between your read and your write: snooze must be one "
                   "atomic step (one command or one script), or it re-adds a task that is already running",
                   expected=(False, None), actual=(raced, back))
        else:
            expect(bool(raced) and back == far + 1000, "a reminder still on the schedule is postponed",
                   expected=(True, far + 1000), actual=(raced, back))
        r.delete(q.key, q.processing)

    return Exercise(
        "snooze a scheduled reminder", checker,
        hints=["ZADD updates the score of an existing member; look at its options: one of them only "
               "updates members that already exist and never adds one.",
               "With that option ZADD normally replies 0 (nothing added); another option makes it count "
               "the members whose score changed, so the reply says whether you postponed the task."],
        solution=inspect.getsource(snooze), reference=snooze,
    )


# -- exercise 2: back-off and a dead-letter list ------------------------------------------------


def backoff_exercise(r: redis.Redis, prefix: str = "ex2") -> Exercise:
    """Exercise 2: ``fail(q, task, dead_key, max_attempts=3, base_ms=100) -> str | None``."""

    def one_failure(q, answer, task, dead):
        before = now_ms(r)
        with trace(r) as t:
            new = answer(q, task, dead, 4, 100)
        after = now_ms(r)
        expect(t.round_trips == 1, "fail() is one round trip (one script): between a ZREM and a ZADD "
               "sent apart, a crash loses the task", expected=1,
               actual=f"{t.round_trips}: {[c.line() for c in t.commands]}")
        return new, before, after

    def checker(answer) -> None:
        q = DelayedQueue(r, f"{prefix}:hooks", lease_ms=60_000)
        dead = f"{prefix}:hooks:dead"
        r.delete(q.key, q.processing, dead)
        original = q.schedule("webhook:order-9", 0)
        ident = json.loads(original)["id"]
        task = q.claim()[0]
        for attempt, delay in ((1, 100), (2, 200), (3, 400)):
            new, before, after = one_failure(q, answer, task, dead)
            members = r.zrange(q.key, 0, -1, withscores=True)
            expect(r.zcard(q.processing) == 0, "the failed task leaves processing (else the reaper runs it "
                   "again)", expected=0, actual=r.zcard(q.processing))
            expect(len(members) == 1 and json.loads(members[0][0]).get("id") == ident,
                   "the failed task is back on the schedule once, with the same id",
                   expected=f"1 member with id {ident}", actual=members)
            member, score = members[0]
            expect(json.loads(member).get("attempts") == attempt, 'the task carries its failures so far '
                   'in an "attempts" field', expected=attempt, actual=json.loads(member).get("attempts"))
            expect(new == member, "fail() returns the task as re-scheduled", expected=member, actual=new)
            expect(before + delay - 2 <= score <= after + delay + 2,
                   f"after failure {attempt} the task is due {delay} ms later (base_ms x 2^(attempts-1))",
                   expected=f"now + {delay} ms", actual=f"now + {score - before:.0f} ms")
            r.zadd(q.key, {member: 0})                    # fast-forward: it is due now
            task = q.claim()[0]
        gone, _, _ = one_failure(q, answer, task, dead)
        letters = r.lrange(dead, 0, -1) if r.type(dead) == "list" else []
        expect(gone is None, "the fourth failure (max_attempts=4) returns None", expected=None, actual=gone)
        expect(len(letters) == 1 and json.loads(letters[0]).get("id") == ident and r.zcard(q.key) == 0
               and r.zcard(q.processing) == 0,
               f"after max_attempts runs the task goes to the dead-letter list {dead} (RPUSH), and "
               "nowhere else", expected="1 task in the dead-letter list, none queued or in processing",
               actual=dict(dead=letters, queued=r.zcard(q.key), processing=r.zcard(q.processing)))

        r.delete(q.key, q.processing, dead)
        stale = q.schedule("webhook:order-10", 0)
        q.claim()
        r.zadd(q.processing, {stale: 0})                  # its lease ran out ...
        reap(q)                                           # ... and the reaper put it back
        late = answer(q, stale, dead, 4, 100)
        expect(late is None and r.zcard(q.key) == 1 and not r.exists(dead),
               "a task the reaper already took back is not ours: fail() must add no second copy "
               "(and return None)", expected=(None, 1, 0),
               actual=(late, r.zcard(q.key), r.exists(dead)))
        r.delete(q.key, q.processing, dead)

    return Exercise(
        "retry with exponential back-off and a dead-letter list", checker,
        hints=["Compute the new member in Python (the task's JSON with attempts + 1) and the delay "
               "(base_ms * 2 ** (attempts - 1), or dead-letter once attempts reaches max_attempts), "
               "then make the move in one Lua script.",
               "In the script: ZREM the claimed task from processing; if that removed nothing, the "
               "task is not yours, return 0. Otherwise ZADD the new member at TIME + delay, or RPUSH it "
               "to the dead-letter list."],
        solution=FAIL_LUA + "\n" + inspect.getsource(fail), reference=fail,
    )


__all__ = ["backoff_exercise", "drain_round_trips", "fail", "snooze", "snooze_exercise"]
