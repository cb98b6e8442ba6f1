"""Benchmarks: printed ratios against baselines measured in the same run (never asserted).

    ./run bench                 # everything
    ./run bench --no-notebooks  # skip the notebook suite (the slow part)
    ./run bench --only-peers    # only the patterns vs the libraries users would pick

1. Start-to-PING of redistutor's local server (p50/p95 over 20 starts), next to a bare
   ``redis-server`` spawn polled with a raw socket PING, with and without the same modules.
2. Multi-node lab ready times, if the lab is present (benchmarks/bench_lab.py).
3. The patterns side by side with their peers, as ratios (benchmarks/peers.py): ``limits`` vs
   the rate limiters, redis-py's ``Lock`` and ``python-redis-lock`` vs the lock, ``pottery`` vs
   Redlock. The peers are the ``bench`` extra, installed here on first use.
4. Wall time of the whole notebook suite (nbval, as the tests run it).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redistutor import provision  # noqa: E402
from redistutor.server import RedisServer, free_port  # noqa: E402

N = 20


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def bare_spawn(binary: Path, modules: list[Path]) -> float:
    """Seconds from Popen to a PONG for a plain redis-server (no guardian, no password, no probe)."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        port = free_port()
        argv = [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", tmp]
        for m in modules:
            argv += ["--loadmodule", str(m)]
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                        s.sendall(b"PING\r\n")
                        if s.recv(16).startswith(b"+PONG"):
                            return time.perf_counter() - t0
                except OSError:
                    time.sleep(0.0005)
        finally:
            proc.kill()
            proc.wait()


def redistutor_start() -> float:
    t0 = time.perf_counter()
    server = RedisServer().start()
    try:
        server.client().ping()
        return time.perf_counter() - t0
    finally:
        server.stop()


def row(label: str, samples: list[float], baseline: list[float] | None = None) -> str:
    p50, p95 = pct(samples, 0.5) * 1000, pct(samples, 0.95) * 1000
    ratio = f"{p50 / (pct(baseline, 0.5) * 1000):5.2f}x" if baseline else "  1.00x"
    return f"  {label:<44} p50 {p50:6.1f} ms   p95 {p95:6.1f} ms   {ratio}"


def bench_start() -> None:
    binary = provision.ensure(allow_build=False)
    modules = list(provision.loadable_modules(binary.path).values())
    redistutor_start()  # warm: guardian process, capability probe, module probe record
    bare = [bare_spawn(binary.path, []) for _ in range(N)]
    bare_mod = [bare_spawn(binary.path, modules) for _ in range(N)]
    ours = [redistutor_start() for _ in range(N)]
    print(f"Start to PING, {N} starts each, Redis {binary.version_str}, {len(modules)} modules "
          f"(ratio = p50 / bare spawn p50):")
    print(row("bare redis-server spawn (baseline)", bare))
    print(row("bare redis-server spawn + same modules", bare_mod, bare))
    print(row("redistutor RedisServer().start() + PING", ours, bare))


def bench_notebooks() -> None:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n",
         os.environ.get("REDISTUTOR_TEST_WORKERS", "2"), "notebooks"],
        cwd=ROOT, capture_output=True, text=True,
    )
    wall = time.perf_counter() - t0
    last = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    count = len(list((ROOT / "notebooks").glob("*.ipynb")))
    print(f"Notebook suite: {count} notebooks in {wall:.1f} s wall ({last.strip('= ')})")


def ensure_peers() -> None:
    """Install the ``bench`` extra (the peer libraries) if one of them is missing."""
    try:
        import limits  # noqa: F401
        import pottery  # noqa: F401
        import redis_lock  # noqa: F401
    except ImportError:
        print("Installing the bench extra (limits, python-redis-lock, pottery) ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[bench]"], check=True)


def bench_peers(runs: int) -> None:
    ensure_peers()
    sys.path.insert(0, str(Path(__file__).parent))
    import peers

    peers.main(["--runs", str(runs)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-notebooks", action="store_true", help="skip the notebook suite")
    parser.add_argument("--no-peers", action="store_true", help="skip the comparison with peer libraries")
    parser.add_argument("--only-peers", action="store_true", help="only the comparison with peer libraries")
    parser.add_argument("--runs", type=int, default=3, help="runs of each peer comparison (the median counts)")
    args = parser.parse_args()
    if args.only_peers:
        bench_peers(args.runs)
        return 0
    bench_start()
    lab = Path(__file__).with_name("bench_lab.py")
    if lab.exists():
        sys.path.insert(0, str(lab.parent))
        import bench_lab

        for name in ("bench_fleet", "bench_cluster"):
            fn = getattr(bench_lab, name, None)
            if fn is not None:
                fn()
    if not args.no_peers:
        bench_peers(args.runs)
    if not args.no_notebooks:
        bench_notebooks()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
