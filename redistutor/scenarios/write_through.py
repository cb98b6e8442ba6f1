"""Scenarios for notebooks/02-write-through.ipynb: the Redis-vs-DB consistency view, the two-writer
race (deterministic and live), the write-cost measurement and its chart, a Redis outage with a
restart, and a warm-up racing a write.

Each helper is one line in the notebook and returns plain data or a view; the pattern itself lives
in ``redistutor/patterns/write_through.py``.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..check import Exercise, expect
from ..db import Database
from ..patterns.write_through import WriteThrough
from ..race import PausePoint, run_in_thread
from ..tables import Table


def state(r, truth: Database, prefix: str, user_id: int) -> dict[str, Any]:
    """Redis vs the DB for one user (``truth`` is an uncounted connection to the same DB)."""
    key = f"{prefix}:{user_id}"
    raw = r.get(key)
    cached = json.loads(raw) if raw else None
    row = truth.get_user(user_id)
    return {"key": key, "redis": cached, "ttl": r.ttl(key), "db": row, "agree": cached == row}


def consistency(r, truth: Database, prefix: str, *user_ids: int, title: str = "Redis vs the database") -> Table:
    """One row per user: what Redis holds, its TTL, what the DB holds, and whether they agree."""
    def fmt(row):
        return "(none)" if row is None else f"{row['name']} (v{row['version']})"

    rows = []
    for uid in user_ids:
        s = state(r, truth, prefix, uid)
        ttl = {-1: "none", -2: "(no key)"}.get(s["ttl"], f"{s['ttl']} s")
        rows.append([f"{prefix.rsplit(':', 1)[-1]}:{uid}", fmt(s["redis"]), ttl, fmt(s["db"]),
                     "agree" if s["agree"] else "DISAGREE"])
    return Table(["key", "Redis holds", "TTL", "database holds", "verdict"], rows, title=title)


@dataclass
class RaceResult:
    row_a: dict              # what writer A committed (it is held before its cache write)
    row_b: dict              # what writer B committed and cached in between
    writer_a: WriteThrough   # A's instance (its stats count a refused cache write)
    steps: Table


def writer_race(server, r, db: Database, truth: Database, prefix: str, versioned: bool,
                user_id: int = 5) -> RaceResult:
    """A commits, is held by a pause point before its cache write; B commits and caches; A's
    cache write lands last."""
    server.reset()
    db.seed_users(100)
    pause = PausePoint("after_db_write")
    a = WriteThrough(r, db, prefix=prefix, versioned=versioned, hooks={"after_db_write": pause})
    b = WriteThrough(r, db, prefix=prefix, versioned=versioned)
    writer_a = run_in_thread(lambda: a.write(user_id, name="from A"), thread_name="writer A")
    (row_a,) = pause.wait_reached()               # 1. A committed, and is held before its SET
    row_b = b.write(user_id, name="from B")       # 2. B commits and SETs
    pause.release()                               # 3. A's late cache write
    writer_a.result(timeout=10)
    s = state(r, truth, prefix, user_id)
    cache_write = "SET-if-newer" if versioned else "SET"
    steps = Table(["step", "who", "does", "Redis holds afterwards"], [
        [1, "writer A", f"UPDATE → v{row_a['version']}; held before its {cache_write}", "(nothing)"],
        [2, "writer B", f"UPDATE → v{row_b['version']}; {cache_write} v{row_b['version']}", f"v{row_b['version']}"],
        [3, "writer A", f"{cache_write} v{row_a['version']}" + (" → refused" if a.stats.rejected_sets else ""),
         f"v{s['redis']['version']}"],
    ], title=f"Two writers, {cache_write} as the cache write", note=f"the database holds v{s['db']['version']}")
    return RaceResult(row_a, row_b, a, steps)


def predict_race(server, r, db: Database, truth: Database, prefix: str, versioned: bool) -> Exercise:
    """The "Try it" question: which version does Redis hold after the two-writer race?"""

    def checker(answer) -> None:
        res = writer_race(server, r, db, truth, prefix, versioned)
        held = state(r, truth, prefix, 5)["redis"]["version"]
        expect(answer == held, f"with VERSIONED = {versioned}, Redis ends the race holding version {held} "
               f"(the database holds version {res.row_b['version']})", expected=held, actual=answer)

    return Exercise(
        "predict the cached version", checker,
        hints=["A plain SET keeps whichever cache write arrives last: A's, which is older.",
               "The versioned write refuses a version that is not newer than the cached one."],
        solution="my_answer = 3 if VERSIONED else 2",
    )


def live_races(server, r, db: Database, truth: Database, prefix: str, versioned: bool, *,
               trials: int = 100, seed: int = 5) -> list[dict[str, Any]]:
    """Two threads released by a barrier write the same user; each sleeps a random 0-2 ms between
    its commit and its cache write. One row per trial: Redis version, DB version, agree."""
    server.reset()
    rng = random.Random(seed)
    jitter = {"after_db_write": lambda row: time.sleep(rng.random() * 0.002)}
    writers = [WriteThrough(r, db, prefix=prefix, versioned=versioned, hooks=jitter) for _ in range(2)]
    table = []
    old_latency, db.write_latency = db.write_latency, 0.001  # keep the commits quick
    try:
        for t in range(trials):
            uid = 10 + t % 30
            barrier = threading.Barrier(2)

            def go(w, name, uid=uid, barrier=barrier):
                barrier.wait()
                w.write(uid, name=name)

            jobs = [run_in_thread(go, w, f"trial {t} writer {n}") for n, w in enumerate(writers)]
            for job in jobs:
                job.result(timeout=10)
            s = state(r, truth, prefix, uid)
            table.append({"trial": t, "key": s["key"], "redis version": s["redis"]["version"],
                          "db version": s["db"]["version"], "agree": s["agree"]})
    finally:
        db.write_latency = old_latency
    return table


def live_summary(plain: list[dict], versioned: list[dict]) -> Table:
    rows = [[name, len(t), sum(not x["agree"] for x in t)]
            for name, t in (("plain SET", plain), ("versioned", versioned))]
    return Table(["cache write", "trials", "trials left Redis ≠ DB"], rows, title="Live two-writer races",
                 note="the plain SET's count depends on this machine's scheduling; the versioned one must be 0")


def write_cost(r, db: Database, wt: WriteThrough, prefix: str, *, user_id: int = 4,
               rounds: int = 40) -> dict[str, float]:
    """Median ms of: the DB commit alone, the Redis SET alone, the whole write-through, a read after it.
    The four are interleaved, so a burst of load on the machine hits all of them."""
    payload = json.dumps(db.get_user(user_id))
    steps = {
        "DB commit": lambda i: db.update_user(user_id, name=f"db-{i}"),
        "Redis SET": lambda i: r.set(f"{prefix}:{user_id}", payload),
        "write-through": lambda i: wt.write(user_id, name=f"wt-{i}"),
        "read after write": lambda i: wt.get(user_id),
    }
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(rounds):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step(i)
            samples[name].append((time.perf_counter() - t0) * 1000)
    return {name: statistics.median(v) for name, v in samples.items()}


def plot_write_cost(p50: dict[str, float]) -> None:
    from .. import charts

    fig, ax = charts.figure("What a write-through write costs", xlabel="median latency (ms)", height=2.6)
    ax.barh(["sum of the parts"], [p50["DB commit"]], color=charts.PALETTE[3], label="DB commit")
    ax.barh(["sum of the parts"], [p50["Redis SET"]], left=[p50["DB commit"]], color=charts.PALETTE[0],
            label="Redis SET")
    ax.barh(["write-through (measured)"], [p50["write-through"]], color=charts.PALETTE[4], label="write-through")
    ax.barh(["read after write"], [p50["read after write"]], color=charts.PALETTE[2], label="read (Redis GET)")
    share = p50["DB commit"] / p50["write-through"]
    charts.finish(ax, summary=(
        f"in this run a write-through write took {p50['write-through']:.1f} ms and the DB commit alone "
        f"{p50['DB commit']:.1f} ms ({share:.0%} of it); a read right after it took {p50['read after write']:.2f} ms"))


def redis_outage(db: Database, truth: Database, persistence: str) -> dict[str, Any]:
    """An extra Redis on a real disk: write user 7 (TTL 1.5 s), kill -9 Redis, write and read while
    it is down, restart it on the same data dir, and poll until the TTL removed what came back."""
    data_dir = tempfile.mkdtemp(prefix="redistutor-wt-")
    from ..server import RedisServer

    extra = RedisServer(persistence=persistence, data_dir=data_dir, modules=()).start()
    try:
        app = WriteThrough(extra.client(fail_fast=True), db, prefix="user", ttl=1.5)
        app.write(7, name="before the outage")
        deadline = time.monotonic() + 5  # AOF: until Redis handed the write to the OS
        while (persistence != "none" and app.r.info("persistence")["aof_buffer_length"]
               and time.monotonic() < deadline):
            time.sleep(0.01)
        extra.kill()                                      # kill -9 redis-server
        written = app.write(7, name="during the outage")  # the DB commits; SET and DEL both fail
        read_while_down = app.get(7)                      # a miss: served by the DB
        errors = app.stats.cache_errors
        extra.restart()                                   # same port, same data dir
        c = extra.client(fail_fast=True)
        raw = c.get("user:7")
        came_back = json.loads(raw)["name"] if raw else None
        deadline = time.monotonic() + 10
        while c.exists("user:7") and time.monotonic() < deadline:
            time.sleep(0.05)
        healed = WriteThrough(c, db, prefix="user", ttl=1.5).get(7)  # a miss: refilled from the DB
        healed_cache = json.loads(c.get("user:7"))
    finally:
        extra.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return {"persistence": persistence, "written": written, "read while down": read_while_down,
            "cache errors": errors, "came back": came_back, "healed": healed, "healed cache": healed_cache,
            "in db": truth.get_user(7)}


def outage_table(*runs: dict[str, Any]) -> Table:
    return Table(["persistence", "write during outage", "read while down", "after restart Redis held",
                  "after the TTL"],
                 [[x["persistence"], x["written"]["name"], x["read while down"]["name"],
                   x["came back"] or "(nothing)", x["healed cache"]["name"]] for x in runs],
                 title="Redis killed mid-traffic, then restarted")


def warm_during_write(server, r, db: Database, writer: WriteThrough, prefix: str, *, n: int = 50) -> dict[str, Any]:
    """Cold reads of n users (DB queries counted), then a warm-up of the same users with a write to
    user 1 committed while the warm-up holds the rows it read; then n reads after the warm-up."""
    server.reset()
    cold = WriteThrough(r, db, prefix=prefix, ttl=60)
    db.reset_counts()
    for uid in range(1, n + 1):
        cold.get(uid)
    cold_reads = db.counts["read"]
    server.reset()
    pause = PausePoint("after_warm_read")
    warmer = WriteThrough(r, db, prefix=prefix, ttl=60, hooks={"after_warm_read": pause})
    db.reset_counts()
    warming = run_in_thread(lambda: warmer.warm(range(1, n + 1)))
    pause.wait_reached()                                        # the warm-up holds the rows it read ...
    newer = writer.write(1, name="written during the warm-up")  # ... and a newer row is committed + cached
    pause.release()
    stored = warming.result(timeout=10)
    warm_db = dict(db.counts)
    db.reset_counts()
    hits = warmer.stats.hits
    for uid in range(1, n + 1):
        warmer.get(uid)
    return {"cold reads": cold_reads, "warm db": warm_db, "stored": stored,
            "refused": warmer.stats.rejected_sets, "hits after": warmer.stats.hits - hits,
            "reads after": db.counts["read"], "newer": newer}
