"""Scenarios for notebooks/07-distributed-locking.ipynb: the late-DEL race, the killed holder,
the long job with and without a watchdog, the paused holder and its late write, contention, and
the failovers that lose (or keep) a lock; plus the worker processes they run.

Each helper is one line in the notebook and returns plain data (dicts, event logs) or a view;
the pattern itself lives in ``redistutor/patterns/distributed_locking.py``.
"""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from typing import Any

from .. import lab
from ..db import Database
from ..events import EventLog
from ..patterns.distributed_locking import FencedResource, Lock, TokenLock, Watchdog
from ..race import PausePoint, run_in_thread, wait_until
from ..tables import Table
from ..timeline import run_threads

__all__ = [
    "DelLock", "contention", "countdown_chart", "del_race", "events_table", "failover",
    "fenced_writer_worker", "holding_worker", "killed_holder", "long_job", "paused_holder",
    "state_table", "uncontended_ms", "wait_until", "waits_chart",
]


class DelLock(TokenLock):
    """The naive release, for the lesson and its tests: a plain DEL, whoever holds the lock now."""

    def release(self, token):
        return bool(self.r.delete(self.key))


def events_table(log: EventLog, title: str = "") -> Table:
    """The events of a run in order (no times: the order is the story)."""
    return Table(["#", "actor", "event", "detail"],
                 [(i, e.actor, e.kind, e.detail) for i, e in enumerate(log.events, 1)], title=title)


# -- the late DEL ---------------------------------------------------------------------------------


def del_race(r, lock_cls: type = TokenLock, key: str = "lock:report") -> dict:
    """A's lock (PX 150) expires while A is frozen before its release (a pause point); B takes
    the lock; A releases late; then C tries. ``lock_cls`` is a TokenLock-like class."""
    r.delete(key)
    log, pause = EventLog(), PausePoint("before A's release")
    a, other = lock_cls(r, key, ttl_ms=150), lock_cls(r, key, ttl_ms=5000)  # other: what B and C run
    token_a = a.acquire()
    log.record("A", "acquire", "PX 150")

    def a_finishes():  # A's job ends with a release, but A is frozen just before it
        pause()
        return a.release(token_a)

    finishing = run_in_thread(a_finishes, thread_name="A")
    pause.wait_reached()
    wait_until(lambda: not r.exists(key))
    log.record("A", "expire", "PX ran out")
    token_b = other.acquire()
    log.record("B", "acquire", "PX 5000")
    pause.release()
    a_released = finishing.result(timeout=10)
    log.record("A", "late release", "deleted the key" if a_released else "refused: not our token")
    holder_after = r.get(key)
    token_c = other.acquire()
    if token_c:
        log.record("C", "acquire", "PX 5000")
    log.record("B", "release")
    b_released = other.release(token_b)
    if token_c:
        log.record("C", "release")
        other.release(token_c)
    return dict(log=log, a_released=a_released, b_token=token_b, holder_after=holder_after,
                c_got_it=token_c is not None, b_released=b_released)


# -- worker processes (lab.Workers): importable, module-level -------------------------------------


def holding_worker(ctx: Any, name: str, prefix: str, ttl_ms: int, *, hold: float = 60.0) -> None:
    """Take the lock, record "acquire" (detail: fence and token), then hold it for ``hold`` s.

    The lab kills this process with SIGKILL while it holds the lock: it never releases.
    """
    lock = Lock(ctx.client(0), name, prefix=prefix, ttl_ms=ttl_ms)
    lease = lock.acquire(timeout=30)
    if lease is None:
        ctx.record("give-up", lock.key)
        return
    ctx.record("acquire", f"fence {lease.fence} token {lease.token}")
    time.sleep(hold)
    released = lock.release(lease)
    ctx.record("release", "released" if released else "lock was no longer ours")


def fenced_writer_worker(ctx: Any, name: str, prefix: str, ttl_ms: int, db_path: str, gate: str,
                         value: str, *, fenced: bool = True, table: str = "fenced_resource") -> None:
    """Take the lock, wait for ``gate`` to be set (the job's input), write to the resource.

    Records "acquire" (detail ``fence N``), then "write" (detail "accepted"/"rejected"), then
    "release". The lab pauses this process (SIGSTOP) while it holds the lock and lets the lock
    expire before it resumes, so its write arrives late, carrying an old fencing token.
    """
    r = ctx.client(0)
    db = Database(path=db_path)
    try:
        resource = FencedResource(db, table)
        lock = Lock(r, name, prefix=prefix, ttl_ms=ttl_ms)
        lease = lock.acquire(timeout=30)
        if lease is None:
            ctx.record("give-up", lock.key)
            return
        ctx.record("acquire", f"fence {lease.fence}")
        give_up = time.monotonic() + 60
        while not r.exists(gate) and time.monotonic() < give_up:
            time.sleep(0.01)  # plain polling: survives SIGSTOP/SIGCONT without socket timeouts
        ok = (resource.write if fenced else resource.write_unfenced)(name, value, lease.fence)
        ctx.record("write", f"{value} fence {lease.fence} {'accepted' if ok else 'rejected'}")
        released = lock.release(lease)
        ctx.record("release", "released" if released else "lock was no longer ours")
    finally:
        db.close()


# -- kill -9 the holder ---------------------------------------------------------------------------


def killed_holder(server, r, prefix: str, ttl_ms: int = 2000, name: str = "nightly") -> dict:
    """A worker process takes ``<prefix>:{name}`` and is killed with SIGKILL; we try at once,
    then poll until we get the lock, recording (holder token, PTTL, ms since the kill)."""
    log = EventLog()
    holder = lab.Workers(holding_worker, 1, nodes=[server], log=log, args=(name, prefix, ttl_ms)).start()
    lock = Lock(r, name, prefix=prefix, ttl_ms=ttl_ms)
    try:
        got = holder.wait_for("acquire", timeout=30)
        holder.kill("w1")                                   # kill -9: no finally, no release
        killed_at = time.monotonic()
        token_at_kill, pttl_at_kill = r.get(lock.key), r.pttl(lock.key)
        right_away = lock.try_acquire()
        countdown, lease = [], None
        while lease is None and time.monotonic() - killed_at < 10:
            lease = lock.try_acquire()
            if lease is None:
                countdown.append((r.get(lock.key), r.pttl(lock.key), (time.monotonic() - killed_at) * 1000))
                time.sleep(0.02)
        waited_ms = (time.monotonic() - killed_at) * 1000
        log.record("w1", "expire", "PX ran out")
        log.record("notebook", "acquire", f"fence {lease.fence if lease else None}")
        exitcode = holder.exitcodes["w1"]
        if lease:
            lock.release(lease)
    finally:
        holder.stop()
    _, fence, _, token = got.detail.split()
    return dict(log=log, key=lock.key, ttl_ms=ttl_ms, exitcode=exitcode, dead_token=token,
                dead_fence=int(fence), token_at_kill=token_at_kill, pttl_at_kill=pttl_at_kill,
                right_away=right_away, countdown=countdown, lease=lease, waited_ms=waited_ms)


def countdown_chart(run: dict) -> None:
    """The dead holder's PTTL against time since the kill, with a one-line summary."""
    from .. import charts

    fig, ax = charts.figure("The dead holder's lock counting down", xlabel="time since kill -9 (ms)",
                            ylabel="PTTL of the lock (ms)", height=2.8)
    ax.plot([ms for *_, ms in run["countdown"]], [p for _, p, _ in run["countdown"]], ".-",
            markersize=3, label="PTTL seen by a refused attempt")
    ax.axhline(0, color="grey", linewidth=0.8)
    charts.finish(ax, summary=f"in this run PTTL was {run['pttl_at_kill']} ms right after the kill, "
                  f"{len(run['countdown'])} attempts were refused, and the lock was ours "
                  f"{run['waited_ms']:.0f} ms after the kill (PX {run['ttl_ms']})")


# -- a job longer than its TTL --------------------------------------------------------------------


def long_job(r, prefix: str, *, watchdog: bool, ttl_ms: int = 600, interval_ms: float | None = None,
             name: str | None = None) -> dict:
    """A job holds a ``ttl_ms`` lock and works for 3 x TTL while a rival polls the same lock every
    10 ms. The job also waits until the rival has tried 3 times after the 2 x TTL mark, so every
    run gives the rival the same chance. ``interval_ms``: the watchdog's (default TTL/3)."""
    name = name or "import-" + ("watchdog" if watchdog else "plain")
    log = EventLog()
    job_lock, rival_lock = Lock(r, name, prefix=prefix, ttl_ms=ttl_ms), Lock(r, name, prefix=prefix, ttl_ms=ttl_ms)
    lease = job_lock.try_acquire()
    log.record("job", "acquire", f"PX {ttl_ms}")
    dog = None
    if watchdog:
        dog = Watchdog(job_lock, lease, interval=None if interval_ms is None else interval_ms / 1000).start()
    started, done, late_tries = time.monotonic(), threading.Event(), [0]

    def rival():
        held = None
        while not done.is_set():
            if held is None:
                held = rival_lock.try_acquire()
                if held:
                    log.record("rival", "acquire")
            if time.monotonic() - started > 2 * ttl_ms / 1000:
                late_tries[0] += 1
            time.sleep(0.01)
        if held:
            log.record("rival", "release")
            rival_lock.release(held)

    racing = run_in_thread(rival, thread_name="rival")
    while time.monotonic() - started < 3 * ttl_ms / 1000 or late_tries[0] < 3:
        time.sleep(0.01)                                    # the job's work
    log.record("job", "release")
    done.set()
    racing.result(timeout=10)
    if dog:
        dog.stop()
    return dict(log=log, released=job_lock.release(lease), renewals=dog.renewals if dog else 0,
                lost=dog.lost.is_set() if dog else None, seconds=time.monotonic() - started,
                ttl_ms=ttl_ms, interval_ms=(dog.interval * 1000) if dog else None)


# -- a holder frozen past its TTL -----------------------------------------------------------------


def paused_holder(server, r, db: Database, prefix: str, *, fenced: bool) -> dict:
    """Worker A takes the lock (PX 500) and is frozen (SIGSTOP) before its write; its key expires;
    B takes the lock and writes; A is woken (SIGCONT) and writes late, with its old fence."""
    name = "invoice-" + ("fenced" if fenced else "plain")
    resource, log = FencedResource(db), EventLog()
    gate = f"{prefix}:gate:{name}"                       # A writes once this key exists (its "input")
    worker = lab.Workers(fenced_writer_worker, 1, nodes=[server], log=log,
                         args=(name, prefix, 500, str(db.path), gate, "from-A"), kwargs={"fenced": fenced}).start()
    try:
        worker.wait_for("acquire", timeout=30)
        worker.pause("w1")                                   # SIGSTOP
        b_lock = Lock(r, name, prefix=prefix, ttl_ms=500)
        wait_until(lambda: not r.exists(b_lock.key))
        log.record("w1", "expire", "PX ran out while frozen")
        lease_b = b_lock.acquire(timeout=5)
        log.record("B", "acquire", f"fence {lease_b.fence}")
        (resource.write if fenced else resource.write_unfenced)(name, "from-B", lease_b.fence)
        log.record("B", "write", f"from-B fence {lease_b.fence}")
        b_lock.release(lease_b)
        log.record("B", "release")
        r.set(gate, 1)
        worker.resume("w1")                                  # SIGCONT
        late = worker.wait_for("write", timeout=30)
        worker.join(30)
    finally:
        if worker.procs["w1"].is_alive():
            os.kill(worker.pids["w1"], signal.SIGCONT)
        worker.stop()
        r.delete(gate)
    return dict(log=log, late_write=late.detail, row=resource.read(name), lock=b_lock)


# -- contention -----------------------------------------------------------------------------------


def contention(r, prefix: str, counter: str, *, threads: int = 8, sections: int = 25, fair: bool = False) -> dict:
    """``threads`` threads each run ``sections`` read-modify-write sections under one lock
    (``fair``: with the hand-off in arrival order instead of random-sleep retries)."""
    r.set(counter, 0)
    shared = Lock(r, "counter", prefix=prefix, ttl_ms=5000, fair=fair)
    waits: list[float] = []

    def worker(actor: str, log: EventLog) -> None:
        for _ in range(sections):
            asked = time.monotonic()
            lease = shared.acquire(timeout=30)
            waits.append((time.monotonic() - asked) * 1000)
            log.record(actor, "acquire")
            value = int(r.get(counter))
            time.sleep(0.001)                                # the work between the read and the write
            r.set(counter, value + 1)
            log.record(actor, "release")
            shared.release(lease)

    log = EventLog()
    t0 = time.monotonic()
    run_threads(worker, threads, log=log)
    return dict(log=log, waits_ms=sorted(waits), seconds=time.monotonic() - t0, counter=r.get(counter),
                sections=threads * sections)


def uncontended_ms(r, prefix: str, n: int = 300) -> list[float]:
    """Milliseconds per acquire + release (two round trips) with nobody else around."""
    solo = Lock(r, "solo", prefix=prefix, ttl_ms=5000)
    cycle = []
    for _ in range(n):
        t = time.perf_counter()
        solo.release(solo.try_acquire())
        cycle.append((time.perf_counter() - t) * 1000)
    return sorted(cycle)


def waits_chart(busy: dict, solo_ms: list[float]) -> None:
    """How long each critical section waited for the lock (sorted), with a one-line summary."""
    from .. import charts

    waits = busy["waits_ms"]
    fig, ax = charts.figure("Waiting for the lock, 8 contending threads", xlabel="sections, sorted by wait (%)",
                            ylabel="wait for the lock (ms)", height=2.8)
    ax.plot([100 * (i + 1) / len(waits) for i in range(len(waits))], waits, label="wait per section")
    p50, p99 = statistics.median(waits), waits[int(len(waits) * 0.99) - 1]
    charts.finish(ax, summary=f"in this run: uncontended acquire + release p50 {statistics.median(solo_ms):.2f} ms; "
                  f"contended {busy['sections'] / busy['seconds']:.0f} sections/s, wait p50 {p50:.1f} ms, "
                  f"p99 {p99:.1f} ms")


class _Arrival(Lock):
    """A Lock that says when its first attempt was refused: the moment its thread "arrived"."""

    def __init__(self, *args: Any, arrived: threading.Event, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrived = arrived

    def try_acquire(self, token: str | None = None, **kwargs: Any):
        lease = super().try_acquire(token, **kwargs)
        if lease is None:
            self.arrived.set()
        return lease


def line_up(r, prefix: str, *, fair: bool, waiters: int = 5, hold_s: float = 0.002) -> dict:
    """A holder; ``waiters`` threads arrive one after another (each refused once before the next
    starts); the holder releases and at once asks again (it arrives last). Each holds
    ``hold_s``. Returns the arrival order, the grant order and each one's wait in ms."""
    name = f"line-{'fair' if fair else 'retry'}"
    holder = Lock(r, name, prefix=prefix, ttl_ms=5000, fair=fair)
    first = holder.acquire(timeout=5)
    granted: list[str] = []
    waits: dict[str, float] = {}
    guard = threading.Lock()

    def take(who: str, lock: Lock) -> None:
        asked = time.monotonic()
        lease = lock.acquire(timeout=30)
        with guard:
            granted.append(who)
            waits[who] = (time.monotonic() - asked) * 1000
        time.sleep(hold_s)
        lock.release(lease)

    threads, arrival = [], []
    for i in range(1, waiters + 1):
        arrived = threading.Event()
        lock = _Arrival(r, name, prefix=prefix, ttl_ms=5000, fair=fair, arrived=arrived)
        t = threading.Thread(target=take, args=(f"waiter {i}", lock), name=f"waiter-{i}")
        t.start()
        arrived.wait(5)
        arrival.append(f"waiter {i}")
        threads.append(t)
    holder.release(first)
    arrival.append("releaser")
    take("releaser", holder)                           # the releaser asks again at once
    for t in threads:
        t.join(30)
    return dict(arrival=arrival, granted=granted, waits_ms=waits)


def fairness(r, prefix: str, counter: str, *, threads: int = 8, sections: int = 25) -> dict:
    """Random-sleep retry vs fair hand-off, in one run: the line-up (grant vs arrival order) and
    the contention run (every wait), for each mode."""
    out = {}
    for label, fair in (("random-sleep retry", False), ("fair hand-off", True)):
        out[label] = dict(line=line_up(r, prefix, fair=fair),
                          busy=contention(r, prefix, counter, threads=threads, sections=sections, fair=fair))
    return out


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(round(0.99 * (len(ordered) - 1))))]


def fairness_table(run: dict) -> Table:
    rows = []
    for label, res in run.items():
        line, busy = res["line"], res["busy"]
        rows.append([label, " ".join(w.replace("waiter ", "w") for w in line["granted"]),
                     statistics.median(busy["waits_ms"]), p99(busy["waits_ms"]), busy["counter"]])
    return Table(["acquire", "grant order (arrival: w1 .. w5, releaser)", "wait p50 ms", "wait p99 ms", "counter"],
                 rows, fmt={"wait p50 ms": ".1f", "wait p99 ms": ".1f"},
                 title="one lock, the same run: arrival vs grant order, and every wait of the contention run")


def fairness_chart(run: dict) -> None:
    """Every wait of each mode's contention run, sorted; the summary gives p50 and p99."""
    from .. import charts

    fig, ax = charts.figure("Waiting for the lock: random-sleep retry vs fair hand-off",
                            xlabel="sections, sorted by wait (%)", ylabel="wait for the lock (ms)", height=2.8)
    parts = []
    for label, res in run.items():
        waits = sorted(res["busy"]["waits_ms"])
        ax.plot([100 * (i + 1) / len(waits) for i in range(len(waits))], waits, label=label)
        parts.append(f"{label} p50 {statistics.median(waits):.1f} ms, p99 {p99(waits):.1f} ms")
    charts.finish(ax, summary="in this run: " + "; ".join(parts))


# -- failover -------------------------------------------------------------------------------------


def _key_state(rep, lock: Lock, who: dict) -> list[tuple]:
    """(node, role, holder, fence counter) per node; holder by name from who = {token: name}."""
    rows = []
    for node in rep:
        if not node.running:
            rows.append((node.name, "DOWN", "", ""))
            continue
        token = node.r.get(lock.key)
        rows.append((node.name, rep.role(node), "-" if token is None else who.get(token, "?"),
                     node.r.get(lock.fence_key) or "-"))
    return rows


def state_table(rows: list[tuple], title: str) -> Table:
    """Per-node lock state as a view: node, role, who holds ``lock:{payout}``, fence counter."""
    return Table(["node", "role", "lock held by", "fence counter"], rows, title=title)


def failover(prefix: str, *, replicas: int = 1, cut: tuple[str, ...] = ("replica-1",),
             promote: str = "replica-1", require: int = 0) -> dict:
    """A locks ``payout`` on the primary, the primary dies, ``promote`` takes over, B tries there.

    ``require=0``: A asks WAIT in the acquire's pipeline and trusts the lock anyway; also records
    what WAIT says when sent from *another* connection (one that never wrote). ``require=k``: A
    uses ``try_acquire_replicated(k)``, which gives the lock back unless k replicas have it.
    """
    flog = EventLog()
    rep = lab.Replicated(replicas, log=flog).start()
    try:
        a = Lock(rep.primary.client(socket_timeout=10), "payout", prefix=prefix, ttl_ms=30_000)  # > WAIT's timeout
        a.release(a.try_acquire())
        rep.wait_in_sync()                                   # warm-up: fence 1 everywhere
        for name in cut:
            rep.partition(name)
        wait_elsewhere = None
        if require:
            lease_a = a.try_acquire_replicated(require, wait_ms=1000)  # 1 s: generous on a shared machine
        else:
            lease_a = a.try_acquire(wait_replicas=1)
            other = rep.primary.client()                     # a connection that never wrote
            wait_elsewhere = other.execute_command("WAIT", 1, 100)
            other.close()
        if lease_a:
            flog.record("A", "acquire", f"fence {lease_a.fence}, WAIT -> {lease_a.replicas} replica(s)")
        else:
            flog.record("A", "refused", f"WAIT -> fewer than {require} replica(s): lock given back")
        before = _key_state(rep, a, {lease_a.token: "A"} if lease_a else {})
        rep.primary.kill()
        new = rep.promote(promote)
        lease_b = Lock(new.r, "payout", prefix=prefix, ttl_ms=30_000).try_acquire()
        if lease_b:
            flog.record("B", "acquire", f"fence {lease_b.fence} on {new.name}")
        else:
            flog.record("B", "refused", f"{new.name} has A's lock")
        rep.wait_in_sync()                                   # the other replicas now follow the new primary
        who = {ls.token: n for ls, n in ((lease_a, "A"), (lease_b, "B")) if ls}
        return dict(log=flog, a=lease_a, b=lease_b, before=before, after=_key_state(rep, a, who),
                    wait_elsewhere=wait_elsewhere)
    finally:
        rep.stop()
