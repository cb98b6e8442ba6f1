#!/usr/bin/env python3
"""``./run site``: a static site of the executed notebooks, readable without running anything.

    python tools/site.py                       # every notebook -> build/site/index.html
    python tools/site.py --only 01-cache-aside 18-lexicographic-sorted-sets
    python tools/site.py --jobs 2 --timeout 240 --out build/site

Steps, each reported with its time:

1. **Execute** every notebook on the real server, in parallel (``--jobs``), each in its own process
   session with a hard timeout (``--timeout``; the whole process group, kernel included, is
   killed when it runs out, and the kernel's servers die with it). Results are cached in
   ``build/site-cache/`` under a key made of the notebook's content, its pattern, scenario and
   exercise modules, the runtime's code, the Redis version and the pinned packages
   (``constraints.txt``): a rebuild after a one-notebook change executes one notebook.
2. **Assemble** a Sphinx project (MyST-NB, the book theme) in ``build/site-src/``: the home page
   (the notebook table from the README), the executed notebooks (assertion cells hidden behind a
   "show" toggle, as they are collapsed in JupyterLab), the commands index and troubleshooting,
   and ``llms.txt`` / ``llms-full.txt`` / one markdown page per pattern (tools/llms.py).
3. **Build** HTML into ``--out`` with ``sphinx-build`` (notebooks are not executed again).
4. **Check**: every notebook has its page, no executed cell has an error output, and every
   internal link resolves. Any failure exits 1 with the reason.

Launch buttons (Binder, and a JupyterHub through nbgitpuller) need the repository's URL:
``$REDISTUTOR_REPO_URL``, else GitHub Actions' ``$GITHUB_SERVER_URL/$GITHUB_REPOSITORY``, else the
``origin`` remote; ``$REDISTUTOR_HUB_URL`` adds the JupyterHub button. Without a URL the pages
have no launch buttons, and the build says so.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
ASSERT_TAG = "assertions"


def say(text: str) -> None:
    print(f"[site] {text}", flush=True)


# -- 1. execution, cached -----------------------------------------------------------------------

def _redis_version() -> str:
    sys.path.insert(0, str(ROOT))
    from redistutor import provision

    found = provision.find_binary().found
    return found.version_str if found else "unknown"


def shared_key() -> str:
    """What every notebook's output depends on: runtime code, Redis version, pinned packages."""
    h = hashlib.sha256(_redis_version().encode())
    for name in ("constraints.txt", "pyproject.toml"):
        path = ROOT / name
        if path.exists():
            h.update(path.read_bytes())
    for path in sorted((ROOT / "redistutor").rglob("*")):
        rel = path.relative_to(ROOT / "redistutor").parts
        if path.is_file() and rel[0] not in ("patterns", "scenarios", "exercises") and "__pycache__" not in rel:
            h.update(str(rel).encode() + path.read_bytes())
    return h.hexdigest()


def slug_modules(stem: str) -> list[Path]:
    slug = re.sub(r"^\d+-", "", stem).replace("-", "_")
    return [p for kind in ("patterns", "scenarios", "exercises")
            if (p := ROOT / "redistutor" / kind / f"{slug}.py").exists()]


def notebook_key(nb: Path, shared: str) -> str:
    h = hashlib.sha256(shared.encode() + nb.read_bytes())
    for module in slug_modules(nb.stem):
        h.update(module.read_bytes())
    return h.hexdigest()[:20]


def execute_one(src: Path, dst: Path) -> None:
    """Run one notebook (in this process: called through ``--execute-one`` in a new session)."""
    import nbformat
    from nbclient import NotebookClient

    os.environ.pop("REDISTUTOR_DISPLAY", None)  # the site shows the HTML views
    nb = nbformat.read(src, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True, store_widget_state=True,
                   resources={"metadata": {"path": str(src.parent)}}).execute()
    tmp = dst.with_suffix(".tmp")
    nbformat.write(nb, tmp)
    tmp.replace(dst)


def _run_isolated(src: Path, dst: Path, timeout: float) -> tuple[str | None, float]:
    """Execute in a child process group; kill the group (kernel included) at the timeout.
    Returns (the problem or None, seconds it ran)."""
    started = time.monotonic()
    error = _execute_isolated(src, dst, timeout)
    return error, time.monotonic() - started


def _execute_isolated(src: Path, dst: Path, timeout: float) -> str | None:
    proc = subprocess.Popen([sys.executable, __file__, "--execute-one", str(src), str(dst)],
                            cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return f"{src.name}: still running after {timeout:g} s (--timeout), killed with its kernel"
    if proc.returncode != 0:
        return f"{src.name}: execution failed:\n{out[-2000:]}"
    return None


def execute_all(notebooks: list[Path], cache: Path, jobs: int, timeout: float) -> tuple[dict[str, Path], list[str]]:
    cache.mkdir(parents=True, exist_ok=True)
    shared = shared_key()
    executed: dict[str, Path] = {}
    todo = []
    for nb in notebooks:
        dst = cache / f"{nb.stem}-{notebook_key(nb, shared)}.ipynb"
        executed[nb.stem] = dst
        if not dst.exists():
            todo.append((nb, dst))
    say(f"{len(notebooks) - len(todo)} of {len(notebooks)} notebooks cached; executing {len(todo)} "
        f"({jobs} at a time, {timeout:g} s each at most)")
    problems = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        started = {pool.submit(_run_isolated, nb, dst, timeout): nb for nb, dst in todo}
        for future in concurrent.futures.as_completed(started):
            nb = started[future]
            error, seconds = future.result()
            say(f"  {nb.stem}: {'FAILED' if error else 'executed'} in {seconds:.0f} s")
            if error:
                problems.append(error)
    for stale in cache.glob("*.ipynb"):  # older versions of the notebooks built here
        if stale not in executed.values() and stale.stem.rsplit("-", 1)[0] in executed:
            stale.unlink()
    return executed, problems


# -- 2. the Sphinx project ------------------------------------------------------------------------

def repo_url() -> str | None:
    url = os.environ.get("REDISTUTOR_REPO_URL")
    if not url and os.environ.get("GITHUB_REPOSITORY"):
        url = f"{os.environ.get('GITHUB_SERVER_URL', 'https://github.com')}/{os.environ['GITHUB_REPOSITORY']}"
    if not url:
        out = subprocess.run(["git", "remote", "get-url", "origin"], cwd=ROOT, capture_output=True, text=True)
        url = out.stdout.strip() if out.returncode == 0 else ""
        m = re.match(r"git@([^:]+):(.+?)(\.git)?$", url)
        url = f"https://{m.group(1)}/{m.group(2)}" if m else url.removesuffix(".git")
    # Launch buttons need a hosted repository (https://host/owner/repo): a clone of a local
    # checkout has a path as its origin, which the theme cannot turn into links.
    return url if url and re.match(r"^https?://[^/]+/[^/]+/[^/]+/?$", url) else None


CONF = '''# Generated by tools/site.py; edit that file, not this one.
project = "redistutor"
author = "redistutor maintainers"
extensions = ["myst_nb"]
nb_execution_mode = "off"  # tools/site.py executed every notebook on a real server, with a cache
myst_enable_extensions = ["colon_fence"]
html_theme = "sphinx_book_theme"
html_title = "redistutor: production Redis patterns, run on a real Redis 8"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "_extra"]
html_extra_path = ["_extra"]  # llms.txt, llms-full.txt and patterns/*.md, copied as they are
suppress_warnings = ["mystnb.unknown_mime_type"]
html_theme_options = {theme_options!r}
'''


def launch_ref() -> str:
    """What the launch buttons open: ``$REDISTUTOR_REF``, else the release tag the build is at (a
    workshop's nbgitpuller link must not change under a class), else ``main``."""
    ref = os.environ.get("REDISTUTOR_REF")
    if ref:
        return ref
    tag = subprocess.run(["git", "describe", "--tags", "--exact-match", "HEAD"], cwd=ROOT,
                         capture_output=True, text=True)
    return tag.stdout.strip() if tag.returncode == 0 and tag.stdout.strip() else "main"


def theme_options() -> dict:
    options: dict = {"home_page_in_toc": True, "show_toc_level": 2}
    url = repo_url()
    if url:
        options.update({"repository_url": url, "repository_branch": launch_ref(), "path_to_docs": "",
                        "use_repository_button": True,
                        "launch_buttons": {"binderhub_url": "https://mybinder.org",
                                           "notebook_interface": "jupyterlab"}})
        hub = os.environ.get("REDISTUTOR_HUB_URL")
        if hub:
            options["launch_buttons"]["jupyterhub_url"] = hub
    else:
        say("no repository URL (REDISTUTOR_REPO_URL, GITHUB_REPOSITORY or an origin remote): no launch buttons")
    return options


def _readme_table(included: set[str]) -> list[str]:
    """The README's notebook table, linked to the pages built (others shown without a link)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("| # | notebook | what you break and fix |")
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        m = re.search(r"\[([^\]]+)\]\(notebooks/([^)]+)\.ipynb\)", line)
        if m:
            link = f"[{m.group(1)}](notebooks/{m.group(2)}.ipynb)" if m.group(2) in included else m.group(1)
            line = line.replace(m.group(0), link)
        rows.append(line)
    return rows


GUIDE_LINE = "Start with the [pattern guide](notebooks/00-guide.ipynb): which pattern for which need, measured live."


def index_page(included: set[str]) -> str:
    readme = (ROOT / "README.md").read_text()
    intro = readme.split("\n## ", 1)[0].split("\n", 1)[1].strip()
    toc_notebooks = "\n".join(f"notebooks/{s}" for s in sorted(included))
    return f"""# redistutor

{intro}

{GUIDE_LINE if "00-guide" in included else ""}

Every page below is a notebook executed on a real Redis 8 when this site was built: the outputs,
tables and charts are that run's. To run one yourself, use the launch button at the top of its page,
or clone the repository and run `./run lab`. The checks that prove each lesson are hidden under
"Show code cell source" toggles, as they are collapsed in JupyterLab.

{chr(10).join(_readme_table(included))}

More: the [commands index](docs/commands.md) (every command the notebooks use, from the server's own
`COMMAND DOCS`), [troubleshooting](docs/troubleshooting.md) (every error sentence and its fix), and
[llms.txt](llms.txt) for coding agents.

```{{toctree}}
:hidden:
:caption: Notebooks

{toc_notebooks}
```

```{{toctree}}
:hidden:
:caption: Reference

docs/commands
docs/troubleshooting
```
"""


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def freeze_widgets(nb: dict) -> None:
    """Widgets become their saved state or their text: a static page has no kernel, and the widget
    manager it would load from a CDN shows "Loading widget..." offline. An HTML widget (the live key
    views) becomes the HTML it last showed; any other widget, the text its output carries."""
    state = nb.get("metadata", {}).pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            view = data.pop(WIDGET_VIEW, None)
            if view is None:
                continue
            model = state.get(view.get("model_id"), {})
            if model.get("model_name") == "HTMLModel" and model.get("state", {}).get("value"):
                data["text/html"] = model["state"]["value"]
            data.setdefault("text/plain", "(an interactive widget: run the notebook to use it)")


def site_notebook(executed: Path) -> dict:
    nb = json.loads(executed.read_text())
    freeze_widgets(nb)
    for cell in nb["cells"]:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if ASSERT_TAG in tags and "hide-input" not in tags:
            tags.append("hide-input")  # collapsed in JupyterLab, behind a toggle on the site
    return nb


def assemble(executed: dict[str, Path], src: Path) -> None:
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    (src / "docs").mkdir()
    (src / "conf.py").write_text(CONF.format(theme_options=theme_options()))
    (src / "index.md").write_text(index_page(set(executed)))
    for stem, path in executed.items():
        (src / "notebooks" / f"{stem}.ipynb").write_text(json.dumps(site_notebook(path), ensure_ascii=False))
    for page in ("commands.md", "troubleshooting.md"):
        text = (ROOT / "docs" / page).read_text()
        # Notebook links of pages outside this build become plain names (a partial build).
        text = re.sub(r"\[([^\]]+)\]\(\.\./notebooks/([^)]+)\.ipynb\)",
                      lambda m: m.group(0) if m.group(2) in executed else m.group(1), text)
        (src / "docs" / page).write_text(text)
    sys.path.insert(0, str(ROOT / "tools"))
    import llms

    llms.write(src / "_extra", {stem: json.loads(path.read_text()) for stem, path in executed.items()})


# -- 3 and 4. build and check ---------------------------------------------------------------------

class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.links.append(value)


def check(out: Path, executed: dict[str, Path]) -> list[str]:
    problems = []
    for stem, path in executed.items():
        if not (out / "notebooks" / f"{stem}.html").exists():
            problems.append(f"{stem}: no page in the site")
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    problems.append(f"{stem}: cell {i} raised {output.get('ename')}: {output.get('evalue')}")
    for page in out.rglob("*.html"):
        if "_static" in page.relative_to(out).parts:  # the theme's own templates, not pages
            continue
        html_text = page.read_text(errors="replace")
        if WIDGET_VIEW in html_text:
            problems.append(f"{page.relative_to(out)}: a widget that only JavaScript can show (Loading widget...)")
        parser = _Links()
        parser.feed(html_text)
        for link in parser.links:
            parsed = urlparse(link)
            if parsed.scheme or parsed.netloc or link.startswith(("#", "mailto:", "data:", "javascript:")):
                continue
            target = (page.parent / unquote(parsed.path)).resolve()
            if parsed.path and not target.exists():
                problems.append(f"{page.relative_to(out)}: broken link {link}")
    return problems


def build(only: list[str], out: Path, jobs: int, timeout: float, cache: Path, src: Path) -> int:
    t0 = time.monotonic()
    notebooks = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
    if only:
        unknown = set(only) - {nb.stem for nb in notebooks}
        if unknown:
            say(f"no such notebook(s): {', '.join(sorted(unknown))}: use names like 01-cache-aside")
            return 2
        notebooks = [nb for nb in notebooks if nb.stem in only]
    executed, problems = execute_all(notebooks, cache, jobs, timeout)
    t1 = time.monotonic()
    if problems:
        for p in problems:
            say(p)
        return 1
    assemble(executed, src)
    if out.exists():
        shutil.rmtree(out)
    sphinx = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-j", str(jobs), str(src), str(out)],
                            cwd=ROOT, capture_output=True, text=True)
    t2 = time.monotonic()
    if sphinx.returncode != 0:
        say(f"sphinx-build failed:\n{sphinx.stderr[-3000:]}")
        return 1
    problems = check(out, executed)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    say(f"execute {t1 - t0:.0f} s, assemble + sphinx {t2 - t1:.0f} s; {len(executed)} notebooks, "
        f"{size / 1e6:.1f} MB in {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    for p in problems:
        say(p)
    if problems:
        return 1
    say(f"open {out / 'index.html'}")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--execute-one"]:
        execute_one(Path(argv[1]), Path(argv[2]))
        return 0
    parser = argparse.ArgumentParser(prog="./run site", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=[], help="notebook names (e.g. 01-cache-aside)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "site")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per notebook")
    parser.add_argument("--cache", type=Path, default=ROOT / "build" / "site-cache")
    parser.add_argument("--src", type=Path, default=ROOT / "build" / "site-src")
    args = parser.parse_args(argv)
    return build(args.only, args.out.resolve(), args.jobs, args.timeout, args.cache.resolve(), args.src.resolve())


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
