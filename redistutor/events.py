"""One clock for everything that happens in a lab: acquires, releases, reads, writes, faults.

Race helpers, worker processes and fault injection all append :class:`Event` rows to an
:class:`EventLog`; the timeline views render them and assertions query them (e.g. "at most one
holder at a time"). Times are seconds since the log was created (``time.monotonic`` based), so
renders never show wall-clock times. Events from other processes arrive as plain dicts
(:meth:`EventLog.extend`) carrying ``time.monotonic()`` values, which are comparable across
processes on the same machine.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterable
from typing import Any


@dataclasses.dataclass(frozen=True)
class Event:
    """Something that happened. ``end`` is set for spans (e.g. a lock held from t to end)."""

    t: float  # seconds since the log's start
    actor: str  # "worker-3", "node-a", "lab"
    kind: str  # "acquire", "release", "read", "write", "crash", "fault", ...
    detail: str = ""
    end: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class EventLog:
    """A thread-safe, append-only list of events on one monotonic clock."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self._events: list[Event] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def record(self, actor: str, kind: str, detail: str = "", *, t: float | None = None,
               end: float | None = None) -> Event:
        ev = Event(self.now() if t is None else t, actor, kind, detail, end)
        with self._lock:
            self._events.append(ev)
        return ev

    def extend(self, rows: Iterable[dict[str, Any]]) -> None:
        """Add events reported by other processes; their ``t``/``end`` are raw monotonic times."""
        with self._lock:
            for row in rows:
                end = row.get("end")
                self._events.append(Event(
                    row["t"] - self.t0, row["actor"], row["kind"], row.get("detail", ""),
                    None if end is None else end - self.t0,
                ))

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return sorted(self._events, key=lambda e: (e.t, e.actor, e.kind))

    def of_kind(self, *kinds: str) -> list[Event]:
        return [e for e in self.events if e.kind in kinds]

    def __len__(self) -> int:
        return len(self._events)

    def clear(self) -> None:
        with self._lock:
            self._events.clear()
            self.t0 = time.monotonic()
