"""What every lab object shares: a timeline, start/stop/context-manager, and stop-at-exit.

A notebook that dies half-way through a fault lab must not leave five redis-servers, a proxy
thread and three worker processes behind. Every lab object registers itself here when it starts;
:func:`stop_all` (the notebook's Cleanup cell) and interpreter exit stop whatever is still
running. ``kill -9`` of the kernel is covered separately by :mod:`redistutor._guard`.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from .. import _guard
from ..events import EventLog

T = TypeVar("T")
R = TypeVar("R")

_running: "weakref.WeakSet[LabObject]" = weakref.WeakSet()
_running_lock = threading.Lock()


class LabObject:
    """Base: ``start()`` returns self, ``stop()`` is idempotent, ``with`` starts and stops."""

    def __init__(self, log: EventLog | None = None) -> None:
        self.log = log if log is not None else EventLog()

    def start(self) -> "LabObject":  # pragma: no cover - abstract
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _registered(self) -> None:
        with _running_lock:
            _running.add(self)

    def _unregistered(self) -> None:
        with _running_lock:
            _running.discard(self)

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
    path = Path(tempfile.mkdtemp(prefix=f"redistutor-{prefix}-"))
    _guard.watch_dir(str(path))
    return path


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
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]
    return [f.result() for f in futures]
