"""Deterministic races: pause a thread at a named point, run something else, then let it go.

Races that depend on timing luck make flaky lessons. Pattern classes call named hooks at the
moments that matter (``"after_db_read"``, ``"before_release"``...). A :class:`PausePoint` plugged
into a hook stops the thread that reaches it until the lesson says go::

    pause = PausePoint("after_db_read")
    cache = CacheAside(r, db, hooks={"after_db_read": pause})
    reader = run_in_thread(cache.get, 1)
    pause.wait_reached()          # the reader has read the old row and is about to SET it
    cache.update(1, name="new")   # the writer updates the DB and deletes the key
    pause.release()               # now the reader writes the old row back
    reader.result()
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class RaceTimeout(AssertionError):
    """A thread did not reach a pause point (or finish) in time: the race was not reproduced."""


class PausePoint:
    """A hook that blocks the first ``times`` threads reaching it until :meth:`release`."""

    def __init__(self, name: str = "pause", *, times: int = 1, timeout: float = 10.0) -> None:
        self.name = name
        self.timeout = timeout
        self._remaining = times
        self._lock = threading.Lock()
        self._reached = threading.Event()
        self._go = threading.Event()
        self.hits = 0
        self.args: tuple = ()

    def __call__(self, *args: Any) -> None:
        with self._lock:
            self.hits += 1
            if self._remaining <= 0:
                return
            self._remaining -= 1
            self.args = args
        self._reached.set()
        if not self._go.wait(self.timeout):
            raise RaceTimeout(f"{self.name}: nobody released this pause point within {self.timeout:g} s")

    def wait_reached(self, timeout: float | None = None) -> tuple:
        """Block until a thread is paused here; returns the arguments it passed."""
        if not self._reached.wait(timeout or self.timeout):
            raise RaceTimeout(f"{self.name}: no thread reached this pause point in time")
        return self.args

    def release(self) -> None:
        self._go.set()


def run_in_thread(fn: Callable[..., Any], *args: Any, thread_name: str | None = None, **kwargs: Any) -> Future:
    """Run ``fn(*args, **kwargs)`` in a new daemon thread; the Future gives its result or exception.

    ``thread_name`` names the thread (race timelines show it); every other keyword goes to ``fn``.
    """
    fut: Future = Future()

    def target() -> None:
        if not fut.set_running_or_notify_cancel():
            return
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller through the future
            fut.set_exception(exc)

    threading.Thread(target=target, name=thread_name or getattr(fn, "__name__", "worker"), daemon=True).start()
    return fut


def call_hook(hooks: dict[str, Callable[..., Any]] | None, name: str, *args: Any) -> None:
    """Call ``hooks[name](*args)`` if such a hook is installed (used by pattern classes)."""
    if hooks:
        hook = hooks.get(name)
        if hook is not None:
            hook(*args)


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, what: str = "the condition", *,
               step: float = 0.005) -> None:
    """Poll ``condition()`` until it is true; never sleep for a guessed time.

    The timeout only bounds a failure (a loaded machine may need long); raises TimeoutError
    naming ``what``.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(step)
