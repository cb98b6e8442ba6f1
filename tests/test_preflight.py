"""``python -m redistutor preflight`` on a real Redis 8: a learner's line of the sheet, no server, a
local Redis, and a machine with nothing (which it must not build)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from redistutor import workshop
from redistutor.server import RedisServer, free_port


def _preflight(env: dict[str, str]) -> tuple[int, list[str]]:
    run = subprocess.run([sys.executable, "-m", "redistutor", "preflight"], capture_output=True, text=True,
                         env=env, timeout=120)
    return run.returncode, run.stdout.splitlines()


def _line(lines: list[str], start: str) -> str:
    found = [ln for ln in lines if ln[2:].startswith(start)]
    assert len(found) == 1, (start, lines)
    return found[0]


@pytest.fixture
def base_env():
    return {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REDISTUTOR_BACKEND")}


def test_a_learner_is_ready_and_told_what_does_not_run_on_the_shared_server(base_env):
    with RedisServer(name="preflight-shared") as shared:
        admin = shared.client()
        (ada,) = workshop.add(admin, shared.url, ["preflight-ada"])
        try:
            code, lines = _preflight({**base_env, "REDIS_URL": ada.url})
            assert [k for k in admin.scan_iter(count=1000)] == []  # it left nothing behind
        finally:
            workshop.remove(admin, "preflight-ada")
    assert code == 0 and lines[-1] == "ready for the workshop", lines
    assert _line(lines, "Python ").startswith("✓") and _line(lines, "packages: ").startswith("✓")
    redis_line = _line(lines, "Redis 8.")
    assert redis_line.startswith("✓") and "as 'preflight-ada'" in redis_line
    assert _line(lines, "modules: ").startswith("✓ modules: vector sets, JSON, Bloom family, Search")
    labs = _line(lines, "lab notebooks")
    assert labs.startswith("✗") and "workshop learner" in labs and "these run on this server: " in labs
    assert "18-lexicographic-sorted-sets" in labs and "08-redlock" not in labs


def test_an_unreachable_server_is_not_ready_and_says_why(base_env):
    port = free_port()
    code, lines = _preflight({**base_env, "REDIS_URL": f"redis://127.0.0.1:{port}"})
    assert code == 1 and lines[-1].startswith("not ready")
    line = _line(lines, "Redis 8")
    assert line.startswith("✗ Redis 8: Cannot reach the Redis server at 127.0.0.1:") and "REDIS_URL" in line


def test_a_local_redis_8_is_used_and_the_labs_can_run(base_env):
    code, lines = _preflight(base_env)
    assert code == 0, lines
    assert "a local redis-server" in _line(lines, "Redis 8.")
    assert _line(lines, "lab notebooks").startswith("✓")


def test_a_machine_without_redis_gets_the_fix_and_nothing_is_built(base_env, tmp_path):
    cache = tmp_path / "cache"
    env = {**base_env, "REDISTUTOR_CACHE": str(cache), "PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin"}
    env.pop("REDISTUTOR_REDIS_SERVER", None), env.pop("CONDA_PREFIX", None), env.pop("REDISTUTOR_NO_BUILD", None)
    code, lines = _preflight(env)
    assert code == 1
    line = _line(lines, "Redis 8: none on this machine")
    assert line.startswith("✗") and "set REDIS_URL" in line and "python -m redistutor provision" in line
    assert not (cache / "redis").exists() and not (cache / "downloads").exists()
