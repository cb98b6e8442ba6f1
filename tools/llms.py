"""llms.txt, llms-full.txt and one markdown page per pattern, from the executed notebooks.

The seed index these notebooks follow is itself an llms.txt for AI coding agents, and some of its
pages carry errors. This writes the same kind of index for the collection, where every line points
at a page built from a notebook that ran on a real Redis 8: the pattern's code as it ran (the
notebook's pattern cell, equal to ``redistutor/patterns/<slug>.py``), the figures the run printed
("in this run …"), the pitfalls each collapsed assertion cell guards (its first sentence), and the
assertions about the original page's claims. Called by tools/site.py; tests/test_site.py checks
that every code block is code a notebook ran and that every pattern of the index has its line.
"""

from __future__ import annotations

import re
from pathlib import Path

# The seed index's sections and their patterns, in its order (slugs as in notebooks/NN-slug).
SECTIONS = {
    "Fundamental Design Patterns": [
        "atomic-updates", "cache-aside", "cache-stampede-prevention", "client-side-caching",
        "cross-shard-consistency", "delayed-queue", "distributed-locking", "hash-tag-colocation",
        "lexicographic-sorted-sets", "memory-optimization", "probabilistic-data-structures",
        "rate-limiting", "redis-as-primary-database", "redlock", "reliable-queue",
        "streams-consumer-patterns", "streams-event-sourcing", "vector-sets", "write-behind",
        "write-through"],
    "Community Patterns": [
        "bitmap-patterns", "geospatial", "leaderboards", "pubsub", "session-management", "vector-search-ai"],
    "Production Patterns": [
        "kernel-tuning", "pinterest-task-queue", "twitter-internals", "uber-resilience"],
}
HEADER = """# redistutor: production Redis patterns, verified on a real Redis 8

> Each line links a page built from a notebook that ran on a real Redis 8 when this file was
> generated: the pattern's code as it ran, the figures that run measured, the pitfalls its checks
> guard, and where the original pattern page was found wrong.
"""


def _src(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def slug_of(stem: str) -> str:
    return re.sub(r"^\d+-", "", stem)


def facts(nb: dict) -> dict:
    """What a page says, read from one executed notebook."""
    cells = nb["cells"]
    title = _src(cells[0]).splitlines()[0].lstrip("# ").strip()
    problem = next((p for p in _src(cells[0]).split("\n\n") if p.startswith("**The problem.**")), "")
    problem = " ".join(problem.replace("**The problem.**", "").split())
    code = [_src(c) for c in cells if c["cell_type"] == "code"
            and (c.get("metadata", {}).get("redistutor") or {}).get("pattern")]
    measured = []
    for c in cells:
        for out in c.get("outputs", []):
            text = out.get("text") or (out.get("data") or {}).get("text/plain") or ""
            text = "".join(text) if isinstance(text, list) else text
            for line in text.splitlines():
                line = line.strip().removeprefix("Chart: ")  # charts.finish's printed summary
                if line.lower().startswith("in this run") and line not in measured:
                    measured.append(line)
    guards = []
    for c in cells:
        if "assertions" in c.get("metadata", {}).get("tags", []):
            comment = []  # the opening comment block: its first sentence may span lines
            for line in _src(c).splitlines():
                if not line.startswith("#"):
                    break
                comment.append(line.lstrip("# ").strip())
            if comment:
                guards.append(" ".join(comment))
    errata = [g for g in guards if re.search(r"\bpage\b|errat", g, re.I)]
    return {"title": title, "problem": problem, "code": code, "measured": measured, "guards": guards,
            "errata": errata}


def summary_line(f: dict) -> str:
    first = re.split(r"(?<=[.!?])\s", f["problem"], maxsplit=1)[0] if f["problem"] else f["title"]
    return first.replace("**", "")


def page(stem: str, f: dict) -> str:
    lines = [f"# {f['title']}", "", f["problem"], "",
             f"Notebook: `notebooks/{stem}.ipynb`.", "", "## The pattern, as it ran", ""]
    for block in f["code"]:
        lines += ["```python", block.rstrip(), "```", ""]
    if not f["code"]:
        lines += ["(This notebook has no single pattern cell: see the notebook.)", ""]
    lines += ["## Measured in this run", ""]
    lines += [f"- {m}" for m in f["measured"]] or ["- (no printed figures)"]
    lines += ["", "## Pitfalls its checks guard", ""]
    lines += [f"- {g}" for g in f["guards"]] or ["- (no collapsed assertion cells)"]
    lines += ["", "## Where the original page was wrong", ""]
    lines += [f"- {e}" for e in f["errata"]] or ["- No check in this notebook is about the original page's claims."]
    return "\n".join(lines) + "\n"


def write(out: Path, notebooks: dict[str, dict]) -> None:
    """Write llms.txt, llms-full.txt and patterns/<slug>.md into ``out`` (the site's source)."""
    by_slug = {slug_of(stem): stem for stem in notebooks if not stem.startswith("00-")}
    (out / "patterns").mkdir(parents=True, exist_ok=True)
    index = [HEADER]
    full = []
    for section, slugs in SECTIONS.items():
        index += [f"## {section}", ""]
        for slug in slugs:
            stem = by_slug.get(slug)
            if stem is None:
                index.append(f"- {slug}: not in this build (no executed notebook)")
                continue
            f = facts(notebooks[stem])
            text = page(stem, f)
            (out / "patterns" / f"{slug}.md").write_text(text)
            full.append(text)
            index.append(f"- [{f['title']}](patterns/{slug}.md): {summary_line(f)}")
        index.append("")
    (out / "llms.txt").write_text("\n".join(index))
    (out / "llms-full.txt").write_text("\n".join(index) + "\n\n" + "\n\n".join(full))
