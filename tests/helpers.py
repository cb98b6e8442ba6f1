"""Test helpers: spotting leftover servers, and a real Redis 7 for the "too old" tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest


def redistutor_servers() -> set[int]:
    """PIDs of live redis-server processes that this test process started (its descendants;
    other test workers on the same machine have their own)."""
    out = set()
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
            if "redis-server" in cmd and "redistutor-" in cmd and p.status() != psutil.STATUS_ZOMBIE:
                out.add(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def wait_gone(pids: set[int], timeout: float = 5.0) -> set[int]:
    """Wait until none of ``pids`` is alive; returns the ones still alive at the deadline."""
    deadline = time.monotonic() + timeout
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE}
        if alive:
            time.sleep(0.05)
    return alive


def redis7_binary(workdir: Path) -> Path:
    """Debian 12's real Redis 7.0 server, unpacked from its .deb (no install, no service).

    The Debian redis-tools package ships the server as the multi-call binary redis-check-rdb;
    a small launcher gives it its libraries and the argv[0] "redis-server".
    """
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        pytest.skip("needs apt-get and dpkg to fetch Debian's Redis 7")
    pkgs = ["redis-tools", "liblzf1", "libjemalloc2"]
    debs = workdir / "debs"
    debs.mkdir(parents=True, exist_ok=True)

    def download() -> bool:
        return subprocess.run(["apt-get", "download", *pkgs], cwd=debs, capture_output=True).returncode == 0

    if not download():
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
        if not download():
            pytest.skip("apt-get download redis-tools failed (no apt lists or no mirror)")
    root = workdir / "root"
    for deb in debs.glob("*.deb"):
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    real = root / "usr" / "bin" / "redis-check-rdb"
    multi = root / "usr" / "bin" / "redis-server"
    if not multi.exists():
        multi.symlink_to(real.name)
    libdirs = ":".join(str(p.parent) for p in root.rglob("*.so*"))
    bindir = workdir / "bin"
    bindir.mkdir(exist_ok=True)
    launcher = bindir / "redis-server"
    launcher.write_text(f'#!/bin/sh\nLD_LIBRARY_PATH="{libdirs}" exec "{multi}" "$@"\n')
    launcher.chmod(0o755)
    return launcher


def clean_env(monkeypatch, tmp_path: Path, *, path: str = "/usr/bin:/bin", old_redis_ok: bool = False) -> None:
    """No REDIS_URL, no cache, no conda, no Redis 8 on PATH, no building."""
    for var in ("REDIS_URL", "REDISTUTOR_REDIS_SERVER", "CONDA_PREFIX", "REDISTUTOR_BACKEND"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("REDISTUTOR_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("REDISTUTOR_NO_BUILD", "1")
    monkeypatch.setenv("PATH", path)
    if not old_redis_ok and shutil.which("redis-server", path=path):
        pytest.skip(f"a redis-server is on {path}")


def env_without_redis_url() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("REDIS_URL", None)
    return env


class RecordingStop(threading.Event):
    """A stop event for loops that wait on it between rounds: records each wait the loop asks for
    and returns at once (no sleeping, so a test asserts the waits as values, never as time), and
    ends the loop after ``limit`` waits, should a broken loop never return."""

    def __init__(self, limit: int = 100) -> None:
        super().__init__()
        self.limit, self.waits = limit, []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        if len(self.waits) >= self.limit:
            self.set()
        return self.is_set()
