"""Scenarios for notebooks/14-streams-consumer-patterns.ipynb: a consumer process killed with
``kill -9`` between ``XREADGROUP`` and ``XACK``, restarted reading only ``>`` (the zombie PEL) and
with the two-phase start; a takeover with ``XAUTOCLAIM``; poison entries; trimming bounds
(``MAXLEN ~``, ``MINID ~``) and trimming entries that are still pending; the PEL's memory and the
group's lag; plus the worker process they run and the charts.

What was processed is counted by an independent SQLite sink (the toolkit's
:class:`~redistutor.sink.Sink`, one row per handling, the stream's key as its run), never by the
stream itself. :func:`sample` checks the invariant at every sample:
each produced id is not yet delivered, pending, or done; none is lost.

Each helper is one line in the notebook and returns plain data (dicts, lists) or a view; the
pattern itself lives in ``redistutor/patterns/streams_consumer_patterns.py``.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any

from .. import lab
from ..events import EventLog
from ..patterns.streams_consumer_patterns import consume, recover
from ..race import wait_until
from ..sink import Sampler, Sink, standby
from ..tables import Table

__all__ = [
    "Sink", "consumer_worker", "crash_and_restart", "fill", "handler", "kill_mid_batch", "minid_trial",
    "naive_consume", "pel_memory", "pel_table", "plot_pel_memory", "plot_storm", "plot_trim",
    "poison_rounds", "sample", "samples_table", "service_worker", "storm", "trim_pending",
    "trim_sweep", "wait_idle", "wait_until",
]


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


# -- the independent sink ---------------------------------------------------------------------------


def handler(sink: Sink, stream: str, consumer: str) -> Callable[[str, dict], None]:
    """``handle(entry_id, fields)`` for the pattern: record the entry in the sink (run: the
    stream's key), or raise on an entry with ``poison=1`` (a message that always fails)."""
    def handle(entry_id: str, fields: dict) -> None:
        if fields.get("poison") == "1":
            raise ValueError(f"cannot process {entry_id}")
        sink.record(entry_id, consumer, run=stream)
    return handle


# -- producing, sampling ----------------------------------------------------------------------------


def fill(r, stream: str, group: str, n: int, *, poison: tuple[int, ...] = ()) -> list[str]:
    """A fresh stream of ``n`` entries with ids ``1-0`` .. ``n-0`` (readable in views) and a group
    reading it from the start; entries numbered in ``poison`` carry ``poison=1``."""
    r.delete(stream)
    with r.pipeline(transaction=False) as p:
        for i in range(1, n + 1):
            p.xadd(stream, {"n": i, **({"poison": 1} if i in poison else {})}, id=f"{i}-0")
        p.execute()
    r.xgroup_create(stream, group, id="0")
    return [f"{i}-0" for i in range(1, n + 1)]


def _group(r, stream: str, group: str) -> dict:
    return next(g for g in r.xinfo_groups(stream) if g["name"] == group)


def sample(r, stream: str, group: str, sink: Sink, produced: list[str], step: str, *,
           dlq: str | None = None) -> dict:
    """One sample of the invariant: not yet delivered + pending + done + dead-lettered = produced.
    Read in this order (group, PEL, sink, dead letters) so that an entry acked meanwhile is still
    seen: it entered the sink (or the dead-letter stream) before its XACK."""
    g = _group(r, stream, group)
    last = _id(g["last-delivered-id"])
    pel = r.xpending_range(stream, group, "-", "+", 100_000)
    done = sink.counts(stream)
    dead = {f.get("id") for _, f in r.xrange(dlq)} if dlq else set()
    pending = {p["message_id"] for p in pel}
    undelivered = {i for i in produced if _id(i) > last}
    lost = [i for i in produced if not (i in pending or i in done or i in undelivered or i in dead)]
    owners = collections.Counter(p["consumer"] for p in pel)
    return dict(step=step, produced=len(produced), undelivered=len(undelivered), pending=len(pending),
                done=len(done), dead=len(dead), duplicates=sum(c - 1 for c in done.values()), lost=len(lost),
                owners=dict(sorted(owners.items())), pending_ids=sorted(pending, key=_id),
                deliveries={p["message_id"]: p["times_delivered"] for p in pel}, lag=g.get("lag"))


def samples_table(samples: list[dict], title: str = "") -> Table:
    """Each sample's counts; the invariant column adds the first four up."""
    rows = [(s["step"], s["undelivered"], s["pending"],
             ", ".join(f"{c}: {n}" for c, n in s["owners"].items()) or "-", s["done"], s["duplicates"],
             s["lost"]) for s in samples]
    return Table(["step", "not yet delivered", "pending", "pending by owner", "done (SQLite)",
                  "done twice", "lost"], rows, title=title,
                 note="every produced id is in exactly one of: not yet delivered, pending, done")


def wait_idle(r, stream: str, group: str, min_idle_ms: int, timeout: float = 30.0) -> int:
    """Poll ``XPENDING ... IDLE min_idle_ms`` until every pending entry is that idle (the state a
    claim depends on, instead of a guessed sleep); returns how many entries that is."""
    def all_idle() -> bool:
        total = r.xpending(stream, group)["pending"]
        return len(r.xpending_range(stream, group, "-", "+", 100_000, idle=min_idle_ms)) == total
    wait_until(all_idle, timeout)
    return r.xpending(stream, group)["pending"]


# -- the consumer process -----------------------------------------------------------------------------


def naive_consume(r, stream, group, me, handle, count=10):
    """The first consumer most people write: read new entries only (">"), handle, XACK."""
    while reply := r.xreadgroup(group, me, {stream: ">"}, count=count):
        for entry_id, fields in reply[stream][0]:
            handle(entry_id, fields)
            r.xack(stream, group, entry_id)


def consumer_worker(ctx: Any, stream: str, group: str, consumer: str, db_path: str, *,
                    mode: str = "two-phase", stall_at: int | None = None) -> None:
    """A consumer process: ``mode`` "naive" (:func:`naive_consume`) or "two-phase" (the pattern's
    :func:`consume`), recording into the SQLite sink. With ``stall_at=k`` it stops at its k-th
    entry, after the XREADGROUP that fetched it and before handling or acking it, records
    "stalled" (detail: the entry id) and waits there: the notebook kills it with SIGKILL."""
    r = ctx.client(0)
    sink = Sink(db_path)
    handle, calls = handler(sink, stream, consumer), 0

    def guarded(entry_id: str, fields: dict) -> None:
        nonlocal calls
        calls += 1
        if calls == stall_at:
            ctx.record("stalled", entry_id)
            time.sleep(300)
        handle(entry_id, fields)

    try:
        if mode == "naive":
            naive_consume(r, stream, group, consumer, guarded)
        else:
            consume(r, stream, group, consumer, handle=guarded, dlq=f"{stream}:dead")
        ctx.record("drained", f"{calls} entries")
    finally:
        sink.close()


def _run_consumer(server, stream: str, group: str, consumer: str, sink: Sink, log: EventLog, *,
                  mode: str, stall_at: int | None = None) -> dict:
    workers = lab.Workers(consumer_worker, 1, nodes=[server], log=log,
                          args=(stream, group, consumer, sink.path),
                          kwargs=dict(mode=mode, stall_at=stall_at)).start()
    try:
        if stall_at:
            stalled = workers.wait_for("stalled", timeout=60).detail
            workers.kill("w1")                 # kill -9 after XREADGROUP, before XACK
        else:
            workers.join(60)
            stalled = None
    finally:
        workers.stop()
    return dict(exitcode=workers.exitcodes["w1"], stalled=stalled)


def crash_and_restart(server, r, stream: str, group: str, sink: Sink, *, n: int = 200,
                      stall_at: int = 41) -> dict:
    """Consumer c1 (a process, the naive loop, batches of 10) is killed with SIGKILL at its
    ``stall_at``-th entry, after the XREADGROUP of that batch and before its XACKs; then c1
    starts again, reading only ">" (in this process: a restart is a new connection under the same
    consumer name). Samples after each step."""
    produced = fill(r, stream, group, n)
    log = EventLog()
    crash = _run_consumer(server, stream, group, "c1", sink, log, mode="naive", stall_at=stall_at)
    samples = [sample(r, stream, group, sink, produced, "c1 killed (kill -9) before XACK")]
    naive_consume(r, stream, group, "c1", handler(sink, stream, "c1"))
    samples.append(sample(r, stream, group, sink, produced, 'c1 restarted, reads only ">"'))
    return dict(produced=produced, samples=samples, exitcode=crash["exitcode"], stalled=crash["stalled"],
                log=log)


def kill_mid_batch(server, r, stream: str, group: str, sink: Sink, *, n: int = 100,
                   stall_at: int = 21) -> dict:
    """A fresh stream; consumer c1 (a process running the pattern) is killed with SIGKILL inside
    a batch, after its XREADGROUP, and never comes back. Returns the ids and the first sample."""
    produced = fill(r, stream, group, n)
    crash = _run_consumer(server, stream, group, "c1", sink, EventLog(), mode="two-phase", stall_at=stall_at)
    first = sample(r, stream, group, sink, produced, "c1 killed (kill -9) before XACK")
    return dict(produced=produced, samples=[first], exitcode=crash["exitcode"], stalled=crash["stalled"])


# -- at scale: several consumer processes, one killed -----------------------------------------------


def service_worker(ctx: Any, stream: str, group: str, db_path: str, *, min_idle_ms: int,
                   victim: str = "", stall_at: int = 0, gate: str = "", deadline_s: float = 60.0) -> None:
    """A consumer service (named after its worker, w1..wN): ``consume`` then ``recover`` in a loop
    until the group has nothing pending and nothing left to deliver. The worker named ``victim``
    starts at once, records "first" at its first entry, and stops at its ``stall_at``-th entry
    (after the XREADGROUP, before handling or acking; within its first batch, so it surely gets
    there), recording "stalled": the notebook kills it there. The others start once the key
    ``gate`` exists (the notebook sets it after "first"), so the victim always has its batch."""
    r = ctx.client(0)
    sink = Sink(db_path)
    handle, calls = handler(sink, stream, ctx.name), 0

    def guarded(entry_id: str, fields: dict) -> None:
        nonlocal calls
        calls += 1
        if ctx.name == victim and calls == 1:
            ctx.record("first", entry_id)
        if ctx.name == victim and calls == stall_at:
            ctx.record("stalled", entry_id)
            time.sleep(300)
        handle(entry_id, fields)

    kw = dict(handle=guarded, dlq=f"{stream}:dead")
    deadline = time.monotonic() + deadline_s
    try:
        if ctx.name != victim and gate:
            standby(r, gate, timeout=deadline_s)
        while time.monotonic() < deadline:
            consume(r, stream, group, ctx.name, **kw)
            recover(r, stream, group, ctx.name, min_idle_ms, **kw)
            g = _group(r, stream, group)
            if g["pending"] == 0 and g["lag"] == 0:
                break
            time.sleep(0.02)
        ctx.record("finished", f"{calls} entries")
    finally:
        sink.close()


def storm(server, r, stream: str, group: str, sink: Sink, *, n: int = 1000, consumers: int = 3,
          victim: str = "w2", stall_at: int = 5, min_idle_ms: int = 1000) -> dict:
    """``consumers`` service processes share ``n`` entries; ``victim`` is killed with SIGKILL inside
    its first batch (``stall_at`` <= 10) and never restarted; the others, started once the victim
    has its batch, take its entries over with XAUTOCLAIM once they are ``min_idle_ms`` idle. A
    thread samples the invariant every few ms during the whole run."""
    produced = fill(r, stream, group, n)
    gate = f"{stream}:go"
    r.delete(gate)
    log = EventLog()
    sampler_r = server.client()
    t0 = time.monotonic()
    sampler = Sampler(lambda: sample(sampler_r, stream, group, sink, produced, ""), 10, final=False)
    workers = lab.Workers(service_worker, consumers, nodes=[server], log=log, args=(stream, group, sink.path),
                          kwargs=dict(min_idle_ms=min_idle_ms, victim=victim, stall_at=stall_at,
                                      gate=gate)).start()
    sampler.start()
    try:
        workers.wait_for("first", actor=victim, timeout=60)
        r.set(gate, 1)                           # the others start now
        stalled = workers.wait_for("stalled", actor=victim, timeout=60).detail
        workers.kill(victim)
        kill_t = time.monotonic() - t0
        for name in workers.names:
            if name != victim:
                workers.procs[name].join(60)
        samples = [(t - t0, x) for t, x in sampler.stop()]
    finally:
        sampler.cancel()
        workers.stop()
        sampler_r.close()
    r.delete(gate)
    final = sample(r, stream, group, sink, produced, "end")
    return dict(produced=produced, samples=samples, final=final, kill_t=kill_t, stalled=stalled,
                victim=victim, exitcodes=workers.exitcodes, by_consumer=sink.by_worker(stream),
                min_idle_ms=min_idle_ms)


def plot_storm(run: dict) -> None:
    """Top: done / pending / not yet delivered over time, stacked; bottom: pending by owner. The
    kill is marked on both; time starts just before the first delivery (process start-up is cut)."""
    from .. import charts

    n = len(run["produced"])
    first = next((k for k, (_, s) in enumerate(run["samples"]) if s["undelivered"] < n), 0)
    rows = run["samples"][max(0, first - 1):]
    t0 = rows[0][0]
    ts = [(t - t0) * 1000 for t, _ in rows]
    fig, (top, bottom) = charts.figure(f"{n} entries, {len(run['exitcodes'])} consumer processes, "
                                       f"{run['victim']} killed", nrows=2, height=5.0,
                                       xlabel="time since the first delivery (ms)", sharex=True)
    top.stackplot(ts, [s["done"] for _, s in rows], [s["pending"] for _, s in rows],
                  [s["undelivered"] for _, s in rows], labels=["done (SQLite)", "pending", "not yet delivered"],
                  colors=[charts.OK, charts.PALETTE[1], charts.NEUTRAL], alpha=0.85)
    top.set_ylabel("entries")
    top.set_xlabel("")
    victim = run["victim"]
    bottom.plot(ts, [s["owners"].get(victim, 0) for _, s in rows], label=f"pending with {victim}", linewidth=1.5,
                color=charts.BAD)
    bottom.plot(ts, [sum(c for o, c in s["owners"].items() if o != victim) for _, s in rows],
                label="pending with the others", linewidth=1, color=charts.NEUTRAL)
    bottom.set_ylabel("pending entries")
    for ax in (top, bottom):
        ax.axvline((run["kill_t"] - t0) * 1000, color=charts.BAD, linestyle="--", label=f"kill -9 {run['victim']}")
    lost = max(s["lost"] for _, s in run["samples"])
    charts.finish([top, bottom], summary=f"in this run {len(run['samples'])} samples, the most lost at any "
                  f"sample: {lost}; {run['final']['done']} of {n} done, {run['final']['duplicates']} done "
                  f"twice; processed by consumer: {run['by_consumer']}")


# -- poison entries -----------------------------------------------------------------------------------


def poison_rounds(r, stream: str, group: str, dlq: str, sink: Sink, consume_fn: Callable,
                  recover_fn: Callable, *, n: int = 30, poison: tuple[int, ...] = (13,),
                  min_idle_ms: int = 50, max_deliveries: int = 3) -> dict:
    """``consume_fn`` (c1) drains a stream holding poison entries; then ``recover_fn`` (c2) claims
    what stayed pending, once every pending entry is ``min_idle_ms`` idle, until none is left.
    Rows: step, poison entries' delivery counts (from XPENDING), pending, dead letters, done."""
    produced = fill(r, stream, group, n, poison=poison)
    r.delete(dlq)
    kw = dict(dlq=dlq, max_deliveries=max_deliveries)
    rows, samples = [], []

    def row(step: str) -> None:
        s = sample(r, stream, group, sink, produced, step, dlq=dlq)
        samples.append(s)
        counts = [str(s["deliveries"].get(f"{i}-0", "-")) for i in poison]
        rows.append((step, ", ".join(counts), s["pending"], r.xlen(dlq), s["done"]))

    consume_fn(r, stream, group, "c1", handle=handler(sink, stream, "c1"), **kw)
    row('c1: consume (">")')
    for k in range(1, max_deliveries + 2):
        if not r.xpending(stream, group)["pending"]:
            break
        wait_idle(r, stream, group, min_idle_ms)
        recover_fn(r, stream, group, "c2", min_idle_ms, handle=handler(sink, stream, "c2"), **kw)
        row(f"c2: recover #{k}")
    table = Table(["step", "poison deliveries", "pending", "dead letters", "done (SQLite)"], rows,
                  title=f"poison entries {', '.join(f'{i}-0' for i in poison)}; max_deliveries={max_deliveries}")
    return dict(produced=produced, samples=samples, rows=rows, table=table,
                dead=r.xrange(dlq), poison=[f"{i}-0" for i in poison])


# -- trimming -----------------------------------------------------------------------------------------


def _node_entries(r) -> int:
    try:
        return int(r.config_get("stream-node-max-entries")["stream-node-max-entries"])
    except Exception:  # CONFIG may be refused on a shared server; 100 is the default
        return 100


def trim_sweep(r, key: str, *, bound: int = 1000, adds: int = 3000) -> dict:
    """XADD ``adds`` entries with ``MAXLEN ~ bound`` and with ``MAXLEN = bound``, reading XLEN after
    each one (pipelined). Returns the XLEN series by mode and the node size."""
    out: dict[str, Any] = {"bound": bound, "node": _node_entries(r)}
    for mode, approximate in (("MAXLEN ~", True), ("MAXLEN =", False)):
        r.delete(key)
        with r.pipeline(transaction=False) as p:
            for i in range(adds):
                p.xadd(key, {"n": i}, maxlen=bound, approximate=approximate)
                p.xlen(key)
            out[mode] = p.execute()[1::2]
    r.delete(key)
    return out


def plot_trim(sweep: dict) -> None:
    from .. import charts

    bound, approx = sweep["bound"], sweep["MAXLEN ~"]
    fig, ax = charts.figure(f"XLEN while adding, trimmed to {bound}", xlabel="entries added",
                            ylabel="XLEN (entries)", height=3.0)
    xs = range(1, len(approx) + 1)
    ax.plot(xs, approx, label=f"MAXLEN ~ {bound}", linewidth=1)
    ax.plot(xs, sweep["MAXLEN ="], label=f"MAXLEN = {bound}", linewidth=1, linestyle="--")
    steady = approx[bound:]
    charts.finish(ax, summary=f"in this run, once full, MAXLEN ~ kept between {min(steady)} and "
                  f"{max(steady)} entries (nodes of {sweep['node']}); MAXLEN = kept exactly "
                  f"{sweep['MAXLEN ='][-1]}")


def minid_trial(r, key: str, *, n: int = 1000, minid: int = 550) -> Table:
    """``XTRIM MINID ~`` and ``MINID =`` on ids 1-0 .. n-0: how many entries stay, and the first."""
    rows = []
    for mode, approximate in (("MINID ~", True), ("MINID =", False)):
        fill(r, key, "g", n)
        removed = r.xtrim(key, minid=f"{minid}-0", approximate=approximate)
        rows.append((f"XTRIM {key.rsplit(':', 1)[-1]} {mode} {minid}-0", removed, r.xlen(key),
                     r.xrange(key, count=1)[0][0]))
    r.delete(key)
    return Table(["command", "removed", "XLEN after", "first id kept"], rows,
                 note=f"{n} entries, ids 1-0 .. {n}-0")


def trim_pending(r, stream: str, group: str, *, n: int = 10, keep: int = 5) -> dict:
    """c1 reads all ``n`` entries and acks none; ``XTRIM MAXLEN = keep`` deletes the oldest (still
    pending); then c1's own-PEL read and a claim by c2 (XAUTOCLAIM, min-idle 0)."""
    fill(r, stream, group, n)
    r.xreadgroup(group, "c1", {stream: ">"}, count=n)
    removed = r.xtrim(stream, maxlen=keep, approximate=False)
    pending_after_trim = r.xpending(stream, group)["pending"]
    own = r.xreadgroup(group, "c1", {stream: "0"}, count=n)[stream][0]
    cursor, claimed, deleted = r.xautoclaim(stream, group, "c2", 0, "0-0")
    return dict(removed=removed, xlen=r.xlen(stream), pending_after_trim=pending_after_trim,
                own=own, claimed=[i for i, _ in claimed], deleted=deleted, cursor=cursor,
                pending_after_claim=r.xpending(stream, group)["pending"])


# -- the PEL's memory and the group's lag ------------------------------------------------------------


def pel_memory(r, stream: str, group: str, *, n: int = 2000, step: int = 250) -> list[dict]:
    """``n`` entries; a consumer reads ``step`` at a time and acks nothing, then acks everything.
    At each step: pending and lag (XINFO GROUPS), MEMORY USAGE of the key (SAMPLES 0) and the
    server's used_memory, relative to the start."""
    fill(r, stream, group, n)

    def row(step_name: str) -> dict:
        g = _group(r, stream, group)
        return dict(step=step_name, pending=g["pending"], lag=g["lag"],
                    key_bytes=r.memory_usage(stream, samples=0), used=r.info("memory")["used_memory"])

    rows = [row("start")]
    while rows[-1]["pending"] < n:
        r.xreadgroup(group, "c1", {stream: ">"}, count=step)
        rows.append(row(f"read {rows[-1]['pending'] + step}"))
    r.xack(stream, group, *[i for i, _ in r.xrange(stream)])
    rows.append(row("XACK all"))
    for x in rows:
        x["key_delta"], x["used_delta"] = x["key_bytes"] - rows[0]["key_bytes"], x["used"] - rows[0]["used"]
    return rows


def pel_table(rows: list[dict]) -> Table:
    return Table(["step", "pending", "lag", "MEMORY USAGE (bytes)", "used_memory growth (bytes)"],
                 [(x["step"], x["pending"], x["lag"], x["key_bytes"], x["used_delta"]) for x in rows])


def plot_pel_memory(rows: list[dict]) -> None:
    from .. import charts

    grow = [x for x in rows if x["step"] != "XACK all"]
    top = grow[-1]
    fig, ax = charts.figure("Memory of the pending entries list, nothing acked",
                            xlabel="pending entries", ylabel="memory growth (KB)", height=3.0)
    ax.plot([x["pending"] for x in grow], [x["key_delta"] / 1024 for x in grow], "o-", markersize=3,
            label="MEMORY USAGE of the key (an estimate)")
    ax.plot([x["pending"] for x in grow], [x["used_delta"] / 1024 for x in grow], "s-", markersize=3,
            label="server used_memory (allocated)")
    charts.finish(ax, summary=f"in this run {top['pending']} pending entries added "
                  f"{top['key_delta'] / top['pending']:.0f} bytes each by MEMORY USAGE and "
                  f"{top['used_delta'] / top['pending']:.0f} bytes each by used_memory; after XACK the key "
                  f"was back to {rows[-1]['key_bytes']} bytes (it started at {rows[0]['key_bytes']})")
