"""Scenarios for notebooks/12-delayed-queue.ipynb: the due-time boundary, racing claims (the plain
``ZRANGEBYSCORE`` + ``ZREM`` against the Lua pop-due), worker processes killed with ``kill -9``
after their claim, lateness against the poll interval, an idle queue's command rate, and retries
with back-off; plus the worker process they run and the charts.

Every count of what ran is taken from an independent SQLite sink (the toolkit's
:class:`~redistutor.sink.Sink`): which tasks were produced, and one row per execution. The queue
never counts itself.

Each helper is one line in the notebook and returns plain data (dicts, lists) or a view; the
pattern itself lives in ``redistutor/patterns/delayed_queue.py``.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from .. import lab
from ..events import EventLog
from ..patterns.delayed_queue import DelayedQueue, RetryQueue, job_of, now_ms, poll_loop, reap, sleep_loop
from ..race import call_hook, wait_until
from ..sink import CommandStats, Sampler, Sink
from ..tables import Table
from ..timeline import run_threads
from ..trace import trace

__all__ = [
    "KINDS", "Sink", "ZremQueue", "produce", "due_boundary", "idle_trial", "kill_chart", "kill_run", "kill_runs",
    "lateness_chart", "lateness_trial", "make_queue", "queue_worker", "race_one_task", "racing_run",
    "retry_demo", "samples_table", "skewed_claims", "task_id", "wait_until",
]


def task_id(task: str) -> str:
    """The random id inside a task member."""
    return json.loads(task)["id"]


# -- the naive claim ------------------------------------------------------------------------------


class ZremQueue(DelayedQueue):
    """The plain claim, for the lesson and its tests: ``ZRANGEBYSCORE`` the due tasks, then ``ZREM``
    them (two round trips). Nothing records a claimed task: once removed it is only in the
    worker's memory. ``check_reply=False`` runs a task whatever its ``ZREM`` answered (the common
    bug); ``True`` runs it only if this worker's ``ZREM`` removed it. The ``after_read`` hook fires
    between the two round trips (a pause point or a barrier goes there)."""

    def __init__(self, r, name, lease_ms=5000, *, check_reply: bool = True, hooks: dict | None = None,
                 clock: Callable[[], float] | None = None):
        super().__init__(r, name, lease_ms)
        self.check_reply, self.hooks = check_reply, hooks
        self.clock = clock or (lambda: time.time() * 1000)    # the worker's own clock, in ms

    def claim(self, n=1):
        due = self.r.zrangebyscore(self.key, "-inf", int(self.clock()), start=0, num=n)
        call_hook(self.hooks, "after_read", due)
        removed = [self.r.zrem(self.key, task) for task in due]
        return [t for t, ok in zip(due, removed) if ok or not self.check_reply]

    def ack(self, task):
        return True          # nothing to acknowledge: a claimed task is in no key (nor to reap)


KINDS = {
    "ZRANGEBYSCORE + ZREM": lambda r, name, lease_ms=5000, **kw: ZremQueue(r, name, lease_ms, check_reply=False, **kw),
    "ZRANGEBYSCORE + checked ZREM": lambda r, name, lease_ms=5000, **kw: ZremQueue(r, name, lease_ms, **kw),
    "Lua pop-due": lambda r, name, lease_ms=5000, **kw: RetryQueue(r, name, lease_ms),
}


def make_queue(r, name: str, kind: str, lease_ms: int = 5000, **kw: Any) -> DelayedQueue:
    """A queue of one of the ``KINDS`` (by name) on client ``r``."""
    return KINDS[kind](r, name, lease_ms, **kw)


# -- the independent sink -------------------------------------------------------------------------


def produce(sink: Sink, run: str, q: DelayedQueue, jobs: list[str], due_ms: list[int]) -> list[str]:
    """Schedule each job and record it in the sink as produced (the record comes first: a crash
    after it shows as a loss, never as a task nobody knew about)."""
    tasks = []
    for job, due in zip(jobs, due_ms):
        task = json.dumps({"id": uuid.uuid4().hex[:8], "job": job})
        sink.produce(task_id(task), run=run, info=job)
        q.r.zadd(q.key, {task: due})
        tasks.append(task)
    return tasks


def ran(sink: Sink, run: str, task: str, worker: str) -> None:
    """One execution of ``task`` by ``worker``, in the sink (a task run twice is two rows)."""
    sink.record(task_id(task), worker, run=run, info=job_of(task))


def _stats(sink: Sink, run: str) -> dict:
    """produced, runs, distinct tasks run, duplicate runs, never run."""
    rep = sink.report(run=run)
    return dict(produced=rep["produced"], runs=rep["effects"], done=rep["distinct"],
                duplicates=rep["effects"] - rep["distinct"], never_ran=len(rep["lost"]))


def sample(q: DelayedQueue, sink: Sink, run: str) -> dict:
    """One sample of where every produced task is: queued, in flight (processing, not yet in the
    sink), done (in the sink), and missing (in none of these: lost). Redis is read first in one
    MULTI (both sets at one instant), then the sink: a task that finishes in between is seen in
    processing and done, never in neither."""
    with q.r.pipeline(transaction=True) as tx:
        tx.zrange(q.key, 0, -1)
        tx.zrange(q.processing, 0, -1)
        queued, processing = tx.execute()
    done = set(sink.counts(run))
    queued_ids, processing_ids = {task_id(t) for t in queued}, {task_id(t) for t in processing}
    produced = set(sink.produced(run))
    # A task that ran and is queued or in processing again (its lease ran out while a slow worker
    # was still on it) counts as done here; the second run shows in the sink's duplicate count.
    missing = produced - queued_ids - processing_ids - done
    return dict(queued=len(queued_ids - done), in_flight=len(processing_ids - done), done=len(done),
                produced=len(produced), missing=len(missing), runs=sink.count(run))


# -- the due-time boundary ------------------------------------------------------------------------


def due_boundary(q: DelayedQueue, ahead_ms: int = 300) -> dict:
    """A task due ``ahead_ms`` from now on the server's clock, claimed every 20 ms until it comes
    back. Each attempt records the server's clock just before and just after the claim."""
    due = now_ms(q.r) + ahead_ms
    task = q.schedule("report:daily", due)
    attempts = []
    while True:
        before = now_ms(q.r)
        got = q.claim()
        after = now_ms(q.r)
        attempts.append((before - due, after - due, got))
        if got or len(attempts) > 500:
            break
        time.sleep(0.02)
    return dict(task=task, due=due, attempts=attempts)


def skewed_claims(r, name: str, skew_ms: int = 60_000, due_in_ms: int = 30_000) -> list[tuple]:
    """A task due in ``due_in_ms`` on the server's clock, claimed at once by a worker whose own
    clock runs ``skew_ms`` fast: with ZRANGEBYSCORE (the worker's clock) and with the script
    (the server's TIME). Rows: (claim, clock compared, claimed now)."""
    rows = []
    for kind, clock in (("ZRANGEBYSCORE + checked ZREM", f"the worker's, {skew_ms // 1000} s fast"),
                        ("Lua pop-due", "the server's (TIME)")):
        q = make_queue(r, f"{name}:{kind.split()[0].lower()}", kind, clock=lambda: time.time() * 1000 + skew_ms)
        r.delete(q.key, q.processing)
        task = q.schedule("invoice:overdue", now_ms(r) + due_in_ms)
        rows.append((kind, clock, q.claim() == [task]))
        r.delete(q.key, q.processing)
    return rows


# -- racing claims --------------------------------------------------------------------------------


def race_one_task(r, name: str, kind: str, workers: int = 4) -> dict:
    """One due task, ``workers`` threads claiming it at once. For the ZRANGEBYSCORE variants a
    barrier between the read and the ZREM makes every worker read before any removes it (the
    race, every time); the Lua claim has no such gap, so its workers only start together."""
    barrier = threading.Barrier(workers, timeout=10)
    q = make_queue(r, name, kind, hooks={"after_read": lambda due: barrier.wait()})
    r.delete(q.key, q.processing)
    task = q.schedule("invoice:42", 0)
    got: dict[str, list] = {}

    def worker(actor: str, log: EventLog) -> None:
        if kind == "Lua pop-due":
            barrier.wait()
        got[actor] = q.claim()
        if got[actor]:
            log.record(actor, "run", job_of(got[actor][0]))

    log = EventLog()
    with trace(r) as t:
        run_threads(worker, workers, log=log, name="worker")
    rows = [(a, "ran it" if got[a] else "-", len(t.select(thread=a)), " ".join(t.names(thread=a)))
            for a in sorted(got)]
    return dict(task=task, runs=sum(bool(v) for v in got.values()), rows=rows, trace=t,
                queued=r.zcard(q.key), processing=r.zrange(q.processing, 0, -1))


def racing_run(server, sink: Sink, name: str, kind: str, *, workers: int = 4, tasks: int = 200) -> dict:
    """``tasks`` due tasks, ``workers`` threads claiming until the queue is empty; every execution
    goes to the SQLite sink. Returns the sink's counts, the traced round trips, and the server's
    own command counts (INFO commandstats) for the run."""
    r = server.client()
    q = make_queue(r, server.key(name), kind)
    r.delete(q.key, q.processing)
    sink.clear(name)
    produce(sink, name, q, [f"job-{i}" for i in range(tasks)], [0] * tasks)
    claims = {"got": 0, "empty": 0}
    lock = threading.Lock()

    def worker(actor: str, log: EventLog) -> None:
        wq = make_queue(server.client(), server.key(name), kind)
        while True:
            got = wq.claim()
            with lock:
                claims["got" if got else "empty"] += 1
            if not got:
                if not wq.r.zcard(wq.key):
                    return
                continue
            for task in got:
                ran(sink, name, task, actor)
                wq.ack(task)

    with CommandStats(r) as server_counts, trace(server) as t:
        run_threads(worker, workers, name="worker")
    r.close()
    claiming = [c for c in t.commands if c.name in ("EVAL", "ZRANGEBYSCORE")
                or (c.name == "ZREM" and not c.args[0].endswith(":processing"))]   # not the ack
    return dict(kind=kind, **_stats(sink, name), claims=claims["got"], empty=claims["empty"],
                round_trips=t.round_trips, claim_round_trips=len({c.round_trip for c in claiming}),
                calls=server_counts.calls, workers=workers)


# -- worker processes (lab.Workers): importable, module-level ------------------------------------


def queue_worker(ctx: Any, name: str, sink_path: str, run: str, kind: str, hang_job: str,
                 lease_ms: int) -> None:
    """Claim tasks until ``<name>:stop`` exists; run each into the sink, then ack it.

    The first worker to claim ``hang_job`` records "hang" and stops working on it for 10 minutes,
    right after its claim (the ZREM, or the Lua move to processing): the notebook kills it there.
    Whoever claims that job again (after the reaper put it back) runs it normally.
    """
    r = ctx.client(0)
    q = make_queue(r, name, kind, lease_ms)
    sink = Sink(sink_path)
    ctx.record("ready")
    try:
        while True:
            tasks = q.claim()
            if not tasks:
                if r.exists(f"{name}:stop"):
                    return
                time.sleep(0.005)
                continue
            for task in tasks:
                if job_of(task) == hang_job and r.set(f"{name}:hung", ctx.name, nx=True):
                    ctx.record("hang", task)
                    time.sleep(600)
                ran(sink, run, task, ctx.name)
                if not q.ack(task):
                    ctx.record("late ack", task)
    finally:
        sink.close()


def kill_run(server, sink: Sink, name: str, kind: str, *, tasks: int = 40, workers: int = 2,
             hang_job: str = "job-10", lease_ms: int = 1000, reap_every_ms: int = 100) -> dict:
    """``workers`` worker processes drain ``tasks`` tasks (due 10 ms apart); the one that claims
    ``hang_job`` is killed with SIGKILL right after its claim. A reaper thread runs every
    ``reap_every_ms``; a sampler records where every produced task is (:func:`sample`) every 20 ms,
    from the sink and the queue, until the queue is empty and the live workers have stopped."""
    r = server.client()
    full = server.key(name)
    q = make_queue(r, full, kind, lease_ms)
    r.delete(q.key, q.processing, f"{full}:stop", f"{full}:hung")
    sink.clear(name)
    log = EventLog()
    pool = lab.Workers(queue_worker, workers, nodes=[server], log=log,
                       args=(full, sink.path, name, kind, hang_job, lease_ms)).start()
    t0 = time.monotonic()                 # reset when the tasks are produced: the charts' zero
    reaped: list[str] = []
    reaped_at: list[float] = []
    rq = make_queue(server.client(), full, kind, lease_ms)

    def reap_pass() -> None:
        back = reap(rq)
        if back:
            reaped.extend(back)
            reaped_at.append((time.monotonic() - t0) * 1000)
            log.record("reaper", "reap", job_of(back[0]))

    sampler = Sampler(lambda: sample(q, sink, name), 20)
    reaper = Sampler(reap_pass, reap_every_ms, final=False, keep=False, name="reaper")
    try:
        for w in pool.names:
            pool.wait_for("ready", actor=w, timeout=60)
        base = now_ms(r) + 50
        t0 = time.monotonic()
        produce(sink, name, q, [f"job-{i}" for i in range(tasks)], [base + 10 * i for i in range(tasks)])
        sampler.start()
        reaper.start()
        hung = pool.wait_for("hang", timeout=30)
        pool.kill(hung.actor)
        killed_at = (time.monotonic() - t0) * 1000
        at_kill = sample(q, sink, name)
        clock = now_ms(r)
        where = ("processing" if r.zscore(q.processing, hung.detail) is not None else
                 "schedule" if r.zscore(q.key, hung.detail) is not None else "nowhere")
        lease_left = ", ".join(f"{job_of(t)} (lease ends in {score - clock:.0f} ms)"
                               for t, score in r.zrange(q.processing, 0, -1, withscores=True))
        wait_until(lambda: r.zcard(q.key) == 0 and r.zcard(q.processing) == 0, timeout=30)
        r.set(f"{full}:stop", 1)
        for w in pool.names:
            if w != hung.actor:
                pool.procs[w].join(30)
        pool.collect()
        reaper.stop()
        samples = [((t - t0) * 1000, x) for t, x in sampler.stop()]   # the last: after the workers
        final = samples[-1][1]
        stats = _stats(sink, name)
    finally:
        sampler.cancel()
        reaper.cancel()
        pool.stop()
        rq.r.close()
        r.delete(f"{full}:stop", f"{full}:hung")
    jobs = sink.produced_info(name)
    lost = set(sink.report(run=name)["lost"])
    lost_job = [job for i, job in jobs.items() if i in lost]
    r.close()
    return dict(kind=kind, samples=samples, killed_at=killed_at, killed=hung.actor, hung_task=hung.detail,
                exitcode=pool.exitcodes[hung.actor], at_kill=at_kill, hung_where=where, lease_left=lease_left,
                final=final, reaped=reaped, reaped_at=reaped_at, lost_jobs=lost_job, log=log, lease_ms=lease_ms,
                late_acks=len(log.of_kind("late ack")), **stats)


def kill_runs(server, sink: Sink, name: str, kinds: tuple = ("ZRANGEBYSCORE + checked ZREM", "Lua pop-due"),
              **kw: Any) -> list[dict]:
    """:func:`kill_run` for each kind, side by side (own keys, sink tables and processes)."""
    from ..race import run_in_thread

    running = [run_in_thread(kill_run, server, sink, f"{name}:{kind.split()[0].lower()}", kind, **kw)
               for kind in kinds]
    return [f.result(timeout=120) for f in running]


def samples_table(runs: list[dict]) -> Table:
    """Per run: produced, runs in the sink, distinct done, duplicates, never ran, and the worst
    sample of the invariant (queued + in flight + done = produced)."""
    rows = []
    for run in runs:
        worst = max(s["missing"] for _, s in run["samples"])
        rows.append((run["kind"], run["exitcode"], run["produced"], run["runs"], run["duplicates"],
                     run["never_ran"], ", ".join(run["lost_jobs"]) or "-", len(run["samples"]), worst))
    return Table(["claim", "killed worker's exit", "produced", "runs in the sink", "duplicate runs",
                  "never ran", "lost", "samples", "most missing in a sample"], rows,
                 title="kill -9 right after the claim, counted by the SQLite sink")


def kill_chart(runs: list[dict]) -> None:
    """Queued / in flight / done over time per run, the kill marked, missing drawn in red."""
    from .. import charts

    fig, axes = charts.figure("Where every produced task is, sampled every 20 ms",
                              xlabel="time since the tasks were scheduled (ms)",
                              ylabel="tasks", ncols=len(runs), width=9.5, height=3.2, sharey=True)
    axes = axes if isinstance(axes, list) else [axes]
    parts = []
    for ax, run in zip(axes, runs):
        t = [ms for ms, _ in run["samples"]]
        s = [x for _, x in run["samples"]]
        ax.stackplot(t, [x["done"] for x in s], [x["in_flight"] for x in s], [x["queued"] for x in s],
                     labels=["done (sink)", "in flight (processing)", "queued (schedule)"],
                     colors=[charts.OK, charts.PALETTE[1], charts.NEUTRAL], alpha=0.8)
        ax.plot(t, [x["missing"] for x in s], color=charts.BAD, linewidth=2, label="missing (lost)")
        ax.axvline(run["killed_at"], color="black", linestyle="--", linewidth=1, label="kill -9")
        for at in run["reaped_at"][:1]:
            ax.axvline(at, color=charts.OK, linestyle=":", linewidth=1.5, label="reaped")
        ax.set_title(run["kind"], fontsize=10)
        parts.append(f"{run['kind']}: {run['never_ran']} of {run['produced']} never ran, "
                     f"{run['duplicates']} duplicate runs")
    charts.finish(axes[-1], summary="in this run " + "; ".join(parts))
    for ax in axes[:-1]:
        leg = ax.get_legend()
        if leg:
            leg.remove()


# -- lateness against the poll interval ------------------------------------------------------------


def lateness_trial(r, name: str, poll_ms: tuple = (5, 20, 50, 100), *, tasks: int = 20,
                   spread_ms: int = 400) -> dict:
    """For each poll interval (and the sleep-until-due loop, key "sleep"), ``tasks`` tasks due at
    random points of the next ``spread_ms`` and one worker thread: lateness = ran - due (ms).
    The trials run side by side, each on its own queue and connection."""
    import random

    from ..race import run_in_thread

    def trial(p: Any, seed: int) -> list[float]:
        rng = random.Random(seed)
        q = DelayedQueue(r, f"{name}:{p}")
        r.delete(q.key, q.processing)
        start = time.time() * 1000 + 50
        scores = {}
        for i in range(tasks):
            due = int(start + rng.uniform(0, spread_ms))
            scores[q.schedule(f"job-{i}", due)] = due
        late: list[float] = []
        stop = threading.Event()

        def handle(task: str) -> None:                  # lateness from the due time we scheduled
            late.append(time.time() * 1000 - scores[task])
            if len(late) == tasks:
                stop.set()

        loop, kw = (sleep_loop, {"max_sleep_ms": 1000}) if p == "sleep" else (poll_loop, {"poll_ms": p})
        th = threading.Thread(target=loop, args=(q, handle, stop), kwargs=kw, daemon=True)
        th.start()
        th.join(30)
        stop.set()
        return late

    running = {p: run_in_thread(trial, p, 12 + i, thread_name=f"poll-{p}") for i, p in enumerate((*poll_ms, "sleep"))}
    return {p: f.result(timeout=60) for p, f in running.items()}


def lateness_chart(trial: dict) -> None:
    """Lateness per task against the poll interval, with each interval's mean."""
    from .. import charts

    fig, ax = charts.figure("How late a due task runs", xlabel="poll interval (ms)",
                            ylabel="executed - due (ms)", height=3.0)
    polls = [p for p in trial if p != "sleep"]
    for p in polls:
        ax.plot([p] * len(trial[p]), trial[p], "o", color=charts.NEUTRAL, alpha=0.35, markersize=4)
    ax.plot(polls, [statistics.mean(trial[p]) for p in polls], "-s", color=charts.BAD, label="polling: mean")
    ax.plot(polls, [p / 2 for p in polls], ":", color="grey", label="half the interval")
    ax.axhline(statistics.mean(trial["sleep"]), color=charts.OK, linestyle="--",
               label="sleep until due: mean")
    parts = ", ".join(f"{p} ms -> {statistics.mean(trial[p]):.1f}" for p in polls)
    charts.finish(ax, summary=f"in this run the mean lateness was {parts} ms for polling, and "
                  f"{statistics.mean(trial['sleep']):.1f} ms sleeping until the next task is due; "
                  f"the worst {max(max(v) for v in trial.values()):.1f} ms")


# -- an idle queue's command rate -------------------------------------------------------------------


def idle_trial(server, name: str, loop: str, *, seconds: float = 1.2, due_in_ms: int = 800,
               poll_ms: float = 5) -> dict:
    """One worker on a queue whose only task is due in ``due_in_ms``, for ``seconds``: the commands
    the server counted (INFO commandstats, minus the INFO calls themselves) and the task's runs."""
    r = server.client()
    q = DelayedQueue(server.client(), server.key(name))
    r.delete(q.key, q.processing)
    done: list[str] = []
    stop = threading.Event()
    server_counts = CommandStats(r).start()
    q.schedule("digest:weekly", int(time.time() * 1000) + due_in_ms)
    fn, kw = (poll_loop, {"poll_ms": poll_ms}) if loop == "poll" else (sleep_loop, {"max_sleep_ms": 5000})
    th = threading.Thread(target=fn, args=(q, done.append, stop), kwargs=kw, daemon=True)
    th.start()
    time.sleep(seconds)
    stop.set()
    th.join(10)
    calls = dict(server_counts.stop().calls)
    for k in ("zadd", "hello", "client|setinfo"):   # the producer's ZADD; connection handshakes
        calls.pop(k, None)
    r.close()
    q.r.close()
    return dict(loop=loop, calls=calls, total=sum(calls.values()), per_s=sum(calls.values()) / seconds,
                claims=calls.get("eval", 0),
                ran=len(done), seconds=seconds)


# -- retries with back-off ------------------------------------------------------------------------


def retry_demo(r, name: str, *, fails: int = 2, base_ms: int = 100) -> dict:
    """A job that fails ``fails`` times, retried after base_ms, 2 x base_ms, ... (exponential
    back-off by re-scheduling). Each row: attempt, server time of the claim, outcome, the new due
    time's distance from the claim (ms)."""
    q = RetryQueue(r, name, lease_ms=5000)
    r.delete(q.key, q.processing)
    task = q.schedule("webhook:order-7", now_ms(r))
    rows, attempt, scores = [], 0, []
    while True:
        got = q.claim()
        if not got:
            time.sleep(0.005)
            continue
        attempt += 1
        claimed = now_ms(r)
        if attempt <= fails:
            delay = base_ms * 2 ** (attempt - 1)
            due = q.retry(got[0], delay)
            scores.append(r.zscore(q.key, got[0]))
            rows.append((attempt, "failed", delay, due - claimed, r.zcard(q.key), r.zcard(q.processing)))
        else:
            q.ack(got[0])
            rows.append((attempt, "succeeded", None, None, r.zcard(q.key), r.zcard(q.processing)))
            break
    late_retry = q.retry(task, 100)                     # retrying a task that is no longer ours
    return dict(rows=rows, task=task, late_retry=late_retry, left=(r.zcard(q.key), r.zcard(q.processing)))
