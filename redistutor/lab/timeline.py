"""A plain-text table of a lab's timeline, stable from run to run.

Stable means no wall-clock times, ports or PIDs, and by default no times at all: the row order
is the story ("w2 acquired, w2 was killed, w3 acquired"), and it does not change between runs
when the events are causally ordered. ``times=True`` adds seconds since the log started, rounded
to 0.1 s, for labs where the gap is the lesson (a lock held until its TTL ran out).
"""

from __future__ import annotations

from typing import Iterable

from ..events import Event, EventLog


def timeline_table(log: EventLog | Iterable[Event], *, times: bool = False,
                   kinds: Iterable[str] | None = None, actors: Iterable[str] | None = None) -> str:
    """Render events as a fixed-width text table, one row per event in time order.

    Args:
        log: an EventLog (or a list of events).
        times: add a ``t (s)`` column rounded to 0.1 s (``end`` too, for spans).
        kinds: keep only these kinds (e.g. ``["fault"]``).
        actors: keep only these actors.
    """
    events = log.events if isinstance(log, EventLog) else sorted(log, key=lambda e: (e.t, e.actor, e.kind))
    if kinds is not None:
        keep = set(kinds)
        events = [e for e in events if e.kind in keep]
    if actors is not None:
        who = set(actors)
        events = [e for e in events if e.actor in who]
    header = ["#"] + (["t (s)"] if times else []) + ["actor", "kind", "detail"]
    rows = []
    for i, e in enumerate(events, 1):
        row = [str(i)]
        if times:
            t = f"{e.t:.1f}" + (f"-{e.end:.1f}" if e.end is not None else "")
            row.append(t)
        row += [e.actor, e.kind, e.detail]
        rows.append(row)
    if not rows:
        return "(no events)"
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
