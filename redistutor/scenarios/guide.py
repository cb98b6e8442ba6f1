"""The pattern guide (notebooks/00-guide.ipynb): decision tables whose figures are measured live
with the patterns' own code, the learning tracks read from the notebooks, and which notebooks the
learner's server can run.

Every figure in the decision tables comes from running the pattern module the linked notebook
teaches, small, on the guide's server: nothing is typed in.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..db import Database
from ..tables import Table

ROOT = Path(__file__).resolve().parent.parent.parent
NOTEBOOKS = ROOT / "notebooks"


def _nb(stem: str) -> str:
    return f"{stem}.ipynb"


def plain_key(*parts: Any) -> str:
    """Key names as given: a private server's whole db is the guide's (``server.key`` does the same there)."""
    return ":".join(str(p) for p in parts)


KeyFn = Callable[..., str]


# -- one measurement per row --------------------------------------------------------------------

def cache_aside_queries(r, reads: int = 200, users: int = 20, *, key: KeyFn = plain_key) -> tuple[str, Any]:
    from ..patterns.cache_aside import read_user

    with Database() as db:
        db.seed_users(users)
        db.reset_counts()
        rnd = random.Random(1)
        for _ in range(reads):
            read_user(r, db, rnd.randint(1, users), prefix=key("guide:user"))
        return f"{reads} reads of {users} users cost {db.counts['read']} database queries", db.counts["read"]


def write_through_stale(r, writes: int = 50, *, key: KeyFn = plain_key) -> tuple[str, Any]:
    from ..patterns.write_through import write_through

    with Database() as db:
        db.seed_users(10)
        for i in range(writes):
            write_through(r, db, 1 + i % 10, f"name-{i}", prefix=key("guide:wt"))
        stale = sum(json.loads(r.get(key("guide:wt", u)) or "{}").get("name") != db.get_user(u)["name"]
                    for u in range(1, 11))
        return f"after {writes} writes, {stale} of 10 cached rows differ from the database", stale


def write_behind_coalescing(r, increments: int = 1000, pages: int = 5, *, key: KeyFn = plain_key) -> tuple[str, Any]:
    from ..patterns.write_behind import WriteBehind, create_table

    with Database() as db:
        create_table(db)
        wb = WriteBehind(r, db, prefix=key("guide:views"))
        for i in range(increments):
            wb.incr(f"page-{i % pages}")
        db.reset_counts()
        wb.flush()
        return f"{increments} increments reached the database as {db.counts['write']} writes", db.counts["write"]


def list_pop_loses(r, *, key: KeyFn = plain_key) -> tuple[str, Any]:
    fifo = key("guide:fifo")
    r.delete(fifo)
    r.lpush(fifo, "job-1")
    r.rpop(fifo)  # the consumer dies here, before doing the work
    left = r.llen(fifo)
    return f"a consumer killed after RPOP: {left} copies of its job left anywhere", left


def reliable_queue_recovers(r, *, key: KeyFn = plain_key) -> tuple[str, Any]:
    from ..patterns.reliable_queue import ReliableQueue, reap

    q = ReliableQueue(r, key("guide:rq"), lease_ms=1)
    q.push("job-1")
    q.take("worker-a", timeout=1.0)  # worker-a dies holding it; its 1 ms lease runs out
    back = reap(q, ["worker-a"], now_ms=int(r.time()[0]) * 1000 + 60_000)
    return f"a worker killed after taking a job: the reaper put {len(back)} job back", len(back)


def delayed_queue_claims(r, *, key: KeyFn = plain_key) -> tuple[str, Any]:
    from ..patterns.delayed_queue import DelayedQueue, now_ms

    q = DelayedQueue(r, key("guide:dq"))
    now = now_ms(r)
    for job, due in (("due-1", now - 1000), ("due-2", now - 10), ("later", now + 3_600_000)):
        q.schedule(job, due)
    claimed = len(q.claim(10))
    return f"of 3 scheduled jobs, a claim took {claimed}: the one due in an hour stayed", claimed


def streams_groups(r, entries: int = 10, *, key: KeyFn = plain_key) -> tuple[str, Any]:
    events = key("guide:events")
    r.delete(events)
    for i in range(entries):
        r.xadd(events, {"n": i})
    seen = []
    for group in ("billing", "emails"):
        r.xgroup_create(events, group, id="0")
        got = r.xreadgroup(group, "c1", {events: ">"}, count=entries * 2)
        seen.append(len(dict(got)[events][0]) if isinstance(got, dict) else len(got[0][1]))
    return f"{entries} events: each of 2 consumer groups read {min(seen)}", min(seen)


def set_vs_hll(r, n: int = 20_000, *, key: KeyFn = plain_key) -> dict[str, Any]:
    ids = [f"u{i}" for i in range(n)]
    exact, hll = key("guide:set"), key("guide:hll")
    r.delete(exact, hll)
    for i in range(0, n, 2000):
        r.sadd(exact, *ids[i:i + 2000])
        r.pfadd(hll, *ids[i:i + 2000])
    set_bytes, hll_bytes = r.memory_usage(exact), r.memory_usage(hll)
    error = abs(r.pfcount(hll) - n) / n
    return {"set": f"{n:,} ids: {set_bytes:,} bytes (exact)", "set_bytes": set_bytes,
            "hll": f"{n:,} ids: {hll_bytes:,} bytes, {100 * error:.2f} % off", "hll_bytes": hll_bytes,
            "hll_error": error}


def bloom_false_positives(r, n: int = 5_000, *, key: KeyFn = plain_key) -> tuple[str, Any]:
    from ..patterns.probabilistic_data_structures import SeenFilter

    r.delete(key("guide:bloom"))
    f = SeenFilter(r, key("guide:bloom"), capacity=n, error=0.01)
    for i in range(0, n, 1000):
        f.add(*[f"in{i + j}" for j in range(1000)])
    fp = sum(sum(f.seen(*[f"out{i + j}" for j in range(1000)])) for i in range(0, n, 1000))
    negatives = n - sum(sum(f.seen(*[f"in{i + j}" for j in range(1000)])) for i in range(0, n, 1000))
    return (f"sized for 1 %: {100 * fp / n:.2f} % false positives on {n:,} strangers, "
            f"{negatives} false negatives"), (fp / n, negatives)


def tdigest_p99(r, n: int = 20_000, *, key: KeyFn = plain_key) -> tuple[str, Any]:
    rnd = random.Random(7)
    values = [rnd.expovariate(1 / 50) for _ in range(n)]
    td = key("guide:td")
    r.delete(td)
    r.tdigest().create(td)
    for i in range(0, n, 2000):
        r.tdigest().add(td, values[i:i + 2000])
    estimate = float(r.tdigest().quantile(td, 0.99)[0])
    exact = sorted(values)[int(0.99 * n) - 1]
    return f"p99 of {n:,} latencies: {estimate:.1f} ms estimated vs {exact:.1f} ms exact", abs(estimate - exact) / exact


# -- the three decision tables -------------------------------------------------------------------

Row = tuple[str, str, str, str, Callable[..., tuple[str, Any]]]  # measure(r, *, key=...)
CACHING: list[Row] = [
    ("read-heavy, stale OK for a TTL", "cache-aside", "GET, SET … EX", "01-cache-aside", cache_aside_queries),
    ("reads must see the last write", "write-through", "SET after the DB write", "02-write-through",
     write_through_stale),
    ("high write throughput", "write-behind", "HINCRBY, SADD; a sync worker", "03-write-behind",
     write_behind_coalescing),
]
QUEUES: list[Row] = [
    ("simple FIFO, loss acceptable", "a list", "LPUSH, RPOP", "13-reliable-queue", list_pop_loses),
    ("reliable delivery", "reliable queue", "BLMOVE, a lease, LREM", "13-reliable-queue", reliable_queue_recovers),
    ("run at a given time", "delayed queue", "ZADD, an atomic claim script", "12-delayed-queue",
     delayed_queue_claims),
    ("several consumers, replay", "streams + consumer groups", "XADD, XREADGROUP, XACK",
     "14-streams-consumer-patterns", streams_groups),
]


COLUMNS = ["use case", "pattern", "key commands", "measured here, just now", "notebook"]


def decision_table(server, rows: list[Row], title: str) -> tuple[Table, dict[str, Any]]:
    """The table, and each row's figure by pattern name (for the guide's checks)."""
    r = server.client()
    out, figures = [], {}
    for use, pattern, commands, stem, measure in rows:
        text, figures[pattern] = measure(r, key=server.key)  # under the notebook's namespace, if attached
        out.append([use, pattern, commands, text, f"notebooks/{_nb(stem)}"])
    return Table(COLUMNS, out, title=title), figures


def counting_table(server) -> tuple[Table, dict[str, Any]]:
    r = server.client()
    sizes = set_vs_hll(r, key=server.key)
    bloom, (fp_rate, negatives) = bloom_false_positives(r, key=server.key)
    p99, p99_error = tdigest_p99(r, key=server.key)
    nb = "notebooks/20-probabilistic-data-structures.ipynb"
    rows = [["exact unique count", "a set", "SADD, SCARD", sizes["set"], nb],
            ["approximate uniques", "HyperLogLog", "PFADD, PFCOUNT", sizes["hll"], nb],
            ["seen before?", "Bloom filter", "BF.RESERVE, BF.MADD, BF.MEXISTS", bloom, nb],
            ["percentiles", "T-Digest", "TDIGEST.ADD, TDIGEST.QUANTILE", p99, nb]]
    figures = {**sizes, "bloom_fp_rate": fp_rate, "bloom_false_negatives": negatives, "p99_error": p99_error}
    return Table(COLUMNS, rows, title="Counting and analytics"), figures


# -- tracks and what this server can run ----------------------------------------------------------

TRACKS = {
    "start here": ["00-tour", "00-multi-node-lab"],
    "caching": ["01-cache-aside", "02-write-through", "03-write-behind", "04-cache-stampede-prevention",
                "05-client-side-caching"],
    "coordination": ["06-atomic-updates", "07-distributed-locking", "08-redlock", "09-rate-limiting",
                     "10-cross-shard-consistency", "11-hash-tag-colocation"],
    "queues and streams": ["12-delayed-queue", "13-reliable-queue", "14-streams-consumer-patterns",
                           "15-streams-event-sourcing", "16-pubsub", "17-pinterest-task-queue"],
    "data structures": ["18-lexicographic-sorted-sets", "19-memory-optimization", "20-probabilistic-data-structures",
                        "21-bitmap-patterns", "22-geospatial", "23-leaderboards", "24-session-management"],
    "vectors": ["25-vector-sets", "26-vector-search-ai"],
    "production": ["27-redis-as-primary-database", "28-kernel-tuning", "29-twitter-internals", "30-uber-resilience"],
}


def _field(nb: dict, label: str) -> str:
    for cell in nb["cells"][:4]:
        text = "".join(cell["source"])
        m = re.search(rf"\*\*{label}\*\*:?\s*(.+)", text)
        if m:
            return m.group(1).strip().rstrip(".").replace("**", "")
    return ""


COSTS = ROOT / "docs" / "notebook-costs.json"


def measured_costs() -> dict[str, Any]:
    """What ``./run measure`` (tools/measure.py) recorded: the machine, and each notebook's costs."""
    if not COSTS.exists():
        raise FileNotFoundError(f"{COSTS} is missing: run ./run measure to create it.")
    return json.loads(COSTS.read_text())


def run_all_label(seconds: float) -> str:
    """A measured Run All time, rounded: to 10 s under a minute, to whole minutes from there."""
    if seconds < 55:
        return f"about {max(10, 10 * int(seconds / 10 + 0.5))} s"
    return f"about {int(seconds / 60 + 0.5)} min"


def tracks_table() -> Table:
    """Each notebook's track, prerequisites and time estimate read from the notebook itself, and its
    Run All time from the measured file (docs/notebook-costs.json), rounded."""
    costs = measured_costs()
    measured = costs["notebooks"]
    rows = []
    for track, stems in TRACKS.items():
        for stem in stems:
            path = NOTEBOOKS / _nb(stem)
            if not path.exists():
                rows.append([track, stem, "(not written yet)", "", ""])
                continue
            nb = json.loads(path.read_text())
            prerequisites = re.split(r"(?<=[.;])\s", _field(nb, "Prerequisites").lstrip(": "))[0].rstrip(";.")
            minutes = re.search(r"about \d+ minutes", _field(nb, "Time"))
            run_all = run_all_label(measured[stem]["run_all_s"]) if stem in measured else "not measured"
            rows.append([track, stem, re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", prerequisites),
                         minutes.group(0) if minutes else "", run_all])
    m = costs["machine"]
    note = (f"time: the notebook's own estimate of reading and running it. Run All: its cells top to bottom "
            f"in a fresh kernel, measured by ./run measure on {m['cores']} shared cores with Redis {m['redis']} "
            f"(the shortest of its runs), rounded; a faster or idle machine takes less.")
    return Table(["track", "notebook", "prerequisites", "time", "Run All"], rows,
                 title="Learning tracks, in order", note=note)


def runnable_table(server) -> Table:
    """Which notebooks this server can run: each notebook's own requires= against the server."""
    from ..capabilities import notebook_requirements  # a fleet-only notebook (17, 30) needs servers of its own

    rows = []
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb")):
        missing = server.capabilities.missing(notebook_requirements(path))
        rows.append([path.stem, "✓ yes" if not missing else "✗ no",
                     "; ".join(f"{what} ({fix})" for what, fix in missing)])
    return Table(["notebook", "runs here", "missing"], rows, title="What your server can run")
