"""Scenarios for notebooks/01-cache-aside.ipynb: the stale-set race, the TTL-jitter batch load,
lookups of a missing id, and the skewed (Zipf-like) read workload with its chart.

Each helper is one line in the notebook and returns plain data; the pattern itself lives in
``redistutor/patterns/cache_aside.py``.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..check import Exercise, expect
from ..db import Database
from ..patterns.cache_aside import CacheAside
from ..race import PausePoint, run_in_thread
from ..tables import Table


def cached_doc(r, key: str) -> Any:
    """What Redis holds under ``key``, JSON-decoded (None if absent)."""
    raw = r.get(key)
    return json.loads(raw) if raw else None


@dataclass
class RaceResult:
    row_seen: dict          # what the reader SELECTed before it was frozen
    in_redis: Any           # the cached document after the reader resumed
    cache: CacheAside       # the cache used (stats, and hooks removed for later reads)
    steps: Table            # the interleaving, step by step


def stale_set_race(server, r, db: Database, prefix: str, invalidation: str, user_id: int = 5) -> RaceResult:
    """Reader misses and SELECTs, is frozen by a pause point, a writer UPDATEs and invalidates,
    then the reader resumes and fills the cache with what it read."""
    server.reset()
    db.seed_users(100)
    pause = PausePoint("after_db_read")
    cache = CacheAside(r, db, prefix=prefix, invalidation=invalidation, hooks={"after_db_read": pause})
    reader = run_in_thread(cache.get, user_id)          # 1. reader misses and SELECTs ...
    (row_seen,) = pause.wait_reached()                  #    ... and is frozen before its SET
    version = cache.update(user_id, name="Dave Renamed")  # 2. writer: UPDATE, then invalidate
    after_write = cached_doc(r, cache.key(user_id))
    pause.release()                                     # 3. reader resumes and fills
    reader.result(timeout=10)
    cache.hooks = None
    doc = cached_doc(r, cache.key(user_id))
    invalidate = "DEL" if invalidation == "delete" else f"tombstone v{version}"
    steps = Table(["step", "who", "does", "Redis holds afterwards"], [
        [1, "reader", f"GET user:{user_id} → miss; SELECT → v{row_seen['version']}", "(nothing)"],
        [2, "writer", f"UPDATE → v{version}; {invalidate}", _describe(after_write)],
        [3, "reader", f"fill with v{row_seen['version']}" + (" → refused" if cache.stats.rejected_fills else ""),
         _describe(doc)],
    ], title=f"The stale-set race, invalidation={invalidation!r}")
    return RaceResult(row_seen, doc, cache, steps)


def _describe(doc: Any) -> str:
    if doc is None:
        return "(nothing)"
    if doc.get("tombstone"):
        return f"tombstone v{doc['v']}"
    return f"row v{doc['v']} ({doc['row']['name']})"


def expiry_spread(server, r, db: Database, prefix: str, jitter: float, *, seed: int = 7, n: int = 50) -> Counter:
    """Load ``n`` users at once (as a batch job would) and count keys per remaining-TTL second."""
    server.reset()
    cache = CacheAside(r, db, prefix=prefix, ttl=60, jitter=jitter, rng=random.Random(seed))
    with db.slow(0):
        for user_id in range(1, n + 1):
            cache.get(user_id)
    return Counter(r.ttl(cache.key(user_id)) for user_id in range(1, n + 1))


def missing_id_lookups(r, db: Database, prefix: str, negative_ttl: float | None, *, n: int = 20,
                       user_id: int = 10_000) -> int:
    """Look up a user that does not exist ``n`` times; return how many DB queries that cost."""
    r.delete(f"{prefix}:{user_id}")
    cache = CacheAside(r, db, prefix=prefix, negative_ttl=negative_ttl)
    before = db.counts["read"]
    for _ in range(n):
        cache.get(user_id)
    return db.counts["read"] - before


def predict_missing_lookups(r, db: Database, prefix: str, negative_ttl: float | None) -> Exercise:
    """The "Try it" question: how many DB queries do 20 lookups of a missing id cost?"""

    def checker(answer) -> None:
        actual = missing_id_lookups(r, db, prefix, negative_ttl)
        expect(answer == actual,
               f"with NEGATIVE_TTL = {negative_ttl!r}, 20 lookups of a missing id cost {actual} DB "
               f"quer{'y' if actual == 1 else 'ies'}", expected=actual, actual=answer)

    return Exercise(
        "predict the database queries", checker,
        hints=["Without negative caching, nothing is stored for a row that does not exist.",
               "With it, the first miss stores a 'missing' marker; later lookups hit the marker."],
        solution="my_answer = 20 if NEGATIVE_TTL is None else 1",
    )


@dataclass
class Workload:
    reads: int
    distinct: int
    hit_ms: list[float] = field(default_factory=list)
    miss_ms: list[float] = field(default_factory=list)
    queries: list[int] = field(default_factory=list)  # cumulative DB queries after each read
    cache: CacheAside | None = None


def zipf_workload(server, r, db: Database, prefix: str, *, reads: int = 2000, users: int = 100,
                  seed: int = 42) -> Workload:
    """``reads`` reads over ``users`` users, user k drawn with weight 1/k; every read timed."""
    server.reset()
    db.seed_users(users)
    db.reset_counts()
    rng = random.Random(seed)
    workload = rng.choices(range(1, users + 1), weights=[1 / k for k in range(1, users + 1)], k=reads)
    cache = CacheAside(r, db, prefix=prefix, ttl=3600)
    out = Workload(reads, len(set(workload)), cache=cache)
    for user_id in workload:
        misses = cache.stats.misses
        t0 = time.perf_counter()
        cache.get(user_id)
        ms = (time.perf_counter() - t0) * 1000
        (out.miss_ms if cache.stats.misses > misses else out.hit_ms).append(ms)
        out.queries.append(db.counts["read"])
    return out


def plot_workload(w: Workload) -> None:
    """Cumulative DB queries with and without the cache, and the measured hit/miss medians."""
    from .. import charts

    fig, ax = charts.figure("Database queries under a skewed read workload",
                            xlabel="reads served (count)", ylabel="database queries (count)")
    xs = range(1, w.reads + 1)
    ax.plot(xs, list(xs), label="no cache", color=charts.BAD, linestyle="--")
    ax.plot(xs, w.queries, label="cache-aside", color=charts.OK)
    hit, miss = statistics.median(w.hit_ms), statistics.median(w.miss_ms)
    charts.finish(ax, summary=(
        f"in this run {w.reads} reads cost {w.queries[-1]} database queries with the cache; "
        f"median hit {hit:.2f} ms vs median miss {miss:.2f} ms ({miss / hit:.0f}x)"))


def plot_expiries(flat: Counter, spread: Counter) -> None:
    """Keys expiring per second of remaining TTL, without and with jitter."""
    from .. import charts

    fig, ax = charts.figure("When 50 keys loaded together expire (TTL 60 s)",
                            xlabel="remaining TTL (s)", ylabel="keys expiring in that second (count)")
    for counts, label, colour in ((flat, "no jitter", charts.BAD), (spread, "±10% jitter", charts.OK)):
        secs = sorted(counts)
        ax.bar(secs, [counts[s] for s in secs], width=0.8, alpha=0.75, label=label, color=colour)
    charts.finish(ax, summary=(
        f"in this run the busiest second expires {max(flat.values())} keys without jitter "
        f"and {max(spread.values())} with ±10% jitter, spread over {len(spread)} seconds"))
