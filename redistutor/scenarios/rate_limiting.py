"""The experiments of notebooks/09-rate-limiting.ipynb, each behind a one-line helper.

The limiters themselves live in :mod:`redistutor.patterns.rate_limiting`; this module holds what
the notebook does *with* them: clocks to move by hand, concurrent crowds, app-server processes to
kill, traffic traces, and the tables and charts that show the results. Every helper returns plain
data (or a :class:`~redistutor.Table`), so the notebook's cells stay a few lines long.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

from ..clocks import SkewedClock
from ..patterns.rate_limiting import (
    ALGORITHMS,
    FixedWindow,
    NaiveLimiter,
    RateLimiter,
    SlidingLog,
    TokenBucket,
    fixed_window_hit,
)
from ..tables import Table
from ..timeline import run_threads

W = 1000  # the notebook's window: 1 s


# -- clocks -------------------------------------------------------------------------------------

class FakeClock:
    """A clock for tests and notebooks: ``clock()`` returns ms; ``clock.advance(ms)`` moves it."""

    def __init__(self, start_ms: int = 1_000_000) -> None:
        self.now = int(start_ms)

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> int:
        self.now += int(ms)
        return self.now

    def set(self, ms: int) -> int:
        self.now = int(ms)
        return self.now


def wall_clock_ms() -> int:
    """Now in ms from this machine's clock (if you do not use the server's)."""
    return time.time_ns() // 1_000_000


def max_in_any_window(times_ms: list[int], window_ms: int) -> int:
    """The largest number of the given times that fall in one interval (t - window_ms, t]."""
    ts = sorted(times_ms)
    best, lo = 0, 0
    for hi, t in enumerate(ts):
        while ts[lo] <= t - window_ms:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


# -- concurrency --------------------------------------------------------------------------------

def together(n: int, fn: Callable[[], Any]) -> list:
    """Run fn() in n real threads released at the same moment (the toolkit's run_threads)."""
    return run_threads(lambda _actor, _log: fn(), n, timeout=60)

def limiters(r: Any, prefix: str, *, limit: int, window_ms: int = W,
             clock: Callable[[], int] | None = None) -> dict[str, RateLimiter]:
    """One limiter per algorithm, each under its own key prefix ``<prefix>:<algorithm>``."""
    return {name: cls(r, limit=limit, window_ms=window_ms, prefix=f"{prefix}:{cls.name}", clock=clock)
            for name, cls in ALGORITHMS.items()}


def naive_race(r: Any, prefix: str, *, clients: int = 8, limit: int = 5) -> tuple[list[bool], NaiveLimiter]:
    """``clients`` threads all read a count of limit - 1 before any of them increments it."""
    naive = NaiveLimiter(r, limit=limit, window_s=60, prefix=prefix)
    all_read = threading.Barrier(clients, timeout=20)
    naive.hooks = {"after_check": lambda *_: all_read.wait()}
    r.set(naive.key("alice"), limit - 1, ex=60)
    return together(clients, lambda: naive.hit("alice")), naive


def canonical_race(r: Any, key: str, *, clients: int = 8, limit: int = 5,
                   hit: Callable[..., bool] = fixed_window_hit) -> list[bool]:
    """The same crowd against ``hit`` (default :func:`fixed_window_hit`), the count at limit - 1."""
    r.set(key, limit - 1, ex=60)
    return together(clients, lambda: hit(r, key, limit, 60))


# -- app-server processes (module level: lab.Workers spawns them) --------------------------------

def naive_crash_worker(ctx: Any, prefix: str, client_id: str, *, limit: int = 3, window_s: int = 60) -> None:
    """An app-server process making a user's first request with :class:`NaiveLimiter`; it stops
    between INCR and EXPIRE and records ``"between INCR and EXPIRE"`` so the parent can kill it there."""
    def stall(n: int) -> None:
        ctx.record("between INCR and EXPIRE", str(n))
        time.sleep(60)  # the parent kills this process here; never reaches EXPIRE

    NaiveLimiter(ctx.client(0), limit=limit, window_s=window_s, prefix=prefix,
                 hooks={"before_expire": stall}).hit(client_id)


def hammer_worker(ctx: Any, key: str, *, window_s: int = 60) -> None:
    """An app-server process calling :func:`fixed_window_hit` in a loop until it is killed."""
    r = ctx.client(0)
    fixed_window_hit(r, key, 10**9, window_s)
    ctx.record("hitting")
    while True:
        fixed_window_hit(r, key, 10**9, window_s)


def lua_hammer_worker(ctx: Any, prefix: str, client_id: str, *, window_ms: int = 60_000) -> None:
    """An app-server process sending :class:`FixedWindow` (Lua) decisions until it is killed."""
    lim = FixedWindow(ctx.client(0), limit=10**9, window_ms=window_ms, prefix=prefix)
    lim.hit(client_id)
    ctx.record("hitting")
    while True:
        lim.hit(client_id)


def kill_between_incr_and_expire(server: Any, prefix: str, client_id: str) -> int:
    """Start an app server on the naive limiter, kill -9 it between INCR and EXPIRE; its exit code."""
    from ..lab import Workers

    app = Workers(naive_crash_worker, 1, nodes=[server], args=(prefix, client_id)).start()
    try:
        app.wait_for("between INCR and EXPIRE", timeout=30)  # it has sent INCR, not EXPIRE
        app.kill("w1")                                        # kill -9, right there
    finally:
        app.stop()
    return app.exitcodes["w1"]


def kill_while_hammering(server: Any, key: str, *, at_least: int = 200) -> int:
    """Start an app server looping on :func:`fixed_window_hit`, kill -9 it once ``at_least``
    requests have been counted (an arbitrary moment); its exit code."""
    from ..lab import Workers

    r = server.client()
    app = Workers(hammer_worker, 1, nodes=[server], args=(key,)).start()
    try:
        app.wait_for("hitting", timeout=30)
        deadline = time.monotonic() + 30
        while int(r.get(key) or 0) < at_least and time.monotonic() < deadline:
            time.sleep(0.001)
        app.kill("w1")
    finally:
        app.stop()
        r.close()
    return app.exitcodes["w1"]


# -- trials -------------------------------------------------------------------------------------

def boundary_burst(start: int) -> list[int]:
    """10 requests in the last 10 ms of one window, 10 in the first 10 ms of the next."""
    return [start + 990 + i for i in range(10)] + [start + 1000 + i for i in range(10)]


def boundary_trial(r: Any, prefix: str, start: int = 1_010_000) -> dict[str, list[int]]:
    """The boundary burst against every algorithm (limit 10 per s); accepted times, in ms from start."""
    burst = boundary_burst(start)
    return {name: [t - start for t in burst if lim.hit("carol", now_ms=t)]
            for name, lim in limiters(r, prefix, limit=10).items()}


def boundary_table(boundary: dict[str, list[int]]) -> Table:
    rows = [[name, len(acc), max_in_any_window(acc, W), f"{acc[0]} .. {acc[-1]}" if acc else "-"]
            for name, acc in boundary.items()]
    return Table(["algorithm", "accepted", "most in any 1000 ms", "accepted between (ms)"], rows,
                 title="Limit 10 per 1000 ms; 20 requests from t = 990 to t = 1009 (boundary at 1000)")


def crowd_trial(server: Any, prefix: str, clock: Callable[[], int], *, threads: int = 200,
                each: int = 2, limit: int = 50) -> dict[str, tuple[int, int]]:
    """``threads`` clients on their own connections, released together, ``each`` requests apiece,
    at one frozen instant. Per algorithm: (allowed, clients with at least one allowed)."""
    crowd = server.client(max_connections=threads + 56)  # redis-py's pool stops at 100 by default
    out = {}
    try:
        for name, lim in limiters(crowd, prefix, limit=limit, clock=clock).items():
            per_client = together(threads, lambda lim=lim: sum(bool(lim.hit("dave")) for _ in range(each)))
            out[name] = (sum(per_client), sum(n > 0 for n in per_client))
    finally:
        crowd.close()
    return out


def memory_trial(r: Any, prefix: str, counts: tuple[int, ...] = (10, 100, 1000)) -> dict[str, list[tuple[int, str]]]:
    """Per algorithm: (MEMORY USAGE bytes, encoding) of one client's key after n requests in one
    window (limit 10,000 per minute, so none is refused)."""
    sizes = {}
    for name, lim in limiters(r, prefix, limit=10_000, window_ms=60_000).items():
        row = []
        for n in counts:
            r.delete(lim.key("erin"))
            for i in range(n):
                lim.hit("erin", now_ms=3_000_000 + i)
            row.append((r.memory_usage(lim.key("erin"), samples=0), r.object("encoding", lim.key("erin"))))
        sizes[name] = row
    return sizes


def memory_table(sizes: dict[str, list[tuple[int, str]]], counts: tuple[int, ...] = (10, 100, 1000)) -> Table:
    rows = [[name, *(b for b, _ in row), row[-1][1]] for name, row in sizes.items()]
    return Table(["algorithm", *(f"bytes after {n}" for n in counts), f"encoding at {counts[-1]}"], rows,
                 title="MEMORY USAGE of one client's key")


def traffic(seed: int = 9, t0: int = 4_000_000) -> list[int]:
    """A quiet client, then a burst across the 2 s boundary, then a steady 8.3 requests/s."""
    rng = random.Random(seed)
    return sorted([t0 + rng.randrange(0, 800) for _ in range(3)]
                  + [t0 + 1900 + rng.randrange(0, 200) for _ in range(14)]
                  + [t0 + 2600 + 120 * i for i in range(20)])


def traffic_trial(r: Any, prefix: str, t0: int = 4_000_000) -> dict[str, list[tuple[int, bool]]]:
    """The same traffic, limit 5 per s, through every algorithm: (ms from t0, allowed) per request."""
    times = traffic(t0=t0)
    return {name: [(t - t0, bool(lim.hit("frank", now_ms=t))) for t in times]
            for name, lim in limiters(r, prefix, limit=5).items()}


def traffic_table(timeline: dict[str, list[tuple[int, bool]]]) -> Table:
    rows = []
    for name, reqs in timeline.items():
        acc = [t for t, ok in reqs if ok]
        rows.append([name, len(acc), len(reqs) - len(acc), max_in_any_window(acc, W)])
    return Table(["algorithm", "accepted", "refused", "most in any 1 s"], rows, title="Limit 5 per second")


def plot_decisions(timeline: dict[str, list[tuple[int, bool]]]) -> None:
    """Accepted (filled) and refused (hollow) requests per algorithm over time, with a summary."""
    from .. import charts

    fig, ax = charts.figure("Accept and reject over time (limit 5 per s)", xlabel="time (s)",
                            ylabel="algorithm", width=9, height=3.2)
    for row, (_name, reqs) in enumerate(timeline.items()):
        ok = [t / 1000 for t, a in reqs if a]
        no = [t / 1000 for t, a in reqs if not a]
        ax.scatter(ok, [row] * len(ok), color=charts.OK, s=28, label="accepted" if row == 0 else None)
        ax.scatter(no, [row] * len(no), facecolors="none", edgecolors=charts.BAD, s=28,
                   label="refused" if row == 0 else None)
    last = max(t for reqs in timeline.values() for t, _ in reqs) / 1000
    for b in range(1, int(last) + 1):
        ax.axvline(b, color="#888888", lw=0.8, ls=":", label="fixed-window boundary" if b == 1 else None)
    ax.set_yticks(range(len(timeline)), list(timeline))
    ax.invert_yaxis()
    most = {n: max_in_any_window([t for t, a in reqs if a], W) for n, reqs in timeline.items()}
    charts.finish(ax, summary="in this run the most accepted in any 1 s: "
                  + ", ".join(f"{n} {m}" for n, m in most.items()))


def bucket_trial(r: Any, prefix: str, clock: Any) -> list[tuple[int, bool, float]]:
    """Capacity 5, 1 token per s: 8 requests at t = 0, then one every 250 ms for 10 s.
    (ms since start, allowed, tokens left after) per request."""
    tb = TokenBucket(r, limit=5, window_ms=5000, prefix=prefix, clock=clock)
    clock.set(6_000_000)
    t_start = clock()
    out = []
    for i in range(8 + 40):
        if i >= 8:
            clock.advance(250)
        d = tb.hit("ivy")
        out.append((clock() - t_start, d.allowed, tb.level("ivy", clock())))
    return out


def plot_bucket(bucket: list[tuple[int, bool, float]], capacity: int = 5) -> None:
    from .. import charts

    fig, ax = charts.figure("A token bucket: capacity 5, 1 token per second", xlabel="time (s)",
                            ylabel="tokens", width=9, height=2.8)
    xs, ys = [], []
    for (t, _, lvl), nxt in zip(bucket, bucket[1:] + [(10_000, None, None)]):
        xs += [t / 1000, nxt[0] / 1000]
        ys += [lvl, min(capacity, lvl + (nxt[0] - t) / 1000)]
    ax.plot(xs, ys, color=charts.NEUTRAL, label="tokens in the bucket")
    ok = [t / 1000 for t, a, _ in bucket if a]
    no = [t / 1000 for t, a, _ in bucket if not a]
    ax.scatter(ok, [capacity + 0.4] * len(ok), color=charts.OK, s=20, label="accepted")
    ax.scatter(no, [capacity + 0.7] * len(no), facecolors="none", edgecolors=charts.BAD, s=20, label="refused")
    ax.set_ylim(-0.2, capacity + 1)
    charts.finish(ax, summary=f"in this run {sum(a for t, a, _ in bucket if t == 0)} of 8 passed at t = 0, "
                  f"then {sum(a for t, a, _ in bucket if t > 0)} in the next 10 s")


def throughput_trial(server: Any, prefix: str, *, threads: int = 4,
                     each: int = 500) -> dict[str, tuple[int, int, float]]:
    """Per algorithm, on the server's clock: (allowed, EVALSHA calls counted by the server,
    decisions per second) for ``threads`` x ``each`` decisions."""
    r = server.client()

    def evalsha_calls() -> int:
        return r.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)

    out = {}
    try:
        for name, lim in limiters(r, prefix, limit=1_000_000, window_ms=60_000).items():
            before = evalsha_calls()
            t0 = time.perf_counter()
            allowed = together(threads, lambda lim=lim: sum(bool(lim.hit("hank")) for _ in range(each)))
            elapsed = time.perf_counter() - t0
            out[name] = (sum(allowed), evalsha_calls() - before, threads * each / elapsed)
    finally:
        r.close()
    return out


def plot_throughput(throughput: dict[str, tuple[int, int, float]]) -> None:
    from .. import charts

    fig, ax = charts.figure("Decisions per second, 4 threads, server clock", xlabel="decisions per second",
                            ylabel="algorithm", width=8, height=2.6)
    names = list(throughput)
    ax.barh(names, [v[2] for v in throughput.values()], color=charts.NEUTRAL)
    ax.invert_yaxis()
    best = max(names, key=lambda n: throughput[n][2])
    worst = min(names, key=lambda n: throughput[n][2])
    charts.finish(ax, legend=False, summary=f"in this run {best} was fastest ({throughput[best][2]:,.0f}/s) "
                  f"and {worst} slowest ({throughput[worst][2]:,.0f}/s), one EVALSHA per decision each")


def skew_trial(server: Any, prefix: str, *, offset_ms: int = -90_000,
               requests: int = 20) -> dict[str, tuple[dict[str, int], int]]:
    """Two app servers A and B share each limiter (5 per minute); B's clock is ``offset_ms`` off.
    Requests alternate A, B, 50 ms apart; then the same with no clock (the server's TIME).
    Per algorithm: ({"A": allowed, "B": allowed}, allowed on the server clock)."""
    true_time = FakeClock(start_ms=7_000_000)
    app_a, app_b = server.client(), server.client()  # two app servers, two connections
    out = {}
    try:
        for name, cls in ALGORITHMS.items():
            kw = dict(limit=5, window_ms=60_000)
            a = cls(app_a, prefix=f"{prefix}:{cls.name}", clock=true_time, **kw)
            b = cls(app_b, prefix=f"{prefix}:{cls.name}", clock=SkewedClock(offset=offset_ms, base=true_time), **kw)
            a_srv = cls(app_a, prefix=f"{prefix}-srv:{cls.name}", **kw)
            b_srv = cls(app_b, prefix=f"{prefix}-srv:{cls.name}", **kw)
            by_app, srv = {"A": 0, "B": 0}, 0
            for i in range(requests):
                by_app["AB"[i % 2]] += bool((a, b)[i % 2].hit("judy"))
                srv += bool((a_srv, b_srv)[i % 2].hit("judy"))
                true_time.advance(50)
            out[name] = (by_app, srv)
    finally:
        app_a.close()
        app_b.close()
    return out


def skew_table(skewed: dict[str, tuple[dict[str, int], int]]) -> Table:
    rows = [[name, apps["A"], apps["B"], apps["A"] + apps["B"], srv] for name, (apps, srv) in skewed.items()]
    return Table(["algorithm", "A allowed", "B allowed", "total (app clocks)", "total (server TIME)"], rows,
                 title="Limit 5 per minute; B's clock 90 s behind A's; 20 requests alternating A, B")


def restart_trial(
        persistence_modes: tuple[str, ...] = ("none", "aof-everysec", "aof-always")) -> dict[str, tuple[int, int]]:
    """Per persistence mode, on a throwaway server: a sliding log of 5 per hour, 10 requests,
    kill -9 of the server, restart on the same data dir, 10 more. (allowed before, allowed after)."""
    from ..server import RedisServer

    out = {}
    for persistence in persistence_modes:
        s = RedisServer(modules=(), persistence=persistence, name=f"rl-{persistence}")
        with s:
            lim = SlidingLog(s.client(), limit=5, window_ms=3_600_000, prefix="rl:login")
            before = sum(bool(lim.hit("mallory")) for _ in range(10))
            # everysec may hold the AOF write back (up to 2 s) behind a slow fsync while the
            # replies are already out: let it reach the OS, so this is a plain process crash.
            c, deadline = s.client(), time.monotonic() + 10
            while c.info("persistence").get("aof_buffer_length", 0) and time.monotonic() < deadline:
                time.sleep(0.01)
            s.kill()                                             # kill -9 the server
            s.restart()                                          # same data dir
            lim = SlidingLog(s.client(), limit=5, window_ms=3_600_000, prefix="rl:login")
            out[persistence] = (before, sum(bool(lim.hit("mallory")) for _ in range(10)))
    return out


def restart_table(restarts: dict[str, tuple[int, int]]) -> Table:
    return Table(["persistence", "allowed before kill -9", "allowed after restart"],
                 [[p, b, a] for p, (b, a) in restarts.items()],
                 title="A sliding log of 5 per hour across a kill -9 of redis-server")
