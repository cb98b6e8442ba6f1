"""A real Redis Cluster from the local binary: 3 masters (optionally a replica each).

Built by hand rather than with ``redis-cli --cluster create`` because it is faster and every step
is one a learner can read: give each master a range of the 16384 hash slots
(``CLUSTER ADDSLOTSRANGE``), introduce the nodes (``CLUSTER MEET``), attach replicas
(``CLUSTER REPLICATE``), wait for ``cluster_state:ok``. Redis itself keeps a fresh master from
accepting writes for its first 2 s, so a cluster is ready about 2 s after its processes start.

Moving a slot is the same dance ``redis-cli --cluster reshard`` does, one slot at a time::

    target  CLUSTER SETSLOT s IMPORTING <source-id>   accepts ASKING clients for s
    source  CLUSTER SETSLOT s MIGRATING <target-id>   missing keys of s -> ASK redirect
    source  MIGRATE target "" 0 ... KEYS k1 k2 ...     keys move atomically, batch by batch
    all     CLUSTER SETSLOT s NODE <target-id>        the target owns s; clients get MOVED

Keys stay readable throughout: a client asking the source for a key already moved gets ASK and
follows it to the target.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster

from ..events import EventLog
from ..exceptions import PortInUseError
from ..server import fail_fast_options, free_port
from ._base import LabObject, lab_dir, parallel, remove_dir
from .node import Node

SLOTS = 16384


class ClusterTimeout(AssertionError):
    """The cluster did not reach the expected state in time."""


class Cluster(LabObject):
    """A Redis Cluster: masters "m1".."mN", and replica "rI" of "mI" when ``replicas=1``.

    Node names are labels of processes, not roles: after a failover "r1" is a master. Ask
    :meth:`role` or :meth:`owner` for the current truth.

    Args:
        masters: number of masters (at least 3 for automatic failover to work).
        replicas: replicas per master (0 or more).
        persistence: every node's persistence mode.
        node_timeout_ms: ``cluster-node-timeout``: how long a silent node takes to be declared
            failed (kept short for labs).
        log: the timeline.
        name: optional; starting an object with a name stops a running one of the same type and
            name first (re-running a cell in an IPython kernel does that without a name).
    """

    def __init__(self, masters: int = 3, *, replicas: int = 0, persistence: str = "none",
                 node_timeout_ms: int = 2000, log: EventLog | None = None,
                 name: str | None = None) -> None:
        super().__init__(log)
        self.lab_name = name
        self.n_masters = masters
        self.n_replicas = replicas
        self.persistence = persistence
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[Node] = []
        self.ids: dict[str, str] = {}  # node name -> cluster node id (stable across restarts)
        self.bus_ports: dict[str, int] = {}
        self.ready_seconds: float | None = None
        self._rc: RedisCluster | None = None
        self._clients: list[RedisCluster] = []
        self._dir: Path | None = None
        self.password = ""

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> Cluster:
        if self.nodes:
            return self
        try:
            return self._form()
        except (redis.exceptions.ResponseError, ClusterTimeout):
            # Seen once on a machine running several labs at once: a fresh node was already
            # part of something else ("config epoch is already non-zero"), likely via a port a
            # stopped cluster had just used. Everything was stopped; form again on new ports.
            return self._form()

    def _form(self) -> Cluster:
        self.ids, self.bus_ports = {}, {}
        t0 = time.monotonic()
        self._dir = lab_dir("cluster")
        self.password = secrets.token_urlsafe(18)
        masters = [f"m{i}" for i in range(1, self.n_masters + 1)]
        replicas = [(f"r{i}" if self.n_replicas == 1 else f"r{i}-{j}", m)
                    for j in range(1, self.n_replicas + 1) for i, m in enumerate(masters, 1)]
        for name in masters + [r for r, _ in replicas]:
            # The bus port defaults to port + 10000, which can exceed 65535 for a free port.
            self.bus_ports[name] = free_port()
            self.nodes.append(Node(name, password=self.password, data_dir=self._dir / name,
                                   persistence=self.persistence, log=self.log, config={
                                       "cluster-enabled": "yes",
                                       "cluster-config-file": "nodes.conf",
                                       "cluster-node-timeout": self.node_timeout_ms,
                                       "cluster-port": self.bus_ports[name],
                                       # Replicas stay where they are put (lessons name them).
                                       "cluster-allow-replica-migration": "no",
                                       "repl-diskless-sync-delay": 0,
                                   }))
        self._registered()
        try:
            parallel(self._start_node, self.nodes)
            for node in self.nodes:
                self.ids[node.name] = node.r.execute_command("CLUSTER", "MYID")
            self._assign_slots(masters)
            first = self.nodes[0]
            for node in self.nodes[1:]:
                first.r.execute_command("CLUSTER", "MEET", node.host, node.port, self.bus_ports[node.name])
            self._wait(lambda: all(self._knows_all(n) for n in self.nodes), "every node to know every other")
            for replica, master in replicas:
                self[replica].r.execute_command("CLUSTER", "REPLICATE", self.ids[master])
            self.wait_ok()
            # Ready means replicated too: a manual failover needs a live replication link.
            self._wait(lambda: all(self._replica_linked(self[r]) for r, _ in replicas),
                       "every replica's link to its master")
            self._rc = self.client()
            self.ready_seconds = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node(self, node: Node, attempts: int = 5) -> None:
        for attempt in range(attempts):
            try:
                node.start()
                return
            except PortInUseError as err:
                if err.listener != "cluster" or attempt == attempts - 1:
                    raise
                # Another process (or another node's client port) took the bus port between
                # free_port() and the bind: pick another one.
                self.bus_ports[node.name] = node.server.config["cluster-port"] = free_port()

    def _assign_slots(self, masters: list[str]) -> None:
        # The same split as ``redis-cli --cluster create`` (0-5460, 5461-10922, 10923-16383),
        # so the ranges match the ones in the Redis docs.
        per_node = SLOTS / len(masters)
        start, cursor = 0, 0.0
        for i, name in enumerate(masters):
            end = SLOTS - 1 if i == len(masters) - 1 else max(start, round(cursor + per_node - 1))
            cursor += per_node
            node = self[name]
            # Distinct config epochs up front: no epoch-collision round before the cluster settles.
            node.r.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
            node.r.execute_command("CLUSTER", "ADDSLOTSRANGE", start, end)
            start = end + 1

    def stop(self) -> None:
        """Stop every node and client, remove the data. Idempotent."""
        for c in self._clients:
            try:
                c.close()
            except Exception:
                pass
        self._clients.clear()
        self._rc = None
        for node in self.nodes:
            node.stop()
        self.nodes = []
        remove_dir(self._dir)
        self._dir = None
        self._unregistered()

    # -- clients ------------------------------------------------------------------------------
    @property
    def rc(self) -> RedisCluster:
        """The lab's cluster-aware client (created at start)."""
        assert self._rc is not None, "start() the cluster first"
        return self._rc

    def client(self, **kwargs: Any) -> RedisCluster:
        """A new fail-fast ``RedisCluster``: follows MOVED/ASK, never retries a dead node."""
        startup = [ClusterNode(n.host, n.port) for n in self.nodes if n.running and not n.paused]
        # A lesson may pass its own retry policy; the rest are the lab's fail-fast options.
        c = RedisCluster(startup_nodes=startup, password=self.password, **fail_fast_options(**kwargs))
        self._clients.append(c)
        return c

    # -- inspection ---------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node named {name!r} (nodes: {', '.join(n.name for n in self.nodes)})")

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def by_id(self, node_id: str) -> Node:
        for name, nid in self.ids.items():
            if nid == node_id:
                return self[name]
        raise KeyError(f"no node with id {node_id}")

    def _any(self) -> Node:
        for node in self.nodes:
            if node.running and not node.paused:
                return node
        raise ClusterTimeout("no cluster node is up")

    def keyslot(self, key: str) -> int:
        """CLUSTER KEYSLOT: CRC16 of the key (or of its ``{tag}``) mod 16384."""
        return int(self._any().r.execute_command("CLUSTER", "KEYSLOT", key))

    def slot_table(self) -> dict[int, str]:
        """slot range start -> owning master's name, from CLUSTER SHARDS (the servers' view)."""
        table: dict[int, str] = {}
        for start, _end, name in self._ranges():
            table[start] = name
        return table

    def _ranges(self) -> list[tuple[int, int, str]]:
        ranges = []
        for entry in self._any().r.execute_command("CLUSTER", "SLOTS"):
            start, end, master = entry[0], entry[1], entry[2]
            ranges.append((int(start), int(end), self.by_id(_s(master[2])).name))
        return sorted(ranges)

    def slots_of(self, node: str | Node) -> list[str]:
        """The slot ranges a master owns, as "a-b" strings."""
        name = _name(node)
        return [f"{a}-{b}" if a != b else str(a) for a, b, owner in self._ranges() if owner == name]

    def owner(self, key: str | None = None, *, slot: int | None = None) -> Node:
        """The master that serves ``key`` (or ``slot``) right now."""
        if slot is None:
            assert key is not None, "give a key or a slot"
            slot = self.keyslot(key)
        for start, end, name in self._ranges():
            if start <= slot <= end:
                return self[name]
        raise KeyError(f"slot {slot} is not served by any master")

    def _replica_linked(self, node: Node) -> bool:
        info = node.r.info("replication")
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def role(self, node: str | Node) -> str:
        """"master" or "slave", as the node itself says."""
        return self[_name(node)].r.info("replication")["role"]

    def masters(self) -> list[str]:
        return [n.name for n in self.nodes if n.running and self.role(n) == "master"]

    def _knows_all(self, node: Node) -> bool:
        lines = node.r.execute_command("CLUSTER", "NODES").strip().splitlines()
        if len(lines) != len(self.nodes):
            return False
        return not any("handshake" in ln or "noaddr" in ln for ln in lines)

    def wait_ok(self, timeout: float = 15.0) -> None:
        """Until every running node says cluster_state:ok and agrees on who owns which slot."""
        def ok() -> bool:
            views = set()
            for node in self.nodes:
                if not node.running or node.paused:
                    continue
                if node.r.cluster("info")["cluster_state"] != "ok":
                    return False
                info = node.r.info("replication")
                if info["role"] == "slave" and info.get("master_link_status") != "up":
                    return False
                views.add(tuple((int(e[0]), int(e[1]), _s(e[2][2]))
                                for e in sorted(node.r.execute_command("CLUSTER", "SLOTS"))))
            return len(views) == 1

        self._wait(ok, "cluster_state:ok on every node", timeout)

    def _wait(self, cond: Any, what: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if cond():
                    return
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, KeyError):
                pass
            if time.monotonic() > deadline:
                dead = [n.name for n in self.nodes if not n.running]
                why = f" (node(s) {', '.join(dead)} exited: killed from outside?)" if dead else ""
                raise ClusterTimeout(f"timed out after {timeout:g} s waiting for {what}{why}")
            time.sleep(0.02)

    # -- resharding and failover --------------------------------------------------------------
    def migrate_slot(self, slot: int, to: str | Node, *, batch: int = 100) -> int:
        """Move ``slot`` and its keys to master ``to``; returns how many keys moved."""
        src, dst = self.owner(slot=slot), self[_name(to)]
        if src is dst:
            return 0
        sid, did = self.ids[src.name], self.ids[dst.name]
        dst.r.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", sid)
        src.r.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", did)
        moved = 0
        while True:
            keys = src.r.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch)
            if not keys:
                break
            src.r.execute_command("MIGRATE", dst.host, dst.port, "", 0, 5000,
                                  "AUTH", self.password, "KEYS", *keys)
            moved += len(keys)
        # The new owner first, then the old one, then everyone else (as redis-cli does).
        for node in [dst, src] + [n for n in self.nodes if n not in (src, dst) and n.running]:
            if self.role(node) == "master":
                node.r.execute_command("CLUSTER", "SETSLOT", slot, "NODE", did)
        self.log.record("cluster", "reshard", f"slot {slot}: {src.name} -> {dst.name} ({moved} keys)")
        self.wait_ok()
        return moved

    def failover(self, replica: str | Node, *, timeout: float = 15.0) -> None:
        """CLUSTER FAILOVER on ``replica``: a manual, coordinated promotion (no write lost).

        The replica asks its master to stop accepting writes, catches up with its offset, then
        takes over its slots with a new config epoch; the old master becomes its replica.
        """
        node = self[_name(replica)]
        deadline = time.monotonic() + timeout
        self._wait(lambda: self._replica_linked(node), f"{node.name}'s link to its master", timeout)
        node.fault("CLUSTER FAILOVER")
        while True:
            # Redis aborts a manual failover silently after 5 s (e.g. when the master's pause
            # reply is lost); asking again starts a fresh one.
            node.r.execute_command("CLUSTER", "FAILOVER")
            left = deadline - time.monotonic()
            try:
                self._wait(lambda: self.role(node) == "master", f"{node.name} to become master",
                           max(0.1, min(6.0, left)))
                break
            except ClusterTimeout:
                if time.monotonic() >= deadline:
                    raise
        self.wait_ok(timeout)

    def wait_promoted(self, replica: str | Node, *, timeout: float = 15.0) -> None:
        """After ``replica``'s master dies: until the replica wins the election and serves.

        Automatic failover, as Redis does it: once the master has been silent for
        ``cluster-node-timeout`` a majority of masters flag it FAIL, its replica waits a short
        random delay, asks the masters for votes and takes over the slots. Writes the dead master
        acknowledged but never sent to the replica are lost; use WAIT to narrow that window.
        """
        node = self[_name(replica)]
        self._wait(lambda: self.role(node) == "master", f"{node.name} to be elected master", timeout)
        self.wait_ok(timeout)
        self.log.record(node.name, "promoted", "elected master (automatic failover)")

    def __repr__(self) -> str:
        return f"Cluster(masters={self.n_masters}, replicas_per_master={self.n_replicas}, nodes={len(self.nodes)})"


def _name(node: str | Node) -> str:
    return node if isinstance(node, str) else node.name


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
