"""Exercises for notebooks/00-multi-node-lab.ipynb: faults on real processes, checked on real state.

* :func:`persistence_prediction` (Try it): predict how many acknowledged writes a kill -9 loses
  under one persistence mode; the check runs the trial and compares.
* :func:`wait_exercise`: ``write_and_wait(r, key, value) -> int``, a write and a WAIT on the
  same connection. Checked with a healthy replica (must report 1) and with the replica's link
  cut (must report 0: a WAIT from a connection that never wrote would report 1).
* :func:`failover_exercise`: ``fail_over(cluster, key) -> str``: kill -9 the master that owns
  ``key`` and return once the key is served again, with the name of the node serving it.
"""

from __future__ import annotations

import inspect

import redis

from ..check import Exercise, expect
from ..race import wait_until
from ..scenarios.multi_node_lab import PERSISTENCE_MODES, persistence_trial

# -- Try it ---------------------------------------------------------------------------------------

def persistence_prediction(mode: str, *, writes: int = 20, log=None) -> Exercise:
    """Predict how many of ``writes`` acknowledged writes one kill -9 loses under ``mode``."""

    def checker(answer) -> None:
        expect(mode in PERSISTENCE_MODES, "mode is one of the lab's persistence modes",
               expected=list(PERSISTENCE_MODES), actual=mode)
        expect(isinstance(answer, int) and not isinstance(answer, bool),
               f"the answer is a number of writes (0 to {writes})",
               expected="an int", actual=answer)
        trial = persistence_trial(mode, cycles=1, writes=writes, snapshot_after_first=False, log=log)
        expect(answer == trial["lost"],
               f"under {mode!r}, a kill -9 right after {writes} acknowledged writes loses "
               f"{trial['lost']} of them (the AOF is written to the OS before each reply; an RDB "
               f"snapshot keeps only what it had when it was taken)",
               expected=trial["lost"], actual=answer)

    def reference(m: str = mode) -> int:
        return 0 if m.startswith("aof") else writes

    return Exercise(f"what kill -9 loses under {mode!r}", checker, hints=[
        "kill -9 ends the process; the operating system (and its page cache) keeps running.",
        "Redis hands each AOF write to the OS before it replies, whatever the fsync policy; "
        "without an AOF only the last snapshot comes back.",
    ], solution=f"my_answer = {reference()}", reference=reference())


# -- Exercise 1: WAIT on the writing connection ---------------------------------------------------

def write_and_wait(r: redis.Redis, key: str, value: str) -> int:
    p = r.pipeline(transaction=False)   # one connection for both commands
    p.set(key, value)
    p.wait(1, 500)                       # replicas that have THIS connection's write (500 ms max)
    _, acked = p.execute()
    return acked


def wait_exercise(rep, prefix: str = "ex1") -> Exercise:
    """``write_and_wait(r, key, value) -> int`` on ``rep`` (a started ``lab.Replicated(1)``)."""

    def checker(answer) -> None:
        rep.primary.r.delete(f"{prefix}:healthy", f"{prefix}:cut")
        rep.wait_in_sync()
        replica = rep.replicas[0]
        r = rep.primary.client(socket_timeout=5)  # room for a WAIT timeout of a few seconds
        try:
            got = answer(r, f"{prefix}:healthy", "v1")
            expect(type(got) is int, "write_and_wait returns the number WAIT replied (an int)",
                   expected="an int", actual=got)
            expect(got == 1, "with a healthy replica, WAIT reports 1 replica", expected=1, actual=got)
            expect(replica.r.get(f"{prefix}:healthy") == "v1", "the replica has the write WAIT counted",
                   expected="v1", actual=replica.r.get(f"{prefix}:healthy"))
            rep.partition(replica)
            try:
                got = answer(r, f"{prefix}:cut", "v2")
            finally:
                rep.heal(replica)
            expect(rep.primary.r.get(f"{prefix}:cut") == "v2", "the write itself was made on the primary",
                   expected="v2", actual=rep.primary.r.get(f"{prefix}:cut"))
            expect(got == 0,
                   "with the replica's link cut, WAIT must report 0: nobody has the write. A WAIT "
                   "sent from a connection that never wrote counts replicas for *that* connection's "
                   "(empty) history and reports 1 at once: send the SET and the WAIT on one connection",
                   expected=0, actual=got)
        finally:
            r.close()
            rep.wait_in_sync()

    return Exercise("write, then WAIT on the same connection", checker, hints=[
        "WAIT counts replicas that acknowledged the last write of the connection it is sent on.",
        "A pipeline sends both on one connection: p = r.pipeline(transaction=False); p.set(...); "
        "p.wait(1, 500); p.execute() returns [True, n].",
    ], solution=inspect.getsource(write_and_wait), reference=write_and_wait)


# -- Exercise 2: kill the key's master, wait until it is served again -----------------------------

def fail_over(cluster, key: str) -> str:
    old = cluster.owner(key)          # the master serving the key's slot (CLUSTER SLOTS)
    old.kill()
    wait_until(lambda: cluster.owner(key) is not old, 20, "a replica to be elected for those slots", step=0.05)
    cluster.wait_ok()                 # every node agrees, cluster_state:ok
    return cluster.owner(key).name


def _restore(cluster) -> None:
    """Bring back every node the answer killed (as a replica of whoever replaced it)."""
    for node in cluster:
        if not node.running:
            node.restart()
    cluster.wait_ok(timeout=30)


def failover_exercise(cluster, prefix: str = "ex2") -> Exercise:
    """``fail_over(cluster, key) -> str`` on ``cluster`` (a started ``lab.Cluster(3, replicas=1)``)."""

    def checker(answer) -> None:
        cluster.wait_ok()
        key, value = f"{prefix}:order", "survives the crash"
        owner = cluster.owner(key)
        p = owner.r.pipeline(transaction=False)
        p.set(key, value)
        p.wait(1, 2000)
        assert p.execute()[1] == 1, "the replica did not acknowledge the exercise's write"
        try:
            got = answer(cluster, key)
            expect(not owner.running, f"the master that owned the key ({owner.name}) was killed",
                   expected=f"{owner.name} down", actual=f"{owner.name} still running")
            now = cluster.owner(key)
            expect(now is not owner, "when fail_over returns, another node serves the key's slot "
                   "(the dead master's replica must be elected first)",
                   expected="a new owner", actual=f"still {owner.name} (dead)")
            try:
                read = now.r.get(key)
            except redis.exceptions.ResponseError as exc:
                read = f"error: {exc}"
            expect(read == value, f"the new owner {now.name} serves the key", expected=value, actual=read)
            expect(got == now.name, "fail_over returns the name of the node now serving the key",
                   expected=now.name, actual=got)
        finally:
            _restore(cluster)

    return Exercise("fail over the key's master", checker, hints=[
        "cluster.owner(key) is the master serving the key right now; node.kill() is kill -9.",
        "After the kill, poll cluster.owner(key) until it is another node (the election takes a "
        "couple of seconds), then cluster.wait_ok() before you return its name.",
    ], solution=inspect.getsource(fail_over), reference=fail_over)
