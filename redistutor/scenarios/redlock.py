"""The experiments of notebooks/08-redlock.ipynb, each behind a one-line helper.

The algorithm lives in :mod:`redistutor.patterns.redlock`; this module holds what the notebook
does *with* it on the lab's five nodes: crash, freeze and restart scenarios, the node x time views
of who holds the lock, reading a node's AOF from disk, contention and round-time measurements, and
the validity chart. Every helper returns plain data, a :class:`~redistutor.Table` or a timeline.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..clocks import SkewedClock
from ..events import EventLog
from ..patterns.distributed_locking import Lock
from ..patterns.redlock import Redlock, drift_ms
from ..race import wait_until
from ..tables import Table
from ..timeline import Timeline, run_threads

TTL_MS = 10_000


def clients(nodes: Sequence[Any], timeout: float = 0.5) -> list:
    """One client per node with a per-node timeout (generous: this machine is shared). The
    experiments pass them as they are (``node_timeout=None``); :func:`frozen_rounds` shows what the
    timeout costs and Redlock's short default."""
    return [n.client(socket_timeout=timeout) for n in nodes]


def flush(nodes: Sequence[Any]) -> None:
    for node in nodes:
        node.r.flushall()


# -- views ----------------------------------------------------------------------------------------

def _holder(token: Any, who: dict[str, str]) -> str:
    if token == "down":
        return "DOWN"
    return "-" if token is None else who.get(token, "someone else")


def lock_table(names: Sequence[str], node_clients: Sequence[Any], key: str, who: dict[str, str], *,
               title: str = "") -> Table:
    """Each node's lock key: which client's token it holds (``who`` = {token: name}) and its TTL."""
    rows = []
    for name, c in zip(names, node_clients):
        try:
            token, pttl = c.get(key), c.pttl(key)
            ttl = "" if token is None else f"{-(-pttl // 1000)} s left"   # whole seconds, rounded up
            rows.append([name, _holder(token, who), ttl])
        except Exception:
            rows.append([name, "DOWN", ""])
    return Table(["node", "holder", "ttl"], rows, title=title or f"who holds {key}")


def holders_table(names: Sequence[str], snapshots: Sequence[tuple[str, dict]], who: dict[str, str], *,
                  title: str = "") -> tuple[Table, list[list[str]]]:
    """A node x time view: ``snapshots`` = [(step, dlm.holders()), ...]; one column per step.
    Returns the table and the columns (one list of holders per step, in node order)."""
    cols = [[_holder(h[n], who) for n in names] for _, h in snapshots]
    rows = [[n, *(col[k] for col in cols)] for k, n in enumerate(names)]
    return Table(["node", *(step for step, _ in snapshots)], rows, title=title), cols


# -- scenarios ------------------------------------------------------------------------------------

def single_node_crash(node: Any) -> tuple[Any, Any]:
    """Notebook 07's lock on one node; the node is killed and restarted empty; a second client
    tries. (A's lock, B's lock or None)."""
    a = Lock(node.r, "report", ttl_ms=30_000).try_acquire()
    node.kill()
    node.restart()                                   # kill -9, back on the same port, empty
    b = Lock(node.r, "report", ttl_ms=30_000).try_acquire()
    node.r.flushall()
    return a, b


def two_down(fleet: Any) -> dict:
    """n4 and n5 killed; client A then client B try. Both attempts, A's keys, A released after."""
    fleet["n4"].kill()
    fleet["n5"].kill()
    a = Redlock(clients(fleet), "report", ttl_ms=TTL_MS, node_timeout=None, parallel=False)
    b = Redlock(clients(fleet), "report", ttl_ms=TTL_MS, node_timeout=None, parallel=False)
    lease_a, att_a = a.try_acquire()
    lease_b, att_b = b.try_acquire()
    table = lock_table(a.names, a.clients, a.key, {lease_a.token: "client-A"} if lease_a else {})
    keys_a = [fleet[n].r.get(a.key) for n in ("n1", "n2", "n3")]
    if lease_a:
        a.release(lease_a)
    return dict(lease_a=lease_a, att_a=att_a, lease_b=lease_b, att_b=att_b, table=table, keys_a=keys_a)


def three_down(fleet: Any) -> dict:
    """n3 killed as well: one round, then ``acquire()`` with 3 rounds; nodes restarted after."""
    fleet["n3"].kill()
    c = Redlock(clients(fleet), "report", ttl_ms=TTL_MS, retries=3, retry_delay=(0.01, 0.05), node_timeout=None,
                parallel=False)
    t0 = time.monotonic()
    lease, att = c.try_acquire()
    after_round = [fleet[n].r.exists(c.key) for n in ("n1", "n2")]
    full = c.acquire()
    failed_s = time.monotonic() - t0
    table = lock_table(c.names, c.clients, c.key, {})
    for n in ("n3", "n4", "n5"):
        fleet[n].restart()
    return dict(lease=lease, att=att, after_round=after_round, full=full, failed_s=failed_s,
                table=table, up=fleet.up())


def frozen_node(fleet: Any, node: str = "n5") -> dict:
    """Freeze ``node`` (SIGSTOP), take a Redlock with a 1 s per-node timeout, wake the node: its
    SET, waiting in the socket, lands. Then release on every node."""
    flush(fleet)
    cs = clients(fleet, timeout=1.0)
    for c in cs:
        c.ping()                                   # connect (and authenticate) before the freeze
    fleet[node].pause()                            # SIGSTOP
    dlm = Redlock(cs, "report", ttl_ms=TTL_MS, node_timeout=None, parallel=False)
    lease, att = dlm.try_acquire()
    fleet[node].resume()                           # SIGCONT: the node reads the waiting SET and runs it
    wait_until(lambda: fleet[node].r.get(dlm.key) == lease.token)
    table = lock_table(dlm.names, dlm.clients, dlm.key, {lease.token: "client-A"},
                       title=f"after {node} woke up")
    released = dlm.release(lease)
    return dict(lease=lease, att=att, table=table, released=released,
                left=[n.name for n in fleet if n.r.exists(dlm.key)])


def frozen_rounds(fleet: Any, frozen: Sequence[str] = ("n4", "n5")) -> dict:
    """``frozen`` nodes SIGSTOPped; one round each by three clients over the lab's clients (1 s
    timeouts): as given (``node_timeout=None``), with Redlock's default per-node timeout, and
    parallel (ends at the majority; with the 1 s clients, so the timeout is not what saves it).
    Releases after the nodes woke. The attempts and a Table."""
    flush(fleet)
    given = fleet.clients
    dlms = {"lab clients as given (1 s per node)": Redlock(given, "frozen-1", ttl_ms=TTL_MS, node_timeout=None,
                                                          parallel=False),
            "default timeout (50 ms per node)": Redlock(given, "frozen-2", ttl_ms=TTL_MS, parallel=False),
            "parallel, ends at the majority": Redlock(given, "frozen-3", ttl_ms=TTL_MS, parallel=True,
                                                      node_timeout=None)}   # 1 s: not what saves it
    for dlm in dlms.values():
        for c in dlm.clients:
            c.ping()                               # connected before the freeze
    for name in frozen:
        fleet[name].pause()
    try:
        rounds = {label: dlm.try_acquire() for label, dlm in dlms.items()}
    finally:
        for name in frozen:
            fleet[name].resume()
    for label, dlm in dlms.items():
        lease = rounds[label][0]
        if lease is not None:
            dlm.release(lease)
        dlm.close()
    wait_until(lambda: not any(n.r.exists(d.key) for n in fleet for d in dlms.values()))
    atts = {label: att for label, (_, att) in rounds.items()}
    rows = [[label, " ".join(a.ok), " ".join(sorted(a.failed)) or "-", " ".join(a.pending) or "-",
             a.elapsed_ms, a.validity_ms, TTL_MS - a.validity_ms] for label, a in atts.items()]
    table = Table(["round", "OK", "timed out", "pending", "elapsed ms", "validity ms", "lost ms"], rows,
                  fmt={"elapsed ms": ".1f", "validity ms": ".0f", "lost ms": ".0f"},
                  title=f"{' and '.join(frozen)} frozen, TTL {TTL_MS} ms")
    return dict(attempts=atts, table=table)


def restart_scenario(fleet: Any, log: EventLog, *, delay_restart: bool, ttl_ms: int = 1500) -> dict:
    """n4, n5 down: client 1 locks n1 n2 n3; n4, n5 back empty; n3 killed; client 2 tries (must
    fail); n3 restarts (at once, or only after client 1's lock is over); client 2 tries again."""
    log.clear()
    flush(fleet)
    one = Redlock(clients(fleet), "report", ttl_ms=ttl_ms, node_timeout=None, parallel=False)
    two = Redlock(clients(fleet), "report", ttl_ms=ttl_ms, retries=1, node_timeout=None, parallel=False)
    fleet["n4"].kill()
    fleet["n5"].kill()
    lease1 = one.acquire()
    log.record("client-1", "acquire", " ".join(lease1.nodes))
    snaps = [("1 acquires", one.holders())]
    fleet["n4"].restart()
    fleet["n5"].restart()
    fleet["n3"].kill()
    blocked = two.acquire()                              # n3 down, n1 n2 refuse: must fail
    if delay_restart:                                    # wait until client 1's lock is over
        wait_until(lambda: one.remaining_ms(lease1) <= 0
                   and not any(fleet[n].r.exists(one.key) for n in ("n1", "n2")))
        log.record("client-1", "expire", "validity over, keys expired")
    fleet["n3"].restart()
    snaps.append(("n3 back", one.holders()))
    lease2 = two.acquire()
    snaps.append(("2 acquires", one.holders()))
    if lease2:
        log.record("client-2", "acquire", " ".join(lease2.nodes))
    one_still = one.remaining_ms(lease1) > 0             # client 1's own view of its lock
    if one_still:
        log.record("client-1", "release")
        one.release(lease1)
    if lease2:
        log.record("client-2", "release")
        two.release(lease2)
    who = {lease1.token: "client-1", **({lease2.token: "client-2"} if lease2 else {})}
    title = "n3 restarted after the TTL" if delay_restart else "n3 restarted at once, empty"
    table, cols = holders_table(one.names, snaps, who, title=f"who holds the lock: {title}")
    return dict(lease1=lease1, blocked=blocked, lease2=lease2, one_still=one_still, table=table, cols=cols,
                timeline=Timeline(log, end_kind=("release", "expire"), title=title))


def aof_commands(node: Any) -> list[list[str]]:
    """The commands in a node's append-only file(s), read from disk (RESP arrays, in order)."""
    files = sorted(Path(node.data_dir).glob("**/*.incr.aof")) or sorted(Path(node.data_dir).glob("**/*.aof"))
    out = []
    for f in files:
        data = f.read_bytes()
        i = 0
        while i < len(data):
            if data[i:i + 1] != b"*":                     # not a command (e.g. an RDB preamble): skip
                i = data.index(b"\n", i) + 1 if b"\n" in data[i:] else len(data)
                continue
            end = data.index(b"\r\n", i)
            n = int(data[i + 1:end])
            i = end + 2
            cmd = []
            for _ in range(n):
                end = data.index(b"\r\n", i)
                size = int(data[i + 1:end])
                cmd.append(data[end + 2:end + 2 + size].decode(errors="replace"))
                i = end + 2 + size + 2
            out.append(cmd)
    return out


def persistence_scenario(fleet: Any, log: EventLog, node_factory: Callable[..., Any], *,
                         persistence: str = "aof-everysec") -> dict:
    """n3 replaced by a node with an AOF (``persistence``). n4, n5 down: client 1 locks n1 n2 n3;
    n4, n5 back; n3 killed and restarted at once; client 2 tries. Also: the SET as the AOF on
    disk recorded it."""
    n3 = node_factory("n3-aof", persistence=persistence, log=log).start()
    nodes = [fleet["n1"], fleet["n2"], n3, fleet["n4"], fleet["n5"]]
    names = ["n1", "n2", "n3-aof", "n4", "n5"]
    try:
        flush(nodes)
        one = Redlock(clients(nodes), "report", names=names, ttl_ms=TTL_MS, node_timeout=None, parallel=False)
        two = Redlock(clients(nodes), "report", names=names, ttl_ms=TTL_MS, node_timeout=None, parallel=False)
        fleet["n4"].kill()
        fleet["n5"].kill()
        lease1 = one.acquire()
        fleet["n4"].restart()
        fleet["n5"].restart()
        # Under everysec a slow background fsync may hold the AOF write back (up to 2 s) while
        # clients already have their replies: wait until the buffer reached the OS, so the kill
        # tests what it claims (a process crash), not that corner.
        wait_until(lambda: not n3.r.info("persistence").get("aof_buffer_length", 0))
        n3.kill()
        n3.restart()                                     # immediately
        lease2, att2 = two.try_acquire()
        table = lock_table(names, one.clients, one.key, {lease1.token: "client-1"},
                           title="after n3-aof's kill -9 and immediate restart")
        kept = (n3.r.get(one.key), n3.r.pttl(one.key))
        aof = [c for c in aof_commands(n3) if c[:1] == ["SET"] and c[1:2] == [one.key]]
        one.release(lease1)
    finally:
        n3.stop()
    return dict(lease1=lease1, lease2=lease2, att2=att2, table=table, kept=kept, aof_sets=aof)


def clock_jump(fleet: Any, missed: Sequence[str]) -> dict:
    """Client 1 locks while ``missed`` nodes are down; n3's clock then jumps (its key expires
    early: PEXPIRE 1); client 2 tries."""
    flush(fleet)
    one = Redlock(clients(fleet), "jump", ttl_ms=TTL_MS, node_timeout=None, parallel=False)
    two = Redlock(clients(fleet), "jump", ttl_ms=TTL_MS, node_timeout=None, parallel=False)
    for n in missed:
        fleet[n].kill()
    lease1 = one.acquire()
    for n in missed:
        fleet[n].restart()
    fleet["n3"].fault("clock jump: lock key expires early (PEXPIRE 1)")
    fleet["n3"].r.pexpire(one.key, 1)
    wait_until(lambda: not fleet["n3"].r.exists(one.key))
    lease2, att2 = two.try_acquire()
    result = dict(nodes1=lease1.nodes, ok2=att2.ok, lease2=lease2, still=one.remaining_ms(lease1) > 0)
    one.release(lease1)
    if lease2:
        two.release(lease2)
    return result


def slow_clock(fleet: Any, *, rate: float = 0.5, ttl_ms: int = 1000) -> dict:
    """Two clients take two locks at once, one with an honest clock and one whose clock runs at
    ``rate``; once every key of both is gone, each says how much validity it thinks it has left,
    and a third client takes the slow client's lock."""
    flush(fleet)
    honest = Redlock(clients(fleet), "honest", ttl_ms=ttl_ms, node_timeout=None, parallel=False)
    slow = Redlock(clients(fleet), "slow", ttl_ms=ttl_ms, clock=SkewedClock(rate), node_timeout=None,
                   parallel=False)
    h_lease, s_lease = honest.acquire(), slow.acquire()
    t0 = time.monotonic()
    wait_until(lambda: not any(c.exists(honest.key) or c.exists(slow.key) for c in honest.clients))
    keys_gone_ms = (time.monotonic() - t0) * 1000
    h_left, s_left = honest.remaining_ms(h_lease), slow.remaining_ms(s_lease)
    intruder = Redlock(clients(fleet), "slow", ttl_ms=ttl_ms, node_timeout=None, parallel=False).acquire()
    s_left_now = slow.remaining_ms(s_lease)
    honest.release(h_lease)
    slow.release(s_lease)
    flush(fleet)
    return dict(keys_gone_ms=keys_gone_ms, honest_left=h_left, slow_left=s_left, slow_left_now=s_left_now,
                intruder=intruder is not None, trust_window_ms=s_lease.validity_ms / rate - ttl_ms)


def contention(fleet: Any, *, threads: int = 5, rounds: int = 10) -> tuple[EventLog, Timeline]:
    """``threads`` clients compete for one Redlock, ``rounds`` critical sections each."""
    busy = EventLog()
    shared = clients(fleet)

    def contender(actor: str, log: EventLog) -> None:
        mine = Redlock(shared, "busy", ttl_ms=5000, retries=1000, retry_delay=(0.001, 0.01), node_timeout=None,
                       parallel=False)
        for _ in range(rounds):
            lease = mine.acquire()
            log.record(actor, "acquire", " ".join(lease.nodes))
            time.sleep(0.002)                                   # the critical section
            log.record(actor, "release")
            mine.release(lease)

    run_threads(contender, threads, log=busy)
    return busy, Timeline(busy, title=f"{threads} clients x {rounds} Redlock sections")


def round_times(fleet: Any, n: int = 200) -> Table:
    """Median round time and lowest validity over ``n`` rounds each: sequential SETs, and parallel
    (a thread per node, the round ends when a majority said OK)."""
    rows = []
    for parallel in (False, True):
        d = Redlock(clients(fleet), "bench", ttl_ms=TTL_MS, parallel=parallel, node_timeout=None)
        times, validity = [], []
        for _ in range(n):
            lease, att = d.try_acquire()
            times.append(att.elapsed_ms)
            validity.append(att.validity_ms)
            if lease is not None:
                d.release(lease)
        d.close()
        label = "parallel (a thread per node, ends at 3 OK)" if parallel else "sequential"
        rows.append([label, statistics.median(times), min(validity)])
    return Table(["round", "median ms", "lowest validity ms"], rows,
                 fmt={"median ms": ".2f", "lowest validity ms": ".0f"}, title=f"{n} rounds each, TTL {TTL_MS} ms")


def plot_validity(rounds: Sequence[tuple[str, Any]], ttl_ms: int = TTL_MS) -> None:
    """Where each round's TTL went: elapsed, drift allowance, validity left (one bar per round)."""
    from .. import charts

    fig, ax = charts.figure("Where the TTL goes", xlabel=f"ms of the {ttl_ms} ms TTL", ylabel="round",
                            width=8, height=2.2)
    for y, (_label, att) in enumerate(rounds):
        ax.barh(y, att.elapsed_ms, color=charts.BAD, label="elapsed" if y == 0 else None)
        ax.barh(y, drift_ms(ttl_ms), left=att.elapsed_ms, color=charts.PALETTE[1], label="drift" if y == 0 else None)
        ax.barh(y, att.validity_ms, left=att.elapsed_ms + drift_ms(ttl_ms), color=charts.NEUTRAL,
                label="validity" if y == 0 else None)
    ax.set_yticks(range(len(rounds)), [label for label, _ in rounds])
    ax.invert_yaxis()
    charts.finish(ax, summary="in this run the rounds took " + ", ".join(
        f"{att.elapsed_ms:.1f} ms ({label})" for label, att in rounds))
