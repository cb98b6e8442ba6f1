"""The site of executed notebooks and its llms.txt, built for two notebooks (./run site builds all).

The build executes both notebooks on a real Redis 8 (or reuses build/site-cache when nothing they
depend on changed), renders them with Sphinx and MyST-NB, and checks pages, error outputs and
internal links itself; these tests check what it produced.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TWO = ["01-cache-aside", "18-lexicographic-sorted-sets"]
sys.path.insert(0, str(ROOT / "tools"))
llms = importlib.import_module("llms")
spec = importlib.util.spec_from_file_location("site_tool", ROOT / "tools" / "site.py")
assert spec is not None and spec.loader is not None
site = importlib.util.module_from_spec(spec)
spec.loader.exec_module(site)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    src = tmp_path_factory.mktemp("site-src")
    run = subprocess.run([sys.executable, "tools/site.py", "--only", *TWO, "--out", str(out), "--src", str(src)],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out, src, run.stdout


def test_every_notebook_has_a_page_and_the_home_page_links_them(built):
    out, _, log = built
    for stem in TWO:
        page = (out / "notebooks" / f"{stem}.html").read_text()
        assert "The problem." in page and "What you will learn" in page  # errors: tools/site.py fails on them
    home = (out / "index.html").read_text()
    assert 'href="notebooks/01-cache-aside.html"' in home and "Commands index" in home
    assert "execute" in log and "MB in" in log  # build time and size are reported


def test_assertion_cells_are_hidden_behind_a_toggle(built):
    _, src, _ = built
    nb = json.loads((src / "notebooks" / "01-cache-aside.ipynb").read_text())
    hidden = [c for c in nb["cells"] if "assertions" in c["metadata"].get("tags", [])]
    assert hidden and all("hide-input" in c["metadata"]["tags"] for c in hidden)


def test_llms_txt_has_a_line_per_pattern_and_pages_hold_the_code_the_notebooks_ran(built):
    out, _, _ = built
    index = (out / "llms.txt").read_text()
    for slug in (s for slugs in llms.SECTIONS.values() for s in slugs):
        assert re.search(rf"^- (\[.*\]\(patterns/{slug}\.md\)|{slug}: not in this build)", index, re.M), slug
    for stem in TWO:
        slug = llms.slug_of(stem)
        page = (out / "patterns" / f"{slug}.md").read_text()
        cells = ["".join(c["source"]) for c in json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text())["cells"]
                 if c["cell_type"] == "code"]
        blocks = re.findall(r"```python\n(.*?)\n```", page, re.S)
        assert blocks and all(any(block == cell.rstrip() for cell in cells) for block in blocks)
        assert "## Measured in this run" in page and "- in this run" in page
    assert (out / "llms-full.txt").read_text().startswith(index)


def test_the_index_sections_cover_every_notebook():
    listed = {s for slugs in llms.SECTIONS.values() for s in slugs}
    notebooks = {llms.slug_of(p.stem) for p in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb")
                 if not p.stem.startswith("00-")}
    assert notebooks <= listed and len(listed) == 30


def test_a_notebook_change_invalidates_only_that_notebooks_cache_key(tmp_path):
    shared = site.shared_key()
    a, b = ROOT / "notebooks" / f"{TWO[0]}.ipynb", ROOT / "notebooks" / f"{TWO[1]}.ipynb"
    changed = tmp_path / a.name
    changed.write_text(a.read_text().replace("The problem.", "The problem!", 1))
    assert site.notebook_key(changed, shared) != site.notebook_key(a, shared)
    assert site.notebook_key(b, shared) == site.notebook_key(b, site.shared_key())


def test_the_build_check_fails_on_error_outputs_missing_pages_and_broken_links(tmp_path):
    out = tmp_path / "out"
    (out / "notebooks").mkdir(parents=True)
    (out / "notebooks" / "ok.html").write_text('<a href="../index.html">home</a><a href="gone.html">x</a>')
    (out / "index.html").write_text('<a href="https://redis.io/">ext</a><a href="#top">top</a>')
    executed = tmp_path / "ok.ipynb"
    executed.write_text(json.dumps({"cells": [{"cell_type": "code", "source": "1/0", "outputs": [
        {"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": []}]}]}))
    problems = site.check(out, {"ok": executed, "missing": executed})
    assert "ok: cell 0 raised ZeroDivisionError: division by zero" in problems
    assert "missing: no page in the site" in problems
    assert "notebooks/ok.html: broken link gone.html" in problems and len(problems) == 4  # error twice


def test_widgets_become_their_saved_html_or_their_text_and_the_check_finds_any_left(tmp_path):
    """A static page has no kernel: the live key view (an HTML widget) shows the HTML it last
    showed, another widget its text, and a page that still needs the widget manager fails the check."""
    view = site.WIDGET_VIEW
    nb = {"metadata": {"widgets": {site.WIDGET_STATE: {"state": {
        "m1": {"model_name": "HTMLModel", "state": {"value": "<table><tr><th>key</th></tr></table>"}},
        "m2": {"model_name": "IntSliderModel", "state": {"value": 3}}}}}},
        "cells": [{"cell_type": "code", "source": "w", "metadata": {}, "outputs": [
            {"output_type": "display_data", "metadata": {}, "data": {view: {"model_id": "m1"}, "text/plain": "user:1"}},
            {"output_type": "execute_result", "metadata": {}, "data": {view: {"model_id": "m2"}}},
            {"output_type": "stream", "name": "stdout", "text": "plain\n"}]}]}
    executed = tmp_path / "w.ipynb"
    executed.write_text(json.dumps(nb))
    outputs = site.site_notebook(executed)["cells"][0]["outputs"]
    assert outputs[0]["data"] == {"text/html": "<table><tr><th>key</th></tr></table>", "text/plain": "user:1"}
    assert list(outputs[1]["data"]) == ["text/plain"] and "widget" in outputs[1]["data"]["text/plain"]
    assert outputs[2] == {"output_type": "stream", "name": "stdout", "text": "plain\n"}
    assert "widgets" not in site.site_notebook(executed)["metadata"]   # no widget manager on the page
    out = tmp_path / "out"
    (out / "notebooks").mkdir(parents=True)
    (out / "notebooks" / "w.html").write_text(f'<script type="{view}">{{"model_id": "m1"}}</script>')
    assert site.check(out, {"w": executed}) == [
        "notebooks/w.html: a widget that only JavaScript can show (Loading widget...)"]


def test_launch_buttons_only_for_a_hosted_repository(monkeypatch):
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
    monkeypatch.setenv("REDISTUTOR_REPO_URL", "https://github.com/example/redistutor")
    assert site.repo_url() == "https://github.com/example/redistutor"
    monkeypatch.setenv("REDISTUTOR_REPO_URL", "/work/main")  # a clone of a local checkout (CI)
    assert site.repo_url() is None and "launch_buttons" not in site.theme_options()


def test_launch_buttons_open_the_release_tag_the_build_is_at(monkeypatch, tmp_path):
    """A workshop's links must not change under a class: an explicit ref wins, then the tag HEAD
    is at, and only an untagged build opens main."""
    monkeypatch.setenv("REDISTUTOR_REPO_URL", "https://github.com/example/redistutor")
    monkeypatch.setenv("REDISTUTOR_REF", "v9.9.9")
    assert site.theme_options()["repository_branch"] == "v9.9.9"
    monkeypatch.delenv("REDISTUTOR_REF")
    repo = tmp_path / "repo"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "one"], check=True)
    monkeypatch.setattr(site, "ROOT", repo)
    assert site.launch_ref() == "main"
    subprocess.run([*git, "tag", "v1.2.0"], check=True)
    assert site.launch_ref() == "v1.2.0"
