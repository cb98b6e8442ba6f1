"""A reliable queue on Redis lists: BLMOVE into a per-worker processing list, a lease, an ack.

Why ``RPOP`` loses messages::

    time 0  worker A: RPOP queue -> "m7"          m7 is now only in A's memory
    time 1  A is killed (kill -9, OOM, a deploy)  m7 is in no key: gone, and nobody knows

The reliable form moves the message instead of removing it. ``BLMOVE queue processing:A RIGHT
LEFT`` takes the oldest id and puts it in A's own processing list in one atomic step, so at every
instant a message is in the queue, in exactly one processing list, or done. A lists no times, so
each taken id also gets a *lease*: a deadline in a sorted set (id -> deadline in ms). The worker
acks with one script that ``LREM``s the id from its processing list and, only if it was still
there, deletes the lease and counts it done. The :func:`reap` script returns every id whose lease
ran out to the head of the queue, or, after ``max_retries`` returns, to a dead-letter list (a
poison message that kills every worker that takes it must not loop forever). An id found in a
processing list with no lease (its worker died between ``BLMOVE`` and ``ZADD``) gets one.

What the lease cannot tell apart: a dead worker and a slow one. A worker still busy when its
lease runs out has its message taken back and processed again::

    time 0    A: BLMOVE -> m7, lease until 300    A's job takes 500 ms
    time 301  reaper: m7's lease ran out -> m7 back on the queue
    time 302  B: BLMOVE -> m7, processes it, acks it
    time 500  A: finishes m7 (a second time), ack -> 0 (not in A's list any more)

So delivery is *at least once*: the side effect must be idempotent (keyed by the message id).

:class:`ReliableQueue` and :func:`reap` are the core the notebook shows. A job longer than any
sane lease extends its lease while it still holds the message (the notebook's exercise 1).

Notebook: notebooks/13-reliable-queue.ipynb
Redis: https://redis.io/docs/latest/develop/data-types/lists/ (the reliable queue pattern),
https://redis.io/commands/blmove, https://redis.io/commands/lrem, https://redis.io/commands/eval
"""

from __future__ import annotations

import time

__all__ = ["ReliableQueue", "reap"]


class ReliableQueue:
    """Workers BLMOVE ids into their own processing list and lease them; ack deletes them."""

    # KEYS[1] = the worker's processing list, KEYS[2] = leases (zset: id -> deadline in ms),
    # KEYS[3] = retries (hash: id -> times reaped), KEYS[4] = done counter; ARGV[1] = the id
    # Returns the done count if the id was still ours (now done), 0 if the reaper took it back.
    LUA_ACK = """
    if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
    redis.call('ZREM', KEYS[2], ARGV[1]); redis.call('HDEL', KEYS[3], ARGV[1])
    return redis.call('INCR', KEYS[4])
    """

    def __init__(self, r, name, lease_ms=30_000, max_retries=3):
        self.r, self.name, self.lease_ms, self.max_retries = r, name, lease_ms, max_retries
        self.queue, self.leases, self.retries, self.done, self.dead = (
            f"{name}:{k}" for k in ("queue", "leases", "retries", "done", "dead"))

    def push(self, *ids):  # producers LPUSH; workers take from the right: first in, first out
        self.r.lpush(self.queue, *ids)

    def take(self, worker, timeout=1.0):
        """BLMOVE the oldest id into this worker's processing list, then lease it."""
        msg = self.r.blmove(self.queue, f"{self.name}:processing:{worker}", timeout, "RIGHT", "LEFT")
        if msg is not None:  # a crash right here leaves no lease: the reaper gives it one
            self.r.zadd(self.leases, {msg: int(time.time() * 1000) + self.lease_ms})
        return msg

    def ack(self, worker, msg):
        keys = [f"{self.name}:processing:{worker}", self.leases, self.retries, self.done]
        return self.r.eval(self.LUA_ACK, 4, *keys, msg) > 0


def reap(q, workers, now_ms=None):
    """Ids whose lease ran out go back to the queue's head, or after max_retries to the dead letters."""
    # KEYS[1] = leases, KEYS[2] = retries, KEYS[3] = queue, KEYS[4] = dead letters,
    # KEYS[5..] = the workers' processing lists; ARGV[1] = now, ARGV[2] = lease (both ms),
    # ARGV[3] = max retries. Returns the ids it moved (to the queue or the dead letters).
    script = """
    local moved = {}
    for i = 5, #KEYS do
      for _, id in ipairs(redis.call('LRANGE', KEYS[i], 0, -1)) do
        local deadline = tonumber(redis.call('ZSCORE', KEYS[1], id))
        if not deadline then  -- its worker died between BLMOVE and ZADD: lease it from now
          redis.call('ZADD', KEYS[1], ARGV[1] + ARGV[2], id)
        elseif deadline < tonumber(ARGV[1]) then  -- the lease ran out: take the id back
          redis.call('LREM', KEYS[i], 1, id); redis.call('ZREM', KEYS[1], id)
          local poison = redis.call('HINCRBY', KEYS[2], id, 1) > tonumber(ARGV[3])
          redis.call('RPUSH', poison and KEYS[4] or KEYS[3], id)  -- dead letters, or next in line
          table.insert(moved, id)
        end
      end
    end
    return moved
    """
    keys = [q.leases, q.retries, q.queue, q.dead] + [f"{q.name}:processing:{w}" for w in workers]
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return q.r.eval(script, len(keys), *keys, now_ms, q.lease_ms, q.max_retries)

