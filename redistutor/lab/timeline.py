"""A plain-text table of a lab's timeline, stable from run to run.

Stable means no wall-clock times, ports or PIDs, and by default no times at all: the row order
is the story ("w2 acquired, w2 was killed, w3 acquired"), and it does not change between runs
when the events are causally ordered. ``times=True`` adds seconds since the log started, rounded
to 0.1 s, for labs where the gap is the lesson (a lock held until its TTL ran out).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .. import _html as H
from ..events import Event, EventLog


class TimelineTable(str, H.Renderable):
    """The table as a view *and* a string: ``print(t)``, ``str(t)``, ``"kill -9" in t`` and
    ``t.splitlines()`` work as before, and a cell ending in ``lab.timeline_table(log)`` displays it
    (text repr, HTML table with numbers right-aligned, fault and ✓/✗ write rows marked)."""

    header: tuple[str, ...]
    rows: list[list[str]]

    def __new__(cls, text: str, header: Sequence[str] = (), rows: Sequence[Sequence[str]] = ()) -> TimelineTable:
        self = super().__new__(cls, text)
        self.header, self.rows = tuple(header), [list(r) for r in rows]
        return self

    def __repr__(self) -> str:
        return str.__str__(self)

    def _text(self) -> str:
        return str.__str__(self)

    def _html(self) -> str:
        if not self.rows:
            return H.note(str.__str__(self))
        from ..timeline import glyph_html, mark_of

        numeric = (0, 1) if "t (s)" in self.header else (0,)
        kind_col, detail_col = len(self.header) - 2, len(self.header) - 1
        marks = [mark_of(row[kind_col], row[detail_col]) for row in self.rows]
        order = list(dict.fromkeys(marks))  # each kind its own glyph, as in a Timeline's legend
        cells = []
        for row, mark in zip(self.rows, marks):
            cells.append([H.esc(c) for c in row[:kind_col]]
                         + [glyph_html(mark, order) + " " + H.esc(row[kind_col]), H.esc(row[detail_col])])
        return H.html_table(self.header, cells, right=numeric, raw=tuple(range(len(self.header))))


def timeline_table(log: EventLog | Iterable[Event], *, times: bool = False,
                   kinds: Iterable[str] | None = None, actors: Iterable[str] | None = None) -> TimelineTable:
    """Render events as a fixed-width text table, one row per event in time order.

    Returns a :class:`TimelineTable`: a ``str`` (print it, search it) that also displays as a
    view when it ends a cell.

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
        return TimelineTable("(no events)", header, [])
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return TimelineTable("\n".join(lines), header, rows)
