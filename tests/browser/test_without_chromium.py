"""Without a browser, the browser check says so in one sentence and is reported as not run
(skipped), except under REDISTUTOR_STRICT_CAPABILITIES=1 (CI), where it fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(strict: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ, REDISTUTOR_CHROMIUM="/nonexistent/chromium", REDISTUTOR_BROWSER="")
    env["REDISTUTOR_STRICT_CAPABILITIES"] = "1" if strict else ""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "tests/browser/test_notebooks_in_browser.py", "-p", "no:cacheprovider",
         "-q", "-rs", "-k", "00-tour"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_missing_chromium_is_reported_as_not_run():
    out = _run(strict=False)
    assert out.returncode == 0, out.stdout[-2000:]
    assert "1 skipped" in out.stdout
    expected = "No Chromium found, so the browser check did not run: install it with `apt-get install chromium`"
    assert expected in out.stdout


def test_missing_chromium_fails_in_ci():
    out = _run(strict=True)
    assert out.returncode == 1, out.stdout[-2000:]
    assert "CI must run the browser check" in out.stdout
