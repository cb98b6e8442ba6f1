"""What every lab object shares: a timeline, start/stop/context-manager, and stop-at-exit.

A notebook that dies half-way through a fault lab must not leave five redis-servers, a proxy
thread and three worker processes behind. Every lab object registers itself here when it starts;
:func:`stop_all` (the notebook's Cleanup cell) and interpreter exit stop whatever is still
running. ``kill -9`` of the kernel is covered separately by :mod:`redistutor._guard`.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .. import _guard
from ..events import EventLog

T = TypeVar("T")
R = TypeVar("R")

# Strong references: a lab object a re-run cell no longer names must still be found by
# stop_all() and by the re-run itself (a WeakSet lost them, and their servers ran on).
_running: set[LabObject] = set()
_running_lock = threading.RLock()

# The IPython cell being executed: (cell key, run number). A cell's key is its cell id (sent
# by JupyterLab / Notebook 7) or, without one, a hash of its source.
_cell: dict[str, Any] = {"key": None, "run": 0, "shell": None}


def _pre_run_cell(info: Any) -> None:
    _cell["run"] += 1
    _cell["key"] = getattr(info, "cell_id", None) or hashlib.sha1(
        (getattr(info, "raw_cell", "") or "").encode()).hexdigest()


def _post_run_cell(result: Any) -> None:
    _cell["key"] = None


def current_cell() -> tuple[str, int] | None:
    """(cell key, run number) of the IPython cell running now, on the main thread; else None."""
    ipython = sys.modules.get("IPython")
    if ipython is None or threading.current_thread() is not threading.main_thread():
        return None
    shell = ipython.get_ipython()
    if shell is None:
        return None
    if _cell["shell"] is not shell:
        # First lab object in this kernel: follow cells from now on, starting with this one.
        _cell["shell"] = shell
        shell.events.register("pre_run_cell", _pre_run_cell)
        shell.events.register("post_run_cell", _post_run_cell)
        info = getattr(getattr(shell.displayhook, "exec_result", None), "info", None)
        if info is not None:
            _pre_run_cell(info)
    return (_cell["key"], _cell["run"]) if _cell["key"] else None


class LabObject:
    """Base: ``start()`` returns self, ``stop()`` is idempotent, ``with`` starts and stops.

    Re-running a cell replaces what it started (issue #10, 1.4): when a lab object starts in an
    IPython cell, whatever an *earlier run of the same cell* started and has not stopped is
    stopped first, so re-running ``fleet = lab.Fleet(5).start()`` never leaves the previous five
    servers running. Objects with a ``name`` (``lab.Fleet(5, name="redlock")``) also replace a
    running object of the same type and name, in a script as in a notebook.
    """

    lab_name: str | None = None
    _cell_run: tuple[str, int] | None = None

    def __init__(self, log: EventLog | None = None) -> None:
        self.log = log if log is not None else EventLog()
        # Only an object made *and* started by one run of a cell belongs to that run: a cell that
        # merely restarts an older object does not claim it.
        self._made_in = current_cell()

    def start(self) -> LabObject:  # pragma: no cover - abstract
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _registered(self) -> None:
        cell = current_cell()
        with _running_lock:
            if self in _running:
                return
            stale = []
            for other in _running:
                if self.lab_name is not None and type(other) is type(self) and other.lab_name == self.lab_name:
                    stale.append(other)
                elif (cell and cell == getattr(self, "_made_in", None) and other._cell_run
                      and other._cell_run[0] == cell[0] and other._cell_run[1] != cell[1]):
                    stale.append(other)
            if cell and cell == getattr(self, "_made_in", None):
                self._cell_run = cell
        for other in stale:
            try:
                other.stop()
            except Exception:
                pass
            self._unregister(other)
        with _running_lock:
            _running.add(self)

    @staticmethod
    def _unregister(obj: LabObject) -> None:
        with _running_lock:
            _running.discard(obj)

    def _unregistered(self) -> None:
        self._unregister(self)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_all() -> int:
    """Stop every lab object this process started and has not stopped yet; returns how many."""
    with _running_lock:
        objs = list(_running)
    for obj in objs:
        try:
            obj.stop()
        except Exception:
            pass
    return len(objs)


atexit.register(stop_all)


def lab_dir(prefix: str) -> Path:
    """A private temp dir for data files, removed by the guardian if this process is killed.

    Its name starts with ``redistutor-`` so leftover servers started in it are recognisable
    (the test plugin's orphan check looks for that in argv).
    """
    return Path(_guard.private_dir(f"redistutor-{prefix}-"))


def remove_dir(path: Path | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
        _guard.release_dir(str(path))


def parallel(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(x) for x in items]`` run in threads: starting 5 servers takes one start, not five.

    Every call runs to completion; the first exception is re-raised afterwards, so the caller
    can clean up everything that did start.
    """
    items = list(items)
    if len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(len(items), 8)) as pool:
        futures = [pool.submit(fn, x) for x in items]
    errors = [e for e in (f.exception() for f in futures) if e is not None]
    if errors:
        raise errors[0]
    return [f.result() for f in futures]
