"""workshop/README.md's agendas stay true: every notebook row is that notebook's own time estimate,
the start times follow from the minutes, each agenda adds up to the total it states, and the
shared-server agendas use only notebooks that run on a shared server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from redistutor.capabilities import shared_server_notebooks

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "workshop" / "README.md"
NOTEBOOKS = ROOT / "notebooks"
ROW = re.compile(r"^\| (\d+):(\d\d) \| (.+?) \| (\d+) \|$")
TOTAL = re.compile(r"^Total: (\d+) minutes( \(shared server\))?\.$")


def agendas() -> list[tuple[list[tuple[int, str, int]], int, bool]]:
    """Each agenda table of the README: its rows (start in minutes, what, minutes), its stated
    total and whether it is for a shared server."""
    text = README.read_text().split("## Agendas", 1)[1].split("\n## ", 1)[0]
    found, rows = [], []
    for line in text.splitlines():
        if m := ROW.match(line):
            rows.append((int(m.group(1)) * 60 + int(m.group(2)), m.group(3), int(m.group(4))))
        elif m := TOTAL.match(line):
            found.append((rows, int(m.group(1)), bool(m.group(2))))
            rows = []
    return found


def estimate(stem: str) -> int:
    """The minutes of the notebook's own **Time** line ("about N minutes")."""
    nb = json.loads((NOTEBOOKS / f"{stem}.ipynb").read_text())
    head = "".join("".join(c["source"]) for c in nb["cells"][:4])
    m = re.search(r"\*\*Time\*\*:?[^\n]*?about (\d+) minutes", head)
    assert m, f"{stem} has no '**Time**: about N minutes' line"
    return int(m.group(1))


def test_the_readme_has_the_four_session_lengths():
    totals = sorted((total, shared) for _, total, shared in agendas())
    assert [t for t, shared in totals if not shared] == [90, 210, 445]
    assert [t for t, shared in totals if shared] == [90, 410]


@pytest.mark.parametrize("index", range(5))
def test_each_agenda_is_the_notebooks_own_estimates_and_adds_up(index):
    rows, total, shared = agendas()[index]
    runnable = set(shared_server_notebooks(NOTEBOOKS))
    start = rows[0][0]
    for at, what, minutes in rows:
        assert at == start, f"{what} starts at {at // 60}:{at % 60:02d}, the row before ends at {start}"
        start += minutes
        stem = re.fullmatch(r"`(\d\d-[a-z-]+)`", what)
        if stem:
            assert minutes == estimate(stem.group(1)), what
            if shared:
                assert stem.group(1) in runnable, f"{what} does not run on a shared server"
    assert sum(m for _, _, m in rows) == total
