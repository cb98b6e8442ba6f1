"""The patterns side by side with the libraries a user would pick instead, in one run.

    .venv/bin/python benchmarks/peers.py [--runs 3] [--only limiter|lock|redlock]

Same server (or the same 5-node fleet), same workload, peer and ours interleaved in each run; the
ratio is ours / peer (1.00 = as fast; above 1 = slower), the median of the runs' ratios is what
counts (the machine is shared and noisy). Every decision is also checked (the same number of
requests allowed, every lock really exclusive): a fast wrong answer would not be a result.

- Rate limiting vs ``limits`` (fixed window, moving window = our sliding log, sliding window
  counter): client time per decision and the server's own time per decision (INFO commandstats).
- The lock vs redis-py's ``Lock`` and ``python-redis-lock``: acquire + release uncontended, and the
  wait of 6 threads taking turns on one lock (p50/p99), ours with the random-sleep retry and
  with the fair hand-off.
- Redlock vs ``pottery``'s on 5 nodes: acquire + release with every node up, and the acquire with
  2 of the 5 frozen (SIGSTOP) behind clients with the lab's 1 s timeout.

The peers are benchmark-only dependencies (``pip install -e ".[bench]"``; bench.py installs them).
Timing is printed, never asserted.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redistutor import lab  # noqa: E402
from redistutor.patterns import rate_limiting as rl  # noqa: E402
from redistutor.patterns.distributed_locking import Lock  # noqa: E402
from redistutor.patterns.redlock import Redlock  # noqa: E402
from redistutor.server import RedisServer  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def evalsha_usec(r: Any) -> float:
    stats = r.info("commandstats")
    return sum(float(v["usec"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))


# -- rate limiting ---------------------------------------------------------------------------------

def _limiter_pair(r: Any, peer_hit: Callable[[str], bool], our_hit: Callable[[str], bool], n: int,
                  ids: int, batch: int = 100) -> tuple[tuple[float, float, int], tuple[float, float, int]]:
    """n decisions each over ``ids`` ids, peer and ours alternating in batches (so both see the same
    machine load): for each, (client µs per decision, server µs per decision, allowed)."""
    acc = [[0.0, 0.0, 0], [0.0, 0.0, 0]]
    for start in range(0, n, batch):
        for slot, hit in ((0, peer_hit), (1, our_hit)):
            before = evalsha_usec(r)
            t0 = time.perf_counter()
            allowed = 0
            for i in range(start, min(n, start + batch)):
                allowed += bool(hit(f"user{i % ids}"))
            acc[slot][0] += time.perf_counter() - t0
            acc[slot][1] += evalsha_usec(r) - before
            acc[slot][2] += allowed
    (pw, ps, pa), (ow, os_, oa) = acc
    return (pw / n * 1e6, ps / n, int(pa)), (ow / n * 1e6, os_ / n, int(oa))


def bench_limiters(server: Any, runs: int, n: int = 4000, ids: int = 100) -> list[list[Any]]:
    import redis
    from limits import RateLimitItemPerDay, strategies
    from limits.storage import RedisStorage

    r = redis.Redis.from_url(server.url)           # the same client settings as limits' own
    storage = RedisStorage(server.url)
    item = RateLimitItemPerDay(30)                 # 40 hits per id: 30 allowed, 10 refused each
    fixed = strategies.FixedWindowRateLimiter(storage)
    # (label, peer, our class, our time source): "" = the server's TIME inside the script (the
    # default: clients' clocks disagree); "client" = the caller passes its own clock, no TIME call.
    pairs = [
        ("fixed window", fixed, rl.FixedWindow, ""),
        ("fixed window, time passed in", fixed, rl.FixedWindow, "client"),
        ("sliding log / moving window", strategies.MovingWindowRateLimiter(storage), rl.SlidingLog, ""),
        ("sliding counter", strategies.SlidingWindowCounterRateLimiter(storage), rl.SlidingWindowCounter, ""),
    ]
    rows = []
    for label, peer, cls, clock in pairs:
        ratios_c, ratios_s, cells = [], [], None
        for k in range(runs):
            r.flushall()
            ours = cls(r, limit=30, window_ms=86_400_000, prefix=f"rl:bench{k}")
            our_hit = ((lambda o: lambda i: o.hit(i, now_ms=int(time.time() * 1000)))(ours) if clock == "client"
                       else ours.hit)
            peer_hit = (lambda p: lambda i: p.hit(item, i))(peer)
            peer_hit("warm")                        # scripts loaded, connections open
            our_hit("warm")
            (pc, ps, pa), (oc, os_, oa) = _limiter_pair(r, peer_hit, our_hit, n, ids)
            if pa != oa:
                raise AssertionError(f"{label}: limits allowed {pa}, ours {oa}")
            ratios_c.append(oc / pc)
            ratios_s.append(os_ / ps)
            cells = (pc, oc, ps, os_, oa)
        assert cells is not None
        pc, oc, ps, os_, oa = cells
        rows.append([f"limiter: {label}", "limits", f"{pc:.0f} µs / {ps:.1f} µs srv",
                     f"{oc:.0f} µs / {os_:.1f} µs srv", ratios_c, ratios_s])
    return rows


# -- the lock --------------------------------------------------------------------------------------

def _locks(r: Any, name: str) -> dict[str, Callable[[], tuple[Callable[[], Any], Callable[[Any], Any]]]]:
    """name -> a factory of (acquire, release) for one lock object per thread, as users write it."""
    import redis_lock

    def redis_py():
        lk = r.lock(f"rp:{name}", timeout=10)
        return (lambda: lk.acquire(blocking=True)), (lambda _: lk.release())

    def python_redis_lock():
        lk = redis_lock.Lock(r, f"prl:{name}", expire=10)
        return (lambda: lk.acquire(blocking=True)), (lambda _: lk.release())

    def ours(fair: bool):
        def make():
            lk = Lock(r, name, prefix="ours-fair", fair=True) if fair else Lock(r, name, prefix="ours")
            return (lambda: lk.acquire()), lk.release
        return make

    out = {"redis-py Lock": redis_py, "python-redis-lock": python_redis_lock, "ours": ours(False)}
    if "fair" in inspect.signature(Lock).parameters:
        out["ours (fair)"] = ours(True)
    return out


def _uncontended(make: Callable[[], Any], n: int) -> list[float]:
    acquire, release = make()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        lease = acquire()
        release(lease)
        times.append(time.perf_counter() - t0)
    return times


def _contended(make: Callable[[], Any], threads: int, rounds: int, hold_s: float) -> list[float]:
    """Each thread takes the lock ``rounds`` times and holds it ``hold_s``; returns every wait."""
    waits: list[float] = []
    inside = [0]
    guard = threading.Lock()
    start = threading.Barrier(threads)

    def worker() -> None:
        acquire, release = make()
        start.wait()
        for _ in range(rounds):
            t0 = time.perf_counter()
            lease = acquire()
            waited = time.perf_counter() - t0
            with guard:
                inside[0] += 1
                if inside[0] != 1:
                    raise AssertionError("two holders at once")
                waits.append(waited)
            time.sleep(hold_s)
            with guard:
                inside[0] -= 1
            release(lease)

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return waits


def bench_lock(server: Any, runs: int, n: int = 1000, threads: int = 6, rounds: int = 25,
               hold_s: float = 0.002) -> list[list[Any]]:
    r = server.client(max_connections=64)
    r.flushall()
    makers = _locks(r, "bench")
    rows = []
    unc: dict[str, list[list[float]]] = {k: [] for k in makers}
    con: dict[str, list[list[float]]] = {k: [] for k in makers}
    for _ in range(runs):
        for name, make in makers.items():
            _uncontended(make, 20)                   # warm
            unc[name].append(_uncontended(make, n))
        for name, make in makers.items():
            con[name].append(_contended(make, threads, rounds, hold_s))
    for peer in ("redis-py Lock", "python-redis-lock"):
        for ours in [k for k in ("ours", "ours (fair)") if k in makers]:
            for kind, data, q in (("uncontended p50", unc, 0.5), ("uncontended p99", unc, 0.99),
                                  (f"{threads} threads, wait p50", con, 0.5),
                                  (f"{threads} threads, wait p99", con, 0.99)):
                ratios = [pct(o, q) / max(pct(p, q), 1e-9) for o, p in zip(data[ours], data[peer])]
                rows.append([f"lock {kind}: {ours}", peer, f"{pct(data[peer][-1], q) * 1e3:.2f} ms",
                             f"{pct(data[ours][-1], q) * 1e3:.2f} ms", ratios, None])
    return rows


# -- Redlock ---------------------------------------------------------------------------------------

def bench_redlock(runs: int, n: int = 300, frozen_n: int = 60) -> list[list[Any]]:
    """Acquire times over 5 nodes, all up and with 2 frozen: pottery vs ours with its defaults (a
    thread per node, the round ends at the majority, like pottery; 50 ms per node) and, for
    comparison, ours one node after another (``parallel=False``, what notebook 08's experiments use)."""
    from pottery import Redlock as PotteryRedlock

    rows = []
    with lab.Fleet(5, name="bench-peers") as fleet:
        clients = fleet.clients                       # the lab's clients: 1 s timeouts
        for c in clients:
            c.ping()
        makers: dict[str, Callable[[], Any]] = {
            "pottery": lambda: PotteryRedlock(key="pottery", masters=set(clients), auto_release_time=10),
            "ours (defaults)": lambda: Redlock(clients, "ours-d"),
            "ours (parallel=False)": lambda: Redlock(clients, "ours-s", parallel=False),
        }

        misses = {k: 0 for k in makers}             # acquisitions that failed (the round is repeated)

        def cycle(name: str, lock: Any) -> float:
            t0 = time.perf_counter()
            while True:
                if isinstance(lock, Redlock):
                    lease = lock.acquire()
                    t1 = time.perf_counter()
                    if lease is not None:
                        lock.release(lease)
                        return t1 - t0
                else:
                    got = lock.acquire(blocking=False)
                    t1 = time.perf_counter()
                    if got:
                        lock.release()
                        return t1 - t0
                misses[name] += 1
                if misses[name] > 100:
                    raise AssertionError(f"{name}: no lock 100 times")

        res: dict[str, dict[str, list[list[float]]]] = {s: {k: [] for k in makers} for s in ("up", "frozen")}
        for _ in range(runs):
            for state, count in (("up", n), ("frozen", frozen_n)):
                # pottery's release returns at the majority; let its last stragglers land first
                deadline = time.monotonic() + 5
                while any(c.exists("redlock:pottery") for c in clients) and time.monotonic() < deadline:
                    time.sleep(0.01)
                if state == "frozen":
                    fleet["n4"].pause()
                    fleet["n5"].pause()
                try:
                    for name, make in makers.items():
                        lock = make()
                        cycle(name, lock)                     # warm: scripts, connections, threads
                        res[state][name].append([cycle(name, lock) for _ in range(count)])
                        if isinstance(lock, Redlock):
                            lock.close()
                finally:
                    if state == "frozen":
                        fleet["n4"].resume()
                        fleet["n5"].resume()
                        time.sleep(1.2)              # let the peers' stuck threads time out
                        for c in clients:
                            c.flushall()
        if any(misses.values()):
            print(f"Redlock acquisitions that failed and were repeated: {misses}")
        for state, label in (("up", "5 nodes up"), ("frozen", "2 of 5 frozen")):
            for ours in ("ours (defaults)", "ours (parallel=False)"):
                for q, qn in ((0.5, "p50"), (0.99, "p99")):
                    o, p = res[state][ours], res[state]["pottery"]
                    ratios = [pct(a, q) / pct(b, q) for a, b in zip(o, p)]
                    rows.append([f"redlock acquire {qn}, {label}: {ours}", "pottery", f"{pct(p[-1], q) * 1e3:.2f} ms",
                                 f"{pct(o[-1], q) * 1e3:.2f} ms", ratios, None])
    return rows


def report(rows: list[list[Any]], runs: int) -> None:
    print(f"Patterns vs peers, {runs} runs, interleaved (ratio = ours / peer; median of the runs, "
          "all runs in brackets; <= 1.10 is the goal):")
    for label, peer, pv, ov, ratios, srv in rows:
        line = (f"  {label:<44} vs {peer:<18} peer {pv:<22} ours {ov:<22} "
                f"{statistics.median(ratios):5.2f}x [{' '.join(f'{x:.2f}' for x in ratios)}]")
        if srv:
            line += f"  server {statistics.median(srv):5.2f}x [{' '.join(f'{x:.2f}' for x in srv)}]"
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=["limiter", "lock", "redlock"])
    parser.add_argument("--frozen-rounds", type=int, default=60, help="Redlock acquisitions with 2 nodes frozen")
    args = parser.parse_args(argv)
    rows: list[list[Any]] = []
    server = RedisServer().start()
    try:
        if args.only in (None, "limiter"):
            rows += bench_limiters(server, args.runs)
        if args.only in (None, "lock"):
            rows += bench_lock(server, args.runs)
    finally:
        server.stop()
    if args.only in (None, "redlock"):
        rows += bench_redlock(args.runs, frozen_n=args.frozen_rounds)
    report(rows, args.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
