"""The notebook requirements gate: skip with the reason, or fail under strict (CI) mode."""

from __future__ import annotations

import nbformat
import pytest

from redistutor import provision
from redistutor.pytest_plugin import notebook_requirements

pytest_plugins = ["pytester"]

# pytester points HOME at a temp dir, which would hide the per-user Redis cache (and start a
# build): remember the real one at import time and hand it over explicitly.
REAL_CACHE = str(provision.cache_dir())


def _notebook(path, setup_source: str) -> None:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# demo"),
        nbformat.v4.new_code_cell(setup_source),
        nbformat.v4.new_code_cell("assert False, 'cells must not run when requirements are unmet'"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def test_requirements_are_read_from_the_setup_cell(tmp_path):
    nb = tmp_path / "x.ipynb"
    _notebook(nb, "%matplotlib inline\nfrom redistutor import start_server\n"
                  "server = start_server('x', requires={'version': '8.0', 'features': ['json']})")
    assert notebook_requirements(nb) == {"version": "8.0", "features": ["json"]}
    _notebook(nb, "from redistutor import start_server\nserver = start_server('x')")
    assert notebook_requirements(nb) is None


@pytest.mark.parametrize("strict, outcome", [("0", "skipped"), ("1", "errors")])
def test_unmet_requirement_skips_or_fails(pytester, monkeypatch, strict, outcome):
    monkeypatch.setenv("REDISTUTOR_STRICT_CAPABILITIES", strict)
    monkeypatch.setenv("REDISTUTOR_CACHE", REAL_CACHE)
    monkeypatch.setenv("REDISTUTOR_NO_BUILD", "1")
    _notebook(pytester.path / "needs_future.ipynb",
              "from redistutor import start_server\n"
              "server = start_server('future', requires={'version': '99.0'})")
    result = pytester.runpytest_subprocess("-p", "redistutor.pytest_plugin", "--nbval-lax", "-rsf",
                                           "needs_future.ipynb")
    result.assert_outcomes(**{outcome: 2})
    result.stdout.fnmatch_lines(["*needs_future.ipynb: This notebook needs Redis 99.0 or newer*"])
