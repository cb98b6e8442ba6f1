"""Scenarios for notebooks/29-twitter-internals.ipynb: list encodings and node sizes measured on the
live server, a synthetic power-law follower graph, naive and atomic fan-outs to compare with the
pattern, fan-out cost vs follower count, and a probe process that times other clients' requests
while a celebrity's tweet is fanned out.

Every helper returns plain data; the ``*_table`` and ``plot_*`` helpers render it.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import redis

from ..patterns.twitter_internals import Timelines
from ..tables import Table

FILL_LUA = "for i = 1, tonumber(ARGV[1]) do redis.call('RPUSH', KEYS[1], ARGV[2] .. i) end return 1"
SIZES = (1, 2, 4, 16, 128, 10000, -1, -2, -5)


@contextmanager
def config(r: redis.Redis, **settings: Any) -> Iterator[None]:
    """Set CONFIG values (``list_max_listpack_size=8``) for the block, then restore them."""
    names = {k: k.replace("_", "-") for k in settings}
    old = {k: r.config_get(n)[n] for k, n in names.items()}
    try:
        for k, v in settings.items():
            r.config_set(names[k], v)
        yield
    finally:
        for k, v in old.items():
            r.config_set(names[k], v)


def debug_object(r: redis.Redis, key: str) -> dict[str, str]:
    """DEBUG OBJECT's fields (ql_nodes, ql_avg_node, ql_compressed ...) as a dict; {} if refused."""
    try:
        raw = str(r.execute_command("DEBUG", "OBJECT", key))
    except redis.ResponseError:
        return {}
    return dict(part.split(":", 1) for part in raw.split() if ":" in part)


def fill(r: redis.Redis, key: str, n: int, prefix: str = "") -> None:
    """RPUSH prefix+1 .. prefix+n server-side (one script, no client round trips)."""
    r.delete(key)
    r.eval(FILL_LUA, 1, key, n, prefix)


# -- encodings and memory ------------------------------------------------------------------------


def encoding_walk(r: redis.Redis, key: str, fill_size: int = 128) -> dict[str, Any]:
    """Grow a list one RPUSH at a time until it becomes a quicklist, then shrink it until it is a
    listpack again, under ``list-max-listpack-size fill_size``."""
    out: dict[str, Any] = {}
    with config(r, list_max_listpack_size=fill_size):
        r.delete(key)
        r.rpush(key, *range(1, 11))
        out["small"] = r.object("encoding", key)
        n = 10
        while r.object("encoding", key) == "listpack":
            n += 1
            r.rpush(key, n)
        out["to_quicklist_at"] = n
        while r.object("encoding", key) == "quicklist":
            r.rpop(key)
        out["to_listpack_at"] = r.llen(key)
    r.delete(key)
    return out


def memory_curve(r: redis.Redis, key: str, n: int = 50_000, sizes: Sequence[int] = SIZES) -> list[dict[str, Any]]:
    """One list of the integers 1..n per ``list-max-listpack-size``: bytes (MEMORY USAGE), nodes."""
    rows = []
    for size in sizes:
        with config(r, list_max_listpack_size=size):
            fill(r, key, n)
            d = debug_object(r, key)
            used = int(cast(int, r.memory_usage(key, samples=0)))
            rows.append({"size": size, "entries": n, "bytes": used, "per_entry": used / n,
                         "encoding": r.object("encoding", key),
                         "nodes": int(d["ql_nodes"]) if d else None,
                         "avg_node": float(d["ql_avg_node"]) if d else None})
    r.delete(key)
    return rows


def memory_table(rows: list[dict[str, Any]]) -> Table:
    return Table(["list-max-listpack-size", "bytes", "bytes/entry", "nodes", "entries/node"],
                 [[x["size"], x["bytes"], x["per_entry"], x["nodes"], x["avg_node"]] for x in rows],
                 title=f"One list of {rows[0]['entries']:,} integers, per node-size setting (measured)",
                 fmt={"bytes/entry": ".1f", "entries/node": ".1f"},
                 note="negative sizes are byte limits (-1 = 4 KB ... -5 = 64 KB); positive ones count entries")


def plot_memory(rows: list[dict[str, Any]]) -> None:
    from .. import charts

    fig, ax = charts.figure("List memory vs node size", xlabel="list-max-listpack-size (setting)",
                            ylabel="bytes per entry (log)")
    labels = [str(x["size"]) for x in rows]
    ax.bar(labels, [x["per_entry"] for x in rows], color=charts.NEUTRAL, label="MEMORY USAGE / entries")
    ax.set_yscale("log")
    by = {x["size"]: x for x in rows}
    charts.finish(ax, summary=(f"in this run 1-entry nodes took {by[1]['per_entry']:.1f} B/entry, the default -2 "
                               f"{by[-2]['per_entry']:.1f} B/entry: {by[1]['bytes'] / by[-2]['bytes']:.1f}x"))


def compression(r: redis.Redis, key: str, n: int = 50_000, depths: Sequence[int] = (0, 1, 2)) -> list[dict[str, Any]]:
    """A list of n text entries ('tweet:1000001:by:user7' ...) per ``list-compress-depth``."""
    rows = []
    for depth in depths:
        with config(r, list_compress_depth=depth):
            r.delete(key)
            r.eval("for i = 1, tonumber(ARGV[1]) do redis.call('RPUSH', KEYS[1], "
                   "'tweet:' .. (1000000 + i) .. ':by:user' .. (i % 97)) end return 1", 1, key, n)
            d = debug_object(r, key)
            rows.append({"depth": depth, "entries": n, "bytes": int(cast(int, r.memory_usage(key, samples=0))),
                         "nodes": int(d["ql_nodes"]) if d else None,
                         "compressed": d.get("ql_compressed") == "1" if d else None,
                         "head": r.lindex(key, 0)})
    r.delete(key)
    return rows


def compression_table(rows: list[dict[str, Any]]) -> Table:
    base = rows[0]["bytes"]
    return Table(["list-compress-depth", "bytes", "vs depth 0", "nodes", "nodes compressed"],
                 [[x["depth"], x["bytes"], x["bytes"] / base, x["nodes"], x["compressed"]] for x in rows],
                 title=f"{rows[0]['entries']:,} tweet-like strings in one list (measured)", fmt={"vs depth 0": ".2f"},
                 note="depth d keeps d nodes at each end uncompressed; the inner nodes are LZF-compressed")


# -- the follower graph and the fan-outs the pattern is compared with ---------------------------


def follower_graph(users: int = 1000, alpha: float = 0.8, seed: int = 7) -> dict[str, list[str]]:
    """A power-law graph: the user of rank k has about (users - 1) / k**alpha followers."""
    rnd = random.Random(seed)
    names = [f"u{i}" for i in range(1, users + 1)]
    graph = {}
    for rank, name in enumerate(names, 1):
        others = [u for u in names if u != name]
        graph[name] = sorted(rnd.sample(others, max(1, int((users - 1) / rank ** alpha))))
    return graph


def follower_counts_table(graph: dict[str, list[str]]) -> Table:
    counts = sorted((len(f) for f in graph.values()), reverse=True)
    rows = [[q, counts[int(len(counts) * q / 100)] if q < 100 else counts[-1]] for q in (0, 1, 10, 50, 100)]
    return Table(["top % of users", "followers"], rows, title=f"{len(graph):,} synthetic users, power-law followers",
                 note=f"{sum(counts):,} follow edges; the median user has {statistics.median(counts):g} followers")


def tweets(graph: dict[str, list[str]], count: int = 1500, seed: int = 11) -> list[tuple[str, int]]:
    """(author, tweet id) pairs; ids increase with time, authors drawn at random."""
    rnd = random.Random(seed)
    authors = sorted(graph)
    return [(rnd.choice(authors), 1_000_000 + i) for i in range(count)]


def naive_post(r: redis.Redis, prefix: str, author: str, tweet_id: int, followers: Sequence[str]) -> int:
    """The first fan-out most people write: one LPUSH per follower (pipelined), and no cap."""
    with r.pipeline(transaction=False) as p:
        for f in followers:
            p.lpush(f"{prefix}:home:{f}", tweet_id)
        p.execute()
    return len(followers)


def atomic_post(r: redis.Redis, tl: Timelines, author: str, tweet_id: int, followers: Sequence[str],
                counter: str = "") -> list[Any]:
    """The whole fan-out as one MULTI/EXEC: no follower ever sees it half done, and no other client
    is served until it is over. Returns the value of ``counter`` read first and last inside it."""
    with r.pipeline(transaction=True) as p:
        p.get(counter or "-")
        for key in [tl.posts(author), *map(tl.home, followers)]:
            p.lpush(key, tweet_id)
            p.ltrim(key, 0, tl.length - 1)
        p.get(counter or "-")
        out = p.execute()
    return [out[0], out[-1]]


def keys_memory(r: redis.Redis, pattern: str) -> tuple[int, int, int]:
    """(keys, bytes by MEMORY USAGE, longest list) over the keys matching pattern."""
    keys = list(r.scan_iter(pattern, count=1000))
    with r.pipeline(transaction=False) as p:
        for k in keys:
            p.memory_usage(k, samples=0)
            p.llen(k)
        out = p.execute()
    return len(keys), sum(int(x) for x in out[0::2]), max((int(x) for x in out[1::2]), default=0)


def run_naive(r: redis.Redis, prefix: str, graph: dict[str, list[str]],
              stream: list[tuple[str, int]]) -> dict[str, Any]:
    pushes = sum(naive_post(r, prefix, a, t, graph[a]) for a, t in stream)
    keys, used, longest = keys_memory(r, f"{prefix}:home:*")
    return {"pushes": pushes, "keys": keys, "bytes": used, "longest": longest}


def run_timelines(tl: Timelines, graph: dict[str, list[str]], stream: list[tuple[str, int]]) -> dict[str, Any]:
    pushes = sum(tl.post(a, t, graph[a]) for a, t in stream)
    keys, used, longest = keys_memory(tl.r, f"{tl.prefix}:*")
    return {"pushes": pushes, "keys": keys, "bytes": used, "longest": longest}


def celebrities(tl: Timelines, graph: dict[str, list[str]]) -> dict[str, list[str]]:
    """user -> the celebrities (authors at or over the threshold) that user follows."""
    follows: dict[str, list[str]] = {u: [] for u in graph}
    for author, followers in graph.items():
        if len(followers) >= tl.celebrity:
            for f in followers:
                follows[f].append(author)
    return follows


def compare_reads(full: Timelines, hybrid: Timelines, graph: dict[str, list[str]], n: int = 50) -> dict[str, Any]:
    """Every user's newest n tweets, read from full fan-out and from the hybrid; the mismatches."""
    follows = celebrities(hybrid, graph)
    mismatched = [u for u in graph if full.read(u, n=n) != hybrid.read(u, follows[u], n=n)]
    stars = sorted({c for cs in follows.values() for c in cs})
    return {"users": len(graph), "mismatched": mismatched, "celebrities": stars, "follows": follows}


def runs_table(runs: dict[str, dict[str, Any]], length: int) -> Table:
    """One row per way of writing the same tweets."""
    return Table(["fan-out", "LPUSHes to homes", "keys", "bytes", "longest list"],
                 [[name, x["pushes"], x["keys"], x["bytes"], x["longest"]] for name, x in runs.items()],
                 title="The same tweets, three ways (measured)", note=f"the pattern caps every list at {length}")


# -- fan-out cost vs follower count --------------------------------------------------------------


class CountingClient:
    """Wraps a client so that every round trip (a command, or a pipeline that sends) is counted."""

    def __init__(self, r: redis.Redis) -> None:
        self.r, self.round_trips = r, 0

    def pipeline(self, transaction: bool = False) -> Any:
        p = self.r.pipeline(transaction=transaction)
        execute = p.execute

        def counted(*args: Any, **kwargs: Any) -> Any:
            if len(p.command_stack):
                self.round_trips += 1
            return execute(*args, **kwargs)

        p.execute = counted
        return p

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self.r, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.round_trips += 1
            return fn(*args, **kwargs)
        return call


def commands(r: redis.Redis, *names: str) -> dict[str, int]:
    stats = r.info("commandstats")
    return {n: int(stats.get(f"cmdstat_{n}", {}).get("calls", 0)) for n in names}


def unpipelined_post(r: Any, tl: Timelines, author: str, tweet_id: int, followers: Sequence[str]) -> int:
    """The pattern's commands (LPUSH + LTRIM per list), but one round trip per command."""
    for key in [tl.posts(author), *map(tl.home, followers)]:
        r.lpush(key, tweet_id)
        r.ltrim(key, 0, tl.length - 1)
    return len(followers)


def fanout_cost(r: redis.Redis, prefix: str, counts: Sequence[int] = (10, 100, 1000, 10_000),
                unpipelined_max: int = 1000, batch: int = 1000) -> list[dict[str, Any]]:
    """Fan one tweet out to F followers, pipelined (the pattern) and one command per round trip."""
    rows = []
    for f in counts:
        followers = [f"f{i}" for i in range(f)]
        for mode in ("pipelined", "one per round trip"):
            if mode != "pipelined" and f > unpipelined_max:
                continue
            c = CountingClient(r)
            tl = Timelines(cast(redis.Redis, c), f"{prefix}:{mode[0]}{f}", length=100, celebrity=10**12)
            before = commands(r, "lpush", "ltrim")
            t0 = time.perf_counter()
            if mode == "pipelined":
                tl.post("author", 1, followers, batch=batch)
            else:
                unpipelined_post(c, tl, "author", 1, followers)
            seconds = time.perf_counter() - t0
            after = commands(r, "lpush", "ltrim")
            rows.append({"followers": f, "mode": mode, "seconds": seconds, "round_trips": c.round_trips,
                         "lpush": after["lpush"] - before["lpush"], "ltrim": after["ltrim"] - before["ltrim"],
                         "delivered": r.lindex(tl.home(followers[-1]), 0) == "1"})
            clear(r, f"{tl.prefix}:*")
    return rows


def clear(r: redis.Redis, pattern: str) -> None:
    batch = []
    for k in r.scan_iter(pattern, count=1000):
        batch.append(k)
        if len(batch) >= 1000:
            r.unlink(*batch)
            batch = []
    if batch:
        r.unlink(*batch)


def cost_table(rows: list[dict[str, Any]]) -> Table:
    return Table(["followers", "mode", "ms", "round trips", "LPUSH", "LTRIM"],
                 [[x["followers"], x["mode"], x["seconds"] * 1000, x["round_trips"], x["lpush"], x["ltrim"]]
                  for x in rows], title="Fan-out of one tweet (measured in this run)", fmt={"ms": ".1f"},
                 note="commands counted by the server (INFO commandstats); round trips by the client")


def plot_cost(rows: list[dict[str, Any]]) -> None:
    from .. import charts

    fig, ax = charts.figure("Fan-out cost vs follower count", xlabel="followers (log)", ylabel="time (ms, log)")
    for mode, marker in (("pipelined", "o"), ("one per round trip", "s")):
        pts = [(x["followers"], x["seconds"] * 1000) for x in rows if x["mode"] == mode]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=mode)
    ax.set_xscale("log")
    ax.set_yscale("log")
    both = {(x["followers"], x["mode"]): x["seconds"] for x in rows}
    shared = max(f for f, m in both if m != "pipelined")
    ratio = both[shared, "one per round trip"] / both[shared, "pipelined"]
    top = max(x["followers"] for x in rows)
    top_ms = both[top, "pipelined"] * 1000
    charts.finish(ax, summary=(f"in this run, at {shared:,} followers one-per-round-trip took {ratio:.1f}x the "
                               f"pipelined time; {top:,} followers pipelined took {top_ms:.0f} ms"))


# -- a celebrity's fan-out and the other clients --------------------------------------------------


PROBE = """
import json, sys, threading, time
import redis
r = redis.Redis.from_url(sys.argv[1])
r.incr(sys.argv[2])
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
print("ready", flush=True)
samples = []
while not done.is_set():
    t0 = time.time()
    r.incr(sys.argv[2])
    samples.append((t0, time.time() - t0))
print(json.dumps(samples), flush=True)
"""


def stall_trial(server: Any, prefix: str, followers: int = 20_000, batch: int = 1000) -> dict[str, Any]:
    """A probe process sends INCR in a loop while one celebrity tweet is fanned out four ways: not at all (quiet),
    as the pattern's batched pipeline, as one MULTI/EXEC, and by the hybrid rule (no fan-out)."""
    r = server.client()
    proc = subprocess.Popen([sys.executable, "-c", PROBE, server.url, f"{prefix}:probe"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None and proc.stdin is not None
    proc.stdout.readline()                       # "ready": the probe is connected and counting
    names = [f"f{i}" for i in range(followers)]
    windows: dict[str, tuple[float, float]] = {}
    seen: dict[str, tuple[bool, bool]] = {}
    counter: list[Any] = []
    for mode in ("quiet", "batched pipeline", "one MULTI/EXEC", "hybrid (no fan-out)"):
        tl = Timelines(r, f"{prefix}:{mode[:5]}", length=100, celebrity=10**12)
        t0 = time.time()
        if mode == "quiet":
            time.sleep(0.2)
        elif mode == "batched pipeline":
            hooked = PeekAfterFirstBatch(r, server.client(), tl.home(names[0]), tl.home(names[-1]))
            Timelines(cast(redis.Redis, hooked), tl.prefix, 100, 10**12).post("celeb", 1, names, batch=batch)
            seen[mode] = hooked.seen
        elif mode == "one MULTI/EXEC":
            counter = atomic_post(r, tl, "celeb", 1, names, counter=f"{prefix}:probe")
            seen[mode] = (r.lindex(tl.home(names[0]), 0) == "1", r.lindex(tl.home(names[-1]), 0) == "1")
        else:
            Timelines(r, tl.prefix, 100, celebrity=10_000).post("celeb", 1, names)
        windows[mode] = (t0, time.time())
        time.sleep(0.05)
        clear(r, f"{tl.prefix}:*")
    out, _ = proc.communicate("stop\n", timeout=30)
    samples = json.loads(out)
    result: dict[str, Any] = {"followers": followers, "batch": batch, "seen": seen, "modes": {},
                              "probe_in_exec": int(counter[1]) - int(counter[0])}
    for mode, (a, b) in windows.items():
        lat = sorted(s[1] for s in samples if a <= s[0] <= b) or [0.0]
        result["modes"][mode] = {"seconds": b - a, "pings": len(lat), "max_ms": lat[-1] * 1000,
                                 "p50_ms": lat[len(lat) // 2] * 1000}
    return result


class PeekAfterFirstBatch:
    """A client for the pattern whose pipeline, after its first batch, lets another connection read
    the first and the last follower's newest entry: what other clients see mid fan-out."""

    def __init__(self, r: redis.Redis, other: redis.Redis, first: str, last: str) -> None:
        self.r, self.other, self.first, self.last = r, other, first, last
        self.seen: tuple[bool, bool] = (False, False)
        self.batches = 0

    def pipeline(self, transaction: bool = False) -> Any:
        p = self.r.pipeline(transaction=transaction)
        execute = p.execute

        def peek(*args: Any, **kwargs: Any) -> Any:
            out = execute(*args, **kwargs)
            self.batches += 1
            if self.batches == 1:
                self.seen = (self.other.lindex(self.first, 0) == "1", self.other.lindex(self.last, 0) == "1")
            return out

        p.execute = peek
        return p


def stall_table(trial: dict[str, Any]) -> Table:
    modes = trial["modes"]
    quiet = modes["quiet"]["max_ms"] or 1e-9
    return Table(["celebrity tweet", "fan-out ms", "probe requests", "probe max ms", "max vs quiet"],
                 [[m, x["seconds"] * 1000, x["pings"], x["max_ms"], x["max_ms"] / quiet]
                  for m, x in modes.items()],
                 title=f"Another client's requests while one tweet reaches {trial['followers']:,} followers (measured)",
                 fmt={"fan-out ms": ".0f", "probe max ms": ".1f", "max vs quiet": ".1f"},
                 note="the probe is another process sending INCR in a loop; its worst wait in each window")


def plot_stall(trial: dict[str, Any]) -> None:
    from .. import charts

    modes = trial["modes"]
    fig, ax = charts.figure("Another client's worst request during a celebrity tweet",
                            xlabel="how the tweet is written", ylabel="probe's worst wait (ms, log)")
    ax.bar(list(modes), [max(x["max_ms"], 0.01) for x in modes.values()],
           color=[charts.NEUTRAL, charts.PALETTE[1], charts.BAD, charts.OK], label="max latency")
    ax.set_yscale("log")
    q, a = modes["quiet"]["max_ms"], modes["one MULTI/EXEC"]["max_ms"]
    charts.finish(ax, legend=False, summary=(f"in this run the worst request took {a:.0f} ms during the "
                                             f"MULTI/EXEC fan-out, {a / max(q, 1e-9):.0f}x the quiet maximum "
                                             f"({q:.1f} ms)"))


# -- reported vs measured -------------------------------------------------------------------------

TALKS = "reported (Twitter engineering talks, 2012-2014)"
REPORTED = [
    ("Redis instances at Twitter", "over 10,000", TALKS),
    ("memory across them", "about 100 TB", TALKS),
    ("timeline reads vs tweet writes", "about 300k vs 6k per second", TALKS),
    ("timeline updates a day", "over 30 billion", TALKS),
    ("cached home timeline length", "800 tweet ids", TALKS),
    ("200 lists x 1M integers: quicklist vs linked list", "1.0 GB vs 11.86 GB (about 12x)",
     "reported (the quicklist's benchmark, 2014)"),
]


def reported_table(curve: list[dict[str, Any]], runs: dict[str, dict[str, Any]], cost: list[dict[str, Any]]) -> Table:
    by = {x["size"]: x for x in curve}
    rows: list[list[Any]] = [list(x) for x in REPORTED]
    rows.append([f"1-entry nodes vs default nodes, {by[1]['entries']:,} integers",
                 f"{by[1]['bytes'] / by[-2]['bytes']:.1f}x more memory", "measured here"])
    h, f = runs["hybrid"], runs["full fan-out"]
    rows.append(["LPUSHes to homes, hybrid vs full fan-out", f"{h['pushes']:,} vs {f['pushes']:,}", "measured here"])
    shared = max(x["followers"] for x in cost if x["mode"] != "pipelined")
    t = {x["mode"]: x["seconds"] for x in cost if x["followers"] == shared}
    rows.append([f"fan-out to {shared:,}: one per round trip vs pipelined",
                 f"{t['one per round trip'] / t['pipelined']:.1f}x the time", "measured here"])
    return Table(["figure", "value", "source"], rows,
                 title="Reported by Twitter and others vs measured on this machine")


__all__ = ["follower_graph", "tweets", "memory_curve", "compression", "encoding_walk", "fanout_cost",
           "stall_trial", "run_naive", "run_timelines", "compare_reads", "reported_table"]
