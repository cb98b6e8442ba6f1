"""Exercises for notebooks/17-pinterest-task-queue.ipynb.

Try it. ``policy_prediction``: the shared instance's ``maxmemory-policy`` is the knob; predict
   whether the deploy's backlog loses tasks to the cache burst; the check runs it on the server.
1. ``move_shard_exercise``: ``move_shard(p, function, shard, to)``: a new case, growing a function
   from two instances to three by moving one virtual shard's keys (values and TTLs) to the new
   instance and pointing the router at it.
2. ``enqueue_exercise``: ``enqueue(p, job, tasks)``: a producer on the ``noeviction`` queue
   instance that is told when it is full: push in order through the router, stop at the first OOM
   refusal, return the tasks that were not accepted.
"""

from __future__ import annotations

import inspect

import redis

from ..check import Exercise, expect
from ..patterns.pinterest_task_queue import Partitioned
from ..patterns.reliable_queue import ReliableQueue
from ..sink import config
from ..tables import Table


def _display(obj) -> None:
    try:
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython is a dependency
        print(obj)
    else:
        display(obj)

# -- reference solutions (self-tested in tests/exercises/test_pinterest_task_queue.py) ----------


def move_shard(p, function, shard, to):
    src = p.routes[function][p.placement[function][shard]]
    dst = p.routes[function][to]
    keys = [k for k in src.scan_iter(count=1000) if p.shard(k) == shard]
    for key in keys:                       # copy each key with its remaining TTL (0 = none)
        dst.restore(key, max(src.pttl(key), 0), src.dump(key), replace=True)
    p.placement[function][shard] = to      # readers now go to the new instance
    if keys:
        src.delete(*keys)                  # and the old copies go


def enqueue(p, job, tasks):
    q = ReliableQueue(p.client("queue", f"tasks:{job}"), f"tasks:{job}")
    for i, task in enumerate(tasks):
        try:
            q.push(task)
        except redis.exceptions.OutOfMemoryError:   # the queue instance is full: we are told
            return list(tasks[i:])
    return []


# -- try it ---------------------------------------------------------------------------------------


def policy_prediction(fleet, policy: str) -> Exercise:
    """Try it: with ``policy`` on the shared instance, does the backlog lose tasks to the cache
    burst? The check runs the three steps on the shared instance with that policy."""
    from ..scenarios import pinterest_task_queue as sc

    def checker(answer) -> None:
        node = fleet["shared"]
        node.r.flushall()
        node.r.config_resetstat()
        sc.configure(node, sc.POLICIES["shared"][0], policy)
        try:
            run = sc.pressure(sc.one_instance(node.r))
        finally:
            sc.configure(node, *sc.POLICIES["shared"])
        got = run["lost"] > 0
        _display(Table(["policy", "tasks lost", "tasks queued, but BLMOVE refused", "sessions lost",
                        "cache writes refused", "keys evicted"],
                       [(policy, run["lost"], run["waiting"], run["sessions_lost"], run["cache_refused"],
                         run["evicted_by_function"]["cache"])],
                       title=f"the deploy's backlog on one instance with {policy} (this run)"))
        expect(answer == got, f"{policy}: {run['lost']} of {run['report']['produced']} tasks lost, "
               f"{run['waiting']} still queued but not taken, {run['sessions_lost']} of {run['sessions']} "
               f"sessions lost, {run['cache_refused']} of {run['cache_writes']} cache writes refused, "
               f"{run['evicted_by_function']['cache']} keys evicted",
               expected=got, actual=answer)

    return Exercise(
        f"maxmemory-policy {policy} on the shared instance", checker,
        hints=["Which keys may this policy evict: all keys, or only keys with a TTL? The tasks have "
               "no TTL; the cache entries (5 min) and the sessions (1 h) have one.",
               "allkeys-* policies may evict the task lists; volatile-* policies only evict keys with "
               "a TTL; noeviction evicts nothing and refuses writes instead (the cache's)."],
        solution="prediction = policy.startswith('allkeys')",
        reference=None,
    )


# -- exercise 1: move a virtual shard ----------------------------------------------------------


def _seed(p: Partitioned, n: int) -> dict[str, str]:
    data = {}
    for i in range(n):
        key, value = f"cache:pin:{i}", f"pin {i}"
        p.client("cache", key).set(key, value, ex=300 if i % 2 == 0 else None)
        data[key] = value
    return data


def move_shard_exercise(clients, n: int = 400) -> Exercise:
    """Exercise 1: ``move_shard(p, function, shard, to)``. ``clients`` are three clients to
    independent instances; the first two hold the cache, the third joins (their data is erased)."""
    a, b, c = clients

    def checker(answer) -> None:
        for x in (a, b, c):
            x.flushall()
        p = Partitioned({"cache": [a, b]}, shards=16)
        data = _seed(p, n)
        p.routes["cache"].append(c)                       # a third instance joins, empty
        shard = p.shard("cache:pin:7")
        old = p.placement["cache"][shard]
        before = {k: p.placement["cache"][p.shard(k)] for k in data}
        answer(p, "cache", shard, 2)
        moved = sorted(k for k in data if p.shard(k) == shard)
        expect(p.placement["cache"][shard] == 2, f"the router must send shard {shard} to the new "
               "instance (index 2) afterwards", expected=2, actual=p.placement["cache"][shard])
        others = [s for s in range(p.shards) if s != shard and p.placement["cache"][s] != s % 2]
        expect(not others, "only the moved shard changes instance in the placement",
               expected=[], actual=others)
        on_new = sorted(c.scan_iter(count=1000))
        expect(on_new == moved, f"the new instance holds exactly shard {shard}'s {len(moved)} keys",
               expected=moved[:5] + (["..."] if len(moved) > 5 else []),
               actual=on_new[:5] + (["..."] if len(on_new) > 5 else []) + [f"({len(on_new)} keys)"])
        src = p.routes["cache"][old]
        left = [k for k in moved if src.exists(k)]
        expect(not left, "the old instance no longer holds the moved keys (stale copies would be "
               "served again if the shard ever moved back, and use memory)", expected=[], actual=left[:5])
        wrong = [k for k, v in data.items() if p.client("cache", k).get(k) != v]
        expect(not wrong, "every key is readable through the router, with its value", expected=[], actual=wrong[:5])
        stayed = [k for k in data if k not in moved and
                  not p.routes["cache"][before[k]].exists(k)]
        expect(not stayed, "keys of other shards stay where they were", expected=[], actual=stayed[:5])
        ttls = {k: c.ttl(k) for k in moved}
        bad = {k: t for k, t in ttls.items() if (t == -1) != (int(k.rsplit(":", 1)[1]) % 2 == 1) or t == -2}
        expect(not bad, "each moved key keeps its TTL (entries written with a 5 min TTL still have "
               "one; the others still have none)", expected={}, actual=dict(list(bad.items())[:5]))

    return Exercise(
        "move a virtual shard", checker,
        hints=["Find the shard's keys on the instance that holds it now: SCAN its keys and keep those "
               "with p.shard(key) == shard. Copy each one to the new instance, then point "
               "p.placement[function][shard] at `to`, then delete the old copies.",
               "DUMP + RESTORE copies any type: dst.restore(key, ttl_ms, src.dump(key), replace=True), "
               "with ttl_ms = max(src.pttl(key), 0) (PTTL is -1 for a key without a TTL, and RESTORE "
               "takes 0 for 'none')."],
        solution=inspect.getsource(move_shard), reference=move_shard,
    )


# -- exercise 2: a producer that is told ---------------------------------------------------------


def enqueue_exercise(queue_node, cache_client, n: int = 400, headroom: int = 60_000) -> Exercise:
    """Exercise 2: ``enqueue(p, job, tasks) -> list of tasks not accepted``. ``queue_node`` is the
    ``noeviction`` queue instance (a lab Node; its data is erased), ``cache_client`` an
    ``allkeys-lru`` cache instance."""
    r = queue_node.r

    def checker(answer) -> None:
        r.flushall()
        r.config_resetstat()
        p = Partitioned({"cache": [cache_client], "sessions": [cache_client], "queue": [r]})
        tasks = [f"transcode:{i:04d}:" + "x" * 500 for i in range(n)]
        full = {"maxmemory-policy": "noeviction",
                "maxmemory": lambda: int(r.info("memory")["used_memory"]) + headroom}   # measured last
        with config(r, full):
            left = answer(p, "transcode", tasks)
        queued = r.lrange("tasks:transcode:queue", 0, -1)[::-1]     # oldest first
        expect(isinstance(left, list), "return the list of tasks that were not accepted",
               expected="a list", actual=type(left).__name__)
        expect(len(queued) > 0, "the tasks go to the queue instance (p.client('queue', ...)), in the "
               "list tasks:<job>:queue that ReliableQueue uses", expected="tasks on the queue instance",
               actual=f"{len(queued)} tasks there")
        expect(left != [], f"the queue instance fills up after about {len(queued)} of {n} tasks: the "
               "refused ones must be returned, not dropped", expected=f"{n - len(queued)} tasks",
               actual=left)
        expect(queued + left == tasks, "every task is either in the queue or returned, in order: "
               "stop at the first refusal (a later push that happens to fit would jump the queue)",
               expected=f"{len(queued)} queued + {n - len(queued)} returned = {n}",
               actual=f"{len(queued)} queued + {len(left)} returned")
        expect(int(r.info("stats")["evicted_keys"]) == 0, "nothing is evicted on the queue instance",
               expected=0, actual=r.info("stats")["evicted_keys"])

    return Exercise(
        "a producer that is told", checker,
        hints=["Build the queue from the router: ReliableQueue(p.client('queue', f'tasks:{job}'), "
               "f'tasks:{job}'), and push the tasks one by one, in order.",
               "A full noeviction instance answers LPUSH with an error: redis-py raises "
               "redis.exceptions.OutOfMemoryError. Catch it, stop, and return tasks[i:] (the refused "
               "one and everything after it)."],
        solution=inspect.getsource(enqueue), reference=enqueue,
    )
