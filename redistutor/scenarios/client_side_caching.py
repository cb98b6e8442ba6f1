"""Scenarios for notebooks/05-client-side-caching.ipynb: server-side probes (commandstats, tracking
counters), default vs broadcast tracking, the read/invalidate race, tracking options, the capped
tracking table, the read-latency ladder and its chart, and the "Try it" question.

Each helper is one line in the notebook and returns plain data or a view; the pattern itself lives
in ``redistutor/patterns/client_side_caching.py``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import redis

from ..check import Exercise, expect
from ..patterns.client_side_caching import InvalidationListener, TrackedCache
from ..race import PausePoint, run_in_thread
from ..tables import Table

# -- probes ---------------------------------------------------------------------------------------


def command_calls(r: redis.Redis, command: str) -> int:
    """How many times the server has executed ``command`` (INFO commandstats), e.g. "get"."""
    stats = r.info("commandstats").get(f"cmdstat_{command.lower()}")
    return int(stats["calls"]) if stats else 0


def tracking_info(r: redis.Redis) -> dict[str, int]:
    """The server's tracking counters: tracking_clients / _total_keys / _total_items / _total_prefixes."""
    return {k: v for k, v in sorted(r.info().items()) if k.startswith("tracking_")}


def tracking_table(r: redis.Redis, title: str = "The server's tracking table (INFO)") -> Table:
    """The tracking counters as a view."""
    return Table(["counter", "value"], [[k, v] for k, v in tracking_info(r).items()], title=title)


def _strip(key: str, namespace: str) -> str:
    return key[len(namespace):] if namespace and key.startswith(namespace) else key


def pushes(listener: Any, *, title: str = "Invalidation messages received", namespace: str = "") -> Table:
    """Every invalidation a listener received, in order: the keys it named (or "all", for a flush)."""
    rows = []
    for n, keys in enumerate(listener.messages, 1):
        named = "(all keys: FLUSHALL/FLUSHDB)" if keys is None else ", ".join(_strip(k, namespace) for k in keys)
        rows.append([n, "invalidate", named])
    return Table(["#", "push", "keys"], rows, title=title, note="" if rows else "no messages")


def read_and_sample(listener: InvalidationListener, probe: redis.Redis, keys: list[str], *,
                    every: int = 50) -> list[tuple[int, int, int]]:
    """GET ``keys`` one by one on the listener's own (tracking) connection, and every ``every``
    reads sample ``(reads, server tracking_total_keys, keys invalidated so far)``.

    Nothing is written: on a server whose ``tracking-table-max-keys`` is smaller than ``keys``,
    every invalidation counted here is one the server sent to make room in its table.
    """
    start = listener.invalidated_keys()
    rows = [(0, probe.info().get("tracking_total_keys", 0), 0)]
    for i, key in enumerate(keys, 1):
        listener.command("GET", key)  # pushes that arrive meanwhile are recorded as it reads
        if i % every == 0 or i == len(keys):
            tracked = probe.info()["tracking_total_keys"]
            # The server trims its table before running each command (the INFO included);
            # sync() then collects every push sent so far.
            listener.sync()
            rows.append((i, tracked, listener.invalidated_keys() - start))
    return rows


# -- default vs broadcast ---------------------------------------------------------------------------


def default_vs_bcast(r: redis.Redis, writer: redis.Redis, prefix: str, namespace: str = "") -> dict[str, Any]:
    """Two tracking connections read user:0..99, one in default mode and one with BCAST PREFIX;
    then four writes, and which pushes each one caused for each connection."""
    default, bcast = InvalidationListener(r), InvalidationListener(r)
    try:
        default.tracking("ON")
        bcast.tracking("ON", "BCAST", "PREFIX", f"{prefix}:")
        for i in range(100):
            default.command("GET", f"{prefix}:{i}")
            bcast.command("GET", f"{prefix}:{i}")
        table = tracking_info(r)
        writes = [(f"{prefix}:3", "read by both"), (f"{prefix}:3", "again, no read in between"),
                  (f"{prefix}:5000", "never read"), (namespace + "session:1", "outside the prefix")]
        rows: list[list[str]] = []
        got: dict[str, list] = {"default": [], "bcast": []}
        for key, why in writes:
            nd, nb = len(default.messages), len(bcast.messages)
            writer.set(key, "new")
            default.sync()
            bcast.sync()
            d, b = default.messages[nd:], bcast.messages[nb:]
            got["default"].append(d)
            got["bcast"].append(b)
            def fmt(ms):
                return "; ".join(", ".join(_strip(k, namespace) for k in m) for m in ms) or "—"
            rows.append([f"SET {_strip(key, namespace)} ({why})", fmt(d), fmt(b)])
    finally:
        default.close()
        bcast.close()
    view = Table(["write", "default mode is told", f"BCAST PREFIX {_strip(prefix, namespace)}: is told"], rows,
                 title="Which writes push an invalidation", note="both connections read user:0 … user:99 first")
    return {"view": view, "table": table, **got}


# -- the read / invalidate race ---------------------------------------------------------------------


def read_invalidate_race(server, r: redis.Redis, writer: redis.Redis, key: str, placeholder: bool,
                         namespace: str = "") -> dict[str, Any]:
    """A TrackedCache reader is frozen between its GET reply ("v1") and storing it; a writer sets
    "v2" and its invalidation is processed; then the reader stores (or discards) its reply."""
    writer.set(key, "v1")
    listener = InvalidationListener(r)
    pause = PausePoint("after_reply")
    cache = TrackedCache(server.client(single_connection_client=True), listener,
                         placeholder=placeholder, hooks={"after_reply": pause})
    reader = run_in_thread(cache.get, key)
    pause.wait_reached()                       # reply "v1" in hand, not stored yet
    in_flight = dict(cache.local)
    n = len(listener.messages)
    writer.set(key, "v2")                      # the write lands in the window
    listener.wait_for(n + 1)                   # ... and its invalidation is processed
    after_push = dict(cache.local)
    pause.release()
    reader.result(timeout=10)
    cache.hooks = None
    stored = cache.cached(key)
    later = [cache.get(key) for _ in range(3)]
    k = _strip(key, namespace)
    def fmt(d):
        return repr(d.get(key)) if key in d else "(nothing)"

    steps = Table(["step", "who", "does", "local dict holds"], [
        [1, "reader", f"GET {k} → reply 'v1' (not stored yet)", fmt(in_flight)],
        [2, "writer", f"SET {k} v2 → server pushes invalidate [{k}]", fmt(after_push)],
        [3, "reader", "stores its reply" if stored == "v1" else "its mark is gone: reply not stored",
         repr(stored) if stored is not None else "(nothing)"],
        [4, "reader", "3 more reads", ", ".join(map(repr, later))],
    ], title=f"Read vs invalidation, placeholder={placeholder}", note=f"Redis holds {r.get(key)!r}")
    return {"in flight": in_flight, "stored": stored, "later": later, "cache": cache,
            "listener": listener, "steps": steps}


# -- tracking options (Going deeper) ---------------------------------------------------------------


def own_write_then_foreign(r: redis.Redis, writer: redis.Redis, key: str, *options: str):
    """A tracking connection reads ``key``, writes it itself, then another client writes it; then
    it reads again and the other client writes again. Returns (flags, own, foreign, reread) pushes."""
    lis = InvalidationListener(r)
    try:
        lis.tracking("ON", *options)
        flags = lis.trackinginfo()["flags"]
        lis.command("GET", key)
        lis.command("SET", key, "written by me")     # this connection's own write
        lis.sync()
        own = list(lis.messages)
        writer.set(key, "written by someone else")   # a write by another client
        lis.sync()
        foreign = lis.messages[len(own):]
        lis.command("GET", key)                      # read it again: tracked again
        writer.set(key, "and again")
        lis.sync()
        reread = lis.messages[len(own) + len(foreign):]
    finally:
        lis.close()
    return flags, own, foreign, reread


def noloop_table(loop, noloop, namespace: str = "") -> Table:
    def fmt(ms):
        return "; ".join(", ".join(_strip(k, namespace) for k in m) for m in ms) or "—"

    return Table(["tracking", "after my own write", "after a foreign write", "after re-read + foreign write"],
                 [[" ".join(f.upper() for f in flags), fmt(own), fmt(foreign), fmt(reread)]
                  for flags, own, foreign, reread in (loop, noloop)], title="NOLOOP: pushes received")


def opt(r: redis.Redis, writer: redis.Redis, prefix: str, mode: str, announce: str):
    """OPTIN/OPTOUT: read ``a`` plainly and ``b`` right after CLIENT CACHING <announce>; the writer
    changes both. Returns (flags, pushes)."""
    lis = InvalidationListener(r)
    try:
        lis.tracking("ON", mode)
        a, b = f"{prefix}:opt-a", f"{prefix}:opt-b"
        lis.command("GET", a)
        lis.command("CLIENT", "CACHING", announce)   # for the next command only
        lis.command("GET", b)
        writer.mset({a: "1", b: "1"})
        lis.sync()
        return lis.trackinginfo()["flags"], list(lis.messages)
    finally:
        lis.close()


# -- measurement ------------------------------------------------------------------------------------


def time_reads(fn: Callable[[], Any], n: int = 5000) -> float:
    """Median microseconds of ``n`` calls of ``fn``."""
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def read_ladder(r: redis.Redis, key: str, readers: dict[str, Callable[[], Any]], *, n: int = 5000) -> dict[str, Any]:
    """Time ``n`` reads each way and count the GETs the server executed for them; plus 200 reads
    of a database row (SQLite with 1 ms of injected latency) as the level below."""
    from ..db import Database

    us, gets = {}, {}
    for name, fn in readers.items():
        before = command_calls(r, "get")
        us[name] = time_reads(fn, n)
        gets[name] = command_calls(r, "get") - before
    with Database(latency=0.001) as db:
        db.seed_users(1)
        us["database"] = time_reads(lambda: db.get_user(1), n=200)
    return {"us": us, "gets": gets, "n": n}


def plot_read_ladder(m: dict[str, Any]) -> None:
    from .. import charts

    us = m["us"]
    names = list(us)[::-1]
    fig, ax = charts.figure(f"One key read {m['n']:,} times", xlabel="median read latency (µs, log scale)",
                            height=2.8)
    ax.barh(names, [us[k] for k in names], color=[charts.PALETTE[i % 4] for i in range(len(names))])
    ax.set_xscale("log")
    plain = us.get("plain GET")
    local = {k: v for k, v in us.items() if k not in ("plain GET", "database")}
    best = min(local, key=local.get)
    charts.finish(ax, legend=False, summary=(
        f"in this run a plain GET took {plain:.1f} µs, {best} {local[best]:.2f} µs "
        f"({plain / local[best]:.0f}x faster), the database {us['database']:.0f} µs"))


# -- the capped tracking table (Going deeper) --------------------------------------------------------


def plot_tracking_table(capped_rows, uncapped_rows, bcast_rows, cap: int) -> None:
    from .. import charts

    fig, (a1, a2) = charts.figure(f"{capped_rows[-1][0]:,} distinct keys read once, no writes", nrows=1, ncols=2,
                                  xlabel="distinct keys read (count)", width=10, height=3.4)
    xs = [n for n, _, _ in capped_rows]
    a1.plot(xs, [t - uncapped_rows[0][1] for _, t, _ in uncapped_rows], label="default, uncapped")
    a1.plot(xs, [t for _, t, _ in capped_rows], label=f"default, max-keys {cap}")
    a1.plot(xs, [t - bcast_rows[0][1] for _, t, _ in bcast_rows], label="BCAST PREFIX")
    a1.set_title("the server's tracking table")
    a1.set_ylabel("keys tracked (count, added)")
    a2.plot(xs, [inv for _, _, inv in capped_rows], color=charts.BAD, label=f"max-keys {cap}")
    a2.set_title("invalidations with no write behind them")
    a2.set_ylabel("keys invalidated (count)")
    charts.finish([a1, a2], summary=(
        f"in this run the capped table held at most {max(t for _, t, _ in capped_rows)} keys and the server "
        f"invalidated {capped_rows[-1][2]} keys that nobody wrote; uncapped it grew by "
        f"{uncapped_rows[-1][1] - uncapped_rows[0][1]}, BCAST by {bcast_rows[-1][1] - bcast_rows[0][1]}"))


# -- Try it ----------------------------------------------------------------------------------------


def invalidated_keys(r: redis.Redis, writer: redis.Redis, prefix: str, bcast: bool) -> int:
    """A tracking connection (default mode, or BCAST PREFIX) reads keys 1..50; then a writer changes
    keys 1..50 and 51..100 (never read). How many keys do its invalidations name?"""
    lis = InvalidationListener(r)
    try:
        lis.tracking("ON", *(["BCAST", "PREFIX", f"{prefix}:"] if bcast else []))
        for i in range(1, 51):
            lis.command("GET", f"{prefix}:{i}")
        for i in range(1, 101):
            writer.set(f"{prefix}:{i}", "changed")
        lis.sync()
        return lis.invalidated_keys()
    finally:
        lis.close()


def predict_invalidations(r: redis.Redis, writer: redis.Redis, prefix: str, bcast: bool) -> Exercise:
    """The "Try it" question."""

    def checker(answer) -> None:
        actual = invalidated_keys(r, writer, prefix, bcast)
        expect(answer == actual, f"with BCAST = {bcast}, the invalidations named {actual} keys",
               expected=actual, actual=answer)

    return Exercise(
        "predict the invalidations", checker,
        hints=["Default mode tracks only the keys this connection read.",
               "BCAST PREFIX tracks nothing per key: every write under the prefix is announced."],
        solution="my_answer = 100 if BCAST else 50",
    )
