"""Kill what we started when the process that started it dies, even by ``kill -9``.

Nothing makes a child die with its parent by default. ``prctl(PR_SET_PDEATHSIG)`` comes close,
but it fires when the *thread* that spawned the child exits, which would kill a server started
from a worker thread far too early. So each Python process that starts servers or workers gets
one small guardian process (started lazily, once). The parent holds the write end of a pipe to
the guardian's stdin and tells it which PIDs and directories it owns. When the parent dies, for
any reason, the kernel closes the pipe; the guardian reads EOF, SIGKILLs every PID still
registered (checking each PID's start time, so a recycled PID is never hit) and removes the
registered directories.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

# The guardian's whole program: no imports beyond the standard library, no site packages.
_GUARD_CODE = r"""
import os, shutil, signal, sys
def start_time(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None
pids, dirs = {}, set()
for line in sys.stdin:
    op, _, arg = line.strip().partition(" ")
    if op == "+p":
        pid, _, started = arg.partition(" ")
        pids[int(pid)] = started
    elif op == "-p":
        pids.pop(int(arg), None)
    elif op == "+d":
        dirs.add(arg)
    elif op == "-d":
        dirs.discard(arg)
for pid, started in pids.items():
    if start_time(pid) == started:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
for d in dirs:
    shutil.rmtree(d, ignore_errors=True)
"""

_lock = threading.Lock()
_guardian: subprocess.Popen | None = None
_owner_pid: int | None = None
# Guardians inherited through fork: kept referenced so their closed pipe is never closed twice.
_inherited: list[subprocess.Popen] = []


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def _send(line: str) -> None:
    global _guardian, _owner_pid
    with _lock:
        # A forked child must not reuse (or keep alive) its parent's guardian.
        if _guardian is None or _owner_pid != os.getpid() or _guardian.poll() is not None:
            _guardian = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _GUARD_CODE],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
                # Its own session: a signal to our process group must not take it down first.
                start_new_session=True,
            )
            _owner_pid = os.getpid()
        assert _guardian.stdin is not None
        _guardian.stdin.write(line + "\n")
        _guardian.stdin.flush()


def watch_pid(pid: int) -> None:
    """SIGKILL ``pid`` if this process dies before :func:`release_pid` is called."""
    started = _start_time(pid)
    if started is not None:
        _send(f"+p {pid} {started}")


def release_pid(pid: int) -> None:
    if _guardian is not None and _owner_pid == os.getpid():
        _send(f"-p {pid}")


def watch_dir(path: str) -> None:
    """Remove ``path`` if this process dies before :func:`release_dir` is called."""
    _send(f"+d {path}")


def release_dir(path: str) -> None:
    if _guardian is not None and _owner_pid == os.getpid():
        _send(f"-d {path}")


def guardian_pid() -> int | None:
    """PID of this process's guardian (tests use it)."""
    return _guardian.pid if _guardian is not None and _owner_pid == os.getpid() else None


def _close_in_child() -> None:
    # After fork the child holds a copy of the pipe's write end; close it so the guardian still
    # sees EOF when the real owner dies.
    global _guardian
    if _guardian is not None and _guardian.stdin is not None:
        try:
            os.close(_guardian.stdin.fileno())
        except OSError:
            pass
        _inherited.append(_guardian)
    _guardian = None


os.register_at_fork(after_in_child=_close_in_child)
