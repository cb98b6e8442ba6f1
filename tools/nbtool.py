#!/usr/bin/env python3
"""Keep the notebooks in their stored form (skeleton v2).

    python tools/nbtool.py normalize notebooks/*.ipynb   # markers -> tags, assertion cells collapsed
    python tools/nbtool.py execute notebooks/01-*.ipynb  # run, keep outputs of nbval-check-output cells only

Stored notebooks carry outputs only in the cells tagged ``nbval-check-output`` (nbval compares
those in lax mode); every other cell is stored unexecuted, so a diff shows lesson changes, not
run noise. ``execute`` runs the notebook in text display mode (as the tests do), the same way
nbval will, and fails loudly if a cell raises.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

MARKERS = {  # old comment marker -> nbval cell tag
    "# NBVAL_CHECK_OUTPUT": "nbval-check-output",
    "# NBVAL_IGNORE_OUTPUT": "nbval-ignore-output",
    "# NBVAL_SKIP": "nbval-skip",
    "# NBVAL_RAISES_EXCEPTION": "raises-exception",
}
ASSERT_TAG = "assertions"


def source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def set_source(cell: dict, text: str) -> None:
    lines = text.splitlines(keepends=True)
    if lines:
        lines[-1] = lines[-1].rstrip("\n")
    cell["source"] = lines


def is_assertion_cell(text: str) -> bool:
    """A cell whose code is only ``assert`` statements (and their continuation lines)."""
    lines = [line for line in text.splitlines() if line.strip()]
    code = [line for line in lines if not line.lstrip().startswith("#")]
    return bool(code) and code[0].lstrip().startswith("assert") and all(
        line.lstrip().startswith(("assert", "check.")) or line.startswith((" ", "\t", ")", "]", "}")) for line in code)


def tags(cell: dict) -> list[str]:
    return cell.setdefault("metadata", {}).setdefault("tags", [])


def normalize(nb: dict) -> dict:
    for cell in nb["cells"]:
        cell.setdefault("metadata", {})
        cell["metadata"].pop("execution", None)  # run timestamps: noise in every diff
        if cell["cell_type"] != "code":
            continue
        text = source(cell)
        lines = text.splitlines()
        while lines and lines[0].strip() in MARKERS:
            tag = MARKERS[lines.pop(0).strip()]
            if tag not in tags(cell):
                tags(cell).append(tag)
        set_source(cell, "\n".join(lines))
        if is_assertion_cell("\n".join(lines)) and ASSERT_TAG not in tags(cell):
            tags(cell).append(ASSERT_TAG)
        if ASSERT_TAG in tags(cell):
            cell["metadata"].setdefault("jupyter", {})["source_hidden"] = True
        if not cell["metadata"].get("tags"):
            cell["metadata"].pop("tags", None)
        if "nbval-check-output" not in cell["metadata"].get("tags", []):
            cell["outputs"], cell["execution_count"] = [], None
    return nb


def execute(path: Path) -> dict:
    import nbformat
    from nbclient import NotebookClient

    os.environ.setdefault("REDISTUTOR_DISPLAY", "text")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return normalize(json.loads(nbformat.writes(nb)))


def save(path: Path, nb: dict) -> None:
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("normalize", "execute"):
        print(__doc__)
        return 2
    for name in argv[1:]:
        path = Path(name)
        nb = execute(path) if argv[0] == "execute" else normalize(json.loads(path.read_text()))
        save(path, nb)
        print(f"{argv[0]}d {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
