"""docs/troubleshooting.md lists every one-sentence error the runtime raises, and stays current."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("troubleshooting", ROOT / "tools" / "troubleshooting.py")
assert spec is not None and spec.loader is not None
troubleshooting = importlib.util.module_from_spec(spec)
spec.loader.exec_module(troubleshooting)


def test_the_page_is_current():
    written = (ROOT / "docs" / "troubleshooting.md").read_text()
    assert written == troubleshooting.render(), "regenerate it: .venv/bin/python tools/troubleshooting.py"


def test_every_error_class_has_a_section_and_every_raised_class_its_sentences():
    page = troubleshooting.render()
    classes = troubleshooting.error_classes()
    sites = troubleshooting.raise_sites({c.__name__ for c in classes})
    for cls in classes:
        assert f"## {cls.__name__}\n" in page and (cls.__doc__ or "").strip(), cls
    # The base class is raised only through its subclasses; every other class has real sentences.
    assert all(sites[c.__name__] for c in classes if c.__name__ != "RedistutorError"), \
        [c.__name__ for c in classes if not sites[c.__name__]]


def test_a_new_raise_appears_on_the_page(tmp_path):
    package = tmp_path / "redistutor"
    shutil.copytree(ROOT / "redistutor", package)
    (package / "probe.py").write_text('from .exceptions import ConfigError\nMSG = "set PROBE=1"\n\n\n'
                                      'def f(x):\n    raise ConfigError(f"Probe {x} sentence: {MSG}.")\n')
    page = troubleshooting.render(package)
    assert "- Probe ‹x› sentence: set PROBE=1.  \n  <sub>`redistutor/probe.py`, `f`</sub>" in page
