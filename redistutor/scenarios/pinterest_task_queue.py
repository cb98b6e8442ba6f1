"""Scenarios for notebooks/17-pinterest-task-queue.ipynb: one shared Redis vs one per function.

* :func:`start_fleet`: five real redis-servers: ``shared`` (everything on one instance) and the
  partitioned set ``cache1``, ``cache2``, ``sessions``, ``queue``, each with its function's
  ``maxmemory-policy``; :func:`routers` gives a :class:`Partitioned` router over each layout.
* :func:`pressure`: a backlog of queued tasks and some sessions, then a burst of cache writes,
  then the workers drain the queues; the toolkit's SQLite :class:`~redistutor.sink.Sink` counts
  tasks produced (LPUSH acknowledged) and consumed, and ``INFO stats evicted_keys`` is the
  server's own count.
* :func:`queue_full`: what ``noeviction`` does when the queue instance is full (which commands are
  refused with OOM, which still run), and that the producer is told.
* :func:`noisy_neighbour`: queue round trips timed while a cache-hammer *process* floods the
  same instance vs the cache instances; the servers' ``INFO commandstats`` say what each one ran.
* :func:`sharding`: keys per instance by virtual shard, and how many keys move when a function
  grows from 2 to 3 instances (by moving shards vs by ``crc32 % instances``).

Each helper is one line in the notebook and returns plain data or a view.
"""

from __future__ import annotations

import contextlib
import statistics
import time
import zlib
from typing import Any

import redis

from .. import lab
from ..events import EventLog
from ..patterns.pinterest_task_queue import Partitioned
from ..patterns.reliable_queue import ReliableQueue
from ..race import wait_until
from ..sink import CommandStats, Sink, close_sinks, config
from ..tables import Table

__all__ = [
    "JOBS", "NODES", "POLICIES", "Sink", "backlog", "cache_burst", "cache_hammer", "close_sinks",
    "config_table", "configure", "drain", "evicted", "latency_table", "memory_table",
    "noisy_neighbour", "one_instance", "plot_latency", "pressure", "pressure_table", "queue_full", "reset",
    "routers", "sharding", "start_fleet", "wait_until_idle", "workers_return",
]

JOBS = ("transcode", "spam", "notify", "feed")          # one list-based queue per job type
NODES = ("shared", "cache1", "cache2", "sessions", "queue")
MB = 1024 * 1024
# Each instance's job decides its config: (maxmemory, policy).
POLICIES = {
    "shared": (4 * MB, "allkeys-lru"),     # one instance for everything: it must evict for the cache
    "cache1": (2 * MB, "allkeys-lru"),     # cache: evicting is fine (2 x 2 MB = the shared 4 MB)
    "cache2": (2 * MB, "allkeys-lru"),
    "sessions": (4 * MB, "volatile-lru"),  # sessions: only keys with a TTL may go
    "queue": (4 * MB, "noeviction"),       # queue: never drop a task; refuse writes when full
}


# -- the instances -----------------------------------------------------------------------------


def configure(node, maxmemory: int, policy: str) -> None:
    node.r.config_set("maxmemory", maxmemory)
    node.r.config_set("maxmemory-policy", policy)


def start_fleet() -> lab.Fleet:
    """Five independent redis-servers, each configured for its function (see ``POLICIES``)."""
    fleet = lab.Fleet(names=list(NODES), name="pinterest").start()
    for node in fleet:
        configure(node, *POLICIES[node.name])
    return fleet


def routers(fleet: lab.Fleet) -> tuple[Partitioned, Partitioned]:
    """(everything on the shared instance, each function on its own instances)."""
    one = fleet["shared"].r
    shared = Partitioned({"cache": [one], "sessions": [one], "queue": [one]})
    split = Partitioned({"cache": [fleet["cache1"].r, fleet["cache2"].r],
                         "sessions": [fleet["sessions"].r], "queue": [fleet["queue"].r]})
    return shared, split


def config_table(fleet: lab.Fleet) -> Table:
    rows = []
    for node in fleet:
        cfg = node.r.config_get("maxmemory*")
        rows.append((node.name, node.r.info("server")["redis_version"], cfg["maxmemory-policy"],
                     int(cfg["maxmemory"]) // MB))
    return Table(["instance", "redis", "maxmemory-policy", "maxmemory (MB)"], rows,
                 title="five independent redis-servers, one config each")


def reset(fleet: lab.Fleet) -> None:
    """Empty every instance and zero its counters (INFO stats, commandstats), configs as in POLICIES."""
    for node in fleet:
        node.r.flushall()
        node.r.config_resetstat()
        configure(node, *POLICIES[node.name])


def evicted(client) -> int:
    """The server's own count of keys it evicted (INFO stats evicted_keys)."""
    return int(client.info("stats")["evicted_keys"])


def _unique(clients) -> list:
    seen, out = set(), []
    for c in clients:
        if id(c) not in seen:
            seen.add(id(c))
            out.append(c)
    return out


def wait_until_idle(client, key: str, seconds: int = 1, timeout: float = 5.0) -> None:
    """Poll OBJECT IDLETIME until ``key`` has been untouched for ``seconds`` (LRU's clock ticks in
    seconds): the backlog is older than anything the cache writes next."""
    wait_until(lambda: (client.object("idletime", key) or 0) >= seconds, timeout, f"{key} to be idle", step=0.02)


# -- cache pressure on a backlog -----------------------------------------------------------------


def _queues(p: Partitioned) -> dict[str, ReliableQueue]:
    return {job: ReliableQueue(p.client("queue", f"tasks:{job}"), f"tasks:{job}") for job in JOBS}


def drain(p: Partitioned, sink: Sink, worker: str = "w1") -> int:
    """A worker takes every task left in every job queue (take / process / ack), into the sink.
    Stops at an OOM refusal (a full ``noeviction`` instance refuses BLMOVE too); returns how many."""
    n = 0
    try:
        for q in _queues(p).values():
            while (task := q.take(worker, timeout=0.01)) is not None:
                sink.record(task, worker)
                q.ack(worker, task)
                n += 1
    except redis.exceptions.OutOfMemoryError:
        pass
    return n


def one_instance(r) -> Partitioned:
    """Every function on one client: the layout most applications start with."""
    return Partitioned({"cache": [r], "sessions": [r], "queue": [r]})


def backlog(p: Partitioned, *, tasks: int = 120, sessions: int = 60) -> dict:
    """Step 1, a deploy: the workers are down. ``tasks`` tasks are LPUSHed to the job queues (the
    sink records each one Redis acknowledged) and ``sessions`` sessions are stored with a one-hour
    TTL. Returns the run's state for :func:`cache_burst` and :func:`workers_return`."""
    sink = Sink()
    clients = _unique([c for rs in p.routes.values() for c in rs])
    queues = _queues(p)
    for job, q in queues.items():
        ids = [f"{job}:{i:04d}" for i in range(tasks // len(JOBS))]
        q.push(*ids)                          # OK from Redis: the producer moves on
        sink.produce(*ids)
    users = [f"session:u{i:03d}" for i in range(sessions)]
    for key in users:
        p.client("sessions", key).set(key, "token", ex=3600)
    return dict(p=p, sink=sink, queues=queues, users=users, sessions=sessions, clients=clients,
                before={id(c): evicted(c) for c in clients}, cache_writes=0, cache_refused=0)


def cache_burst(run: dict, *, cache_mb: float = 12, value_bytes: int = 10_000) -> dict:
    """Step 2: once the backlog has been idle for a second, ``cache_mb`` MB of cache entries (10 KB
    each, 5 min TTL) are written through the router, pipelined per instance. Counts cache writes
    refused (OOM) and which job queues no longer exist."""
    p, queues = run["p"], run["queues"]
    last = queues[JOBS[-1]]
    wait_until_idle(last.r, last.queue)
    n, refused = int(cache_mb * MB // value_bytes), 0
    pipes: dict[int, Any] = {}
    for i in range(n):
        key = f"cache:pin:{i}"
        c = p.client("cache", key)
        pipe = pipes.setdefault(id(c), c.pipeline(transaction=False))
        pipe.set(key, "v" * value_bytes, ex=300)
        if len(pipe) >= 100:
            refused += sum(isinstance(x, redis.ResponseError) for x in pipe.execute(raise_on_error=False))
    for pipe in pipes.values():
        refused += sum(isinstance(x, redis.ResponseError) for x in pipe.execute(raise_on_error=False))
    run.update(cache_writes=n, cache_refused=refused,
               queues_gone=[job for job, q in queues.items() if not q.r.exists(q.queue)])
    return run


def workers_return(run: dict) -> dict:
    """Step 3: the workers drain every queue into the sink; then count sessions and evictions."""
    p, clients, before = run["p"], run["clients"], run["before"]
    drained = drain(p, run["sink"])
    alive = sum(p.client("sessions", k).exists(k) for k in run["users"])
    report = run["sink"].report()
    waiting = {t for q in run["queues"].values() for t in q.r.lrange(q.queue, 0, -1)}
    lost = [t for t in report["lost"] if t not in waiting]      # not consumed, and not in Redis
    run.update(report=report, lost=len(lost), lost_ids=lost, waiting=len(waiting), drained=drained,
               sessions_lost=run["sessions"] - alive,
               evicted={c.get_connection_kwargs()["port"]: evicted(c) - before[id(c)] for c in clients},
               evicted_by_function={f: sum(evicted(c) - before[id(c)] for c in _unique(rs))
                                    for f, rs in p.routes.items()})
    return run


def pressure(p: Partitioned, *, tasks: int = 120, sessions: int = 60, cache_mb: float = 12) -> dict:
    """A deploy's backlog meets a cache burst: :func:`backlog`, :func:`cache_burst`,
    :func:`workers_return`. Returns the sink's report, tasks lost, sessions lost, cache writes
    refused (OOM) and ``evicted_keys`` per function's instances."""
    return workers_return(cache_burst(backlog(p, tasks=tasks, sessions=sessions), cache_mb=cache_mb))


def memory_table(client, pattern: str = "tasks:*") -> Table:
    """Used memory vs maxmemory, evicted keys, and how many keys match ``pattern``."""
    mem, stats = client.info("memory"), client.info("stats")
    n = sum(1 for _ in client.scan_iter(match=pattern, count=1000))
    return Table(["used memory (MB)", "maxmemory (MB)", "evicted_keys (INFO stats)", f"keys {pattern}", "keys in all"],
                 [(round(mem["used_memory"] / MB, 2), round(int(mem["maxmemory"]) / MB, 2),
                   int(stats["evicted_keys"]), n, client.dbsize())])


def pressure_table(runs: dict[str, dict]) -> Table:
    rows = []
    for label, run in runs.items():
        rep = run["report"]
        ev = run["evicted_by_function"]
        rows.append((label, rep["produced"], rep["effects"], run["lost"], run["sessions_lost"],
                     ev["cache"], ev["queue"]))
    return Table(["layout", "tasks produced", "tasks consumed", "tasks lost", "sessions lost",
                  "evicted by the cache's instance(s)", "evicted by the queue's instance"], rows,
                 title="the same backlog, sessions and cache burst (counted by the SQLite sink and INFO stats)",
                 note="on the shared layout the cache, session and queue instance is one server")


# -- the queue instance full: noeviction ---------------------------------------------------------


def queue_full(node, *, headroom: int = 150_000, payload: int = 1000) -> dict:
    """Fill the queue instance (under its own policy, ``noeviction``): LPUSH 1 KB tasks until one is
    refused (at most 3,000), then try the
    other commands a queue needs; then give it memory back and drain. Returns the counts, the
    error, and a table of command -> accepted/refused."""
    r = node.r
    r.flushall()
    r.config_resetstat()
    r.config_set("maxmemory", int(r.info("memory")["used_memory"]) + headroom)   # its own policy stays
    sink = Sink()
    q = ReliableQueue(r, "tasks:transcode")
    probe = ReliableQueue(r, "probe")          # one task taken before the instance fills: acked below
    probe.push("probe-task")
    probe.take("w1")
    accepted, error, i = 0, None, 0
    while error is None and i < 3_000:
        task = f"transcode:{i:05d}:" + "x" * payload
        try:
            q.push(task)
            sink.produce(task)
            accepted += 1
        except redis.exceptions.OutOfMemoryError as exc:   # the producer is told
            error = f"OOM {exc}"
        i += 1
    # Stay over the limit while probing (memory moves a little as buffers are freed).
    r.config_set("maxmemory", int(r.info("memory")["used_memory"]) - 64 * 1024)
    # The probes touch their own keys, never the tasks.
    tries = [
        ("LPUSH (a producer's enqueue)", lambda: probe.push("t")),
        ("BLMOVE (a worker's take)", lambda: r.blmove("probe:empty", "probe:processing:w2", 0.01, "RIGHT", "LEFT")),
        ("ZADD (the take's lease)", lambda: r.zadd(probe.leases, {"t": 1})),
        ("EVAL (the ack script, for a task taken earlier)", lambda: probe.ack("w1", "probe-task") or "not acked"),
        ("LLEN (monitoring)", lambda: r.llen(q.queue)),
        ("RPOP (a take that removes)", lambda: r.rpop("probe:empty")),
    ]
    rows = []
    for label, call in tries:
        try:
            rows.append((label, "runs" if call() != "not acked" else "ran, but acked nothing"))
        except redis.exceptions.OutOfMemoryError:
            rows.append((label, "refused: OOM"))
    evictions = evicted(r)
    r.config_set("maxmemory", POLICIES["queue"][0])         # the operator adds memory
    drained = 0
    while (task := q.take("w1", timeout=0.01)) is not None:
        sink.record(task, "w1")
        q.ack("w1", task)
        drained += 1
    return dict(accepted=accepted, refused_at=i - 1, error=error, rows=dict(rows), evicted=evictions,
                probe_done=r.get(probe.done),
                drained=drained, report=sink.report(),
                table=Table(["command on the full queue instance", "result"], rows,
                            title="noeviction at maxmemory"))


# -- the noisy neighbour ---------------------------------------------------------------------------


def cache_hammer(ctx: Any, stop_key: str) -> None:
    """Worker process: rebuild a cached home feed from three boards (ZUNIONSTORE of big sorted
    sets: heavy for the server, an integer for the client) in a loop until ``stop_key`` exists;
    records "ready" once its first rebuild has run, and then "done" with its command count."""
    r = ctx.client(0)
    r.zunionstore(f"cache:feed:u{ctx.index}", ["cache:board:1", "cache:board:2", "cache:board:3"])
    ctx.record("ready")
    n = 1
    while not r.exists(stop_key):
        r.zunionstore(f"cache:feed:u{ctx.index}", ["cache:board:1", "cache:board:2", "cache:board:3"])
        n += 1
    ctx.record("done", str(n))


def _load_cache(clients, members: int) -> None:
    """Three boards of ``members`` pins each (sorted sets scored by time) on each cache client."""
    for c in clients:
        for b in (1, 2, 3):
            c.zadd(f"cache:board:{b}", {f"pin:{b}:{i}": i for i in range(members)})


def _timed_queue_ops(q: ReliableQueue, ops: int) -> list[float]:
    """Each op: push a task, take it, ack it (four round trips); its time in ms."""
    out = []
    for i in range(ops):
        t0 = time.perf_counter()
        q.push(f"notify:{i:04d}")
        task = q.take("w1", timeout=1)
        q.ack("w1", task)
        out.append((time.perf_counter() - t0) * 1000)
    return out


class _Endpoint:
    """host/port/password of a client, in the shape lab.Workers takes for a node."""

    def __init__(self, client) -> None:
        kw = client.get_connection_kwargs()
        self.host, self.port, self.password = kw["host"], kw["port"], kw.get("password")
        self.name = str(self.port)


def _one_layout(p: Partitioned, *, ops: int, members: int, hammers: int) -> dict:
    """The cache function's hammer process(es) on ``p.client("cache", ...)``, timed queue ops on
    ``p.client("queue", ...)``: whatever instances the router gives."""
    cache_clients = [p.client("cache", f"cache:feed:u{i + 1}") for i in range(hammers)]
    queue_client = p.client("queue", "tasks:notify")
    involved = _unique([*cache_clients, queue_client])
    with contextlib.ExitStack() as restore:
        for c in involved:
            c.flushall()
            restore.enter_context(config(c, {"maxmemory": 0}))   # no memory limit: this run is about time
        return _timed_layout(cache_clients, queue_client, ops=ops, members=members)


def _timed_layout(cache_clients: list, queue_client, *, ops: int, members: int) -> dict:
    _load_cache(_unique(cache_clients), members)
    q = ReliableQueue(queue_client, "tasks:notify")
    quiet = _timed_queue_ops(q, ops // 2)      # nobody else on the queue's server
    server_counts = CommandStats(queue_client).start()
    log = EventLog()
    workers = []
    try:
        for c in cache_clients:   # one process per hammer, each bound to its cache instance
            workers.append(lab.Workers(cache_hammer, 1, nodes=[_Endpoint(c)], log=log,
                                       args=("hammer:stop",)).start())
        for w in workers:
            w.wait_for("ready", timeout=60)    # the hammers are past their first command
        loud = _timed_queue_ops(q, ops)
        for c in _unique(cache_clients):
            c.set("hammer:stop", 1)
        for w in workers:
            w.join(30)
    finally:
        for w in workers:
            w.stop()
    server_counts.stop()
    queue_cmds = {c: server_counts.calls.get(c, 0) for c in ("lpush", "blmove", "zadd", "eval")}
    done = sum(int(e.detail) for e in log.events if e.kind == "done")
    return dict(quiet=quiet, loud=loud, cache_calls=server_counts.calls.get("zunionstore", 0),
                cache_ms=server_counts.usec.get("zunionstore", 0.0) / 1000, queue_cmds=queue_cmds,
                hammer_calls=done, queue_port=queue_client.get_connection_kwargs()["port"])


def noisy_neighbour(one: Partitioned, split: Partitioned, *, ops: int = 100, members: int = 2_000,
                    hammers: int = 1) -> dict:
    """Queue ops timed while a cache process rebuilds feeds, on the instances each router gives:
    ``one`` (everything on one instance) and ``split`` (partitioned). Returns both runs
    (latencies in ms, what the queue's server executed meanwhile) and the ratio of medians."""
    shared = _one_layout(one, ops=ops, members=members, hammers=hammers)
    part = _one_layout(split, ops=ops, members=members, hammers=hammers)
    ratio = statistics.median(shared["loud"]) / statistics.median(part["loud"])
    return dict(shared=shared, split=part, ratio=ratio, ops=ops, members=members)


def latency_table(run: dict, fleet: lab.Fleet | None = None) -> Table:
    names = {node.port: node.name for node in fleet} if fleet is not None else {}
    rows = []
    for label, key in (("shared", "shared"), ("partitioned", "split")):
        x = run[key]
        rows.append((label, names.get(x["queue_port"], str(x["queue_port"])), round(statistics.median(x["quiet"]), 2),
                     round(statistics.median(x["loud"]), 2), round(_p(x["loud"], 0.99), 2),
                     x["cache_calls"], round(x["cache_ms"], 1)))
    return Table(["layout", "queue's server", "median op alone (ms)", "median op with the cache load (ms)",
                  "p99 with the cache load (ms)", "cache ZUNIONSTOREs it ran meanwhile", "its time on them (ms)"],
                 rows, title=f"{run['ops']} queue ops (push, take, ack) while a cache process rebuilds feeds "
                             f"(ZUNIONSTORE of three {run['members']:,}-pin boards)")


def _p(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def plot_latency(run: dict):
    from .. import charts

    fig, ax = charts.figure("Queue op latency next to a cache workload",
                            xlabel="queue op (push + take + ack) latency (ms)", ylabel="fraction of ops (cumulative)")
    for label, key in (("shared instance", "shared"), ("partitioned (own queue instance)", "split")):
        xs = sorted(run[key]["loud"])
        ax.step(xs, [(i + 1) / len(xs) for i in range(len(xs))], where="post", label=label)
    ax.set_xscale("log")
    s, p = statistics.median(run["shared"]["loud"]), statistics.median(run["split"]["loud"])
    charts.finish(ax, summary=f"in this run the median queue op took {s:.2f} ms on the shared instance and "
                              f"{p:.2f} ms on its own instance: {run['ratio']:.1f}x")
    return fig


# -- sharding by key -------------------------------------------------------------------------------


def sharding(p: Partitioned, function: str = "cache", n: int = 10_000) -> dict:
    """Where ``n`` keys land (per instance, asked through ``p.client``), and the share of keys that
    change instance when the function grows by one instance: by moving shards in ``p``'s placement
    (a third of them go to the new instance) vs by ``crc32(key) % instances``. ``p`` is left as it was."""
    keys = [f"cache:pin:{i}" for i in range(n)]
    routes = p.routes[function]
    count = len(routes)
    before = [p.client(function, k) for k in keys]
    per_instance = [sum(c is r for c in before) for r in routes]
    saved = list(p.placement[function])
    newcomer = object()                       # stands for the new instance's client
    routes.append(newcomer)
    moved_shards = list(range(p.shards))[-(p.shards // (count + 1)):]   # the last third of the shards
    try:
        for s in moved_shards:
            p.placement[function][s] = count
        after = [p.client(function, k) for k in keys]
    finally:
        routes.remove(newcomer)
        p.placement[function][:] = saved
    by_shard = sum(a is not b for a, b in zip(before, after))
    by_mod = sum(zlib.crc32(k.encode()) % count != zlib.crc32(k.encode()) % (count + 1) for k in keys)
    table = Table(["instance", "keys", "share"],
                  [(f"{function} #{i}", c, f"{c / n:.1%}") for i, c in enumerate(per_instance)],
                  title=f"{n} keys over {count} instances by virtual shard ({p.shards} shards)")
    grow = Table([f"grow from {count} to {count + 1} instances by", "keys that change instance", "share"],
                 [("moving shards", by_shard, f"{by_shard / n:.1%}"),
                  ("crc32(key) % instances", by_mod, f"{by_mod / n:.1%}")],
                 title=f"{n} keys; {len(moved_shards)} of {p.shards} shards move to the new instance")
    return dict(per_instance=per_instance, moved_by_shard=by_shard, moved_by_mod=by_mod, n=n,
                moved_shards=len(moved_shards), table=table, grow=grow)
