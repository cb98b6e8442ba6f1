"""Scenarios for notebooks/13-reliable-queue.ipynb: an RPOP worker killed mid-message, a reliable
worker killed after its BLMOVE, five workers with kills at chosen points under a running reaper
(sampled for the queued + processing + done + dead = produced invariant), a poison message, and
a slow but live worker whose lease runs out; plus the worker process they run and the SQLite sink
that counts what was processed.

Each helper is one line in the notebook and returns plain data (dicts, event logs) or a view; the
pattern itself lives in ``redistutor/patterns/reliable_queue.py``.

Loss and duplication are counted by the toolkit's :class:`~redistutor.sink.Sink`, a SQLite
database the queue knows nothing about: every side effect appends a row to ``effects`` (so a
message processed twice shows twice) and upserts the id into ``results`` (the idempotent side
effect, keyed by the message id).
"""

from __future__ import annotations

import time
from typing import Any

from .. import lab
from ..events import EventLog
from ..patterns.reliable_queue import ReliableQueue, reap
from ..race import PausePoint, run_in_thread, wait_until
from ..sink import Sampler, Sink, close_sinks, standby
from ..tables import Table
from ..viz import show

__all__ = [
    "Sink", "at_scale", "close_sinks", "drain", "events_table", "flow_table", "ids", "kill_mid_message",
    "plot_flow", "poison_trial", "processing_key", "queue_worker", "slow_worker",
    "wait_until", "wait_until_expired",
]


def ids(n: int, prefix: str = "m") -> list[str]:
    """Unique message ids m001, m002, ... (at-least-once delivery needs an id to dedupe on)."""
    width = max(3, len(str(n)))
    return [f"{prefix}{i:0{width}d}" for i in range(1, n + 1)]


def processing_key(q: ReliableQueue, worker: str) -> str:
    return f"{q.name}:processing:{worker}"


def wait_until_expired(q: ReliableQueue, msg: str, timeout: float = 10.0) -> None:
    """Block until ``msg``'s lease deadline has passed on this machine's clock (with no lease,
    until a lease written now would have run out)."""
    score = q.r.zscore(q.leases, msg)
    deadline = float(score) if score is not None else time.time() * 1000 + q.lease_ms
    wait_until(lambda: time.time() * 1000 >= deadline + 1, timeout)   # reap() needs deadline < now


def events_table(log: EventLog, title: str = "") -> Table:
    """The events of a run in order, with ms since the first one."""
    evs = log.events
    t0 = evs[0].t if evs else 0.0
    return Table(["ms", "actor", "event", "detail"],
                 [(round((e.t - t0) * 1000), e.actor, e.kind, e.detail) for e in evs], title=title)


# -- the worker process (lab.Workers): importable, module-level -----------------------------------


def _halt(ctx: Any, point: str, msg: str) -> None:
    """Stop here for good and say so; the notebook kill -9s this process now."""
    ctx.record("halt", f"{point} {msg}")
    while True:
        time.sleep(1)


def queue_worker(ctx: Any, name: str, mode: str, sink_path: str, *, lease_ms: int = 30_000,
                 halt: dict | None = None, work_ms: float = 0.0) -> None:
    """Take messages and process them into the sink until ``<name>:stop`` exists.

    ``mode`` "rpop": ``RPOP`` and no ack (the naive worker); "reliable": :class:`ReliableQueue`
    take / ack. ``halt = {worker: [n, point]}`` stops this worker at its n-th message, at
    ``point`` "after_take" (before the side effect) or "after_effect" (before the ack), and
    records a "halt" event so the notebook can kill it exactly there. The worker waits for
    ``<name>:go`` before its first take, so every worker starts together.
    """
    r = ctx.client(0)
    q = ReliableQueue(r, name, lease_ms=lease_ms)
    sink = Sink(sink_path)
    n, (halt_n, halt_point) = 0, (halt or {}).get(ctx.name, (None, None))
    ctx.record("ready")
    standby(r, f"{name}:go")                               # every worker starts together
    while not r.exists(f"{name}:stop"):
        if mode == "rpop":
            msg = r.rpop(q.queue)
            if msg is None:
                time.sleep(0.01)
                continue
        else:
            msg = q.take(ctx.name, timeout=0.2)
            if msg is None:
                continue
        n += 1
        if n == halt_n and halt_point == "after_take":
            _halt(ctx, halt_point, msg)
        if work_ms:
            time.sleep(work_ms / 1000)
        sink.record(msg, ctx.name)
        if n == halt_n and halt_point == "after_effect":
            _halt(ctx, halt_point, msg)
        if mode != "rpop":
            q.ack(ctx.name, msg)
    sink.close()


def drain(q: ReliableQueue, sink: Sink, worker: str, *, mode: str = "reliable") -> int:
    """A healthy worker (in this process) processes whatever is left; returns how many."""
    n = 0
    while True:
        msg = q.r.rpop(q.queue) if mode == "rpop" else q.take(worker, timeout=0.05)
        if msg is None:
            return n
        sink.record(msg, worker)
        if mode != "rpop":
            q.ack(worker, msg)
        n += 1


# -- one worker killed mid-message ----------------------------------------------------------------


def kill_mid_message(server, name: str, *, mode: str, n: int = 6, at: int = 3,
                     point: str = "after_take", lease_ms: int = 300) -> dict:
    """Push ``n`` ids to ``<name>:queue``; one worker process takes them and is killed (SIGKILL)
    at its ``at``-th message, at ``point``. Returns the queue, its sink, the produced ids, the id
    the worker held, its exit code, and a snapshot of the keys right after the kill."""
    short, name, sink = name, server.key(name), Sink()
    r = server.client()
    q = ReliableQueue(r, name, lease_ms=lease_ms)
    r.delete(*[f"{name}:{k}" for k in ("go", "stop", "queue", "leases", "retries", "done", "dead")],
             processing_key(q, "w1"))
    produced = ids(n)
    q.push(*produced)
    log = EventLog()
    w = lab.Workers(queue_worker, 1, nodes=[server], log=log, args=(name, mode, sink.path),
                    kwargs={"lease_ms": lease_ms, "halt": {"w1": [at, point]}}).start()
    try:
        w.wait_for("ready", timeout=60)
        r.set(f"{name}:go", 1)
        held = w.wait_for("halt", timeout=30).detail.split()[1]
        w.kill("w1")                                        # kill -9, holding `held`
        exitcode = w.exitcodes["w1"]
    finally:
        w.stop()
    r.delete(f"{name}:go")
    return dict(q=q, sink=sink, produced=produced, held=held, exitcode=exitcode, log=log,
                after_kill=show(server, f"{short}:*"))


# -- five workers, kills at chosen points, a reaper, a sampler ------------------------------------


def _sample(client, q: ReliableQueue, workers: list[str]) -> tuple:
    """(queued, processing, done, dead letters, per-worker processing lengths) read in one MULTI:
    one consistent instant."""
    with client.pipeline(transaction=True) as p:
        p.llen(q.queue)
        for w in workers:
            p.llen(processing_key(q, w))
        p.get(q.done)
        p.llen(q.dead)
        out = p.execute()
    per_worker = tuple(out[1:-2])
    return out[0], sum(per_worker), int(out[-2] or 0), out[-1], per_worker


def at_scale(server, name: str, *, n: int = 600, workers: int = 5, lease_ms: int = 400,
             kills: dict | None = None, work_ms: float = 1.0, reap_every_ms: int = 50,
             sample_every_ms: int = 10) -> dict:
    """``workers`` processes share ``n`` ids; ``kills = {worker: [n, point]}`` are killed with
    SIGKILL at those points; a reaper thread runs every ``reap_every_ms``; a sampler reads
    (queued, processing, done, dead) in one MULTI every ``sample_every_ms`` until all are done."""
    kills = {"w2": [20, "after_take"], "w4": [40, "after_effect"]} if kills is None else kills
    name, sink = server.key(name), Sink()
    r = server.client()
    q = ReliableQueue(r, name, lease_ms=lease_ms)
    names = [f"w{i}" for i in range(1, workers + 1)]
    r.delete(*[f"{name}:{k}" for k in ("go", "stop", "queue", "leases", "retries", "done", "dead")],
             *[processing_key(q, w) for w in names])
    produced = ids(n)
    q.push(*produced)
    log = EventLog()
    moved: list[str] = []

    def reap_pass() -> None:
        back = reap(rq, names)
        if back:
            moved.extend(back)
            log.record("reaper", "reap", " ".join(back))

    sc = server.client()
    rq = ReliableQueue(server.client(), name, lease_ms=lease_ms)
    sampler = Sampler(lambda: _sample(sc, q, names), sample_every_ms, clock=log.now, name="sampler")
    reaper = Sampler(reap_pass, reap_every_ms, final=False, keep=False, name="reaper")
    pool = lab.Workers(queue_worker, workers, nodes=[server], log=log, args=(name, "reliable", sink.path),
                       kwargs={"lease_ms": lease_ms, "halt": kills, "work_ms": work_ms}).start()
    killed: list[str] = []
    try:
        for w in names:
            pool.wait_for("ready", actor=w, timeout=60)
        sampler.start()
        reaper.start()
        log.record("notebook", "go")
        r.set(f"{name}:go", 1)
        give_up, drained_at = time.monotonic() + 60, None
        while time.monotonic() < give_up:
            pool.collect()
            for ev in log.of_kind("halt"):
                if ev.actor not in killed:
                    pool.kill(ev.actor)                     # kill -9 at exactly that point
                    point, msg = ev.detail.split()
                    killed.append(ev.actor)
                    log.record(ev.actor, "killed", f"{point} {msg}")
            done, dead = int(r.get(q.done) or 0), r.llen(q.dead)
            if done + dead == n and len(killed) == len(kills):
                break
            drained_at = drained_at or (time.monotonic() if done + dead >= n - len(kills) else None)
            if drained_at and time.monotonic() - drained_at > 5 and len(killed) < len(kills):
                missing = sorted(set(kills) - set(killed))
                raise RuntimeError(f"{', '.join(missing)} never reached its kill point before the queue "
                                   f"ran out: choose a smaller message number in kills=")
            time.sleep(0.01)
        reaper.stop()
        samples = [(t, *v) for t, v in sampler.stop()]      # the last one: the final state
        r.set(f"{name}:stop", 1)
        pool.join(30)
    finally:
        sampler.cancel()
        reaper.cancel()
        pool.stop()
        sc.close()
        rq.r.close()
    r.delete(f"{name}:go", f"{name}:stop")
    held = {e.actor: tuple(e.detail.split()) for e in log.of_kind("killed")}
    return dict(q=q, sink=sink, produced=produced, samples=samples, log=log, moved=moved, killed=held,
                exitcodes=pool.exitcodes, workers=names, lease_ms=lease_ms)


def flow_table(run: dict) -> Table:
    """One row per killed worker: where it died, the id it held, and what the sink saw for it."""
    counts = run["sink"].counts()
    return Table(["worker", "killed", "exit code", "held", "reaper returned it", "side effects for it"],
                 [(w, point.replace("_", " "), run["exitcodes"][w], msg, msg in run["moved"], counts.get(msg, 0))
                  for w, (point, msg) in sorted(run["killed"].items())],
                 title=f"{len(run['workers'])} workers, {len(run['produced'])} messages, "
                       f"{len(run['killed'])} killed with kill -9")


def plot_flow(run: dict) -> None:
    """Top: a stacked area of queued / processing / done / dead over time. Bottom: the processing
    lists alone, split into live workers' and killed workers' ids. Kills and reaper passes marked."""
    from .. import charts

    s, names = run["samples"], run["workers"]
    t0 = s[0][0]
    t = [(row[0] - t0) * 1000 for row in s]
    kills = run["log"].of_kind("killed")
    killed_at = {e.actor: e.t for e in kills}
    fig, (top, bottom) = charts.figure("Where the messages are", xlabel="time since the workers started (ms)",
                                       ylabel="messages", nrows=2, height=5.6, sharex=True,
                                       gridspec_kw={"height_ratios": [3, 2]})
    top.stackplot(t, [row[1] for row in s], [row[2] for row in s], [row[3] for row in s], [row[4] for row in s],
                  labels=["queued", "processing", "done (acked)", "dead letters"],
                  colors=[charts.PALETTE[0], charts.PALETTE[1], charts.PALETTE[2], charts.PALETTE[4]])
    top.set_ylim(0, len(run["produced"]) * 1.02)
    top.set_xlabel("")
    dead_held = [sum(n for w, n in zip(names, row[5]) if w in killed_at and row[0] >= killed_at[w]) for row in s]
    live_held = [row[2] - d for row, d in zip(s, dead_held)]
    bottom.stackplot(t, dead_held, live_held, labels=["held by killed workers", "held by live workers"],
                     colors=[charts.PALETTE[3], charts.PALETTE[1]], step="post")
    bottom.set_ylabel("in processing lists")
    bottom.set_ylim(0, len(names) + 1.5)
    for ax in (top, bottom):
        for e in kills:
            ax.axvline((e.t - t0) * 1000, color="black", linestyle="--", linewidth=1)
        for e in run["log"].of_kind("reap"):
            ax.axvline((e.t - t0) * 1000, color=charts.PALETTE[5], linewidth=1.2)
    for i, e in enumerate(kills):
        bottom.annotate(f"kill -9 {e.actor} ({e.detail.split()[0].replace('_', ' ')})",
                        ((e.t - t0) * 1000, len(names) + 1.3 - 0.7 * i),
                        xytext=(3, 0), textcoords="offset points", va="top", fontsize=8)
    bottom.plot([], [], color="black", linestyle="--", label="kill -9")
    bottom.plot([], [], color=charts.PALETTE[5], label="reaper returned ids")
    reaps = run["log"].of_kind("reap")
    totals = sorted({sum(row[1:5]) for row in s})
    stuck = [((r.t - killed_at[a]) * 1000) for a, (_, msg) in run["killed"].items()
             for r in reaps if msg in r.detail.split()]
    charts.finish([top, bottom], summary=(
        f"in this run {len(run['produced'])} messages, {len(names)} workers, {len(kills)} killed; "
        f"the reaper returned {len(run['moved'])} ids, "
        + (f"{min(stuck):.0f}-{max(stuck):.0f} ms after their worker's kill (lease {run['lease_ms']} ms); "
           if stuck else "")
        + f"all done by {t[-1]:.0f} ms; queued + processing + done + dead was {totals} at all {len(s)} samples"))


# -- a poison message -----------------------------------------------------------------------------


def _job(msg: str) -> int:
    """The work: parse the order number. "order-x" raises ValueError, every time."""
    return int(msg.split("-")[1])


def poison_trial(server, name: str, *, max_retries: int = 2, lease_ms: int = 100) -> dict:
    """Three orders, one malformed. Each round a fresh worker thread takes messages and processes
    them until one raises (its thread dies without an ack, like a crashed worker); the reaper runs
    once the lease has run out. Returns a row per delivery of the poison message."""
    name, sink = server.key(name), Sink()
    r = server.client()
    q = ReliableQueue(r, name, lease_ms=lease_ms, max_retries=max_retries)
    workers = [f"worker-{i}" for i in range(1, max_retries + 3)]
    r.delete(q.queue, q.leases, q.retries, q.done, q.dead, *[processing_key(q, w) for w in workers])
    produced = ["order-1", "order-x", "order-2"]
    q.push(*produced)
    rows = []
    for worker in workers:
        if not r.llen(q.queue):
            break

        def work(worker=worker):
            while (msg := q.take(worker, timeout=0.05)) is not None:
                _job(msg)                                   # raises on the poison: no ack
                sink.record(msg, worker)
                q.ack(worker, msg)

        crash = run_in_thread(work, thread_name=worker).exception(timeout=10)
        held = r.lrange(processing_key(q, worker), 0, -1)
        if held:
            wait_until_expired(q, held[0])
        moved = reap(q, workers)
        went = "dead letters" if set(moved) & set(r.lrange(q.dead, 0, -1)) else "queue" if moved else "-"
        rows.append((worker, ", ".join(held) or "-", f"{type(crash).__name__}: {crash}" if crash else "finished",
                     went, int(r.hget(q.retries, "order-x") or 0)))
    return dict(q=q, sink=sink, produced=produced, workers=workers, rows=rows,
                table=Table(["worker", "held when it stopped", "outcome", "reaper sent it to", "order-x retries"],
                            rows, title=f"a poison message, max_retries = {max_retries}"))


# -- a slow but live worker -----------------------------------------------------------------------


def slow_worker(server, name: str, *, lease_ms: int = 200, job_ms: int = 500) -> dict:
    """Worker A takes m1 and works on it for ``job_ms`` (frozen at a pause point: slow, not dead).
    The reaper runs every 10 ms meanwhile, and once more at the job's end (at take + ``job_ms`` on
    the lease's clock); worker B takes whatever comes back and processes it. Then A finishes and
    acks. Returns the event log, A's and B's ack results and the sink's count for m1."""
    name, sink = server.key(name), Sink()
    r = server.client()
    q = ReliableQueue(r, name, lease_ms=lease_ms)
    r.delete(q.queue, q.leases, q.retries, q.done, q.dead, processing_key(q, "A"), processing_key(q, "B"))
    msg = f"{name.rsplit(':', 1)[-1]}-m1"
    q.push(msg)
    log, job = EventLog(), PausePoint("A's job", timeout=30)
    acks: dict[str, bool] = {}

    def a():
        m = q.take("A")
        log.record("A", "take", f"lease {lease_ms} ms")
        job()                                               # A is working (slow, alive)
        sink.record(m, "A")
        log.record("A", "side effect")
        acks["A"] = q.ack("A", m)
        log.record("A", "ack", "ok" if acks["A"] else "refused: not in A's list")

    running = run_in_thread(a, thread_name="A")
    job.wait_reached()
    taken_at = float(r.zscore(q.leases, msg)) - lease_ms    # the take, on the lease's clock (ms)
    started = time.monotonic()
    b_ran = False

    def b_takes(moved):
        nonlocal b_ran
        if not moved:
            return
        log.record("reaper", "reap", "lease ran out: back to the queue")
        m = q.take("B")
        log.record("B", "take")
        sink.record(m, "B")
        log.record("B", "side effect")
        acks["B"] = q.ack("B", m)
        log.record("B", "ack", "ok" if acks["B"] else "refused")
        b_ran = True

    while (time.monotonic() - started) * 1000 < job_ms:
        if not b_ran:
            b_takes(reap(q, ["A", "B"], now_ms=min(int(time.time() * 1000), int(taken_at + job_ms))))
        time.sleep(0.01)
    if not b_ran:
        b_takes(reap(q, ["A", "B"], now_ms=int(taken_at + job_ms)))   # one pass at the job's end
    job.release()
    running.result(timeout=10)
    return dict(log=log, msg=msg, acks=acks, effects=sink.counts()[msg],
                done=int(r.get(q.done) or 0), q=q, sink=sink)
