"""The experiments of notebooks/28-kernel-tuning.ipynb, each behind a one-line helper.

The report and the warning rules live in :mod:`redistutor.patterns.kernel_tuning`; this module
holds what the notebook does with them: throwaway servers whose startup logs are read, the page
copy-on-write experiment (a forked process, huge pages asked for with ``madvise``), the BGSAVE
trial (a dataset, a writer, a probe client, the save's child frozen with SIGSTOP while the writer
runs), the latency monitor, and the tables and charts. Nothing here changes a host-wide setting
unless the learner opts in with ``REDISTUTOR_CHANGE_HOST=1`` (see :func:`host_lab`).

Toolkit candidates: ``child_pids`` (a server's forked children) and ``proc_status`` would serve any
notebook that watches a server's process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, cast

import redis

from ..patterns.kernel_tuning import Setting, expected_warnings, kernel_report, startup_warnings
from ..race import wait_until
from ..server import RedisServer
from ..tables import Table

OPT_IN = "REDISTUTOR_CHANGE_HOST"
PAGE = 4096


# -- reading a process ------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, str]:
    """``/proc/<pid>/status`` as a dict (``THP_enabled``, ``VmRSS``, ``VmSwap`` ...)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def anon_huge_kb(pid: int) -> int:
    """Kilobytes of the process's memory backed by transparent huge pages."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    return 0


def private_dirty_kb(pid: int) -> int:
    """The process's Private_Dirty (KB): its pages no other process shares any more. In a fork
    child that is the copy-on-write so far; Redis's child reads the same figure about itself."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Private_Dirty:"):
            return int(line.split()[1])
    return 0


def save_child_pid(server: Any, log_offset: int) -> int | None:
    """The pid of the BGSAVE child Redis logged after ``log_offset`` ("Background saving started
    by pid N"), or None while it has not logged it yet."""
    with open(server.log_path, "rb") as f:
        f.seek(log_offset)
        text = f.read().decode(errors="replace")
    marker = "Background saving started by pid "
    if marker not in text:
        return None
    return int(text.split(marker)[-1].split()[0])


# -- the report and the startup warnings ------------------------------------------------------


def naive_warnings(report: list[Setting]) -> set[str]:
    """The folklore checklist's prediction: "Redis warns when THP is on", "somaxconn must be >= 511"."""
    v = {s.name: s.value for s in report}
    out = set()
    if v["vm.overcommit_memory"] != "1":
        out.add("overcommit")
    if v["transparent_hugepage"] != "never":
        out.add("thp")
    if int(v["net.core.somaxconn"]) < 511:
        out.add("somaxconn")
    return out


def report_table(report: list[Setting]) -> Table:
    rows = [[s.name, s.source, s.value, s.recommended, "✓ ok" if s.ok else "✗ change"] for s in report]
    return Table(["setting", "read from", "value", "recommended", "verdict"], rows,
                 title="This host and this server, read now")


def servers_and_warnings(somaxconn: int) -> dict[str, dict[str, Any]]:
    """Start two throwaway servers and read what each printed at startup.

    ``defaults``: Redis 8's defaults. ``misfit``: ``tcp-backlog`` one above the host's somaxconn and
    ``disable-thp no``, so its somaxconn warning appears on any host. For each: the report read
    while it runs, the warnings its log holds, the checklist's and the rules' predictions, and the
    process's own THP state from /proc.
    """
    configs = {"defaults": {}, "misfit": {"tcp-backlog": somaxconn + 1, "disable-thp": "no"}}
    out: dict[str, dict[str, Any]] = {}
    for name, config in configs.items():
        s = RedisServer(modules=(), config=config, name=f"kt-{name}").start()
        try:
            c = s.client()
            report = kernel_report(c)
            assert s.pid is not None
            out[name] = {"config": config, "report": report, "found": startup_warnings(s.log_tail(10_000)),
                         "expected": expected_warnings(report), "naive": naive_warnings(report),
                         "thp_enabled": int(proc_status(s.pid).get("THP_enabled", "1")),
                         "anon_huge_kb": anon_huge_kb(s.pid)}
            c.close()
        finally:
            s.stop()
    return out


def warnings_table(servers: dict[str, dict[str, Any]]) -> Table:
    def fmt(names: set[str]) -> str:
        return ", ".join(sorted(names)) or "none"

    rows = [[name, ", ".join(f"{k} {v}" for k, v in d["config"].items()) or "(defaults)", fmt(d["found"]),
             fmt(d["expected"]), fmt(d["naive"]), d["thp_enabled"], d["anon_huge_kb"]] for name, d in servers.items()]
    return Table(["server", "config", "log says", "rules predict", "checklist predicts", "THP_enabled",
                  "huge-page KB"], rows,
                 title="Startup warnings: found in the log vs predicted",
                 note="THP_enabled: the process's own flag in /proc/<pid>/status (0 = opted out); "
                 "huge-page KB: its AnonHugePages")


# -- copy-on-write of pages, with and without huge pages --------------------------------------


def cow_pages(size_mb: int = 64, stride_kb: int = 2048, huge: bool = True) -> dict[str, Any]:
    """Fork a process holding ``size_mb`` of touched memory, write one byte every ``stride_kb``
    in the parent, and read how much the child's copy of that memory became private (copied).

    Runs in a fresh Python process (never forks the notebook's kernel). ``huge`` asks for
    transparent huge pages with ``madvise(MADV_HUGEPAGE)`` (no host change: honoured when the
    host's mode is ``always`` or ``madvise``), else ``MADV_NOHUGEPAGE``.
    """
    proc = subprocess.run([sys.executable, "-c", COW_SCRIPT, str(size_mb), str(stride_kb), "1" if huge else "0"],
                          capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the copy-on-write experiment failed: {proc.stderr.strip()[-500:]}")
    return cast(dict[str, Any], json.loads(proc.stdout))


# The experiment's own process: standard library only (starts in ~0.1 s), never the notebook's kernel.
COW_SCRIPT = r"""
import ctypes, json, mmap, os, sys

def vma(pid, addr):  # the smaps fields (kB) of the mapping that holds addr
    out, inside = {}, False
    for line in open(f"/proc/{pid}/smaps"):
        parts = line.split()
        if parts and "-" in parts[0] and not parts[0].endswith(":"):
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            inside = lo <= addr < hi
        elif inside and len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
            out[parts[0][:-1]] = out.get(parts[0][:-1], 0) + int(parts[1])
    return out

size_mb, stride_kb, huge = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
size = size_mb << 20
m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
m.madvise(mmap.MADV_HUGEPAGE if huge else mmap.MADV_NOHUGEPAGE)
base = ctypes.addressof(ctypes.c_char.from_buffer(m))
for off in range(0, size, 2 << 20):      # one byte per 2 MB first: what does it cost?
    m[off] = 1
sparse = vma(os.getpid(), base)
for off in range(0, size, 4096):         # then fill every page
    m[off] = 1
full = vma(os.getpid(), base)
r, w = os.pipe()
pid = os.fork()
if pid == 0:                             # the child only waits: it writes nothing
    os.close(w); os.read(r, 1); os._exit(0)
os.close(r)
writes = 0
for off in range(0, size, stride_kb << 10):   # the parent writes after the fork
    m[off] = 2
    writes += 1
child = vma(pid, base)
os.write(w, b"x"); os.waitpid(pid, 0)
print(json.dumps({"huge": huge, "size_mb": size_mb, "stride_kb": stride_kb, "writes": writes,
                  "sparse_rss_kb": sparse.get("Rss", 0), "huge_kb": full.get("AnonHugePages", 0),
                  "rss_kb": full.get("Rss", 0), "cow_kb": child.get("Private_Dirty", 0)}))
"""


def cow_table(runs: list[dict[str, Any]]) -> Table:
    rows = [["huge pages (MADV_HUGEPAGE)" if d["huge"] else "4 KB pages (MADV_NOHUGEPAGE)", d["huge_kb"] // 1024,
             d["sparse_rss_kb"], d["writes"], d["cow_kb"], d["cow_kb"] / max(d["writes"], 1)] for d in runs]
    return Table(["memory", "huge-page MB", "RSS after 1 byte per 2 MB (KB)", "writes after fork", "copied (KB)",
                  "KB copied per write"], rows, title=f"{runs[0]['size_mb']} MB, forked, then written",
                 fmt={"KB copied per write": ".1f"})


def kernel_version() -> tuple[int, int]:
    major, minor = os.uname().release.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


# -- fork cost vs dataset size, with a writer and a probe --------------------------------------


def _probe(c: redis.Redis, stop: threading.Event, samples: list[tuple[float, float]], t0: float) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        c.ping()
        samples.append((start - t0, (time.perf_counter() - start) * 1000))
        time.sleep(0.0005)


def _info(c: redis.Redis, section: str) -> dict[str, Any]:
    return c.info(section)


def fork_trial(server: Any, sizes_mb: list[int], *, value_bytes: int = 16384, write_share: float = 1.0,
               no_write_control: bool = True, threshold_ms: int = 1, save_s: float = 1.5) -> dict[str, Any]:
    """For each size: fill with ``DEBUG POPULATE``, then ``BGSAVE``; freeze the save's child
    (SIGSTOP) so the writer's whole pass lands while it lives, rewrite one byte in ``write_share``
    of the values (``SETRANGE``), resume the child (SIGCONT) and read the fork and COW figures.
    A probe client PINGs throughout; its samples and the save windows come back for the chart.
    A last save of the largest dataset with no writes is the control. The latency monitor runs at
    ``threshold_ms`` from the start; what it recorded comes back as ``latency``.
    """
    c = server.client()
    probe = server.client()
    c.config_set("latency-monitor-threshold", threshold_ms)
    c.execute_command("LATENCY", "RESET")
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    t0 = time.perf_counter()
    runner = threading.Thread(target=_probe, args=(probe, stop, samples, t0), daemon=True)
    runner.start()
    rows, windows, setup = [], [], []
    plan = [(mb, write_share) for mb in sizes_mb] + ([(sizes_mb[-1], 0.0)] if no_write_control else [])
    try:
        for mb, share in plan:
            keys = (mb << 20) // value_bytes
            begin = time.perf_counter() - t0
            c.flushall(asynchronous=True)
            c.execute_command("DEBUG", "POPULATE", keys, server.key("kt:v"), value_bytes)
            setup.append((begin, time.perf_counter() - t0))  # filling the dataset stalls the probe too
            forks_before = _info(c, "stats")["total_forks"]
            for attempt in range(3):      # a machine too loaded to freeze the child in time: save again, slower
                # µs per key in the save's child (a test knob): the save lasts save_s, long enough to freeze it
                c.config_set("rdb-key-save-delay", max(20, int(save_s * 2**attempt * 1_000_000) // keys))
                time.sleep(0.3 if attempt == 0 else 0.05)     # quiet probe samples before the fork
                offset = server.log_path.stat().st_size
                start = time.perf_counter() - t0
                c.bgsave()
                child = _wait_child(server, offset)
                lag = time.perf_counter() - t0 - start
                try:
                    os.kill(child, signal.SIGSTOP)
                    alive = _stopped(child) and _info(c, "persistence")["rdb_bgsave_in_progress"] == 1
                    written = _rewrite(c, server.key("kt:v"), int(keys * share)) if alive else 0
                    alive = alive and _info(c, "persistence")["rdb_bgsave_in_progress"] == 1
                    frozen_cow = private_dirty_kb(child) * 1024   # what Redis's child reads about itself
                except (ProcessLookupError, FileNotFoundError):  # the child had already finished
                    alive, written, frozen_cow = False, 0, 0
                finally:
                    _signal(child, signal.SIGCONT)
                wait_until(lambda: _info(c, "persistence")["rdb_bgsave_in_progress"] == 0, 120, "the BGSAVE to end")
                windows.append((start, time.perf_counter() - t0))
                if alive:
                    break
            p, st, m = _info(c, "persistence"), _info(c, "stats"), _info(c, "memory")
            rows.append({"dataset_mb": mb, "keys": keys, "used_memory": m["used_memory"],
                         "written": written, "fork_usec": st["latest_fork_usec"],
                         "forks": st["total_forks"] - forks_before, "attempts": attempt + 1,
                         "cow": p["rdb_last_cow_size"], "frozen_cow": frozen_cow,
                         "status": p["rdb_last_bgsave_status"],
                         "alive_while_writing": alive, "freeze_lag_s": lag})
            time.sleep(0.1)
        latency = {row[0]: {"latest_ms": int(row[2]), "max_ms": int(row[3])}
                   for row in c.execute_command("LATENCY", "LATEST")}
    finally:
        stop.set()
        runner.join()
        c.config_set("rdb-key-save-delay", 0)
        c.flushall()
        c.close()
        probe.close()
    return {"rows": rows, "samples": samples, "windows": windows, "setup": setup, "latency": latency,
            "threshold_ms": threshold_ms}


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _state(pid: int) -> str:
    """A process's state letter from /proc (``T`` = stopped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _stopped(pid: int) -> bool:
    """Wait until a SIGSTOP has taken effect (delivery is asynchronous); False if the process ended."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        state = _state(pid)
        if state in ("T", "t"):
            return True
        if state in ("Z", "X", "gone"):
            return False
        time.sleep(0.001)
    return False


def _wait_child(server: Any, offset: int) -> int:
    found: list[int] = []

    def logged() -> bool:
        pid = save_child_pid(server, offset)
        if pid is not None:
            found.append(pid)
        return bool(found)

    wait_until(logged, 10, "the BGSAVE child")
    return found[0]


def _rewrite(c: redis.Redis, prefix: str, n: int, batch: int = 200) -> int:
    """SETRANGE one byte at offset 0 of the first ``n`` values, pipelined; returns how many."""
    done = 0
    for lo in range(0, n, batch):
        with c.pipeline(transaction=False) as p:
            for i in range(lo, min(n, lo + batch)):
                p.setrange(f"{prefix}:{i}", 0, "x")
            p.execute()
        done += min(n, lo + batch) - lo
    return done


def fork_table(trial: dict[str, Any]) -> Table:
    def per_write(d: dict[str, Any]) -> float | None:
        return round(d["frozen_cow"] / d["written"] / 1024, 1) if d["written"] else None

    rows = [[d["dataset_mb"], round(d["used_memory"] / 2**20, 1), d["written"], d["fork_usec"] / 1000,
             round(d["frozen_cow"] / 2**20, 1), per_write(d), round(d["cow"] / 2**20, 1)] for d in trial["rows"]]
    return Table(["dataset (MB)", "used_memory (MB)", "values rewritten", "fork (ms)", "COW frozen (MB)",
                  "KB copied per write", "rdb_last_cow_size (MB)"], rows, title="BGSAVE: fork time and copy-on-write",
                 fmt={"fork (ms)": ".2f"},
                 note="COW frozen: the child's Private_Dirty read from /proc after the writes; "
                 "the last row is the control, the same save with no writes")


def _p99(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def probe_split(trial: dict[str, Any]) -> tuple[float, float]:
    """The probe's p99 (ms) inside the BGSAVE windows, and while quiet (no save, no dataset filling)."""
    inside: list[float] = []
    quiet: list[float] = []
    for t, ms in trial["samples"]:
        if any(a <= t <= b for a, b in trial["windows"]):
            inside.append(ms)
        elif not any(a <= t <= b for a, b in trial["setup"]):
            quiet.append(ms)
    return _p99(inside), _p99(quiet)


def plot_fork(trial: dict[str, Any]) -> None:
    from .. import charts

    rows = [d for d in trial["rows"] if d["written"]]
    fig, axes = charts.figure("Fork time and copy-on-write vs dataset size", ncols=2, width=10, height=3.4)
    mb = [d["used_memory"] / 2**20 for d in rows]
    axes[0].plot(mb, [d["fork_usec"] / 1000 for d in rows], "o-", label="latest_fork_usec")
    axes[0].set(xlabel="used_memory (MB)", ylabel="fork (ms)", title="latest_fork_usec: fork() blocks the server")
    x = list(range(len(rows)))
    axes[1].bar([i - 0.2 for i in x], [d["frozen_cow"] / 2**20 for d in rows], width=0.4, color=charts.PALETTE[1],
                label="child's Private_Dirty, frozen")
    axes[1].bar([i + 0.2 for i in x], [d["cow"] / 2**20 for d in rows], width=0.4, color=charts.PALETTE[0],
                label="rdb_last_cow_size")
    axes[1].set_xticks(x, [f"{m:.0f}" for m in mb])
    axes[1].set(xlabel="used_memory (MB)", ylabel="copied (MB)", title="copy-on-write, every value rewritten")
    ratio = rows[-1]["fork_usec"] / max(rows[0]["fork_usec"], 1)
    cow_ratio = rows[-1]["frozen_cow"] / max(rows[0]["frozen_cow"], 1)
    axes[1].legend(loc="upper left", fontsize=8)
    charts.finish(list(axes), legend=False, summary=f"in this run a {mb[-1] / mb[0]:.1f}x larger dataset took "
                  f"{ratio:.1f}x as long to fork and copied {cow_ratio:.1f}x as much")


def plot_probe(trial: dict[str, Any]) -> None:
    from .. import charts

    fig, ax = charts.figure("A probe client's PING latency across the BGSAVEs", xlabel="time (s)",
                            ylabel="PING latency (ms)")
    ax.plot([t for t, _ in trial["samples"]], [ms for _, ms in trial["samples"]], ".", ms=2, label="PING")
    for i, (a, b) in enumerate(trial["windows"]):
        ax.axvspan(a, b, color=charts.PALETTE[1], alpha=0.25, label="BGSAVE window" if i == 0 else None)
    for i, (a, b) in enumerate(trial["setup"]):
        ax.axvspan(a, b, color="#999999", alpha=0.2, label="FLUSHALL + DEBUG POPULATE" if i == 0 else None)
    ax.set_yscale("log")
    inside, outside = probe_split(trial)
    charts.finish(ax, summary=f"in this run the probe's p99 was {inside:.2f} ms during saves and {outside:.2f} ms "
                  f"while quiet ({inside / max(outside, 1e-9):.1f}x), over {len(trial['samples'])} PINGs")


# -- the latency monitor ----------------------------------------------------------------------


def latency_events(r: redis.Redis, sleep_ms: int = 60) -> dict[str, Any]:
    """One slow command (``DEBUG SLEEP``) on top of what the monitor recorded during the saves;
    returns ``LATENCY LATEST`` by event and ``LATENCY DOCTOR``'s text."""
    r.execute_command("DEBUG", "SLEEP", sleep_ms / 1000)
    latest = {row[0]: {"latest_ms": int(row[2]), "max_ms": int(row[3])}
              for row in r.execute_command("LATENCY", "LATEST")}
    threshold = int(cast(dict[str, str], r.config_get("latency-monitor-threshold"))["latency-monitor-threshold"])
    return {"threshold_ms": threshold, "sleep_ms": sleep_ms, "events": latest,
            "doctor": r.execute_command("LATENCY", "DOCTOR")}


def latency_table(lat: dict[str, Any]) -> Table:
    rows = [[name, e["latest_ms"], e["max_ms"]] for name, e in sorted(lat["events"].items())]
    return Table(["event", "latest (ms)", "max (ms)"], rows,
                 title=f"LATENCY LATEST (threshold {lat['threshold_ms']} ms)",
                 note="fork: the forks of the saves above; command: latest is the DEBUG SLEEP, max may be "
                 "the notebook's own DEBUG POPULATE or FLUSHALL")


# -- opt-in: change the host (never by default, never in CI) ----------------------------------


THP_PATH = "/sys/kernel/mm/transparent_hugepage/enabled"


def set_thp_mode(mode: str, path: str = THP_PATH) -> str:
    """Write ``mode`` to the THP switch and return the mode it had (to restore it)."""
    old = Path(path).read_text().split("[")[1].split("]")[0]
    Path(path).write_text(mode)
    return old


def host_lab(sizes_mb: list[int], path: str = THP_PATH) -> dict[str, Any] | None:
    """Only with ``REDISTUTOR_CHANGE_HOST=1`` and root: BGSAVE with a writer under THP ``always``
    (server ``disable-thp no``) and under ``never``; the host's mode is restored afterwards.
    Returns None (and changes nothing) otherwise."""
    if os.environ.get(OPT_IN) != "1" or os.geteuid() != 0:
        return None
    results = {}
    old = Path(path).read_text().split("[")[1].split("]")[0]
    try:
        for mode in ("always", "never"):
            set_thp_mode(mode, path)
            s = RedisServer(modules=(), config={"disable-thp": "no"}, name=f"kt-thp-{mode}").start()
            try:
                results[mode] = fork_trial(s, sizes_mb, no_write_control=False)
            finally:
                s.stop()
    finally:
        set_thp_mode(old, path)
    return results


def explain_host_lab() -> str:
    return (f"{OPT_IN} is not set to 1 (or this is not root), so the host was not changed. With it, this cell "
            "sets THP to always, runs the BGSAVE trial with disable-thp no, then never, and restores the mode.")
