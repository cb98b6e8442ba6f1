"""A primary with replicas, WAIT, promotion: the lab where an acknowledged write is lost.

Redis replication is asynchronous: the primary answers OK before any replica has the write. If
the primary then dies and a replica is promoted, that write is gone although a client was told
it succeeded. Each replica here reaches its primary through its own :class:`LatencyProxy` (the
"link"), so a notebook can slow the link down or cut it, and make the loss deterministic::

    t0  rep.partition("replica-1")        the link drops bytes (the primary does not notice)
    t1  SET order:42 paid  -> OK          acknowledged by the primary alone
    t2  WAIT 1 200         -> 0           no replica has it, and the client could know
    t3  rep.primary.kill()                kill -9
    t4  rep.promote("replica-1")          REPLICAOF NO ONE
    t5  GET order:42       -> nil         the acknowledged write is lost

``WAIT`` does not make the write durable or the system consistent; it only tells the client how
many replicas had the write when it returned.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

from ..events import EventLog
from ._base import LabObject, lab_dir, parallel, remove_dir
from .node import Node
from .proxy import LatencyProxy


class ReplicationTimeout(AssertionError):
    """A replica did not get in sync in time."""


class Replicated(LabObject):
    """A primary named "primary" and replicas "replica-1".."replica-N", each through a link proxy.

    Args:
        replicas: how many replicas.
        persistence: every node's persistence mode.
        link_delay_ms: initial one-way delay on each replica's link to the primary.
        log: the timeline.
        name: optional; starting an object with a name stops a running one of the same type and
            name first (re-running a cell in an IPython kernel does that without a name).
    """

    def __init__(self, replicas: int = 1, *, persistence: str = "none", link_delay_ms: float = 0,
                 log: EventLog | None = None, name: str | None = None) -> None:
        super().__init__(log)
        self.lab_name = name
        self.n_replicas = replicas
        self.persistence = persistence
        self.link_delay_ms = link_delay_ms
        self.nodes: list[Node] = []
        self.links: dict[str, LatencyProxy] = {}
        self._primary: Node | None = None
        self._dir: Path | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> Replicated:
        if self.nodes:
            return self
        self._dir = lab_dir("replicated")
        password = secrets.token_urlsafe(18)
        names = ["primary"] + [f"replica-{i}" for i in range(1, self.n_replicas + 1)]
        # The primary would otherwise wait 5 s for more replicas before a full sync.
        config = {"repl-diskless-sync-delay": 0}
        self.nodes = [Node(n, password=password, data_dir=self._dir / n, persistence=self.persistence,
                           config=config, log=self.log) for n in names]
        self._registered()
        try:
            parallel(lambda node: node.start(), self.nodes)
            self._primary = self.nodes[0]
            for replica in self.nodes[1:]:
                link = LatencyProxy(self._primary.port, delay_ms=self.link_delay_ms,
                                    name=f"{replica.name} link", log=self.log).start()
                self.links[replica.name] = link
                replica.r.replicaof(link.host, link.port)
            self.wait_in_sync()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop links and nodes, remove data. Idempotent."""
        for link in self.links.values():
            link.stop()
        self.links.clear()
        for node in self.nodes:
            node.stop()
        self.nodes = []
        self._primary = None
        remove_dir(self._dir)
        self._dir = None
        self._unregistered()

    # -- topology -----------------------------------------------------------------------------
    @property
    def primary(self) -> Node:
        """The node currently acting as primary (changes on :meth:`promote`)."""
        assert self._primary is not None, "start() the lab first"
        return self._primary

    @property
    def replicas(self) -> list[Node]:
        return [n for n in self.nodes if n is not self._primary]

    def __getitem__(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node named {name!r} (nodes: {', '.join(n.name for n in self.nodes)})")

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def link(self, replica: str | Node) -> LatencyProxy:
        """The proxy between ``replica`` and its primary (slow it, partition it, heal it)."""
        return self.links[_name(replica)]

    def role(self, node: str | Node) -> str:
        """What the node itself says: "master" or "slave" (INFO replication)."""
        return self[_name(node)].r.info("replication")["role"]

    def wait_in_sync(self, timeout: float = 10.0) -> None:
        """Block until every linked replica is up and has the primary's latest offset.

        (A dead former primary is not waited for until :meth:`rejoin` links it again.)
        """
        deadline = time.monotonic() + timeout
        primary = self.primary
        linked = [self[name] for name in self.links]
        while True:
            info = primary.r.info("replication")
            offset = info["master_repl_offset"]
            ok = info["connected_slaves"] == len(linked)
            if ok:
                for replica in linked:
                    rinfo = replica.r.info("replication")
                    if rinfo.get("master_link_status") != "up" or rinfo.get("slave_repl_offset", -1) < offset:
                        ok = False
                        break
            if ok:
                return
            if time.monotonic() > deadline:
                raise ReplicationTimeout(f"replicas not in sync with {primary.name} after {timeout:g} s")
            time.sleep(0.01)

    # -- writes -------------------------------------------------------------------------------
    def set_and_wait(self, key: str, value: str, *, replicas: int = 1, timeout_ms: int = 200) -> int:
        """SET on the primary, then WAIT on the same connection: how many replicas acked it.

        WAIT counts replicas that have this connection's writes, so both commands must share
        one connection: a pipeline sends them together.
        """
        pipe = self.primary.r.pipeline(transaction=False)
        pipe.set(key, value)
        pipe.execute_command("WAIT", replicas, timeout_ms)
        ok, acked = pipe.execute()
        assert ok is True
        self.log.record(self.primary.name, "write", f"SET {key} (WAIT: {acked} replica(s))")
        return int(acked)

    # -- faults -------------------------------------------------------------------------------
    def partition(self, replica: str | Node) -> None:
        """Cut ``replica`` off its primary: the link drops every byte until :meth:`heal`."""
        self.link(replica).partition()

    def heal(self, replica: str | Node) -> None:
        self.link(replica).heal()

    def promote(self, replica: str | Node) -> Node:
        """REPLICAOF NO ONE on ``replica``; the other replicas follow it. Returns the new primary.

        This is a manual failover: nothing checks that the new primary has every acknowledged
        write (that is the lesson).
        """
        node = self[_name(replica)]
        node.fault("promote (REPLICAOF NO ONE)")
        node.r.replicaof("NO", "ONE")
        old = self._primary
        self._primary = node
        link = self.links.pop(node.name, None)
        if link is not None:
            link.stop()  # it pointed at the old primary
        for other in self.replicas:
            if other is old or not other.running:
                continue
            self._relink(other)
        return node

    def rejoin(self, node: str | Node) -> None:
        """Make a (restarted) node a replica of the current primary, through a new link."""
        self._relink(self[_name(node)])

    def _relink(self, replica: Node) -> None:
        old_link = self.links.pop(replica.name, None)
        if old_link is not None:
            old_link.stop()
        link = LatencyProxy(self.primary.port, delay_ms=self.link_delay_ms,
                            name=f"{replica.name} link", log=self.log).start()
        self.links[replica.name] = link
        replica.r.replicaof(link.host, link.port)

    def __repr__(self) -> str:
        primary = self._primary.name if self._primary else None
        return f"Replicated(primary={primary!r}, replicas={[n.name for n in self.replicas] if self.nodes else []})"


def _name(node: str | Node) -> str:
    return node if isinstance(node, str) else node.name
