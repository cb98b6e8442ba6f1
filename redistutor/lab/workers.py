"""Run a pattern's worker function in N real OS processes, crash one, and collect the timeline.

Threads share one interpreter and can never be ``kill -9``-ed on their own; a lock that must
survive a client crash has to be tested with processes. Each worker is started with the
``spawn`` context (a fresh interpreter: nothing inherited from a half-initialised kernel), so its
function must be importable: a module-level function, e.g.
:func:`redistutor.scenarios.multi_node_lab.lock_worker` (also ``lab.lock_worker``).

How the timeline survives a ``kill -9``: a worker appends each event as one JSON line to its own
file with a single ``write`` (kept by the OS page cache even if the process dies the next
instant). The parent reads the files (:meth:`Workers.collect`) and merges the rows into the
lab's EventLog; their ``t`` values are raw ``time.monotonic()``, comparable across processes.

Cleanup: every worker PID is registered with the guardian (killed if the kernel dies), and each
worker also exits on its own when its parent disappears. Workers leave the kernel's process
group, so Jupyter's Interrupt does not reach them directly; instead :meth:`Workers.join` and
:meth:`Workers.wait_for` stop the workers when the cell waiting in them is interrupted (the
cell's work stops, workers of other cells and every server keep running).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import _guard
from ..events import Event, EventLog
from ..exceptions import ConfigError
from ._base import LabObject, lab_dir, remove_dir


@dataclass
class Endpoint:
    """How a worker reaches one node (host, port, user, password, db, TLS): passed through a pipe, not argv.

    ``username``, ``db`` and ``ssl`` come from a server attached by ``REDIS_URL`` (a workshop
    learner's ACL user, ``rediss://``): without them a worker would log in as the default user.
    """

    host: str
    port: int
    password: str | None = None
    name: str = ""
    username: str | None = None
    db: int = 0
    ssl: bool = False

    @classmethod
    def of(cls, node: Any) -> Endpoint:
        """The endpoint of anything with host/port (a server, a lab node, an Endpoint)."""
        if isinstance(node, Endpoint):
            return node
        conn = getattr(node, "_conn_kwargs", None)  # BaseServer: the user name and TLS of REDIS_URL
        extra: dict[str, Any] = conn() if callable(conn) else {}
        return cls(node.host, node.port, getattr(node, "password", None), getattr(node, "name", ""),
                   username=extra.get("username", getattr(node, "username", None)),
                   db=int(getattr(node, "db", 0) or 0), ssl=bool(extra.get("ssl", getattr(node, "ssl", False))))

    def connection_kwargs(self) -> dict[str, Any]:
        """``redis.Redis`` keyword arguments reaching this node as the notebook's user."""
        kw: dict[str, Any] = {"host": self.host, "port": self.port, "password": self.password, "db": self.db}
        if self.username:
            kw["username"] = self.username
        if self.ssl:
            kw["ssl"] = True
        return kw


@dataclass
class WorkerContext:
    """What a worker function receives: who it is, where the nodes are, how to record events."""

    index: int
    name: str
    endpoints: list[Endpoint]
    events_path: str
    _clients: list[Any] = field(default_factory=list, repr=False)

    def clients(self) -> list[Any]:
        """One fail-fast ``redis.Redis`` per node, in the lab's node order (created once)."""
        if not self._clients:
            import redis

            from ..server import fail_fast_options

            self._clients = [redis.Redis(**e.connection_kwargs(), **fail_fast_options()) for e in self.endpoints]
        return self._clients

    def client(self, i: int = 0) -> Any:
        return self.clients()[i]

    def record(self, kind: str, detail: str = "", *, t: float | None = None, end: float | None = None) -> None:
        """Append one event (one ``write``: survives this process being killed right after)."""
        row = {"t": time.monotonic() if t is None else t, "actor": self.name, "kind": kind,
               "detail": detail, "end": end}
        line = (json.dumps(row) + "\n").encode()
        fd = os.open(self.events_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def _exit_with_parent(parent: int) -> None:
    """Belt and braces next to the guardian: leave if the process that started us is gone.

    Under fork and spawn the starter is our parent, and a changed parent pid (reparenting) is
    the reliable sign. Under forkserver our parent is the fork server, so the starter is asked
    directly (signal 0: does the pid exist?).
    """
    forked_by_starter = os.getppid() == parent
    while True:
        if forked_by_starter:
            gone = os.getppid() != parent
        else:
            try:
                os.kill(parent, 0)
                gone = False
            except ProcessLookupError:
                gone = True
            except PermissionError:
                gone = False  # exists, owned by someone else: cannot be ours gone
        if gone:
            os._exit(1)
        time.sleep(0.2)


def _own_session() -> None:
    """Leave the kernel's process group (Jupyter's Interrupt is for the cell, not for workers).

    The parent spawned us with SIGINT blocked, so an Interrupt landing before this point is held
    pending; it is dropped here (SIG_IGN discards a pending signal), then SIGINT works normally
    for signals sent to this worker itself.
    """
    try:
        os.setsid()
    except OSError:
        pass  # already a session leader
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _bootstrap(fn: Callable[..., Any], ctx: WorkerContext, args: tuple, kwargs: dict, parent: int) -> None:
    _own_session()
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    fn(ctx, *args, **kwargs)


def _require_importable(fn: Callable[..., Any]) -> None:
    """Fail in the parent, in one sentence, for a function a fresh process cannot import.

    Otherwise each child dies on unpickling it ("Can't get attribute ...") and the parent sees
    only exit code 1.
    """
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", "")
    main = sys.modules.get("__main__")
    main_is_a_file = bool(getattr(main, "__file__", None)) and getattr(main, "__spec__", None) is not None
    if "<" in qualname or module is None or (module == "__main__" and not main_is_a_file):
        name = getattr(fn, "__name__", repr(fn))
        raise ConfigError(
            f"lab.Workers runs {name} in fresh processes, which can only import it from a module: "
            f"define it at the top level of a .py file next to the notebook (%%writefile "
            f"my_workers.py) and import it from there."
        )


class Workers(LabObject):
    """``n`` processes each running ``fn(ctx, *args, **kwargs)`` against the given nodes.

    Args:
        fn: an importable module-level function taking a :class:`WorkerContext` first.
        n: number of processes, named "w1".."wN".
        nodes: nodes (anything with host/port/password, e.g. a Fleet or its nodes) in order.
        args, kwargs: extra arguments for ``fn``.
        log: the timeline to merge events into.
        name: optional; starting an object with a name stops a running one of the same type and
            name first (re-running a cell in an IPython kernel does that without a name).
        context: "spawn" (default) or "forkserver".
    """

    def __init__(self, fn: Callable[..., Any], n: int = 3, *, nodes: Sequence[Any] = (),
                 args: tuple = (), kwargs: dict | None = None, log: EventLog | None = None,
                 context: str = "spawn", name: str | None = None) -> None:
        super().__init__(log)
        self.lab_name = name
        self.fn = fn
        self.n = n
        self.names = [f"w{i}" for i in range(1, n + 1)]
        self.endpoints = [Endpoint.of(nd) for nd in nodes]
        self.args = args
        self.kwargs = dict(kwargs or {})
        self.context = context
        self.procs: dict[str, Any] = {}
        self._dir: Path | None = None
        self._offsets: dict[str, int] = {}
        self._seen: list[dict] = []
        self.killed: list[str] = []

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> Workers:
        if self.procs:
            return self  # started once; a Workers object is not reusable
        _require_importable(self.fn)
        self._dir = lab_dir("workers")
        mp: Any = multiprocessing.get_context(self.context)  # BaseContext's stub lacks Process
        self._registered()
        try:
            for i, name in enumerate(self.names, 1):
                ctx = WorkerContext(i, name, self.endpoints, str(self._dir / f"{name}.jsonl"))
                proc = mp.Process(target=_bootstrap, name=f"redistutor-{name}",
                                  args=(self.fn, ctx, self.args, self.kwargs, os.getpid()), daemon=True)
                # SIGINT blocked while forking: the child inherits the mask and leaves the
                # kernel's process group (_own_session) before it unblocks it.
                old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
                try:
                    proc.start()
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
                _guard.pause_point("worker-spawned", child=proc.pid, dir=str(self._dir))
                _guard.watch_pid(proc.pid)
                self.procs[name] = proc
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Kill any worker still running, collect what they recorded, clean up. Idempotent.

        ``exitcodes`` and ``pids`` stay readable afterwards.
        """
        if self._dir is None:
            return
        for proc in self.procs.values():
            if proc.is_alive():
                proc.kill()
            proc.join(5)
            _guard.release_pid(proc.pid)
        self.collect()
        remove_dir(self._dir)
        self._dir = None
        self._unregistered()

    def join(self, timeout: float = 30.0) -> Workers:
        """Wait for every worker to finish, then collect its events."""
        deadline = time.monotonic() + timeout
        try:
            for proc in self.procs.values():
                proc.join(max(0.0, deadline - time.monotonic()))
        except KeyboardInterrupt:
            # Jupyter's Interrupt: the cell's work stops, so its workers stop too (the servers,
            # in their own sessions, keep running for the next cell).
            self.stop()
            raise
        self.collect()
        still = [name for name, p in self.procs.items() if p.is_alive()]
        if still:
            raise TimeoutError(f"workers {', '.join(still)} still running after {timeout:g} s")
        return self

    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items()}

    @property
    def exitcodes(self) -> dict[str, int | None]:
        """Exit codes by worker (-9 for one killed with SIGKILL)."""
        return {name: p.exitcode for name, p in self.procs.items()}

    # -- events -------------------------------------------------------------------------------
    def _read_new(self) -> list[dict]:
        rows: list[dict] = []
        if self._dir is None:
            return rows
        for name in self.names:
            path = self._dir / f"{name}.jsonl"
            try:
                with open(path, "rb") as f:
                    f.seek(self._offsets.get(name, 0))
                    data = f.read()
            except FileNotFoundError:
                continue
            complete = data[: data.rfind(b"\n") + 1]  # a half-written last line waits
            self._offsets[name] = self._offsets.get(name, 0) + len(complete)
            rows += [json.loads(line) for line in complete.splitlines() if line.strip()]
        self._seen += rows
        return rows

    def _own_events(self) -> set[Event]:
        """The events this pool's workers reported, as the log holds them."""
        t0 = self.log.t0
        return {Event(row["t"] - t0, row["actor"], row["kind"], row.get("detail", ""),
                      None if row.get("end") is None else row["end"] - t0) for row in self._seen}

    def collect(self) -> int:
        """Merge events recorded since the last call into the log; returns how many."""
        rows = self._read_new()
        self.log.extend(rows)
        return len(rows)

    def wait_for(self, kind: str, *, actor: str | None = None, timeout: float = 30.0) -> Event:
        """Block until some worker (or ``actor``) has recorded an event of ``kind``; return it.

        The timeout only bounds a failure: starting worker processes on a loaded 2-core machine
        has taken over 10 s (each imports redis and the runtime afresh)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.collect()
                # Only this pool's own events: an earlier pool with the same worker names may have
                # recorded the same kind on the shared log.
                mine = [e for e in self.log.events if e in self._own_events()]
                for ev in mine:
                    if ev.kind == kind and (actor is None or ev.actor == actor):
                        return ev
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no worker recorded {kind!r} within {timeout:g} s")
                time.sleep(0.005)
        except KeyboardInterrupt:
            self.stop()  # Interrupt stops the cell's workers (see join)
            raise

    # -- faults -------------------------------------------------------------------------------
    def kill(self, name: str) -> None:
        """``kill -9`` one worker, wherever it is (e.g. inside its critical section)."""
        proc = self.procs[name]
        self.log.record(name, "fault", "kill -9")
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(5)
        _guard.release_pid(proc.pid)
        self.killed.append(name)

    def pause(self, name: str) -> None:
        """Freeze one worker with SIGSTOP (a long GC pause, a VM stall): it keeps every lock and
        connection it holds, but does nothing until :meth:`resume`."""
        self.log.record(name, "fault", "pause (SIGSTOP)")
        os.kill(self.procs[name].pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        """Let a paused worker run again (SIGCONT) from exactly where it stopped."""
        os.kill(self.procs[name].pid, signal.SIGCONT)
        self.log.record(name, "fault", "resume (SIGCONT)")

    def __repr__(self) -> str:
        alive = sum(p.is_alive() for p in self.procs.values())
        return f"Workers({getattr(self.fn, '__name__', 'fn')}, n={self.n}, alive={alive})"


def run_workers(fn: Callable[..., Any], n: int = 3, *, timeout: float = 30.0, **kwargs: Any) -> Workers:
    """Start ``n`` workers, wait for all of them, collect their events; returns the Workers."""
    workers = Workers(fn, n, **kwargs).start()
    try:
        workers.join(timeout)
    finally:
        workers.stop()
    return workers
