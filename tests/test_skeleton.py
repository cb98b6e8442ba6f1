"""Skeleton v2: every notebook reads as a lesson (README, "Notebook conventions").

Per notebook: objectives, prerequisites and a time estimate up front; a "Try it" step, exercises,
a summary and a cleanup; nbval markers as cell tags, never ``# NBVAL_*`` comments; assertion cells
collapsed, each opening with a sentence saying what it proves; short cells outside exercises; no
learner-facing talk of internal notes; about 1,500 words of core prose (the rest under "Going
deeper"); a link to the fault-test callout wherever faults are injected; and the pattern's own
code shown in a cell that matches ``redistutor/patterns/<slug>.py`` exactly.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
PATTERN_NOTEBOOKS = [p for p in NOTEBOOKS if not p.name.startswith("00-")]
CALLOUT = "what-a-fault-test-proves.md"

MAX_CELL_LINES = 22      # "about 20", counted without blank lines
MAX_PATTERN_CELL_LINES = 25  # the pattern's own code: "10-25 lines of idiomatic redis-py"
MAX_CORE_WORDS = 1800    # "about 1,500" words before "Going deeper"
MIN_ASSERTS = 5


def _load_nbtool():
    spec = importlib.util.spec_from_file_location("nbtool", ROOT / "tools" / "nbtool.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nbtool = _load_nbtool()


def _src(cell: dict) -> str:
    s = cell["source"]
    return "".join(s) if isinstance(s, list) else s


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _heading(cell: dict) -> str:
    return _src(cell).lstrip().split("\n", 1)[0].lower() if cell["cell_type"] == "markdown" else ""


def _sections(path: Path):
    """(section heading, cell) for every cell; the heading is the last ``##`` seen."""
    current = ""
    for cell in _cells(path):
        head = _heading(cell)
        if re.match(r"#{1,2}\s", head):
            current = head.lstrip("# ").strip()
        yield current, cell


def _in_exercises(section: str) -> bool:
    return section.startswith(("exercise", "try it"))


def _core_words(path: Path) -> int:
    words = 0
    for cell in _cells(path):
        if cell["cell_type"] != "markdown":
            continue
        if re.match(r"#+\s*going deeper", _heading(cell)):
            break
        words += len(re.sub(r"```.*?```", "", _src(cell), flags=re.S).split())
    return words


def _ids(paths):
    return [p.stem for p in paths]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_top_states_objectives_prerequisites_and_time(path):
    head = "\n".join(_src(c) for c in _cells(path)[:3] if c["cell_type"] == "markdown")
    low = head.lower()
    assert "what you will learn" in low, f"{path.name}: no 'What you will learn' list at the top"
    block = low.split("what you will learn", 1)[1]
    bullets = re.findall(r"^\s*[-*] ", block.split("\n\n**", 1)[0], flags=re.M)
    assert 3 <= len(bullets) <= 5, f"{path.name}: {len(bullets)} objectives (want 3-5 bullets)"
    assert "prerequisite" in low, f"{path.name}: no prerequisites at the top"
    assert re.search(r"\b\d+\s*(?:–|-|to)?\s*\d*\s*min", low), f"{path.name}: no time estimate at the top"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_has_try_it_exercises_summary_cleanup(path):
    heads = [_heading(c).lstrip("# ").strip() for c in _cells(path) if _heading(c).startswith("#")]
    for wanted in ("try it", "exercise", "summary", "cleanup"):
        assert any(h.startswith(wanted) for h in heads), f"{path.name}: no '{wanted}' heading"
    try_code = [c for s, c in _sections(path) if s.startswith("try it") and c["cell_type"] == "code"]
    assert try_code, f"{path.name}: the 'Try it' section has no code cell (a knob to turn)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_at_least_two_checked_exercises(path):
    checks = [c for s, c in _sections(path)
              if s.startswith(("exercise", "try it")) and c["cell_type"] == "code" and ".check(" in _src(c)]
    assert len(checks) >= 2, f"{path.name}: {len(checks)} checked exercise cells (want at least 2)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_nbval_markers_are_tags(path):
    bad = [i for i, c in enumerate(_cells(path))
           if c["cell_type"] == "code" and re.search(r"^\s*# ?NBVAL_", _src(c), flags=re.M)]
    assert not bad, f"{path.name}: cells {bad} carry '# NBVAL_' comments; use cell tags"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_assertion_cells_are_collapsed_and_say_what_they_prove(path):
    asserts = 0
    for i, c in enumerate(_cells(path)):
        if c["cell_type"] != "code":
            continue
        src = _src(c)
        tagged = "assertions" in c.get("metadata", {}).get("tags", [])
        assert tagged or not nbtool.is_assertion_cell(src), \
            f"{path.name}: cell {i} is assertions only but not tagged 'assertions'"
        if not tagged:
            continue
        hidden = c["metadata"].get("jupyter", {}).get("source_hidden")
        assert hidden, f"{path.name}: assertion cell {i} is not collapsed"
        first = src.lstrip().split("\n", 1)[0]
        assert first.startswith("# ") and len(first.split()) >= 5, (
            f"{path.name}: assertion cell {i} must open with a sentence saying what it proves, got {first!r}")
        asserts += len(re.findall(r"^\s*(?:assert\b|check\.)", src, flags=re.M))
    if path in PATTERN_NOTEBOOKS:
        assert asserts >= MIN_ASSERTS, f"{path.name}: {asserts} assertions in collapsed cells (want {MIN_ASSERTS}+)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_cells_are_short_outside_exercises(path):
    def limit(c: dict) -> int:
        return MAX_PATTERN_CELL_LINES if c.get("metadata", {}).get("redistutor", {}).get("pattern") else MAX_CELL_LINES

    long_ = [(i, n) for i, (s, c) in enumerate(_sections(path))
             if c["cell_type"] == "code" and not _in_exercises(s)
             and (n := len([line for line in _src(c).splitlines() if line.strip()])) > limit(c)]
    assert not long_, f"{path.name}: cells (index, lines) over {MAX_CELL_LINES} lines: {long_}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_no_internal_notes_and_no_printed_source(path):
    text = "\n".join(_src(c) for c in _cells(path))
    assert not re.search(r"research notes|\bthe notes\b", text, flags=re.I), f"{path.name}: mentions internal notes"
    printed = re.findall(r"print\((?:inspect\.getsource\(|\w+\.LUA_)", text)
    assert not printed, f"{path.name}: prints source ({printed[0]}...); use show_code() for highlighted source"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_core_prose_length(path):
    words = _core_words(path)
    assert words <= MAX_CORE_WORDS, f"{path.name}: {words} words before 'Going deeper' (want about 1,500)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_fault_notebooks_link_the_callout(path):
    code = "\n".join(_src(c) for c in _cells(path) if c["cell_type"] == "code")
    prose = "\n".join(_src(c) for c in _cells(path) if c["cell_type"] == "markdown")
    # Faults are often injected inside a scenario helper, so the prose that announces them counts too.
    injects = (re.search(r"\.kill\(|\.pause\(|SIGSTOP|SIGKILL|\.cut\(|failover\(", code)
               or re.search(r"kill -9|SIGSTOP|SIGKILL", prose))
    if injects:
        assert CALLOUT in prose, f"{path.name}: injects faults ({injects.group(0)}) but does not link {CALLOUT}"


@pytest.mark.parametrize("path", PATTERN_NOTEBOOKS, ids=_ids(PATTERN_NOTEBOOKS))
def test_slug_maps_to_every_module(path):
    slug = path.stem.split("-", 1)[1].replace("-", "_")
    for rel in (f"redistutor/patterns/{slug}.py", f"redistutor/scenarios/{slug}.py",
                f"redistutor/exercises/{slug}.py", f"tests/patterns/test_{slug}.py",
                f"tests/exercises/test_{slug}.py"):
        assert (ROOT / rel).exists(), f"{path.name}: {rel} is missing"


def _pattern_cells(path: Path) -> list[tuple[dict, list[str]]]:
    out = []
    for c in _cells(path):
        names = c.get("metadata", {}).get("redistutor", {}).get("pattern")
        if c["cell_type"] == "code" and names:
            out.append((c, [names] if isinstance(names, str) else list(names)))
    return out


def _object(ref: str):
    module, _, qualname = ref.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _norm(code: str) -> str:
    return "\n".join(line.rstrip() for line in code.strip().splitlines())


@pytest.mark.parametrize("path", PATTERN_NOTEBOOKS, ids=_ids(PATTERN_NOTEBOOKS))
def test_pattern_code_in_cells_matches_the_module(path):
    """A cell with ``metadata.redistutor.pattern = ["redistutor.patterns.slug:Name", ...]`` shows
    exactly the source of those objects, so the code a learner reads is the code the tests test."""
    slug = path.stem.split("-", 1)[1].replace("-", "_")
    cells = _pattern_cells(path)
    assert cells, f"{path.name}: no cell shows the pattern's code (metadata redistutor.pattern)"
    lines = 0
    for cell, refs in cells:
        assert all(r.startswith(f"redistutor.patterns.{slug}:") for r in refs), refs
        expected = "\n\n".join(_norm(textwrap.dedent(inspect.getsource(_object(r)))) for r in refs)
        shown = _norm(_src(cell))
        assert shown == expected, (
            f"{path.name}: the pattern cell for {refs} differs from redistutor/patterns/{slug}.py; "
            f"copy the module's source into the cell (or fix whichever is wrong)")
        lines += len([line for line in shown.splitlines() if line.strip()])
    assert 10 <= lines <= 60, f"{path.name}: {lines} lines of pattern code shown (want the pattern's 10-25 core lines)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_stored_form(path):
    """Stored notebooks carry outputs only where nbval compares them, and no run timestamps, so a
    diff shows lesson changes (tools/nbtool.py execute keeps them that way)."""
    for i, c in enumerate(_cells(path)):
        meta = c.get("metadata", {})
        assert "execution" not in meta, f"{path.name}: cell {i} stores run timestamps; run tools/nbtool.py normalize"
        if c["cell_type"] == "code" and "nbval-check-output" not in meta.get("tags", []):
            assert not c.get("outputs"), f"{path.name}: cell {i} stores outputs nbval never compares"
