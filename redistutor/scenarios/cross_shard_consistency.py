"""Scenarios for notebooks/10-cross-shard-consistency.ipynb: faults, races, trials and views.

The pattern itself (stamps, the reader's check, the safe repair) is in
:mod:`redistutor.patterns.cross_shard_consistency`; this module holds what a lesson does *to* it:
tearing writes on purpose, holding a writer or a repair at a pause point, repeating the detection
experiment over seeds and fault kinds, and turning the results into :class:`~redistutor.Table`
views and charts. Every helper returns plain data (or a view), so a notebook cell stays one line.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from ..patterns.cross_shard_consistency import (
    MISSING,
    OK,
    TORN,
    Read,
    SourceOfTruth,
    Stamp,
    StampedSplit,
    encode,
)
from ..race import PausePoint, run_in_thread
from ..tables import Table

__all__ = [
    "InjectedFault", "Trial", "blind_repair", "cost_chart", "crash", "detection_run", "fail_between_sets",
    "late_writer_during_repair", "measure_costs", "newest_wins", "newest_wins_table", "pair_table", "repair_table",
    "run_trials", "stalled_writer", "tear_trial", "tear_write", "trial_table",
]


class InjectedFault(Exception):
    """Raised by a fault hook to simulate a writer crashing between two SETs."""


def fail_between_sets(entity: Any, next_part: str) -> None:
    """A ``between_sets`` hook: the writer 'crashes' after the first SET."""
    raise InjectedFault(f"writer died before writing {next_part} of account {entity}")


def crash(node: Any) -> None:
    """``kill -9`` a lab node after making sure its AOF holds every write it has acknowledged.

    Under ``appendfsync everysec``, while a background fsync is slow (a busy disk), Redis postpones
    writing its AOF buffer for up to 2 s and still replies to clients (``flushAppendOnlyFile`` in
    src/aof.c), so a kill can lose writes it acknowledged: on a loaded machine that tears accounts
    nobody injected a fault into. Switching to ``always`` first makes this command's own reply wait
    until the buffer is written; the restart goes back to the node's configured policy.
    """
    node.r.config_set("appendfsync", "always")
    node.kill()


def tear_write(split: Any, entity: Any, parts: Mapping[str, Any], fault: Callable[[Any, str], Any] = fail_between_sets,
               *, recover: Callable[[], Any] | None = None) -> str:
    """Write ``parts`` with ``fault`` run between the SETs; returns what the writer saw (the
    exception's type name). ``recover()`` runs afterwards (restart a killed shard)."""
    saved, split.hooks = split.hooks, {"between_sets": fault}
    try:
        split.write(entity, parts)
        seen = "no error"
    except (InjectedFault, redis.ConnectionError) as exc:
        seen = type(exc).__name__
    finally:
        split.hooks = saved
        if recover is not None:
            recover()
    return seen


# -- views ------------------------------------------------------------------------------------


def _stamp_text(s: Stamp | None) -> str:
    return "-" if s is None else str(Stamp(s.token[:6], s.version))


def pair_table(reads: Iterable[Read], *, title: str = "", tokens: Mapping[str, str] | None = None) -> Table:
    """One row per entity: each part's stamp (first 6 hex chars), plan, and the verdict.
    ``tokens`` renames known 6-char token prefixes (e.g. ``{"a1b2c3": "<tok1>"}``) for stable output."""
    reads = list(reads)
    parts = list(reads[0].stamps) if reads else []
    rows = []
    for res in reads:
        row: list[Any] = [res.entity]
        for p in parts:
            text = _stamp_text(res.stamps[p])
            for prefix, name in (tokens or {}).items():
                text = text.replace(prefix, name)
            row += [text, (res.parts[p] or {}).get("plan", "-")]
        row.append({OK: "ok", TORN: "✗ torn", MISSING: "missing"}[res.status])
        rows.append(row)
    columns = ["entity"] + [c for p in parts for c in (f"{p} stamp", f"{p} plan")] + ["verdict"]
    return Table(columns, rows, title=title or "what a reader sees, part by part")


# -- 1000 writes, a seeded sample torn ----------------------------------------------------------


def detection_run(split: StampedSplit, n: int, before: Mapping[str, Any], after: Mapping[str, Any], *,
                  rate: float = 0.10, seed: int = 2024) -> dict[str, Any]:
    """Write ``n`` entities cleanly and audit (any flag is a false positive), then rewrite all of
    them with a tear in a seeded ``rate`` sample, audit again (timed), repair what the audit
    flagged and audit a third time. Returns the sets, counts and the audit time in ms."""
    entities = range(1, n + 1)
    planned = set(random.Random(seed).sample(list(entities), round(rate * n)))
    for e in entities:
        split.write(e, before)
    clean_flags = split.audit(entities)
    injected = set()
    for e in entities:
        if e in planned:
            tear_write(split, e, after)
            injected.add(e)
        else:
            split.write(e, after)
    t0 = time.perf_counter()
    detected = set(split.audit(entities))
    audit_ms = (time.perf_counter() - t0) * 1000
    repaired = {e: split.repair(e) for e in sorted(detected)}
    truth = split.truth
    return {
        "n": n, "planned": planned, "injected": injected, "clean_flags": clean_flags, "detected": detected,
        "audit_ms": audit_ms, "repaired": repaired, "torn_after_repair": split.audit(entities),
        "differ_from_truth": [e for e in entities if split.read(e).parts != truth.load(e)[0]],
    }


# -- repeated trials ----------------------------------------------------------------------------


@dataclass
class Trial:
    """One detection trial: which writes were torn, and which ones the audit flagged."""

    fault: str
    rate: float
    seed: int
    entities: list[Any]
    planned: set[Any]                          # the seeded sample chosen to tear
    injected: set[Any]                         # writes that actually failed between the SETs
    detected: set[Any]                         # flagged by the audit after the torn round
    clean_flags: list[Any] = field(default_factory=list)  # flagged after the clean round

    @property
    def missed(self) -> set[Any]:
        return self.injected - self.detected

    @property
    def false_positives(self) -> set[Any]:
        return (self.detected - self.injected) | set(self.clean_flags)


def tear_trial(split: StampedSplit, entities: Sequence[Any], *, rate: float, seed: int,
               before: Mapping[str, Any], after: Mapping[str, Any],
               fault: Callable[[Any, str], Any] = fail_between_sets, recover: Callable[[], Any] | None = None,
               label: str = "exception") -> Trial:
    """Write every entity ``before`` cleanly and audit it (any flag is a false positive), then write
    ``after`` to all of them with ``fault(entity, next_part)`` run between the SETs of a seeded
    ``rate`` sample, and audit again. ``recover()`` runs after each failed write (restart a killed
    shard). ``split.hooks`` is restored afterwards."""
    entities = list(entities)
    planned = set(random.Random(seed).sample(entities, round(rate * len(entities))))
    saved = split.hooks
    split.hooks = None
    try:
        for e in entities:
            split.write(e, before)
        clean = split.audit(entities)
        split.hooks = {"between_sets": lambda e, part: fault(e, part) if e in planned else None}
        injected = set()
        for e in entities:
            try:
                split.write(e, after)
            except (InjectedFault, redis.ConnectionError):
                injected.add(e)
                if recover is not None:
                    recover()
    finally:
        split.hooks = saved
    return Trial(label, rate, seed, entities, planned, injected, set(split.audit(entities)), clean)


def run_trials(split: StampedSplit, before: Mapping[str, Any], after: Mapping[str, Any], *,
               shard_b: Any) -> list[Trial]:
    """Six exception trials over 200 accounts (tear rates 0 % to 50 %, three seeds at 10 %), then
    one over 100 accounts where the fault is a :func:`crash` of the lab node ``shard_b``,
    restarted after each failed write."""
    trials = [tear_trial(split, range(1, 201), rate=rate, seed=seed, before=before, after=after)
              for rate, seed in [(0.0, 1), (0.01, 1), (0.10, 1), (0.10, 2), (0.10, 3), (0.50, 1)]]
    trials.append(tear_trial(split, range(1001, 1101), rate=0.05, seed=4, before=before, after=after,
                             label="kill -9", fault=lambda entity, part: crash(shard_b), recover=shard_b.restart))
    return trials


def trial_table(trials: Iterable[Trial]) -> Table:
    """One row per trial: fault, tear rate, seed, writes, torn, detected, missed, false positives."""
    trials = list(trials)
    rows = [[t.fault, f"{t.rate:.0%}", t.seed, 2 * len(t.entities), len(t.injected), len(t.detected),
             len(t.missed), len(t.false_positives)] for t in trials]
    torn = sum(len(t.injected) for t in trials)
    caught = sum(len(t.injected & t.detected) for t in trials)
    false = sum(len(t.false_positives) for t in trials)
    return Table(["fault", "tear rate", "seed", "SETs", "torn", "detected", "missed", "false +"], rows,
                 title="detection trials (an audit after each round)",
                 note=f"in this run: {caught} of {torn} torn writes flagged, {false} clean writes flagged")


# -- in-flight writes and repairs ---------------------------------------------------------------


def stalled_writer(split: StampedSplit, entity: Any, before: Mapping[str, Any], after: Mapping[str, Any], *,
                   held_for: int, retries: int = 3, backoff: float = 0.02) -> dict[str, Any]:
    """A writer stalls between its two SETs while a reader runs ``read_consistent``; the writer
    goes on after the reader's ``held_for``-th back-off (0: before the reader starts; more than
    ``retries``: only after the reader returned). Deterministic: pause points, no timing luck.
    Returns what the reader returned, the repairs it made, and the entity afterwards."""
    split.write(entity, before)
    repairs0 = split.stats.repairs
    paused = PausePoint("between_sets")
    split.hooks = {"between_sets": paused}
    writer = run_in_thread(split.write, entity, after)
    paused.wait_reached()

    def let_writer_finish() -> None:
        paused.release()
        writer.result(timeout=10)

    def before_retry(e: Any, attempt: int, res: Read) -> None:
        if attempt == held_for:
            let_writer_finish()

    split.hooks = {"before_retry": before_retry}
    try:
        if held_for == 0:
            let_writer_finish()
        returned = split.read_consistent(entity, retries=retries, backoff=backoff)
        if not writer.done():
            let_writer_finish()
    finally:
        split.hooks = None
    return {"returned": returned, "repairs": split.stats.repairs - repairs0, "after": split.read(entity)}


def blind_repair(split: StampedSplit, entity: Any, truth: Any = None) -> dict[str, bool]:
    """The repair as it was: load the truth, then SET every part, whatever it holds by now (a
    writer that landed in between is overwritten with older data, under stamps that agree)."""
    doc, version = (truth or split.truth).load(entity)
    stamp = split.new_stamp(version)
    for part, r in split.shards.items():
        r.set(split.key(entity, part), encode(stamp, doc[part]))
    return {part: True for part in split.shards}


class _LateWriterTruth:
    """The source of truth, seen by a repair: right after the repair loads the row, another writer
    saves a newer document and SETs every part (it lands between the repair's read and its write)."""

    def __init__(self, truth: SourceOfTruth, late_write: Callable[[], Any]) -> None:
        self.truth, self.late_write, self.landed = truth, late_write, False

    def load(self, entity: Any):
        loaded = self.truth.load(entity)
        if not self.landed:
            self.landed = True
            self.late_write()
        return loaded


def late_writer_during_repair(split: StampedSplit, entity: Any, docs: Sequence[Mapping[str, Any]], *,
                              repair_with: Any = None) -> dict[str, Any]:
    """``docs = (old, torn_to, late)``: write ``old``, tear the write of ``torn_to``, let a reader
    see the tear, then repair it while a late writer writes ``late`` in full between the repair's
    read of the truth and its SETs. ``repair_with`` is the repair class (e.g. :class:`RollForward`,
    the compare-and-set), called as ``repair_with(split, truth).repair(seen)``; None repairs with
    :func:`blind_repair`. Returns the torn read, what the repair wrote, and the end state."""
    old, torn_to, late = docs
    split.write(entity, old)
    tear_write(split, entity, torn_to)
    seen = split.read(entity)
    late_stamp: list[Stamp] = []
    truth = _LateWriterTruth(split.truth, lambda: late_stamp.append(split.write(entity, late, actor="late writer")))
    if repair_with is None:
        written = blind_repair(split, entity, truth)
    else:
        written = repair_with(split, truth).repair(seen)
    after = split.read(entity)
    return {"seen": seen, "written": written, "after": after, "truth": split.truth.load(entity)[0],
            "late_stamp": late_stamp[0], "audit": split.audit([entity])}


def repair_table(results: Mapping[str, Mapping[str, Any]]) -> Table:
    """One row per repair kind from :func:`late_writer_during_repair`."""
    rows = []
    for name, res in results.items():
        after = res["after"]
        rows.append([name, ", ".join(p for p, ok in res["written"].items() if ok) or "none",
                     after.parts["profile"]["plan"], res["truth"]["profile"]["plan"], after.status,
                     "yes" if res["audit"] else "no"])
    return Table(["repair", "parts it wrote", "shards now say", "database says", "stamps", "audit flags it"],
                 rows, title="a late writer lands between the repair's read and its write")


# -- version tokens -----------------------------------------------------------------------------


def newest_wins(shards: Mapping[str, redis.Redis], truth: SourceOfTruth, before: Mapping[str, Any],
                after: Mapping[str, Any], *, versions: str, skew_s: float = -5.0, prefix: str = "acct",
                entity: Any = 20) -> dict[str, Any]:
    """An on-time writer writes ``before``; a writer whose clock is off by ``skew_s`` then writes
    ``after`` (later in real time). Returns what the shards kept and how many parts were refused."""
    for c in shards.values():
        c.flushall()
    truth.clear()
    on_time = StampedSplit(shards, prefix=prefix, truth=truth, versions=versions)
    skewed = StampedSplit(shards, prefix=prefix, truth=truth, versions=versions,
                          clock=lambda: time.time() + skew_s)
    on_time.write(entity, before)
    late = skewed.write(entity, after)
    return {"versions": versions, "late": late, "kept": on_time.read(entity), "refused": skewed.stats.rejected,
            "truth": truth.load(entity)[0]}


def newest_wins_table(results: Iterable[Mapping[str, Any]]) -> Table:
    rows = [[r["versions"], r["kept"].parts["profile"]["plan"], r["kept"].status, r["refused"],
             r["truth"]["profile"]["plan"]] for r in results]
    return Table(["version from", "shards kept plan", "stamps", "parts refused", "database says"], rows,
                 title="the later write is 'pro'; its writer's clock is 5 s slow")


# -- costs ----------------------------------------------------------------------------------------


def measure_costs(splits: Mapping[str, Any], *, n: int = 300) -> dict[str, Any]:
    """Write entity 1 with every split, then: bytes of the profile value and the median read
    latency (µs) of each. ``splits`` maps a label to an object with ``write``, ``read``, ``key``."""
    profile = {"name": "Ada", "plan": "pro"}
    settings = {"plan": "pro", "max_projects": 50}
    sizes, p50 = {}, {}
    for name, s in splits.items():
        s.write(1, {"profile": profile, "settings": settings})
        first = next(iter(s.shards.values()))
        raw = first.get(s.key(1, "profile"))
        sizes[name] = len(raw) if raw is not None else None
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            s.read(1)
            times.append((time.perf_counter() - t0) * 1e6)
        p50[name] = statistics.median(times)
    return {"bytes": sizes, "p50_us": p50}


def cost_chart(costs: Mapping[str, Any], *, audit_ms: float | None = None):
    """A bar chart of median read latency per reader, with the summary printed under it."""
    from .. import charts

    names = list(costs["p50_us"])
    values = [costs["p50_us"][n] for n in names]
    fig, ax = charts.figure("Read latency by reader", xlabel="reader", ylabel="median read (µs)")
    ax.bar(names, values, color=charts.PALETTE[:len(names)])
    fastest, slowest = min(values), max(values)
    summary = (f"in this run the median read took {fastest:.0f}–{slowest:.0f} µs "
               f"({', '.join(f'{n} {v:.0f}' for n, v in zip(names, values))})")
    if audit_ms is not None:
        summary += f"; the audit of 1000 accounts took {audit_ms:.1f} ms"
    charts.finish(ax, summary=summary, legend=False)
    return fig
