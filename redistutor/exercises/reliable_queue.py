"""Exercises for notebooks/13-reliable-queue.ipynb.

Try it. ``lease_prediction``: a worker's job takes ``job_ms``, its lease ``lease_ms``; predict how
   many times the sink sees the message; the check runs it on the server.
1. ``extend_lease``: ``extend(q, worker, msg, lease_ms)``: a new case, a job longer than any sane
   lease (a video transcode) extends its lease while it runs, but only while the message is still
   in its own processing list.
2. ``nack_exercise``: ``nack(q, worker, msg)``: a worker that caught an exception gives the message
   back at once (no waiting for the lease): to the queue's head, or to the dead letters after
   ``max_retries``, and only if it still held it.
"""

from __future__ import annotations

import inspect
import time

import redis

from ..check import Exercise, expect
from ..patterns.reliable_queue import ReliableQueue, reap
from ..trace import trace

# -- reference solutions (self-tested in tests/exercises/test_reliable_queue.py) -----------------

EXTEND_LUA = """
if not redis.call('LPOS', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""


def extend(q, worker, msg, lease_ms):
    deadline = int(time.time() * 1000) + lease_ms
    return q.r.eval(EXTEND_LUA, 2, f"{q.name}:processing:{worker}", q.leases, msg, deadline) == 1


NACK_LUA = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return false end
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HINCRBY', KEYS[3], ARGV[1], 1) > tonumber(ARGV[2]) then
  redis.call('RPUSH', KEYS[5], ARGV[1])
  return 'dead'
end
redis.call('RPUSH', KEYS[4], ARGV[1])
return 'queue'
"""


def nack(q, worker, msg):
    keys = [f"{q.name}:processing:{worker}", q.leases, q.retries, q.queue, q.dead]
    return q.r.eval(NACK_LUA, 5, *keys, msg, q.max_retries)


# -- helpers ------------------------------------------------------------------------------------


def _fresh(r: redis.Redis, name: str, **kwargs) -> ReliableQueue:
    q = ReliableQueue(r, name, **kwargs)
    r.delete(q.queue, q.leases, q.retries, q.done, q.dead, *[f"{name}:processing:{w}" for w in ("A", "B")])
    return q


def _one_round_trip(r: redis.Redis, call, what: str):
    with trace(r) as t:
        result = call()
    expect(t.round_trips == 1,
           f"{what} is one round trip (one script): between two round trips the reaper can take "
           "the message back", expected="1 round trip", actual=f"{t.round_trips}: {[c.line() for c in t.commands]}")
    return result


# -- exercises ----------------------------------------------------------------------------------


def lease_prediction(server, lease_ms: int, job_ms: int = 500, name: str = "try:rq") -> Exercise:
    """Try it: how many times does the sink see the message when A's job takes ``job_ms`` and its
    lease is ``lease_ms``? The check runs the slow-worker scenario with those numbers."""
    from ..scenarios.reliable_queue import slow_worker

    def checker(answer) -> None:
        run = slow_worker(server, name, lease_ms=lease_ms, job_ms=job_ms)
        got = run["effects"]
        expect(answer == got, f"lease {lease_ms} ms, job {job_ms} ms: the sink saw the message "
               f"{got} time(s)", expected=got, actual=answer)

    return Exercise(
        f"lease {lease_ms} ms vs a {job_ms} ms job", checker,
        hints=["The reaper cannot tell a slow worker from a dead one: all it sees is a lease that "
               "ran out. Does A's lease run out before A finishes?",
               "If the lease ends before the job does, the reaper gives the message back and worker B "
               "processes it too; A still finishes its own copy."],
        solution="prediction = 2 if lease_ms < job_ms else 1",
        reference=None,
    )


def extend_lease(r: redis.Redis, prefix: str = "ex1") -> Exercise:
    """Exercise 1: ``extend(q, worker, msg, lease_ms) -> bool``."""

    def checker(answer) -> None:
        q = _fresh(r, f"{prefix}:rq", lease_ms=200)
        q.push("video-1")
        msg = q.take("A")
        before = time.time() * 1000
        ok = _one_round_trip(r, lambda: answer(q, "A", msg, 5000), "extending a lease")
        after = time.time() * 1000
        deadline = r.zscore(q.leases, msg)
        expect(bool(ok), "A still holds video-1 in its processing list: the extension succeeds",
               expected=True, actual=ok)
        expect(deadline is not None and before + 5000 - 2 <= deadline <= after + 5000 + 2,
               "the new deadline is now + lease_ms (in ms, on the same clock as take's)",
               expected=f"{before + 5000:.0f}..{after + 5000:.0f}", actual=deadline)
        expect(r.lrange(f"{q.name}:processing:A", 0, -1) == [msg] and not r.exists(q.queue),
               "extending moves nothing: the message stays in A's processing list",
               expected=[msg], actual=r.lrange(f"{q.name}:processing:A", 0, -1))
        reap(q, ["A", "B"], now_ms=int(deadline) + 1)        # A was too slow after all
        late = answer(q, "A", msg, 5000)
        expect(not late, "once the reaper has taken video-1 back, A's extension must fail (A should "
               "stop, not keep working believing it holds the message)", expected=False, actual=late)
        expect(r.zscore(q.leases, msg) is None, "a refused extension writes nothing: a lease for a "
               "message that sits in the queue would be a lie", expected=None, actual=r.zscore(q.leases, msg))
        taken = q.take("B")
        expect(taken == msg, "after the reaper, worker B takes video-1 from the queue",
               expected=msg, actual=taken)
        b_deadline = r.zscore(q.leases, msg)
        stolen = answer(q, "A", msg, 60_000)
        expect(not stolen and r.zscore(q.leases, msg) == b_deadline,
               "B holds video-1 now: A's extension must fail and leave B's lease as it was",
               expected=(False, b_deadline), actual=(stolen, r.zscore(q.leases, msg)))

    return Exercise(
        "extend a lease", checker,
        hints=[
            "Check that the message is still in this worker's processing list, and only then write "
            "the new deadline (now + lease_ms) into the leases sorted set: both in one Lua script, "
            "so the reaper cannot run in between.",
            "LPOS processing msg returns nil (false in Lua) when the message is not in the list. "
            "Compute the deadline in Python with the same clock as take (time.time() * 1000) and "
            "pass it as an argument: r.eval(script, 2, processing, q.leases, msg, deadline).",
        ],
        solution=EXTEND_LUA + "\n" + inspect.getsource(extend), reference=extend,
    )


def nack_exercise(r: redis.Redis, prefix: str = "ex2") -> Exercise:
    """Exercise 2: ``nack(q, worker, msg) -> "queue" | "dead" | None``."""

    def checker(answer) -> None:
        q = _fresh(r, f"{prefix}:rq", lease_ms=30_000, max_retries=2)
        proc = f"{q.name}:processing:A"
        q.push("job-1", "job-2")
        msg = q.take("A")
        where = _one_round_trip(r, lambda: answer(q, "A", msg), "a nack")
        expect(where == "queue", "the first failure sends job-1 back to the queue", expected="queue", actual=where)
        expect(not r.exists(proc) and r.zscore(q.leases, msg) is None,
               "job-1 leaves A's processing list and loses its lease",
               expected=([], None), actual=(r.lrange(proc, 0, -1), r.zscore(q.leases, msg)))
        expect(r.lrange(q.queue, 0, -1) == ["job-2", "job-1"],
               "job-1 goes back to the head of the queue (the right end, where BLMOVE takes from), once",
               expected=["job-2", "job-1"], actual=r.lrange(q.queue, 0, -1))
        expect(r.hget(q.retries, msg) == "1", "the failure is counted in the retries hash, like the reaper's",
               expected="1", actual=r.hget(q.retries, msg))
        seen = [answer(q, "A", q.take("A")) for _ in range(2)]
        expect(seen == ["queue", "dead"], "max_retries = 2: the second failure still retries, the third "
               "dead-letters it", expected=["queue", "dead"], actual=seen)
        expect(r.lrange(q.dead, 0, -1) == ["job-1"] and r.lrange(q.queue, 0, -1) == ["job-2"],
               "job-1 is in the dead letters and nowhere else",
               expected=(["job-1"], ["job-2"]), actual=(r.lrange(q.dead, 0, -1), r.lrange(q.queue, 0, -1)))
        other = q.take("A")
        reap(q, ["A", "B"], now_ms=int(time.time() * 1000) + 60_000)   # A was too slow: taken back
        late = answer(q, "A", other)
        expect(late is None, "after the reaper has taken job-2 back it is not A's to give back: "
               "return None", expected=None, actual=late)
        expect(r.lrange(q.queue, 0, -1) == ["job-2"] and r.hget(q.retries, other) == "1",
               "a late nack changes nothing: job-2 is in the queue once and its retries stay at 1",
               expected=(["job-2"], "1"), actual=(r.lrange(q.queue, 0, -1), r.hget(q.retries, other)))

    return Exercise(
        "nack", checker,
        hints=[
            "Everything in one Lua script: remove the message from the worker's processing list and "
            "continue only if LREM removed it (otherwise return nil: it was not yours any more).",
            "Then ZREM its lease, HINCRBY its retries, and RPUSH it to the queue (its head) while "
            "retries <= max_retries, else to q.dead; return 'queue' or 'dead'. Keys: the processing "
            "list, q.leases, q.retries, q.queue, q.dead; argument: q.max_retries.",
        ],
        solution=NACK_LUA + "\n" + inspect.getsource(nack), reference=nack,
    )
