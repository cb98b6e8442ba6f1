"""Binder's build replayed on this machine: binder/postBuild in a clean home and a fresh virtualenv
(standing for Binder's image), then two notebooks run against the result.

It downloads every package and builds Redis 8 from source, so it takes minutes: it runs under
``./run binder`` (REDISTUTOR_BINDER_REPLAY=1), not in ``./run test``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ["notebooks/01-cache-aside.ipynb", "notebooks/18-lexicographic-sorted-sets.ipynb"]

pytestmark = pytest.mark.skipif(os.environ.get("REDISTUTOR_BINDER_REPLAY") != "1",
                                reason="the Binder replay runs under ./run binder (it builds Redis 8 from source)")


@pytest.mark.timeout(3600)  # every package downloaded and Redis built from source: minutes, not seconds
def test_postbuild_on_a_clean_home_gives_the_ci_server_and_runs_notebooks(tmp_path):
    home, env = tmp_path / "home", tmp_path / "binder-env"
    home.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("REDISTUTOR_", "VIRTUAL_ENV", "PYTHON"))}
    clean.update(HOME=str(home), NB_PYTHON_PREFIX=str(env), PATH=f"{env / 'bin'}:{os.environ['PATH']}")
    build = subprocess.run(["bash", "binder/postBuild"], cwd=ROOT, env=clean, capture_output=True, text=True,
                           timeout=3600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert (home / ".cache" / "redistutor" / "redis").is_dir()  # built from source, not borrowed
    py = str(env / "bin" / "python")
    probe = subprocess.run([py, "-m", "redistutor", "provision"], env=clean, capture_output=True, text=True)
    assert probe.returncode == 0 and "Redis 8.0.6 (cache:" in probe.stdout, probe.stdout + probe.stderr
    # The test runner is not part of Binder's image: added here only to run the two notebooks.
    runner = ["pytest", "pytest-xdist", "pytest-timeout", "nbval"]
    subprocess.run([py, "-m", "pip", "install", "--quiet", "-c", "constraints.txt", *runner], cwd=ROOT, env=clean,
                   check=True)
    run = subprocess.run([py, "-m", "pytest", *NOTEBOOKS, "-p", "no:cacheprovider", "-q"], cwd=ROOT, env=clean,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:]
