"""The guide's Run All times come from the measured file, and the measuring tool counts what it claims.

``docs/notebook-costs.json`` is written by ``./run measure`` (tools/measure.py); the pattern guide
(notebooks/00-guide.ipynb, redistutor/scenarios/guide.py) reads its Run All column from it. These
tests fail when a notebook has no measurement, when the guide's figure differs from the file's, when
the file or its Markdown table was edited by hand, and when the process-tree sampler misses a
process (one that exited, or one reparented away from the kernel) or counts a stranger.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from redistutor.scenarios import guide

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_STEMS = {p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb")}
spec = importlib.util.spec_from_file_location("measure_tool", ROOT / "tools" / "measure.py")
assert spec is not None and spec.loader is not None
measure = importlib.util.module_from_spec(spec)
spec.loader.exec_module(measure)


def test_every_notebook_is_measured_and_nothing_else():
    measured = set(guide.measured_costs()["notebooks"])
    assert sorted(NOTEBOOK_STEMS - measured) == [], "run ./run measure <stem> for these notebooks"
    assert sorted(measured - NOTEBOOK_STEMS) == []


def test_every_notebook_but_the_guide_is_on_a_track():
    on_tracks = [stem for stems in guide.TRACKS.values() for stem in stems]
    assert len(on_tracks) == len(set(on_tracks))
    assert set(on_tracks) | {"00-guide"} == NOTEBOOK_STEMS


def test_the_tracks_show_the_measured_run_all_times():
    measured = guide.measured_costs()["notebooks"]
    table = guide.tracks_table()
    assert [row[1] for row in table.rows] == [s for stems in guide.TRACKS.values() for s in stems]
    for row in table.rows:
        assert row[4] == guide.run_all_label(measured[row[1]]["run_all_s"]), row
        assert row[3].startswith("about ") and row[3].endswith(" minutes"), row  # the notebook's own estimate


def test_a_notebook_missing_from_the_file_shows_as_not_measured(tmp_path, monkeypatch):
    data = guide.measured_costs()
    del data["notebooks"]["01-cache-aside"]
    (tmp_path / "costs.json").write_text(json.dumps(data))
    monkeypatch.setattr(guide, "COSTS", tmp_path / "costs.json")
    rows = {row[1]: row[4] for row in guide.tracks_table().rows}
    assert rows["01-cache-aside"] == "not measured" and rows["02-write-through"].startswith("about ")
    monkeypatch.setattr(guide, "COSTS", tmp_path / "absent.json")
    with pytest.raises(FileNotFoundError, match="run ./run measure"):
        guide.measured_costs()


@pytest.mark.parametrize(("seconds", "label"), [
    (0.4, "about 10 s"), (14.9, "about 10 s"), (15, "about 20 s"), (44, "about 40 s"), (54.9, "about 50 s"),
    (55, "about 1 min"), (89.9, "about 1 min"), (90, "about 2 min"), (151, "about 3 min"),
])
def test_run_all_label_rounds(seconds, label):
    assert guide.run_all_label(seconds) == label


def test_the_data_file_and_its_table_are_as_the_tool_writes_them():
    text = measure.DATA.read_text()
    data = json.loads(text)
    assert measure.dumps(data) == text, "docs/notebook-costs.json was edited by hand: rerun ./run measure"
    assert measure.TABLE.read_text() == measure.render(data), "rerun python tools/measure.py --markdown"
    assert {"cores", "redis", "memory_gb"} <= set(data["machine"])
    for stem, entry in data["notebooks"].items():
        assert entry["wall_s"] > 0 and entry["cpu_s"] > 0, stem
        assert entry["peak_rss_mb"] >= entry["active"]["rss_mb"] > 0, stem
        assert entry["processes_seen"].get("redis-server", 0) >= 1, stem  # every notebook starts a server
        assert len(entry["load_before"]) == len(entry["load_after"]) == 3, stem
        assert entry["run_all_s"] == min(r["wall_s"] for r in entry["runs"]) and len(entry["runs"]) <= 3, stem
        assert entry["runs"][-1]["measured_at"] == entry["measured_at"], stem  # the latest run is the entry's


def _run(wall: float, code: str = "abc") -> dict:
    return {"wall_s": wall, "cpu_s": 1.0, "peak_rss_mb": 1.0, "peak_pss_mb": 1.0, "load_before": [1.0, 1.0, 1.0],
            "measured_at": f"run {wall}", "code_sha": code}


def test_runs_kept_are_the_last_three_of_the_same_code_and_run_all_is_the_shortest():
    first = measure.with_history(_run(30.0), None)
    assert first["runs"] == [_run(30.0)] and first["run_all_s"] == 30.0
    second = measure.with_history(_run(20.0), first)
    assert [r["wall_s"] for r in second["runs"]] == [30.0, 20.0] and second["run_all_s"] == 20.0
    fourth = measure.with_history(_run(50.0), measure.with_history(_run(40.0), second))
    assert [r["wall_s"] for r in fourth["runs"]] == [20.0, 40.0, 50.0] and fourth["run_all_s"] == 20.0
    changed = measure.with_history(_run(60.0, code="def"), fourth)  # the notebook changed: older runs go
    assert [r["wall_s"] for r in changed["runs"]] == [60.0] and changed["run_all_s"] == 60.0


def test_an_unknown_notebook_name_is_refused_with_the_fix():
    with pytest.raises(SystemExit, match="name one of notebooks/NN-slug.ipynb"):
        measure._select(["99-no-such-notebook"])


BURN = "import time\nwhile time.process_time() < 0.3:\n    pass\n"
TREE = f"""
import os, subprocess, sys, time
flag = sys.argv[1]
subprocess.run([sys.executable, "-c", {BURN!r}])      # a child that burns CPU, exits, and is reaped
if os.fork() == 0:                                     # an orphan: its parent exits at once
    if os.fork() == 0:
        exec({BURN!r})
        open(flag + ".ready", "w").close()
        while not os.path.exists(flag + ".go"):
            time.sleep(0.05)
        os._exit(0)
    os._exit(0)
os.wait()
sys.stdin.read()
"""


def test_the_sampler_counts_exited_and_reparented_processes_and_no_stranger(tmp_path):
    token, flag = secrets.token_hex(8), str(tmp_path / "flag")
    env = {**os.environ, measure.MARKER: token}
    stranger = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    root = subprocess.Popen([sys.executable, "-c", TREE, flag], env=env, stdin=subprocess.PIPE)
    sampler = measure.TreeSampler(root.pid, token)
    sampler.start()
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(flag + ".ready"):
            assert time.monotonic() < deadline, "the orphan never finished burning"
            time.sleep(0.05)
        sampler.sample()
        pids = {pid for pid, _ in sampler.procs}
        assert root.pid in pids and stranger.pid not in pids
        reparented = [rec for (pid, _), rec in sampler.procs.items() if pid != root.pid and rec["ppid"] not in pids]
        assert len(reparented) == 1  # the orphan, found by its marker, not by its parent
        # the reaped child's 0.3 s (through the root's children times) and the orphan's 0.3 s
        assert sampler.cpu_seconds() >= 0.58
        assert sampler.peak_procs >= 2
    finally:
        Path(flag + ".go").touch()
        root.communicate(b"", timeout=60)
        stranger.communicate(b"", timeout=60)
        sampler.stop()


def test_the_sizing_table_is_the_one_computed_from_the_data():
    data = json.loads(measure.DATA.read_text())
    for path in measure.SIZING_FILES:        # docs/workshop-sizing.md and workshop/README.md
        block = path.read_text().split(measure.BEGIN, 1)[1].split(measure.END, 1)[0]
        assert block == "\n" + measure.sizing(data), f"{path.name}: rerun python tools/measure.py --sizing"
    light, heavy = measure.light_and_heavy(data)
    peaks = {stem: e["peak_rss_mb"] for stem, e in data["notebooks"].items() if stem != "00-guide"}
    assert peaks[light] == min(peaks.values()) and peaks[heavy] == max(peaks.values()) and light != heavy


def _entry(peak_mb: float, cpu_s: float) -> dict:
    return {"peak_rss_mb": peak_mb, "cpu_s": cpu_s, "wall_s": 30.0, "peak_pss_mb": peak_mb, "peak_procs": 3,
            "measured_at": "x", "load_before": [1.0, 1.0, 1.0], "load_after": [1.0, 1.0, 1.0],
            "active": {"rss_mb": peak_mb / 2, "pss_mb": peak_mb / 2, "procs": 3, "idle_cpu_cores": 0.0}}


def test_sizing_arithmetic_memory_bound_and_cpu_bound():
    # 01-cache-aside states "about 25 minutes", 26-vector-search-ai "about 40 minutes"
    data = {"notebooks": {"01-cache-aside": _entry(100.0, 3000.0), "26-vector-search-ai": _entry(923.0, 60.0)},
            "jupyter_server": {"rss_mb": 100.0, "pss_mb": 80.0, "procs": 1, "idle_cpu_cores": 0.0,
                               "measured_at": "x", "load": [1.0, 1.0, 1.0]}}
    assert measure.light_and_heavy(data) == ("01-cache-aside", "26-vector-search-ai")
    rows = {line.split(" | ")[0].lstrip("| "): line.strip("| ").split(" | ")
            for line in measure.sizing(data).splitlines() if "vCPU" in line}
    # heavy on 2 vCPU / 4 GB: (4 - 1) GB x 0.8 / (923 + 100) MB = 2.4 -> 2 by memory;
    # 2 x 60 CPU s over 40 minutes = 0.05 cores -> 1.6 / 0.05 = 32 by CPU; 2 learners;
    # both pressing Run All: 2 x 60 s / (2 x 0.8) = 75 s
    assert rows["2 vCPU / 4 GB"][4:8] == ["2", "32", "**2**", "≥ 75 s"]
    # light: 3 GB x 0.8 / 200 MB = 12 by memory; 2 x 3000 s over 25 minutes = 4 cores -> 0 by CPU
    assert rows["2 vCPU / 4 GB"][1:4] == ["12", "0", "**0**"]
    assert rows["16 vCPU / 64 GB"][1:4] == ["258", "3", "**3**"]  # 63 x 1024 x 0.8 / 200; 12.8 / 4


def test_stale_lists_the_notebooks_whose_code_changed_since_measured():
    paths = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
    data = {"notebooks": {p.stem: {"code_sha": measure.notebook_digest(p)} for p in paths}}
    assert measure.stale(data) == []
    data["notebooks"]["01-cache-aside"]["code_sha"] = "000000000000"
    del data["notebooks"]["02-write-through"]
    assert measure.stale(data) == ["01-cache-aside", "02-write-through"]
