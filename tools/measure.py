#!/usr/bin/env python3
"""``./run measure``: what each notebook costs to run, measured on this machine.

    python tools/measure.py                          # every notebook, one at a time
    python tools/measure.py 01-cache-aside 13-reliable-queue   # only these (merged into the file)
    python tools/measure.py --server                 # also an idle ``jupyter lab`` server's memory
    python tools/measure.py --markdown               # only rewrite the table from the data file
    python tools/measure.py --sizing                 # only rewrite the sizing tables (docs/, workshop/README.md)
    python tools/measure.py --stale                  # which notebooks changed since measured

Each notebook runs top to bottom in a fresh kernel (nbclient, text display mode as the tests run
it), alone, in its own process session with a hard timeout (``--timeout``). While it runs, the
kernel's process tree is sampled every 0.1 s from ``/proc``: the kernel and every process it
started (Redis servers, lab workers and clusters, the guardian), found by parentage and by a
marker in their environment, so a process that was reparented still counts. Recorded per notebook:

* ``wall_s``: seconds from the first cell to the last (kernel start excluded, ``kernel_start_s``);
* ``cpu_s``: user + system CPU seconds of the whole tree over those cells, including processes
  that exited before the end (their last sample, plus what their parents' reaped-children times
  show beyond it);
* ``peak_rss_mb`` / ``peak_procs``: the largest sum of RSS across the tree at one sample, and the
  most processes at one sample; ``peak_pss_mb`` likewise from ``smaps_rollup`` every 0.5 s (PSS
  shares a shared page between the processes that map it, so it does not count libraries twice);
* ``active``: an *active learner*: after every cell before ``## Cleanup`` ran, the kernel keeps
  its servers; their memory (median over ``--idle`` seconds) and the CPU they use while nobody
  runs a cell. Then the cleanup cells run and the kernel shuts down.
* the load average before and after, and the date.

The results go to ``docs/notebook-costs.json`` (sorted keys, fixed rounding: a rerun changes only
the figures) and ``docs/notebook-costs.md`` (a table rendered from the JSON). The machine may be
shared: CPU seconds and memory hardly change with load, wall time grows with it, so each entry
keeps the load average it was measured under, and up to three runs of the notebook's current code
(``runs``); ``run_all_s``, the shortest of their wall times, is what the pattern guide shows
(redistutor/scenarios/guide.py). ``--sizing`` turns the data into the learners-per-host table of
``docs/workshop-sizing.md`` (its assumptions are the constants ``HOSTS``, ``RESERVE_GB``,
``HEADROOM`` and ``RUNS``). ``--stale`` lists the notebooks whose code changed since they were
measured (measure them again by name).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
DATA = ROOT / "docs" / "notebook-costs.json"
TABLE = ROOT / "docs" / "notebook-costs.md"
MARKER = "REDISTUTOR_MEASURE_RUN"
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024


def say(text: str) -> None:
    print(f"[measure] {text}", file=sys.stderr, flush=True)


# -- the process tree, read from /proc ----------------------------------------------------------

def _stat(pid: int) -> tuple[str, int, int, int, int, int, int, int] | None:
    """(name, ppid, utime, stime, cutime, cstime, starttime, rss bytes) or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = raw[raw.index("(") + 1:raw.rindex(")")]
    f = raw[raw.rindex(")") + 2:].split()
    # fields after the name, from 3 (state): ppid 4, utime 14, stime 15, cutime 16, cstime 17,
    # starttime 22, rss 24 (man 5 proc)
    return (name, int(f[1]), int(f[11]), int(f[12]), int(f[13]), int(f[14]), int(f[19]), int(f[21]) * PAGE)


def _pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _has_marker(pid: int, token: str) -> bool:
    try:
        return f"{MARKER}={token}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


class TreeSampler:
    """Samples the process tree under ``root`` (and every process carrying the run's marker)."""

    def __init__(self, root: int, token: str, interval: float = 0.1, pss_every: int = 5) -> None:
        self.root, self.token, self.interval, self.pss_every = root, token, interval, pss_every
        self.procs: dict[tuple[int, int], dict[str, Any]] = {}  # (pid, starttime) -> last sample
        self.foreign: set[tuple[int, int]] = set()
        self.peak_rss = self.peak_pss = self.peak_procs = 0
        self.rss_series: list[tuple[float, int]] = []
        self.pss_series: list[tuple[float, int]] = []
        self.samples = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        with self.lock:
            self._sample()

    def _sample(self) -> None:
        now = time.monotonic()
        alive: dict[int, tuple[int, int]] = {}
        stats: dict[int, tuple[str, int, int, int, int, int, int, int]] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and (st := _stat(int(entry.name))):
                stats[int(entry.name)] = st
        ours = {pid for pid, st in stats.items() if (pid, st[6]) in self.procs}
        changed = True
        while changed:  # the root, and every process whose parent is ours
            changed = False
            for pid, st in stats.items():
                if pid not in ours and (pid, st[6]) not in self.foreign and (pid == self.root or st[1] in ours):
                    ours.add(pid)
                    changed = True
        for pid, st in stats.items():  # reparented ones: the marker in their environment, read once
            key = (pid, st[6])
            if pid not in ours and key not in self.foreign:
                if _has_marker(pid, self.token):
                    ours.add(pid)
                else:
                    self.foreign.add(key)
        take_pss = self.samples % self.pss_every == 0
        rss = pss = 0
        for pid in ours:
            st = stats[pid]
            key = (pid, st[6])
            alive[pid] = key
            rec = self.procs.setdefault(key, {"name": st[0], "ppid": st[1], "exited": False, "max_rss": 0})
            rec.update(utime=st[2], stime=st[3], cutime=st[4], cstime=st[5], rss=st[7])
            rec["max_rss"] = max(rec["max_rss"], st[7])
            rss += st[7]
            if take_pss:
                pss += _pss(pid)
        for key, rec in self.procs.items():
            if alive.get(key[0]) != key:
                rec["exited"] = True
        self.samples += 1
        self.rss_series.append((now, rss))
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_procs = max(self.peak_procs, len(ours))
        if take_pss:
            self.pss_series.append((now, pss))
            self.peak_pss = max(self.peak_pss, pss)

    def cpu_seconds(self) -> float:
        """User + system seconds of every process seen so far, exited ones included."""
        with self.lock:
            own = sum(rec["utime"] + rec["stime"] for rec in self.procs.values())
            extra = 0
            by_pid = {key[0]: key for key in self.procs}
            for key, rec in self.procs.items():
                # the parent's reaped-children time beyond what its exited children showed us
                children = [c for c in self.procs.values()
                            if c["exited"] and c["ppid"] == key[0] and by_pid.get(key[0]) == key]
                shown = sum(c["utime"] + c["stime"] + c["cutime"] + c["cstime"] for c in children)
                extra += max(0, rec["cutime"] + rec["cstime"] - shown)
            return (own + extra) / TICK

    def window(self, since: float) -> dict[str, float]:
        """Median RSS and PSS summed over the tree since a monotonic time."""
        with self.lock:
            rss = [v for t, v in self.rss_series if t >= since]
            pss = [v for t, v in self.pss_series if t >= since]
        return {"rss_mb": statistics.median(rss) / MB if rss else 0.0,
                "pss_mb": statistics.median(pss) / MB if pss else 0.0}

    def count(self) -> int:
        with self.lock:
            return sum(not rec["exited"] for rec in self.procs.values())


# -- one notebook -------------------------------------------------------------------------------

def _cleanup_index(cells: list) -> int:
    for i, cell in enumerate(cells):
        if cell.cell_type == "markdown" and "".join(cell.source).lstrip().lower().startswith("## cleanup"):
            return i
    return len(cells)


def measure_one(path: Path, idle: float) -> dict[str, Any]:
    """Run one notebook in a fresh kernel in this process and measure its process tree."""
    import nbformat
    from nbclient import NotebookClient

    token = secrets.token_hex(8)
    os.environ[MARKER] = token
    os.environ["REDISTUTOR_DISPLAY"] = "text"
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    cleanup = _cleanup_index(nb.cells)
    started = time.monotonic()
    with client.setup_kernel():
        assert client.km is not None
        process = getattr(client.km.provisioner, "process", None)
        if process is None:
            raise RuntimeError("the kernel was not started as a local process: measure needs its pid")
        sampler = TreeSampler(process.pid, token)
        sampler.start()
        kernel_start = time.monotonic() - started
        cpu0, t0 = sampler.cpu_seconds(), time.monotonic()
        for index, cell in enumerate(nb.cells[:cleanup]):
            client.execute_cell(cell, index)
        sampler.sample()
        cpu1, t1 = sampler.cpu_seconds(), time.monotonic()
        time.sleep(min(2.0, idle))  # let the last cell's threads settle before the idle window
        sampler.sample()
        cpu_idle0, idle0 = sampler.cpu_seconds(), time.monotonic()
        active_procs = sampler.count()
        time.sleep(idle)
        sampler.sample()
        cpu_idle1, idle1 = sampler.cpu_seconds(), time.monotonic()
        active = {**sampler.window(idle0), "procs": active_procs,
                  "idle_cpu_cores": (cpu_idle1 - cpu_idle0) / (idle1 - idle0)}
        cpu2, t2 = sampler.cpu_seconds(), time.monotonic()
        for index, cell in enumerate(nb.cells[cleanup:], start=cleanup):
            client.execute_cell(cell, index)
        sampler.stop()
        cpu3, t3 = sampler.cpu_seconds(), time.monotonic()
    names: dict[str, int] = {}
    for rec in sampler.procs.values():
        names[rec["name"]] = names.get(rec["name"], 0) + 1
    return {
        "wall_s": (t1 - t0) + (t3 - t2),
        "kernel_start_s": kernel_start,
        "cpu_s": (cpu1 - cpu0) + (cpu3 - cpu2),
        "peak_rss_mb": sampler.peak_rss / MB,
        "peak_pss_mb": sampler.peak_pss / MB,
        "peak_procs": sampler.peak_procs,
        "processes_seen": dict(sorted(names.items())),
        "active": active,
        "samples": sampler.samples,
    }


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def notebook_digest(path: Path) -> str:
    """The notebook's code, hashed: tells whether an entry was measured on today's cells."""
    nb = json.loads(path.read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    return hashlib.sha256(code.encode()).hexdigest()[:12]


def run_isolated(path: Path, idle: float, timeout: float) -> dict[str, Any]:
    """Measure in a child process session; kill the session (kernel included) at the timeout."""
    before = load()
    proc = subprocess.Popen([sys.executable, __file__, "--one", str(path), "--idle", str(idle)], cwd=ROOT,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise RuntimeError(f"{path.name}: still running after {timeout:g} s (--timeout), "
                           "killed with its kernel") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{path.name}: the run failed:\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result.update(load_before=before, load_after=load(), measured_at=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  code_sha=notebook_digest(path))
    return result


# -- the jupyter server a learner also has -----------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure_server(idle: float) -> dict[str, Any]:
    """An idle ``jupyter lab`` server (no kernel): what JupyterLab costs per learner besides kernels."""
    port, token = _free_port(), secrets.token_hex(16)
    marker = secrets.token_hex(8)
    env = {**os.environ, MARKER: marker}
    jupyter = Path(sys.executable).parent / "jupyter"
    args = [str(jupyter), "lab", "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
            f"--IdentityProvider.token={token}", "--notebook-dir", str(NOTEBOOKS)]
    if os.getuid() == 0:
        args.append("--allow-root")
    proc = subprocess.Popen(args, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("jupyter lab did not answer within 120 s: run it by hand to see why") from None
                time.sleep(0.5)
        # the lab page once, as a browser would (it loads the extensions' settings)
        urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={token}", timeout=30).read()
        sampler = TreeSampler(proc.pid, marker, interval=0.2, pss_every=1)
        sampler.start()
        cpu0, t0 = sampler.cpu_seconds(), time.monotonic()
        time.sleep(idle)
        sampler.stop()
        cpu1, t1 = sampler.cpu_seconds(), time.monotonic()
        return {**sampler.window(t0), "procs": sampler.peak_procs, "idle_cpu_cores": (cpu1 - cpu0) / (t1 - t0),
                "load": load(), "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# -- the data file and its table ---------------------------------------------------------------

def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3) if abs(value) < 1 else round(value, 1)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(_round(data), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def machine() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from redistutor import provision

    found = provision.find_binary().found
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal:"))
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    return {"cores": os.cpu_count(), "cpu": cpu, "memory_gb": round(mem / 1024 / 1024, 1),
            "redis": found.version_str if found else "unknown", "python": platform.python_version(),
            "kernel": platform.release()}


def render(data: dict[str, Any]) -> str:
    """The Markdown table of docs/notebook-costs.md, from the data alone."""
    m = data["machine"]
    lines = [
        "# What each notebook costs to run",
        "",
        "Generated by `./run measure` (tools/measure.py) from `docs/notebook-costs.json`; do not edit.",
        f"Measured on {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB, Redis {m['redis']}, "
        f"Python {m['python']}, one notebook at a time in a fresh kernel (text display mode).",
        "",
        "*Run All* is the cells' wall time (kernel start excluded); *CPU* is user + system seconds of the",
        "kernel and every process it started; *peak RSS* is the largest sum over those processes at one",
        "sample (shared pages counted in each process), *peak PSS* the same with shared pages split;",
        "*active* is the memory a kernel keeps with its servers after the last cell before Cleanup.",
        "The machine was shared with other work: wall time grows with the load average (shown), CPU",
        "seconds and memory hardly do. *Run All* is the shortest of the runs kept (up to three of the",
        "notebook's current code, listed as wall / CPU seconds at their load); the other columns are",
        "from the latest run.",
        "",
        "| notebook | Run All (s) | CPU (s) | peak RSS (MB) | peak PSS (MB) | processes | active PSS (MB) "
        "| runs: wall / CPU s (load) | latest |",
        "|---|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for stem, e in sorted(data["notebooks"].items()):
        runs = " · ".join(f"{r['wall_s']:.0f} / {r['cpu_s']:.1f} ({r['load_before'][0]:.0f})" for r in e["runs"])
        lines.append(f"| {stem} | {e['run_all_s']:.0f} | {e['cpu_s']:.1f} | {e['peak_rss_mb']:.0f} | "
                     f"{e['peak_pss_mb']:.0f} | {e['peak_procs']} | {e['active']['pss_mb']:.0f} | "
                     f"{runs} | {e['measured_at']} |")
    if data["notebooks"]:
        walls = [e["run_all_s"] for e in data["notebooks"].values()]
        cpus = [e["cpu_s"] for e in data["notebooks"].values()]
        lines += ["", f"All {len(walls)} notebooks: {sum(walls) / 60:.1f} minutes of Run All, "
                      f"{sum(cpus) / 60:.1f} CPU minutes."]
    if "jupyter_server" in data:
        s = data["jupyter_server"]
        lines += ["", f"An idle `jupyter lab` server (no kernel), measured {s['measured_at']}: "
                      f"{s['rss_mb']:.0f} MB RSS, {s['pss_mb']:.0f} MB PSS, {s['idle_cpu_cores']:.3f} cores."]
    return "\n".join(lines) + "\n"


# -- workshop sizing (docs/workshop-sizing.md) --------------------------------------------------

SIZING = ROOT / "docs" / "workshop-sizing.md"
SIZING_FILES = (SIZING, ROOT / "workshop" / "README.md")  # the same generated table in both
HOSTS = [(2, 4), (4, 16), (8, 32), (16, 64)]  # (vCPU, GB)
RESERVE_GB = 1.0      # the OS, JupyterHub and its proxy: once per host, not per learner
HEADROOM = 0.8        # plan to 80 % of the host's memory and CPU
RUNS = 2              # Run All of a notebook per learner within the notebook's own time estimate
BEGIN, END = "<!-- sizing:begin (python tools/measure.py --sizing) -->", "<!-- sizing:end -->"


def light_and_heavy(data: dict[str, Any]) -> tuple[str, str]:
    """The notebooks with the smallest and the largest peak memory (memory is what binds), among
    those a learner spends a session on (not the guide, a ten-minute index)."""
    by_peak = sorted((s for s in data["notebooks"] if s != "00-guide"),
                     key=lambda s: (data["notebooks"][s]["peak_rss_mb"], s))
    return by_peak[0], by_peak[-1]


def minutes_estimate(stem: str) -> int:
    nb = json.loads((NOTEBOOKS / f"{stem}.ipynb").read_text())
    for cell in nb["cells"][:4]:
        found = re.search(r"\*\*Time\*\*:?\s*about (\d+) minutes", "".join(cell["source"]))
        if found:
            return int(found.group(1))
    raise ValueError(f"{stem} states no '**Time**: about N minutes': add it to its first cells.")


def learner(data: dict[str, Any], stem: str) -> dict[str, float]:
    """One active learner on a notebook: jupyter server + the kernel's tree, memory and CPU."""
    e, server = data["notebooks"][stem], data["jupyter_server"]
    minutes = minutes_estimate(stem)
    return {
        "peak_mb": server["rss_mb"] + e["peak_rss_mb"],         # while Run All runs: the budget
        "active_mb": server["rss_mb"] + e["active"]["rss_mb"],  # between runs, servers kept
        "cpu_s": e["cpu_s"],
        "minutes": minutes,
        # sustained: RUNS Run Alls spread over the notebook's own time, plus the idle processes
        "cores": RUNS * e["cpu_s"] / (minutes * 60) + server["idle_cpu_cores"] + e["active"]["idle_cpu_cores"],
    }


def sizing(data: dict[str, Any]) -> str:
    """The learners-per-host table (Markdown) from the measured file and the assumptions above."""
    light, heavy = light_and_heavy(data)
    people = {stem: learner(data, stem) for stem in (light, heavy)}
    lines = [
        "| host | light: by memory | light: by CPU | **light: learners** | heavy: by memory | heavy: by CPU "
        "| **heavy: learners** | heavy, all press Run All at once: CPU-bound finish |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for cpus, gb in HOSTS:
        row = [f"{cpus} vCPU / {gb} GB"]
        for stem in (light, heavy):
            p = people[stem]
            by_memory = int((gb - RESERVE_GB) * 1024 * HEADROOM // p["peak_mb"])
            by_cpu = int(cpus * HEADROOM // p["cores"])
            row += [str(by_memory), str(by_cpu), f"**{min(by_memory, by_cpu)}**"]
        n = min(int((gb - RESERVE_GB) * 1024 * HEADROOM // people[heavy]["peak_mb"]),
                int(cpus * HEADROOM // people[heavy]["cores"]))
        row.append(f"≥ {n * people[heavy]['cpu_s'] / (cpus * HEADROOM):.0f} s")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "| per learner | notebook | memory budget (peak) | memory between runs | CPU per Run All "
                  "| sustained CPU |", "|---|---|--:|--:|--:|--:|"]
    for kind, stem in (("light", light), ("heavy", heavy)):
        p = people[stem]
        lines.append(f"| {kind} | {stem} | {p['peak_mb']:.0f} MB | {p['active_mb']:.0f} MB | {p['cpu_s']:.1f} s "
                     f"| {p['cores']:.3f} cores |")
    server = data["jupyter_server"]
    lines += ["", "Raw figures (docs/notebook-costs.json):", ""]
    for stem in (light, heavy):
        e = data["notebooks"][stem]
        lines.append(f"- {stem}, measured {e['measured_at']} under load {e['load_before'][0]:.1f} → "
                     f"{e['load_after'][0]:.1f}: Run All {e['wall_s']:.0f} s, {e['cpu_s']:.1f} CPU s, peak "
                     f"{e['peak_rss_mb']:.0f} MB RSS / {e['peak_pss_mb']:.0f} MB PSS over {e['peak_procs']} "
                     f"processes; kept afterwards: {e['active']['rss_mb']:.0f} MB RSS / {e['active']['pss_mb']:.0f} "
                     f"MB PSS in {e['active']['procs']} processes using {e['active']['idle_cpu_cores']:.3f} cores.")
    lines.append(f"- an idle `jupyter lab` server, measured {server['measured_at']} under load "
                 f"{server['load'][0]:.1f}: {server['rss_mb']:.0f} MB RSS / {server['pss_mb']:.0f} MB PSS in "
                 f"{server['procs']} processes using {server['idle_cpu_cores']:.3f} cores.")
    return "\n".join(lines) + "\n"


def write_sizing(data: dict[str, Any]) -> None:
    """The table into docs/workshop-sizing.md and the facilitators' workshop/README.md."""
    for path in SIZING_FILES:
        text = path.read_text()
        if BEGIN not in text or END not in text:
            raise SystemExit(f"{path.relative_to(ROOT)} has no {BEGIN} … {END} block: put one where the table goes.")
        head, rest = text.split(BEGIN, 1)
        path.write_text(head + BEGIN + "\n" + sizing(data) + END + rest.split(END, 1)[1])


RUN_KEYS = ("wall_s", "cpu_s", "peak_rss_mb", "peak_pss_mb", "load_before", "measured_at", "code_sha")
KEEP_RUNS = 3


def with_history(entry: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """The new entry with the runs kept: earlier runs of the same code (up to KEEP_RUNS in all),
    and ``run_all_s``, the shortest wall time among them (the least disturbed by load)."""
    earlier = [] if old is None else old.get("runs") or [{k: old[k] for k in RUN_KEYS}]
    runs = [r for r in earlier if r["code_sha"] == entry["code_sha"]]
    runs = (runs + [{k: entry[k] for k in RUN_KEYS}])[-KEEP_RUNS:]
    return {**entry, "runs": runs, "run_all_s": min(r["wall_s"] for r in runs)}


def read() -> dict[str, Any]:
    if not DATA.exists():
        return {"machine": {}, "notebooks": {}}
    data = json.loads(DATA.read_text())
    for stem, entry in data["notebooks"].items():
        if "runs" not in entry:  # written before runs were kept
            data["notebooks"][stem] = with_history(entry, None)
    return data


def write(data: dict[str, Any]) -> None:
    DATA.write_text(dumps(data))
    TABLE.write_text(render(json.loads(DATA.read_text())))


def stale(data: dict[str, Any]) -> list[str]:
    """Notebooks whose code changed since their measurement (or that have none)."""
    return [path.stem for path in sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
            if data["notebooks"].get(path.stem, {}).get("code_sha") != notebook_digest(path)]


def _select(names: list[str]) -> list[Path]:
    # the guide last: it checks that every other notebook has its measurement
    everything = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"), key=lambda p: (p.stem == "00-guide", p.stem))
    if not names:
        return everything
    chosen = []
    for name in names:
        stem = Path(name).stem
        path = NOTEBOOKS / f"{stem}.ipynb"
        if not path.exists():
            raise SystemExit(f"No notebook {stem}: name one of notebooks/NN-slug.ipynb (e.g. 01-cache-aside).")
        chosen.append(path)
    return chosen


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="stems (e.g. 01-cache-aside); default: every notebook")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per notebook")
    parser.add_argument("--idle", type=float, default=8.0, help="seconds of the active-learner window")
    parser.add_argument("--server", action="store_true", help="also measure an idle jupyter lab server")
    parser.add_argument("--only-server", action="store_true", help="measure only the jupyter lab server")
    parser.add_argument("--markdown", action="store_true", help="only rewrite the table from the data file")
    parser.add_argument("--sizing", action="store_true", help="only rewrite the table in docs/workshop-sizing.md")
    parser.add_argument("--stale", action="store_true", help="list the notebooks whose code changed since measured")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(Path(args.one), args.idle)))
        return 0
    data = read()
    if args.stale:
        print(" ".join(stale(data)))
        return 0
    if args.markdown or args.sizing:
        write_sizing(data) if args.sizing else write(data)
        return 0
    data["machine"] = machine()
    failures = []
    for path in [] if args.only_server else _select(args.notebooks):
        say(f"{path.stem}: running (load {load()[0]})")
        try:
            entry = run_isolated(path, args.idle, args.timeout)
        except RuntimeError as exc:
            failures.append(str(exc))
            say(f"{path.stem}: FAILED")
            continue
        data["notebooks"][path.stem] = entry = with_history(entry, data["notebooks"].get(path.stem))
        say(f"{path.stem}: {entry['wall_s']:.0f} s, {entry['cpu_s']:.1f} CPU s, peak {entry['peak_rss_mb']:.0f} MB RSS"
            f" / {entry['peak_pss_mb']:.0f} MB PSS, {entry['peak_procs']} processes")
        write(data)  # after each notebook, so an interrupted run keeps what it measured
    if args.server or args.only_server:
        data["jupyter_server"] = measure_server(args.idle * 2)
        say(f"jupyter lab idle: {data['jupyter_server']['rss_mb']:.0f} MB RSS")
    data["notebooks"] = {k: v for k, v in data["notebooks"].items() if (NOTEBOOKS / f"{k}.ipynb").exists()}
    write(data)
    for failure in failures:
        say(failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
