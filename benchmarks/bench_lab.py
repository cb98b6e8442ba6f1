"""Lab start-up benchmarks: how long until a topology takes its first write.

``bench_cluster()``: 3 masters (and 3 masters + 3 replicas) from spawn to ``cluster_state:ok`` on
every node with one slot map and a connected RedisCluster client. Goal <= 3 s; Redis itself
keeps a fresh master read-only for its first 2 s, so ~2.05 s is the floor.

``bench_fleet()``: 5 independent servers started concurrently until each answers PING.
Goal <= 0.3 s.

Run: ``.venv/bin/python benchmarks/bench_lab.py`` (the main benchmark script calls both).
"""

from __future__ import annotations

import statistics
import time

from redistutor import lab


def _pcts(xs: list[float]) -> str:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]
    return f"p50 {statistics.median(xs):.3f} s, p95 {p95:.3f} s, max {xs[-1]:.3f} s (n={len(xs)})"


def bench_cluster(runs: int = 5) -> dict[str, list[float]]:
    """Cluster ready time (spawn -> writable through RedisCluster), with and without replicas."""
    out: dict[str, list[float]] = {}
    for label, replicas in (("3 masters", 0), ("3 masters + 3 replicas", 1)):
        times = []
        for _ in range(runs):
            t0 = time.monotonic()
            with lab.Cluster(3, replicas=replicas) as cluster:
                cluster.rc.set("bench", "1")  # the first write really goes through
                times.append(time.monotonic() - t0)
        out[label] = times
        print(f"cluster ready, {label}: {_pcts(times)}  (goal <= 3 s; Redis floor ~2 s)")
    return out


def bench_fleet(runs: int = 20, n: int = 5) -> list[float]:
    """Time to start ``n`` independent servers concurrently until each answers PING."""
    lab.Fleet(1).start().stop()  # find the binary once, as a notebook's setup cell would
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        fleet = lab.Fleet(n).start()
        times.append(time.monotonic() - t0)
        assert all(c.ping() for c in fleet.clients)
        fleet.stop()
    print(f"{n}-node fleet ready: {_pcts(times)}  (goal <= 0.3 s)")
    return times


if __name__ == "__main__":
    bench_fleet()
    bench_cluster()
