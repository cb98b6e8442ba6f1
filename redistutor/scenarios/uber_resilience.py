"""Scenarios for notebooks/30-uber-resilience.ipynb: a sharded database behind three cache nodes.

* :func:`start_fleet`: three independent redis-servers, the cache nodes ``c1..c3``.
* :class:`ShardedDB`: the database stand-in, three SQLite files with a per-shard capacity (queries
  per pass) and a trigger-fed change log per shard (the binlog a CDC tailer reads).
* :func:`hot_shard`: warm the cache, read every key, kill -9 one cache node, read every key again;
  queries per DB shard before and after, aligned vs staggered placement.
* :func:`hung_node`: SIGSTOP one cache node and send requests through :func:`read` with and without
  a :class:`CircuitBreaker` driven by an injected clock; a per-request record of breaker state,
  whether the cache was tried, and the measured latency.
* :func:`cdc_run`: a tailer process (the pattern's :func:`tail`, or a naive one that starts "from
  now") applies the log while updates arrive; it is killed with kill -9 and started again.
* :func:`all_down`: every cache node killed; writes and reads keep working on the database.

Each helper is one line in the notebook and returns plain data or a view.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis

from .. import charts, lab
from ..lab._base import lab_dir, remove_dir
from ..patterns.uber_resilience import CircuitBreaker, read, shard, tail
from ..race import wait_until
from ..tables import Table

__all__ = [
    "ALIGNED", "KEYS", "STAGGERED", "Clock", "Counted", "DBOverloaded", "NoBreaker", "RecordingBreaker",
    "ShardedDB", "all_down", "cdc_run", "cdc_table", "fast_clients", "hot_shard", "hot_shard_table",
    "hung_node", "hung_table", "naive_tailer_worker", "plot_cdc", "plot_hot_shard", "plot_hung",
    "setup_table", "start_fleet", "state_table", "tailer_worker", "warm",
]

ALIGNED, STAGGERED = "", "cache:"      # the cache's salt: the DB's own ("") or another one
NODES = ("c1", "c2", "c3")
KEYS = [f"trip:{i:04d}" for i in range(900)]


class DBOverloaded(Exception):
    """A DB shard refused a query: it already served its capacity in this pass."""


class ShardedDB:
    """Three SQLite shards (files, so a tailer process can read the change log), placed by
    ``shard(key, n)`` without salt. Each counts its queries; past ``capacity`` per pass it refuses."""

    def __init__(self, n: int = 3, capacity: int | None = None) -> None:
        self.n, self.capacity = n, capacity
        self.dir = lab_dir("uber-db")
        self.paths = [str(self.dir / f"d{j + 1}.sqlite") for j in range(n)]
        self.conns = [sqlite3.connect(p, check_same_thread=False, isolation_level=None) for p in self.paths]
        for c in self.conns:
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=OFF")   # a stand-in: speed over durability
            c.executescript(SCHEMA)
        self.reset_counts()

    def where(self, key: str) -> int:
        return shard(key, self.n)

    def reset_counts(self) -> None:
        self.queries = [0] * self.n
        self.refused = [0] * self.n

    def get(self, key: str) -> str | None:
        j = self.where(key)
        if self.capacity is not None and self.queries[j] >= self.capacity:
            self.refused[j] += 1
            raise DBOverloaded(f"d{j + 1} is at capacity ({self.capacity} queries)")
        self.queries[j] += 1
        row = self.conns[j].execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, value: str) -> int:
        """Write a row; the trigger appends it to the shard's change log. Returns the log seq."""
        c = self.conns[self.where(key)]
        c.execute("INSERT INTO kv(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                  (key, value))
        return int(c.execute("SELECT max(seq) FROM changelog").fetchone()[0])

    def changes(self, j: int) -> Callable[[int, int], Iterator[tuple[int, str, str]]]:
        return log_reader(self.conns[j])

    def log_end(self, j: int) -> int:
        return int(self.conns[j].execute("SELECT coalesce(max(seq), 0) FROM changelog").fetchone()[0])

    def rows(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for c in self.conns:
            out.update(dict(c.execute("SELECT key, value FROM kv")))
        return out

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.conns = []
        remove_dir(self.dir)


SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS changelog (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT, value TEXT);
CREATE TRIGGER IF NOT EXISTS kv_ins AFTER INSERT ON kv BEGIN
  INSERT INTO changelog(key, value) VALUES (new.key, new.value); END;
CREATE TRIGGER IF NOT EXISTS kv_upd AFTER UPDATE ON kv BEGIN
  INSERT INTO changelog(key, value) VALUES (new.key, new.value); END;
"""


def log_reader(conn: sqlite3.Connection) -> Callable[[int, int], Iterator[tuple[int, str, str]]]:
    def changes(offset: int, batch: int) -> Iterator[tuple[int, str, str]]:
        yield from conn.execute("SELECT seq, key, value FROM changelog WHERE seq > ? ORDER BY seq LIMIT ?",
                                (offset, batch)).fetchall()
    return changes


# -- the cache nodes --------------------------------------------------------------------------------


def start_fleet() -> lab.Fleet:
    """Three independent redis-servers, the cache nodes c1, c2, c3."""
    return lab.Fleet(names=list(NODES), name="uber").start()


def setup_table(fleet: lab.Fleet, db: ShardedDB) -> Table:
    rows: list[tuple[Any, ...]] = [(node.name, "cache node (redis-server)", node.r.info("server")["redis_version"], "")
                                   for node in fleet]
    rows += [(f"d{j + 1}", "DB shard (SQLite file)", "", db.capacity or "") for j in range(db.n)]
    return Table(["name", "what", "redis", "capacity (queries per pass)"], rows,
                 title="three cache nodes in front of three database shards, on this machine")


def fast_clients(fleet: lab.Fleet, timeout: float = 1.0) -> list[redis.Redis]:
    """A client per node with a ``timeout`` s socket timeout and no retries. A dead node refuses at
    once whatever the timeout; only a hung node waits for it. The 1 s default keeps a live node on
    a loaded machine from counting as failed."""
    return [node.client(socket_timeout=timeout, socket_connect_timeout=timeout) for node in fleet]


class NoBreaker:
    """The naive client: always tries the cache, remembers nothing."""

    state = "none"

    def allow(self) -> bool:
        return True

    def record(self, ok: bool) -> None:
        pass


class Clock:
    """An injected clock for the breaker's window: it moves only when the scenario says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def warm(fleet: lab.Fleet, db: ShardedDB, salt: str, skip_every: int = 5) -> None:
    """Load the DB with every key and the cache with 4 in 5 of them (the rest are cold misses)."""
    for node in fleet:
        node.r.flushall()
    for i, key in enumerate(KEYS):
        db.put(key, f"v{i}")
    pipes = [node.r.pipeline(transaction=False) for node in fleet]
    for i, key in enumerate(KEYS):
        if i % skip_every:
            pipes[shard(key, len(pipes), salt)].set(key, f"v{i}")
    for p in pipes:
        p.execute()
    db.reset_counts()


def _pass(caches: list, db: ShardedDB, salt: str) -> dict[str, Any]:
    db.reset_counts()
    breakers = [CircuitBreaker() for _ in caches]
    failed = 0
    for key in KEYS:
        try:
            read(key, caches, breakers, db, salt)
        except DBOverloaded:
            failed += 1
    return {"queries": list(db.queries), "refused": list(db.refused), "failed": failed}


def hot_shard(fleet: lab.Fleet, db: ShardedDB, salt: str, victim: str = "c1") -> dict[str, Any]:
    """Read every key, kill -9 one cache node, read every key again; per-DB-shard load each time."""
    if not fleet[victim].running:
        fleet[victim].restart(wipe=True)
    warm(fleet, db, salt)
    caches = fast_clients(fleet)
    before = _pass(caches, db, salt)
    fleet[victim].kill()
    after = _pass(caches, db, salt)
    fleet[victim].restart(wipe=True)
    for c in caches:
        c.close()
    load = [a + r for a, r in zip(after["queries"], after["refused"])]   # what reached each shard
    return {"layout": "aligned" if salt == ALIGNED else "staggered", "before": before, "after": after,
            "load": load, "ratio": max(load) / max(1, min(load)), "capacity": db.capacity}


def hot_shard_table(runs: list[dict[str, Any]]) -> Table:
    rows = []
    for run in runs:
        for j in range(len(run["load"])):
            rows.append((run["layout"], f"d{j + 1}", run["before"]["queries"][j], run["load"][j],
                         run["after"]["refused"][j]))
    return Table(["layout", "DB shard", "queries, all caches up", "queries after c1 died", "refused (over capacity)"],
                 rows, title=f"one pass over {len(KEYS)} keys; capacity {runs[0]['capacity']} queries per shard")


def plot_hot_shard(runs: list[dict[str, Any]]) -> None:
    fig, axes = charts.figure("Load per DB shard after cache node c1 was killed", xlabel="DB shard",
                              ylabel="queries per pass", ncols=len(runs), width=9, sharey=True)
    for n, (ax, run) in enumerate(zip(axes, runs)):
        xs = range(len(run["load"]))
        last = n == len(runs) - 1        # one legend, beside the last panel
        ax.bar([x - 0.2 for x in xs], run["before"]["queries"], width=0.4, label="all caches up" if last else None)
        ax.bar([x + 0.2 for x in xs], run["load"], width=0.4, label="c1 dead" if last else None)
        ax.axhline(run["capacity"], color="black", linestyle="--", linewidth=1, label="capacity" if last else None)
        ax.set_xticks(list(xs), [f"d{j + 1}" for j in xs])
        ax.set_title(f"{run['layout']} (max/min {run['ratio']:.1f})")
    charts.finish(list(axes), summary=", ".join(
        f"{r['layout']}: the busiest shard got {max(r['load'])} queries, the quietest {min(r['load'])} "
        f"(max/min {r['ratio']:.2f})" for r in runs) + " in this run")


# -- a hung node --------------------------------------------------------------------------------------


class RecordingBreaker(CircuitBreaker):
    """The pattern's breaker, noting every state change with the request that caused it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.changes: list[tuple[int, str]] = []
        self.request = 0
        super().__init__(*args, **kwargs)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "state" and value != getattr(self, "state", None):
            self.changes.append((self.request, value))
        object.__setattr__(self, name, value)


class Counted:
    """A cache client that counts the GETs sent to it (a hung node cannot report them itself)."""

    def __init__(self, r: redis.Redis) -> None:
        self.r, self.calls = r, 0

    def get(self, key: str) -> Any:
        self.calls += 1
        return self.r.get(key)


def hung_node(fleet: lab.Fleet, db: ShardedDB, breaker: bool, *, victim: str = "c1", timeout: float = 0.25,
              step: float = 0.01, threshold: int = 5, cooldown: float = 0.5) -> dict[str, Any]:
    """Requests for keys on ``victim``: 10 healthy, 16 with the node SIGSTOPped, 10 after SIGCONT.

    The breaker's clock advances ``step`` per request, and ``cooldown`` once while the node is hung
    and once after it recovered, so its states depend only on the order of events, never on the
    machine's speed.
    """
    warm(fleet, db, STAGGERED, skip_every=len(KEYS) + 1)
    clients = fast_clients(fleet, timeout)
    caches = [Counted(c) for c in clients]
    clock = Clock()
    vi = [n.name for n in fleet].index(victim)
    breakers: list[Any] = [RecordingBreaker(threshold=threshold, window=1.0, cooldown=cooldown, clock=clock)
                           if breaker else NoBreaker() for _ in caches]
    keys = iter([k for k in KEYS if shard(k, len(caches), STAGGERED) == vi][1:])
    rows: list[dict[str, Any]] = []

    def request(phase: str) -> None:
        i, n0 = len(rows), caches[vi].calls
        breakers[vi].request = i
        t0 = time.perf_counter()
        value = read(next(keys), caches, breakers, db, STAGGERED)
        rows.append({"i": i, "phase": phase, "tried_cache": caches[vi].calls > n0,
                     "ms": (time.perf_counter() - t0) * 1000, "ok": value is not None})
        clock.advance(step)

    try:
        for _ in range(10):
            request("healthy")
        fleet[victim].pause()
        for _ in range(12):
            request("hung")
        clock.advance(cooldown)           # the cooldown passes while the node is still hung
        for _ in range(4):
            request("hung")
        fleet[victim].resume()
        wait_until(fleet[victim].r.ping, 10, f"{victim} to answer again")
        clock.advance(cooldown)           # and again after it recovered
        for _ in range(10):
            request("recovered")
    finally:
        if fleet[victim].paused:
            fleet[victim].resume()
        for c in clients:
            c.close()
    changes = breakers[vi].changes if breaker else []
    return {"breaker": breaker, "rows": rows, "changes": changes, "states": [s for _, s in changes],
            "timeout_ms": timeout * 1000}


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def hung_table(runs: list[dict[str, Any]]) -> Table:
    out = []
    for run in runs:
        for phase in ("healthy", "hung", "recovered"):
            rs = [r for r in run["rows"] if r["phase"] == phase]
            ms = [r["ms"] for r in rs]
            out.append(("breaker" if run["breaker"] else "no breaker", phase, len(rs),
                        sum(r["tried_cache"] for r in rs), sum(r["ok"] for r in rs), _pct(ms, 0.5), _pct(ms, 0.99)))
    return Table(["client", "phase", "requests", "tried the cache", "answered", "p50 (ms)", "p99 (ms)"], out,
                 title=f"requests for c1's keys; cache timeout {runs[0]['timeout_ms']:.0f} ms (this run)",
                 fmt={"p50 (ms)": ".1f", "p99 (ms)": ".1f"})


def state_table(run: dict[str, Any]) -> Table:
    """The breaker's state timeline: one row per change, with the request that caused it."""
    rows = [(i, run["rows"][i]["phase"] if i < len(run["rows"]) else "", s,
             "yes" if i < len(run["rows"]) and run["rows"][i]["tried_cache"] else "no")
            for i, s in run["changes"]]
    return Table(["request", "node c1", "breaker state", "that request tried the cache"], rows,
                 title="circuit breaker for c1: every state change")


def plot_hung(runs: list[dict[str, Any]]) -> None:
    fig, ax = charts.figure("Request latency with cache node c1 hung (SIGSTOP)", xlabel="request number",
                            ylabel="latency (ms)")
    for run in runs:
        ax.plot([r["i"] for r in run["rows"]], [r["ms"] for r in run["rows"]], marker=".",
                label="breaker" if run["breaker"] else "no breaker")
    hung = [r["i"] for r in runs[0]["rows"] if r["phase"] == "hung"]
    ax.axvspan(min(hung) - 0.5, max(hung) + 0.5, alpha=0.12, color="grey", label="c1 hung")
    total = {("breaker" if r["breaker"] else "no breaker"): sum(x["ms"] for x in r["rows"] if x["phase"] == "hung")
             for r in runs}
    charts.finish(ax, summary="time spent on the hung phase's requests: " + ", ".join(
        f"{k} {v:.0f} ms" for k, v in total.items()) + " in this run")


# -- CDC ------------------------------------------------------------------------------------------------


def _mine(n: int, i: int, salt: str) -> Callable[[str], bool]:
    return lambda key: shard(key, n, salt) == i


def tailer_worker(ctx: lab.WorkerContext, paths: list[str], salt: str, hello: str, batch: int = 50) -> None:
    """The pattern's tailer, in its own process: every (cache node, DB shard) pair, round and round."""
    conns = [sqlite3.connect(p, isolation_level=None) for p in paths]
    clients = ctx.clients()
    ctx.record(hello)
    while True:
        busy = False
        for i, r in enumerate(clients):
            for j, conn in enumerate(conns):
                n = tail(log_reader(conn), r, f"d{j + 1}", _mine(len(clients), i, salt), batch)
                if n:
                    last = int(r.get(f"cdc:offset:d{j + 1}"))
                    ctx.record("applied", f"c{i + 1} d{j + 1} {last - n + 1} {last}")
                    busy = True
        if not busy:
            time.sleep(0.002)


def naive_tailer_worker(ctx: lab.WorkerContext, paths: list[str], salt: str, hello: str, batch: int = 50) -> None:
    """A tailer that keeps its offset in memory and starts "from now", like ``tail -f``."""
    conns = [sqlite3.connect(p, isolation_level=None) for p in paths]
    clients = ctx.clients()
    offsets = [conn.execute("SELECT coalesce(max(seq), 0) FROM changelog").fetchone()[0]
               for conn in conns]                   # "from now": whatever came before is skipped
    ctx.record(hello)
    while True:
        for j, conn in enumerate(conns):
            first = offsets[j] + 1
            for seq, key, value in log_reader(conn)(offsets[j], batch):
                clients[shard(key, len(clients), salt)].set(key, value)
                offsets[j] = seq                    # in this process's memory only
            if offsets[j] >= first:
                for i in range(len(clients)):
                    ctx.record("applied", f"c{i + 1} d{j + 1} {first} {offsets[j]}")
        time.sleep(0.002)


def _updates(db: ShardedDB, keys: list[str], tag: str, committed: dict, log: lab.EventLog) -> None:
    for key in keys:
        seq = db.put(key, f"{tag}:{seq_hint(db, key)}")
        committed[(db.where(key), seq)] = log.now()
        time.sleep(0.001)


def seq_hint(db: ShardedDB, key: str) -> int:
    """The next change-log seq of ``key``'s shard: values carry their own version."""
    return db.log_end(db.where(key)) + 1


def cdc_run(fleet: lab.Fleet, db: ShardedDB, naive: bool = False) -> dict[str, Any]:
    """Updates while a tailer runs; kill -9 it; updates while it is down; a new tailer; more updates.

    Phase 1 updates keys 0-59, phase 2 (tailer dead) keys 0-149, phase 3 keys 0-59 again, so keys
    60-149 were last written while no tailer ran.
    """
    for node in fleet:                 # an empty cache that starts at the log's current end (in
        node.r.flushall()              # production: a snapshot loaded at that offset)
        for j in range(db.n):
            node.r.set(f"cdc:offset:d{j + 1}", db.log_end(j))
    fn = naive_tailer_worker if naive else tailer_worker
    log = lab.EventLog()
    committed: dict[tuple[int, int], float] = {}
    first = lab.Workers(fn, 1, nodes=list(fleet), args=(db.paths, STAGGERED, "started"), log=log,
                        name="uber-tailer").start()
    first.wait_for("started")
    _updates(db, KEYS[:60], "p1", committed, log)
    first.wait_for("applied")
    first.kill("w1")
    first.stop()
    _updates(db, KEYS[:150], "p2", committed, log)
    second = lab.Workers(fn, 1, nodes=list(fleet), args=(db.paths, STAGGERED, "restarted"), log=log,
                         name="uber-tailer").start()
    second.wait_for("restarted")
    _updates(db, KEYS[:60], "p3", committed, log)
    ends = [db.log_end(j) for j in range(db.n)]

    def caught_up() -> bool:
        second.collect()
        done = {(d[0], d[1]) for d in (e.detail.split() for e in log.of_kind("applied"))
                if int(d[3]) == ends[int(d[1][1:]) - 1]}
        return len(done) == len(fleet) * db.n

    wait_until(caught_up, 30, "the tailer to reach the end of every change log")
    second.stop()
    lags = []
    for e in log.of_kind("applied"):
        node, dj, _lo, hi = e.detail.split()
        c = committed.get((int(dj[1:]) - 1, int(hi)))
        if c is not None:
            lags.append((e.t, (e.t - c) * 1000))
    truth = db.rows()
    caches = [node.r for node in fleet]
    stale = sorted(k for k in KEYS[:150] if caches[shard(k, len(caches), STAGGERED)].get(k) != truth[k])
    kill_t = next(e.t for e in log.of_kind("fault"))
    restart_t = log.of_kind("restarted")[0].t
    return {"naive": naive, "updates": 270, "stale": stale, "lags": lags, "exitcode": first.exitcodes["w1"],
            "down": (kill_t, restart_t), "batches": len(log.of_kind("applied"))}


def cdc_table(runs: list[dict[str, Any]]) -> Table:
    rows = [("naive (offset in memory, from now)" if r["naive"] else "tail(): offset in Redis, same MULTI",
             r["exitcode"], r["updates"], len(r["stale"]),
             ", ".join(r["stale"][:3]) + (" ..." if len(r["stale"]) > 3 else "")) for r in runs]
    return Table(["tailer", "first tailer's exit code", "updates to the DB", "keys stale in the cache", "for example"],
                 rows, title="CDC: a tailer killed with kill -9 and started again")


def plot_cdc(run: dict[str, Any]) -> None:
    fig, ax = charts.figure("CDC lag: DB commit to cache", xlabel="time since the run started (s)",
                            ylabel="lag (ms, log scale)")
    ax.set_yscale("log")
    ax.plot([t for t, _ in run["lags"]], [ms for _, ms in run["lags"]], marker=".", linestyle="none",
            label="last entry of each applied batch")
    ax.axvspan(*run["down"], alpha=0.12, color="grey", label="no tailer (killed)")
    lag = [ms for _, ms in run["lags"]]
    charts.finish(ax, summary=f"{len(lag)} batches; lag p50 {_pct(lag, 0.5):.1f} ms, max {max(lag):.0f} ms "
                  "(the max includes the time the tailer was dead) in this run")


# -- every cache node down ------------------------------------------------------------------------------


def all_down(fleet: lab.Fleet, db: ShardedDB, n: int = 100) -> dict[str, Any]:
    """Kill every cache node; write and read through the pattern; restart; a tailer catches up."""
    for node in fleet:
        node.kill()
    caches = fast_clients(fleet)
    breakers = [CircuitBreaker() for _ in caches]
    db.reset_counts()
    start = max(db.log_end(j) for j in range(db.n)) + 1
    writes, reads = 0, 0
    for u in range(n):
        key = KEYS[100 + u]
        db.put(key, f"w{start + u}")
        writes += 1
        reads += read(key, caches, breakers, db, STAGGERED) == f"w{start + u}"
    states = [b.state for b in breakers]
    for node in fleet:
        node.restart(wipe=True)
    for i, node in enumerate(fleet):              # an empty node's offset is 0: it replays the log
        for j in range(db.n):
            while tail(db.changes(j), node.r, f"d{j + 1}", _mine(len(caches), i, STAGGERED)):
                pass
    truth = db.rows()
    stale = [k for k, v in truth.items() if fleet[shard(k, 3, STAGGERED)].r.get(k) != v]
    for c in caches:
        c.close()
    return {"writes": writes, "reads_ok": reads, "breakers": states, "stale_after": len(stale), "keys": len(truth)}
