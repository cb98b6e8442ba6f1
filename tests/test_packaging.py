"""environment.yml and pyproject.toml list the same dependencies; Binder and CI share the setup."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"redis": "redis-py"}  # PyPI name -> conda-forge name where they differ


def _split(req: str) -> tuple[str, str]:
    req = req.split(";")[0]  # an environment marker (pyproject's platform-only wheels) is not a version
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", req)
    assert m, req
    return m.group(1).lower(), m.group(2).replace(" ", "")


def _env(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    conda, pip, in_pip = {}, {}, False
    text = path.read_text()
    for line in text[text.index("dependencies:"):].splitlines():
        if re.match(r"^\s+- pip:\s*$", line):
            in_pip = True
            continue
        m = re.match(r"^(\s+)- (.+)$", line)
        if not m:
            continue
        item = m.group(2).strip()
        if in_pip and len(m.group(1)) > 4:
            if not item.startswith("-e"):
                pip.update([_split(item)])
        else:
            in_pip = False
            name, spec = _split(item)
            conda[name] = spec
    return conda, pip


def _pyproject() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = data["project"]["dependencies"] + data["project"]["optional-dependencies"]["test"]
    return dict(_split(r) for r in reqs)


def test_environment_yml_matches_pyproject():
    conda, pip = _env(ROOT / "environment.yml")
    wanted = _pyproject()
    got = {**{k: v for k, v in conda.items() if k not in ("python", "pip", "redis-server")}, **pip}
    expected = {CONDA_NAMES.get(k, k): v for k, v in wanted.items()}
    assert got == expected
    assert conda["python"] == ">=3.11"
    assert conda["redis-server"] == ">=8"


def test_binder_builds_the_way_ci_does():
    """Binder: pip requirements plus a postBuild that runs the project's own setup (no conda path)."""
    assert not (ROOT / "binder" / "environment.yml").exists()  # it would make repo2docker use conda
    assert (ROOT / "binder" / "requirements.txt").exists()
    post = (ROOT / "binder" / "postBuild").read_text()
    assert post.startswith("#!/bin/bash") and "./run setup" in post.strip().splitlines()[-1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "./run test" in readme and "./run lab" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.strip().splitlines()[-1] == "exec ./run test"


def test_readme_links_every_notebook():
    readme = (ROOT / "README.md").read_text()
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert f"](notebooks/{nb.name})" in readme, f"README's notebook table does not link {nb.name}"


def test_a_release_tag_names_the_packaged_version():
    """Releases are tags vX.Y.Z (workshop links pin them): a tagged commit's pyproject says X.Y.Z."""
    tag = subprocess.run(["git", "describe", "--tags", "--exact-match", "HEAD"], cwd=ROOT,
                         capture_output=True, text=True).stdout.strip()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    if tag:
        assert tag == f"v{version}", f"HEAD is tagged {tag} but pyproject.toml says version {version}"
