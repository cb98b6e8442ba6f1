"""Kill what we started when the process that started it dies, even by ``kill -9``.

Nothing makes a child die with its parent by default. ``prctl(PR_SET_PDEATHSIG)`` comes close,
but it fires when the *thread* that spawned the child exits, which would kill a server started
from a worker thread far too early. So each Python process that starts servers or workers gets
one small guardian process (started lazily, once). The parent holds the write end of a pipe to
the guardian's stdin and tells it which PIDs and directories it owns. When the parent dies, for
any reason, the kernel closes the pipe; the guardian reads EOF and

1. SIGKILLs every PID still registered (checking each PID's start time, so a recycled PID is
   never hit);
2. SIGKILLs every process of this user whose command line names a registered directory. A
   redis-server is spawned with its private temp dir in argv (``--dir``, ``--logfile``) and the
   dir is registered *before* the spawn, so a ``kill -9`` landing between the spawn and
   :func:`watch_pid` cannot orphan it (issue #10, 1.2);
3. removes the registered directories, then looks once more (a server exec'ing at that instant
   finds its config file gone and exits by itself; one that got past it is caught here).

If the guardian itself dies, a new one is started at once and told every registration still
held (issue #10, 1.5): nothing registered before is left unprotected.

:func:`pause_point` is a test hook: with ``REDISTUTOR_TEST_PAUSE_AT=<point>`` in the environment
the process stops for good at that point (after printing one JSON line), so a test can
``kill -9`` it inside a window that is otherwise a few microseconds wide.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time

# The guardian's whole program: no imports beyond the standard library, no site packages.
_GUARD_CODE = r"""
import os, shutil, signal, sys
def start_time(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None
def kill_by_dir(dirs):
    # Processes of this user whose argv names a registered dir (or a path below it).
    me, uid = os.getpid(), os.getuid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(a == d or a.startswith(d + "/") for a in args for d in dirs):
            try:
                os.kill(int(entry), signal.SIGKILL)
            except OSError:
                pass
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
if dirs:
    kill_by_dir(dirs)
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    kill_by_dir(dirs)
"""

_lock = threading.RLock()
_guardian: subprocess.Popen | None = None
_owner_pid: int | None = None
# Everything registered and not released, so a replacement guardian can be told (1.5).
_pids: dict[int, str] = {}
_dirs: set[str] = set()
# Guardians inherited through fork: kept referenced so their closed pipe is never closed twice.
_inherited: list[subprocess.Popen] = []


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def _spawn_locked() -> subprocess.Popen:
    """Start a guardian, tell it every live registration, and watch it (caller holds _lock)."""
    global _guardian, _owner_pid
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _GUARD_CODE],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        # Its own session: a signal to our process group (Jupyter's Interrupt) must not reach it.
        start_new_session=True,
    )
    _guardian, _owner_pid = proc, os.getpid()
    assert proc.stdin is not None
    replay = [f"+p {pid} {started}" for pid, started in _pids.items()]
    replay += [f"+d {d}" for d in sorted(_dirs)]
    if replay:
        proc.stdin.write("".join(line + "\n" for line in replay))
        proc.stdin.flush()
    threading.Thread(target=_monitor, args=(proc,), name="redistutor-guardian-monitor",
                     daemon=True).start()
    return proc


def _monitor(proc: subprocess.Popen) -> None:
    """Replace the guardian as soon as it dies (killed by a learner, the OOM killer, ...)."""
    proc.wait()
    with _lock:
        if _guardian is proc and _owner_pid == os.getpid() and (_pids or _dirs):
            try:
                _spawn_locked()
            except OSError:
                pass  # the next registration tries again


def _send(line: str) -> None:
    with _lock:
        # A forked child must not reuse (or keep alive) its parent's guardian.
        if _guardian is None or _owner_pid != os.getpid() or _guardian.poll() is not None:
            _spawn_locked()
        assert _guardian is not None and _guardian.stdin is not None
        try:
            _guardian.stdin.write(line + "\n")
            _guardian.stdin.flush()
        except (BrokenPipeError, OSError):
            # It died between poll() and the write: a new one gets everything (this line too,
            # since the caller updated _pids/_dirs first).
            _spawn_locked()


def watch_pid(pid: int) -> None:
    """SIGKILL ``pid`` if this process dies before :func:`release_pid` is called."""
    started = _start_time(pid)
    if started is not None:
        with _lock:
            _pids[pid] = started
            _send(f"+p {pid} {started}")


def release_pid(pid: int) -> None:
    with _lock:
        _pids.pop(pid, None)
        if _guardian is not None and _owner_pid == os.getpid():
            _send(f"-p {pid}")


def watch_dir(path: str) -> None:
    """Remove ``path`` if this process dies before :func:`release_dir` is called, and kill any
    process of ours whose command line names it (register a server's dir before spawning it)."""
    with _lock:
        _dirs.add(path)
        _send(f"+d {path}")


def private_dir(prefix: str, root: str | None = None) -> str:
    """A new private (0700) temp dir (in ``root``, default the temp dir), registered *before* it exists.

    ``tempfile.mkdtemp()`` followed by :func:`watch_dir` leaves a dir behind if this process is
    killed between the two; here the name is registered first and then created (``mkdir`` fails
    if the name exists, exactly as mkdtemp does, and another name is tried).
    """
    root = root or tempfile.gettempdir()
    for _ in range(100):
        path = os.path.join(root, f"{prefix}{secrets.token_hex(5)}")
        watch_dir(path)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            release_dir(path)
            continue
        pause_point("dir-created", dir=path)
        return path
    raise FileExistsError(f"no free temp dir name with prefix {prefix!r} in {root}")


def release_dir(path: str) -> None:
    with _lock:
        _dirs.discard(path)
        if _guardian is not None and _owner_pid == os.getpid():
            _send(f"-d {path}")


def guardian_pid() -> int | None:
    """PID of this process's guardian (tests use it)."""
    return _guardian.pid if _guardian is not None and _owner_pid == os.getpid() else None


def registered() -> tuple[dict[int, str], set[str]]:
    """Copies of what this process has registered (PIDs with start times, dirs): for tests."""
    with _lock:
        return dict(_pids), set(_dirs)


def pause_point(point: str, **info: object) -> None:
    """Test hook: stop here for good if ``$REDISTUTOR_TEST_PAUSE_AT`` names ``point``.

    Prints ``{"paused": point, "pid": <this process>, **info}`` on stdout first, so a test knows
    the process is inside the window and can ``kill -9`` it there. Costs one dict lookup otherwise.
    """
    if os.environ.get("REDISTUTOR_TEST_PAUSE_AT") != point:
        return
    sys.stdout.write(json.dumps({"paused": point, "pid": os.getpid(), **info}) + "\n")
    sys.stdout.flush()
    while True:
        time.sleep(3600)


def _close_in_child() -> None:
    # After fork the child holds a copy of the pipe's write end; close it so the guardian still
    # sees EOF when the real owner dies. The child owns none of the parent's registrations.
    global _guardian, _lock
    _lock = threading.RLock()  # another thread may have held it at the fork
    if _guardian is not None and _guardian.stdin is not None:
        try:
            os.close(_guardian.stdin.fileno())
        except OSError:
            pass
        _inherited.append(_guardian)
    _guardian = None
    _pids.clear()
    _dirs.clear()


os.register_at_fork(after_in_child=_close_in_child)
