"""The notebooks ``./run test --quick`` runs: those changed since main, one path per line.

A notebook counts as changed when its file differs from main (committed, staged, unstaged or
untracked), or when a module it is built on does: ``redistutor/{patterns,scenarios,exercises}/
<slug>.py`` for ``notebooks/NN-<slug-with-dashes>.ipynb`` (the slug mapping in README). "main" is
``origin/main`` when the clone has it, else the local ``main`` branch; on main itself, only
uncommitted changes count.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> list[str]:
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.split("\n") if out.returncode == 0 else []


def changed_paths() -> set[str]:
    base = next((ref for ref in ("origin/main", "main") if any(_git("rev-parse", "--verify", "-q", ref))), None)
    paths = set(_git("diff", "--name-only", "HEAD"))  # staged and unstaged
    paths |= set(_git("ls-files", "--others", "--exclude-standard"))  # untracked
    if base:
        merge_base = (_git("merge-base", base, "HEAD") or [""])[0]
        if merge_base:
            paths |= set(_git("diff", "--name-only", merge_base, "HEAD"))
    return {p for p in paths if p}


def notebooks_for(paths: set[str]) -> list[str]:
    out = []
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        rel = f"notebooks/{nb.name}"
        slug = re.sub(r"^\d+-", "", nb.stem).replace("-", "_")
        modules = {f"redistutor/{kind}/{slug}.py" for kind in ("patterns", "scenarios", "exercises")}
        if rel in paths or modules & paths:
            out.append(rel)
    return out


if __name__ == "__main__":
    print("\n".join(notebooks_for(changed_paths())))
    sys.exit(0)
