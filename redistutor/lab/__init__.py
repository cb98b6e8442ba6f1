"""Multi-node labs on real redis-servers: fleets, replication, a cluster, faults, workers.

Everything here runs real processes from the same local Redis 8 binary and records what happens
on one :class:`~redistutor.events.EventLog`, so a notebook can show (and assert) a timeline::

    from redistutor import lab
    with lab.Fleet(5) as fleet:
        fleet["n2"].kill()
        fleet["n2"].restart()
        print(lab.timeline_table(fleet.log))

=====================  ===========================================================
:class:`Fleet`         N independent nodes by name (Redlock needs 5)
:class:`Replicated`    a primary and replicas behind link proxies; WAIT; promotion
:class:`Cluster`       a real Redis Cluster; slots, resharding, CLUSTER FAILOVER
:class:`Node`          one node and the fault vocabulary (kill, pause, CLIENT PAUSE...)
:class:`LatencyProxy`  added latency or a partition in front of a node
:class:`Workers`       a worker function in N OS processes; kill one mid-section
=====================  ===========================================================

Every object: ``start()`` returns it, ``stop()`` is idempotent, ``with`` does both, and
:func:`stop_all` stops whatever this process still runs (a notebook's Cleanup cell). Re-running
a cell that started a lab stops what the cell's previous run started; ``name=`` replaces a running
lab of the same type and name. Labs always start their own local servers (``REDIS_URL`` is for
:func:`start_server` only). Lab clients fail fast: no retries, 1 s timeouts.
"""

from ..events import Event, EventLog
from ..server import start_server
from ._base import stop_all
from .cluster import Cluster, ClusterTimeout
from .fleet import Fleet
from .node import Node
from .proxy import LatencyProxy
from .replication import Replicated, ReplicationTimeout
from .timeline import timeline_table
from .workers import WorkerContext, Workers, run_workers

# The demo workers (``lab.lock_worker``, ``lab.counter_worker``; README, tests) live with the lab
# notebook's scenarios; re-exported lazily because that module imports the lab.
_SCENARIO_WORKERS = ("counter_worker", "lock_worker")


def __getattr__(name: str):
    if name in _SCENARIO_WORKERS:
        from ..scenarios import multi_node_lab

        return getattr(multi_node_lab, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "Cluster", "ClusterTimeout", "Event", "EventLog", "Fleet", "LatencyProxy", "Node",
    "Replicated", "ReplicationTimeout", "WorkerContext", "Workers", "counter_worker",
    "lock_worker", "run_workers", "start_server", "stop_all", "timeline_table",
]
