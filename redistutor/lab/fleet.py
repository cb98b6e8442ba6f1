"""N independent redis-servers, addressable by name: what Redlock and client-side sharding need.

Independent means no replication, no cluster bus: each node knows nothing of the others, which
is exactly the assumption Redlock makes (and the reason a majority of 5 survives 2 crashes).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path

import redis

from ..events import EventLog
from ._base import LabObject, lab_dir, parallel, remove_dir
from .node import Node


class Fleet(LabObject):
    """``n`` independent nodes named ``n1..nN`` (or ``names``), started concurrently.

    Example::

        with Fleet(5) as fleet:
            fleet["n3"].kill()
            fleet["n3"].restart()

    Args:
        n: how many nodes (ignored if ``names`` is given).
        names: node names, in order.
        persistence: every node's persistence mode ("none", "rdb", "aof-everysec", "aof-always").
        log: the timeline to record faults on (a new one by default).
        name: optional; starting an object with a name stops a running one of the same type and
            name first (re-running a cell in an IPython kernel does that without a name).
    """

    def __init__(self, n: int = 5, *, names: Sequence[str] | None = None, persistence: str = "none",
                 log: EventLog | None = None, name: str | None = None) -> None:
        super().__init__(log)
        self.lab_name = name
        self.names = list(names) if names else [f"n{i}" for i in range(1, n + 1)]
        self.persistence = persistence
        self._dir: Path | None = None
        self.nodes: list[Node] = []

    def start(self) -> Fleet:
        if self.nodes and all(node.running for node in self.nodes):
            return self
        if not self.nodes:
            self._dir = lab_dir("fleet")
            password = secrets.token_urlsafe(18)
            self.nodes = [
                Node(name, password=password, data_dir=self._dir / name,
                     persistence=self.persistence, log=self.log)
                for name in self.names
            ]
        self._registered()
        try:
            # Concurrent: five starts cost about one (each is ~10 ms of waiting for PING).
            parallel(lambda node: node.start(), self.nodes)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node and remove the data. Idempotent."""
        for node in self.nodes:
            node.stop()
        remove_dir(self._dir)
        self._dir = None
        self.nodes = []
        self._unregistered()

    def __getitem__(self, key: str | int) -> Node:
        if isinstance(key, int):
            return self.nodes[key]
        for node in self.nodes:
            if node.name == key:
                return node
        raise KeyError(f"no node named {key!r} in this fleet (nodes: {', '.join(self.names)})")

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def clients(self) -> list[redis.Redis]:
        """Each node's fail-fast client, in node order (what a Redlock client takes)."""
        return [node.r for node in self.nodes]

    def up(self) -> list[str]:
        """Names of the nodes whose process is running (paused ones included)."""
        return [node.name for node in self.nodes if node.running]

    def __repr__(self) -> str:
        return f"Fleet({len(self.names)} nodes, up={len(self.up())}, persistence={self.persistence!r})"
