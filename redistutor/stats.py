"""Thread-safe counters that pattern classes keep (hits, misses, aborts, rebuilds...).

A pattern declares its counters as a dataclass subclass::

    @dataclass
    class CacheStats(Stats):
        hits: int = 0
        misses: int = 0

and bumps them from any thread with ``stats.add("hits")``. The repr shows only the counters.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Stats:
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``name`` (threads race on these, hence the lock)."""
        with self._lock:
            setattr(self, name, getattr(self, name) + n)
