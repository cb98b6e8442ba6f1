"""A delayed (scheduled) task queue: a sorted set scored by due time, claimed atomically.

Why the claim must be one atomic step (the plain ``ZRANGEBYSCORE`` + ``ZREM``)::

    time 0  worker A: ZRANGEBYSCORE schedule -inf now LIMIT 0 1 -> [task]
    time 0  worker B: ZRANGEBYSCORE schedule -inf now LIMIT 0 1 -> [task]   (the same task)
    time 1  A: ZREM schedule task -> 1, runs it;  B: ZREM -> 0, runs it too unless it checks
    time 2  A is killed with kill -9 after its ZREM: the task is in no key any more: lost

:class:`DelayedQueue` is the core the notebook shows: ``schedule`` adds a task (a random id plus
the job, so identical jobs stay two members) scored by its due time in Unix ms; ``claim`` runs a
Lua script that reads the server's clock (``TIME``), takes the due tasks and moves them to a
*processing* sorted set scored by their lease deadline, in one round trip; ``ack`` removes a
finished task. :func:`reap` runs the same script the other way round, so a task whose worker died
(its lease ran out) goes back on the schedule, due now.

:class:`RetryQueue` adds ``retry``: a failed task leaves processing and is scheduled again
``delay_ms`` later (the back-off is the caller's choice), only if it was still ours. The worker
loops (:func:`poll_loop`, :func:`sleep_loop`) show the cost of waiting: polling every few ms vs
sleeping until the next task is due.

Notebook: notebooks/12-delayed-queue.ipynb
Redis: https://redis.io/docs/latest/develop/data-types/sorted-sets/
(ZRANGE ... BYSCORE: https://redis.io/commands/zrange, TIME: https://redis.io/commands/time,
EVAL: https://redis.io/commands/eval)
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["DelayedQueue", "RetryQueue", "job_of", "now_ms", "poll_loop", "reap", "sleep_loop"]


class DelayedQueue:
    """A sorted set scored by due time (Unix ms); due tasks are claimed atomically under a lease."""

    # KEYS[1] = from (the schedule; for the reaper, processing), KEYS[2] = to; ARGV[1] = most tasks
    # ARGV[2] = lease ms (a moved task scores now + ARGV[2]). Returns tasks with score <= now (TIME), moved.
    LUA_POP_DUE = """
    local t = redis.call('TIME')
    local now = t[1] * 1000 + math.floor(t[2] / 1000)
    local due = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', 0, ARGV[1])
    for _, task in ipairs(due) do
      redis.call('ZREM', KEYS[1], task)
      redis.call('ZADD', KEYS[2], now + ARGV[2], task)
    end
    return due
    """

    def __init__(self, r, name, lease_ms=5000):
        self.r, self.lease_ms = r, lease_ms
        self.key, self.processing = f"{name}:schedule", f"{name}:processing"

    def schedule(self, job, due_ms):  # a random id: two identical jobs stay two members
        task = json.dumps({"id": uuid.uuid4().hex[:8], "job": job})
        self.r.zadd(self.key, {task: due_ms})
        return task

    def claim(self, n=1):  # up to n due tasks, moved to processing under a lease: one round trip
        return self.r.eval(self.LUA_POP_DUE, 2, self.key, self.processing, n, self.lease_ms)

    def ack(self, task):  # done: False if the reaper had already taken it back
        return self.r.zrem(self.processing, task) == 1


def reap(q, n=100):
    """The reaper: tasks whose lease ran out (their worker died) go back on the schedule, due now.
    It is the claim script with the two keys swapped and no lease."""
    return q.r.eval(q.LUA_POP_DUE, 2, q.processing, q.key, n, 0)


class RetryQueue(DelayedQueue):
    """A delayed queue whose failed tasks are scheduled again after a back-off."""

    # KEYS[1] = processing, KEYS[2] = schedule; ARGV[1] = the task, ARGV[2] = delay in ms
    # Returns the new due time (ms, server clock), or nil if the task was no longer ours
    # (the reaper took it back, so someone else may be running it: do not add a second copy).
    LUA_RETRY = """
    if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return false end
    local t = redis.call('TIME')
    local due = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[2])
    redis.call('ZADD', KEYS[2], due, ARGV[1])
    return due
    """

    def retry(self, task: str, delay_ms: int) -> int | None:
        """Move a failed task from processing back to the schedule, due ``delay_ms`` from now."""
        return self.r.eval(self.LUA_RETRY, 2, self.processing, self.key, task, int(delay_ms))


def job_of(task: str) -> str:
    """The job inside a task member (``{"id": ..., "job": ...}``)."""
    return json.loads(task)["job"]


def now_ms(r) -> int:
    """The server's clock in ms (``TIME``), the clock the claim script compares due times with."""
    sec, usec = r.time()
    return int(sec) * 1000 + int(usec) // 1000


def poll_loop(q: DelayedQueue, handle: Callable[[str], Any], stop: threading.Event, *,
              poll_ms: float = 10) -> None:
    """Claim; run what came back; when nothing is due, sleep ``poll_ms`` and claim again."""
    while not stop.is_set():
        tasks = q.claim()
        for task in tasks:
            handle(task)
            q.ack(task)
        if not tasks:
            stop.wait(poll_ms / 1000)


def sleep_loop(q: DelayedQueue, handle: Callable[[str], Any], stop: threading.Event, *,
               max_sleep_ms: float = 1000) -> None:
    """Claim; when nothing is due, sleep until the earliest task is due (at most ``max_sleep_ms``,
    so a task scheduled earlier meanwhile waits no longer than that)."""
    while not stop.is_set():
        tasks = q.claim()
        for task in tasks:
            handle(task)
            q.ack(task)
        if tasks:
            continue
        head = q.r.zrange(q.key, 0, 0, withscores=True)      # the next task due, if any
        wait_ms = max_sleep_ms if not head else head[0][1] - time.time() * 1000
        stop.wait(min(max(wait_ms, 0), max_sleep_ms) / 1000)
