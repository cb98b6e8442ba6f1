"""Race timelines: run N threads against a pattern, record what they did on one clock, draw it.

Workers append events to a shared :class:`~redistutor.events.EventLog` ("acquire", "release",
"read", "write", "crash"...). Processes report theirs as dicts (``EventLog.extend``). Then:

* :func:`spans` pairs each actor's start event with its next end event (a lock held from acquire
  to release);
* :func:`max_concurrent` is the most spans open at once: "at most one holder" is
  ``max_concurrent(log) == 1``;
* :class:`Timeline` renders a text table and a text swimlane by *event order* (deterministic
  when the order is, e.g. a race driven by PausePoints), an HTML table with an SVG swimlane by
  time, and a matplotlib Gantt chart (``.plot()``).
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from . import _html as H
from .events import Event, EventLog

__all__ = ["Span", "Timeline", "mark_of", "max_concurrent", "overlap_windows", "overlaps", "run_threads", "spans"]


def run_threads(fn: Callable[[str, EventLog], Any], n: int = 4, *, log: EventLog | None = None,
                name: str = "worker", timeout: float = 30.0) -> list[Any]:
    """Run ``fn(actor, log)`` in ``n`` threads named ``worker-1..n``, released together.

    Returns the results in thread order; re-raises the first exception a worker raised.
    """
    log = log if log is not None else EventLog()
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException | None] = [None] * n
    done = [False] * n  # own flags: an interrupted Thread.join() can mark a running thread stopped

    def target(i: int) -> None:
        actor = f"{name}-{i + 1}"
        try:
            barrier.wait(timeout)
            results[i] = fn(actor, log)
        except BaseException as exc:  # handed to the caller below
            errors[i] = exc
        finally:
            done[i] = True

    threads = [threading.Thread(target=target, args=(i,), name=f"{name}-{i + 1}", daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join(timeout)
    except KeyboardInterrupt:
        # Jupyter's Interrupt: the cell's work stops. Threads still at the barrier leave it;
        # running ones get KeyboardInterrupt at their next bytecode (or when a blocking call
        # returns: lab clients time out within 1 s). Servers are in their own sessions and stay.
        barrier.abort()
        for i, t in enumerate(threads):
            if not done[i] and t.ident is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(t.ident),
                                                           ctypes.py_object(KeyboardInterrupt))
        deadline = time.monotonic() + 5
        while not all(done) and time.monotonic() < deadline:
            time.sleep(0.01)
        raise
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        raise TimeoutError(f"threads still running after {timeout:g} s: {', '.join(stuck)}")
    for e in errors:
        if e is not None:
            raise e
    return results


@dataclasses.dataclass(frozen=True)
class Span:
    actor: str
    start: float
    end: float | None  # None: never ended (still held when the log was read)
    detail: str = ""


def _kinds(k: str | Sequence[str]) -> tuple[str, ...]:
    return (k,) if isinstance(k, str) else tuple(k)


def _events(source: EventLog | Iterable[Event]) -> list[Event]:
    return source.events if isinstance(source, EventLog) else sorted(source, key=lambda e: (e.t, e.actor, e.kind))


def spans(source: EventLog | Iterable[Event], start_kind: str | Sequence[str] = "acquire",
          end_kind: str | Sequence[str] = "release") -> list[Span]:
    """Pair each actor's start event with its next end event; events carrying ``end`` are spans too."""
    starts, ends = _kinds(start_kind), _kinds(end_kind)
    open_: dict[str, Event] = {}
    out: list[Span] = []
    for e in _events(source):
        if e.kind in starts and e.end is not None:
            out.append(Span(e.actor, e.t, e.end, e.detail))
        elif e.kind in starts:
            if e.actor in open_:  # acquired again without releasing: the old span never ended
                old = open_[e.actor]
                out.append(Span(old.actor, old.t, None, old.detail))
            open_[e.actor] = e
        elif e.kind in ends and e.actor in open_:
            s = open_.pop(e.actor)
            out.append(Span(s.actor, s.t, e.t, s.detail))
    out += [Span(s.actor, s.t, None, s.detail) for s in open_.values()]
    return sorted(out, key=lambda s: (s.start, s.actor))


def _as_spans(source: Any, start_kind: Any, end_kind: Any) -> list[Span]:
    if isinstance(source, list) and source and isinstance(source[0], Span):
        return source
    return spans(source, start_kind, end_kind)


def max_concurrent(source: EventLog | Iterable[Event] | list[Span], start_kind: str | Sequence[str] = "acquire",
                   end_kind: str | Sequence[str] = "release") -> int:
    """The most spans open at the same time (ends at the same instant as a start close first)."""
    points = []
    for s in _as_spans(source, start_kind, end_kind):
        points.append((s.start, 1))
        if s.end is not None:
            points.append((s.end, -1))
    best = cur = 0
    for _, delta in sorted(points, key=lambda p: (p[0], p[1])):
        cur += delta
        best = max(best, cur)
    return best


def overlaps(source: Any, start_kind: Any = "acquire", end_kind: Any = "release") -> list[tuple[str, str]]:
    """Pairs of actors whose spans overlap in time, sorted."""
    ss = _as_spans(source, start_kind, end_kind)
    out = set()
    for i, a in enumerate(ss):
        for b in ss[i + 1:]:
            a_end = float("inf") if a.end is None else a.end
            b_end = float("inf") if b.end is None else b.end
            if a.actor != b.actor and a.start < b_end and b.start < a_end:
                out.add(tuple(sorted((a.actor, b.actor))))
    return sorted(out)  # type: ignore[arg-type]


# -- how events look -------------------------------------------------------------------------------
# Letters for the text swimlane; glyphs (SVG shapes) and colours for the drawn forms. Colours are
# Okabe & Ito's colour-blind-safe palette (redistutor.charts.PALETTE), and every mark also differs
# in shape, so nothing relies on colour alone.

_LETTER = {"acquire": "A", "release": "R", "read": "r", "write": "w", "crash": "X", "fault": "!",
           "expire": "E"}
_VERDICT_LETTER = {"accepted": "✓", "rejected": "✗"}

HOLD, OVERLAP = "#0072B2", "#E69F00"  # bars; the band behind two or more open holds
ACCEPTED, REJECTED, FAULT = "#009E73", "#D55E00", "#000000"
OUTLINE = "#D55E00"  # outline of a bar that overlaps another actor's bar
MIN_BAR_PX = 6  # a hold never shrinks below this (a 0.2 ms hold is still seen)
GLYPH_PX = 10  # glyph size; glyphs in one lane are kept at least this far apart
CHAR_PX = 6.0  # estimated width of one label character (10 px sans-serif)
MAX_LEVELS = 3  # label rows per lane; a label that fits in none is left out (the table lists it)

FAULT_KINDS = ("fault", "crash", "kill", "pause", "resume", "partition", "heal", "freeze", "restart",
               "sigstop", "sigcont", "failover")
_REJECTED = re.compile(r"\b(rejected|refused|denied)\b", re.I)
_ACCEPTED = re.compile(r"\baccepted\b", re.I)

# kind -> (shape, colour) for common kinds; other kinds cycle through _OTHER.
_MARKS = {"read": ("circle", "#56B4E9"), "get": ("circle", "#56B4E9"), "write": ("diamond", "#CC79A7"),
          "set": ("diamond", "#CC79A7"), "expire": ("triangle-down", "#E69F00"),
          "accepted": ("check", ACCEPTED), "rejected": ("cross", REJECTED), "fault": ("star", FAULT)}
_OTHER = [("square", "#56B4E9"), ("triangle-up", "#CC79A7"), ("square", "#E69F00"),
          ("triangle-up", "#0072B2"), ("circle", "#CC79A7"), ("diamond", "#56B4E9")]


def mark_of(kind: str, detail: str = "") -> str:
    """How an event is marked: "accepted" / "rejected" (a write the resource took or refused, by
    its kind or detail), "fault" (a fault, crash, kill, pause... by its kind), else its kind."""
    text = f"{kind} {detail}"
    if _REJECTED.search(text):
        return "rejected"
    if _ACCEPTED.search(text):
        return "accepted"
    if kind.lower().startswith(FAULT_KINDS):
        return "fault"
    return kind


def _style(mark: str, order: Sequence[str] = ()) -> tuple[str, str]:
    if mark in _MARKS:
        return _MARKS[mark]
    others = [m for m in order if m not in _MARKS]
    i = others.index(mark) if mark in others else len(others)
    return _OTHER[i % len(_OTHER)]


def _shape_svg(shape: str, colour: str, x: float, y: float, r: float = GLYPH_PX / 2) -> str:
    """One glyph centred on (x, y), made of SVG primitives (no font needed)."""
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r * 0.8:.1f}" fill="{colour}" stroke="#fff" stroke-width="1"/>'
    if shape == "check":
        return (f'<polyline points="{x - r:.1f},{y:.1f} {x - r * 0.25:.1f},{y + r * 0.8:.1f} {x + r:.1f},{y - r:.1f}" '
                f'fill="none" stroke="#fff" stroke-width="4.5" stroke-linecap="round" stroke-linejoin="round"/>'
                f'<polyline points="{x - r:.1f},{y:.1f} {x - r * 0.25:.1f},{y + r * 0.8:.1f} {x + r:.1f},{y - r:.1f}" '
                f'fill="none" stroke="{colour}" stroke-width="2.5" stroke-linecap="round" stroke-linejoin="round"/>')
    if shape == "cross":
        k = r * 0.8
        d = f"M{x - k:.1f},{y - k:.1f} L{x + k:.1f},{y + k:.1f} M{x + k:.1f},{y - k:.1f} L{x - k:.1f},{y + k:.1f}"
        return (f'<path d="{d}" stroke="#fff" stroke-width="4.5" stroke-linecap="round"/>'
                f'<path d="{d}" stroke="{colour}" stroke-width="2.5" stroke-linecap="round"/>')
    if shape == "star":
        pts = []
        for k in range(10):
            rad = r * (1.05 if k % 2 == 0 else 0.45)
            a = math.pi / 2 + k * math.pi / 5
            pts.append(f"{x + rad * math.cos(a):.1f},{y - rad * math.sin(a):.1f}")
        return f'<polygon points="{" ".join(pts)}" fill="{colour}" stroke="#fff" stroke-width="1"/>'
    if shape == "diamond":
        points = f"{x:.1f},{y - r:.1f} {x + r * 0.8:.1f},{y:.1f} {x:.1f},{y + r:.1f} {x - r * 0.8:.1f},{y:.1f}"
    elif shape == "triangle-down":
        points = f"{x - r * 0.85:.1f},{y - r * 0.7:.1f} {x + r * 0.85:.1f},{y - r * 0.7:.1f} {x:.1f},{y + r * 0.8:.1f}"
    elif shape == "triangle-up":
        points = f"{x - r * 0.85:.1f},{y + r * 0.7:.1f} {x + r * 0.85:.1f},{y + r * 0.7:.1f} {x:.1f},{y - r * 0.8:.1f}"
    else:  # square
        k = r * 0.7
        points = f"{x - k:.1f},{y - k:.1f} {x + k:.1f},{y - k:.1f} {x + k:.1f},{y + k:.1f} {x - k:.1f},{y + k:.1f}"
    return f'<polygon points="{points}" fill="{colour}" stroke="#fff" stroke-width="1"/>'


def glyph_html(mark: str, order: Sequence[str] = ()) -> str:
    """A small inline SVG of an event's glyph, for legends and table cells."""
    shape, colour = _style(mark, order)
    return (f'<svg class="rt-glyph" width="12" height="12" viewBox="0 0 12 12" '
            f'xmlns="http://www.w3.org/2000/svg">{_shape_svg(shape, colour, 6, 6, 5)}</svg>')


def _label_of(e: Event, mark: str) -> str:
    """The label drawn next to an event: faults by their detail ("kill -9"), writes by their
    verdict, other events by their kind (the table under the chart has every detail)."""
    if mark == "fault":
        text = e.detail or e.kind
    elif mark in ("accepted", "rejected"):
        text = f"{e.kind}: {e.detail}" if e.detail else e.kind
    else:
        text = e.kind
    return text if len(text) <= 40 else text[:39] + "…"


def _fmt_span(value: float, unit: str) -> str:
    """A duration in ``unit`` with sensible precision: 296 ms, 2.5 ms, 0.04 ms, < 0.01 ms."""
    if value >= 10:
        return f"{value:.0f} {unit}"
    if value >= 1:
        return f"{value:.1f} {unit}"
    return f"{value:.2f} {unit}" if value >= 0.01 else f"< 0.01 {unit}"


def _nice_step(span: float, target: int = 6) -> float:
    raw = span / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


def _fmt_tick(v: float) -> str:
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:g}"


def overlap_windows(span_list: Sequence[Span], until: float) -> list[tuple[float, float, int]]:
    """(start, end, holders) for every stretch of time with two or more spans open (an open span
    lasts until ``until``). Ends at the same instant as a start close first, as in max_concurrent."""
    points = []
    for s in span_list:
        points.append((s.start, 1))
        points.append((until if s.end is None else s.end, -1))
    out: list[tuple[float, float, int]] = []
    cur, since, peak = 0, 0.0, 0
    for t, delta in sorted(points, key=lambda p: (p[0], p[1])):
        before = cur
        cur += delta
        if before < 2 <= cur:
            since, peak = t, cur
        elif cur >= 2:
            peak = max(peak, cur)
        elif before >= 2 > cur:
            out.append((since, t, peak))
    return out


class TimeScale:
    """Log seconds -> a fraction of the chart's width, over the race's window.

    Linear from the first event to the last (with a 4 % margin), except that an idle stretch
    longer than half the race (no event, no span start or end: a lock held until its TTL runs
    out, a frozen process) is drawn as a narrow *break* of fixed width (``BREAK``), so the events
    around it are not squeezed into a corner. Outside breaks one scale holds, so durations
    compare. ``breaks`` lists (start, end) of each break in log seconds.
    """

    BREAK = 0.07  # fraction of the width per break
    GAP = 0.5  # an idle stretch longer than this fraction of the race becomes a break

    def __init__(self, points: Iterable[float], *, compress: bool = True,
                 keep: Sequence[tuple[float, float]] = ()) -> None:
        pts = sorted(set(points)) or [0.0]
        first, last = pts[0], pts[-1]
        dur = last - first

        def kept_whole(a: float, b: float) -> bool:  # e.g. an overlap: its length is the lesson
            return any(a < k1 and k0 < b for k0, k1 in keep)

        gaps = [(a, b) for a, b in zip(pts, pts[1:])
                if compress and dur > 0 and b - a > self.GAP * dur * (1 + 1e-6) and not kept_whole(a, b)]
        kept = dur - sum(b - a for a, b in gaps)
        pad = max(kept * 0.06, dur * 0.01, 1e-6)
        self.breaks = [(a + pad, b - pad) for a, b in gaps if b - a > 4 * pad]
        margin = max((kept if self.breaks else dur) * 0.04, 1e-4)
        self.first, self.last = first, last
        self.lo, self.hi = first - margin, last + margin
        edges = [self.lo] + [t for br in self.breaks for t in br] + [self.hi]
        segs = [(edges[i], edges[i + 1], i % 2 == 1) for i in range(len(edges) - 1)]
        linear = sum(b - a for a, b, brk in segs if not brk) or 1.0
        room = 1.0 - self.BREAK * len(self.breaks)
        self.segments: list[tuple[float, float, float, float]] = []  # (t0, t1, f0, f1)
        self.linear: list[tuple[float, float]] = []  # (t0, t1) of the segments that are not breaks
        f = 0.0
        for a, b, brk in segs:
            w = self.BREAK if brk else room * (b - a) / linear
            self.segments.append((a, b, f, f + w))
            if not brk:
                self.linear.append((a, b))
            f += w

    def frac(self, t: float) -> float:
        for t0, t1, f0, f1 in self.segments:
            if t <= t1 or (t0, t1, f0, f1) == self.segments[-1]:
                return f0 + (f1 - f0) * ((t - t0) / (t1 - t0) if t1 > t0 else 0.0)
        return 1.0  # pragma: no cover

    def inverse(self, f: float) -> float:
        for t0, t1, f0, f1 in self.segments:
            if f <= f1 or (t0, t1, f0, f1) == self.segments[-1]:
                return t0 + (t1 - t0) * ((f - f0) / (f1 - f0) if f1 > f0 else 0.0)
        return self.hi  # pragma: no cover

    def ticks(self, mult: float, min_gap: float = 0.07) -> list[float]:
        """Nice tick values (in display units since the first event) outside the breaks, at least
        ``min_gap`` of the width apart."""
        linear = sum(t1 - t0 for t0, t1 in self.linear)
        step = _nice_step(max(linear * mult, 1e-9))
        out: list[float] = []
        last_f = -math.inf
        mids = [(self.frac(b0) + self.frac(b1)) / 2 for b0, b1 in self.breaks]  # the break's label
        for t0, t1 in self.linear:
            k = math.ceil(round((t0 - self.first) * mult / step, 9))
            while True:
                v = k * step
                t = self.first + v / mult
                if t > t1 + 1e-12:
                    break
                f = self.frac(t)
                if v >= -1e-9 and f - last_f >= min_gap and all(abs(f - m) >= min_gap for m in mids):
                    out.append(round(v, 9))
                    last_f = f
                k += 1
        return out


class Timeline(H.Renderable):
    """Events of a race: text table + swimlane by order; HTML with an SVG swimlane; ``plot()``.

    The drawn forms (SVG and matplotlib) are scaled to the race: from the first to the last event
    (or span end), with a small margin, in ms (or s for long runs) since the first event. Holds
    are bars with a minimum visible width; where two or more holds are open at once a band is
    drawn across the lanes and the overlapping bars are outlined. Other events get a glyph and a
    label (faults by their detail, fenced writes as ✓ accepted / ✗ rejected); labels are staggered
    so they never overprint, and a legend lists the kinds present.

    Args:
        log: the shared event log (or a list of events).
        start_kind, end_kind: what opens and closes a span (drawn as a bar): acquire/release.
        times: show times (rounded to ``round_to`` seconds) in the text table. Off by default:
            times change run to run, the order of a PausePoint-driven race does not.
        title: shown above the chart and in the summary line.
        compress_gaps: draw an idle stretch longer than half the race as a marked break (see
            :class:`TimeScale`); False draws one linear scale.
    """

    def __init__(self, log: EventLog | Iterable[Event], *, start_kind: str | Sequence[str] = "acquire",
                 end_kind: str | Sequence[str] = "release", times: bool = False, round_to: float = 0.01,
                 title: str = "", compress_gaps: bool = True) -> None:
        self.compress_gaps = compress_gaps
        self.events = _events(log)
        self.start_kind, self.end_kind = start_kind, end_kind
        self.times, self.round_to = times, round_to
        self.title = title
        self.actors = sorted({e.actor for e in self.events})

    @property
    def spans(self) -> list[Span]:
        return spans(self.events, self.start_kind, self.end_kind)

    @property
    def max_concurrent(self) -> int:
        return max_concurrent(self.spans)

    def summary(self) -> str:
        head = f"{self.title}: " if self.title else ""
        return (f"{head}{len(self.events)} events, {len(self.actors)} actors, "
                f"max concurrent holders {self.max_concurrent}")

    # -- shared geometry -------------------------------------------------------------------------
    def _span_kinds(self) -> tuple[str, ...]:
        return _kinds(self.start_kind) + _kinds(self.end_kind)

    def _marked(self) -> list[tuple[int, Event, str]]:
        """(table number, event, mark) for events drawn as glyphs (not the span starts/ends)."""
        # A bar's ends draw the usual start/end events; a secondary end kind (an "expire" or a
        # "crash" that ends a hold) is marked too, since how a hold ended is the lesson.
        plain = _kinds(self.start_kind) + _kinds(self.end_kind)[:1]
        return [(i, e, mark_of(e.kind, e.detail)) for i, e in enumerate(self.events, 1)
                if e.kind not in plain or mark_of(e.kind, e.detail) in ("accepted", "rejected")]

    def window(self) -> tuple[float, float]:
        """(first, last): the first event and the last event or span end, in log seconds."""
        ts = [e.t for e in self.events] + [e.end for e in self.events if e.end is not None]
        return (min(ts), max(ts)) if ts else (0.0, 0.0)

    def scale(self) -> TimeScale:
        """The drawn forms' time scale (the window, with long idle stretches as breaks)."""
        ts = [e.t for e in self.events] + [e.end for e in self.events if e.end is not None]
        keep = [(a, b) for a, b, _ in self.overlap_windows()]  # an overlap is never drawn short
        return TimeScale(ts, compress=self.compress_gaps, keep=keep)

    def _unit(self) -> tuple[str, float]:
        first, last = self.window()
        return ("ms", 1000.0) if last - first < 2.0 else ("s", 1.0)

    def overlap_windows(self) -> list[tuple[float, float, int]]:
        """Stretches of time (log seconds) with two or more holds open, and how many."""
        return overlap_windows(self.spans, self.window()[1])

    def _overlapping(self, span_list: Sequence[Span]) -> set[int]:
        last = self.window()[1]
        out = set()
        for i, a in enumerate(span_list):
            for j, b in enumerate(span_list):
                if i != j and a.actor != b.actor:
                    a_end = last if a.end is None else a.end
                    b_end = last if b.end is None else b.end
                    if a.start < b_end and b.start < a_end:
                        out.add(i)
        return out

    # -- text ------------------------------------------------------------------------------------
    def _rows(self) -> list[tuple[Any, ...]]:
        rows = []
        for i, e in enumerate(self.events, 1):
            row: tuple[Any, ...] = (i,)
            if self.times:
                row += (f"{round(e.t / self.round_to) * self.round_to:.2f}",)
            rows.append(row + (e.actor, e.kind, e.detail))
        return rows

    def _columns(self) -> tuple[str, ...]:
        return ("#",) + (("t (s)",) if self.times else ()) + ("actor", "event", "detail")

    def _holding_counts(self) -> list[tuple[int, int]]:
        """(holders before, holders after) each event, in event order (for the overlap line)."""
        starts, ends = _kinds(self.start_kind), _kinds(self.end_kind)
        holding: dict[str, int] = {}
        out = []
        for e in self.events:
            before = sum(holding.values())
            if e.kind in starts and e.end is None:
                holding[e.actor] = holding.get(e.actor, 0) + 1
            elif e.kind in ends and holding.get(e.actor):
                holding[e.actor] -= 1
            out.append((before, sum(holding.values())))
        return out

    def swimlane(self) -> str:
        """One line per actor, one column per event: letters for events, '═' while a span is open.

        When two or more spans are open at once, an ``overlap`` line marks those columns with ``^``
        (from the event that opened the second hold to the one that closed it)."""
        starts, ends = _kinds(self.start_kind), _kinds(self.end_kind)
        marks = [mark_of(e.kind, e.detail) for e in self.events]
        counts = self._holding_counts()
        overlap = "".join("^" if max(b, a) >= 2 else " " for b, a in counts)
        label = "overlap"
        width = max([len(a) for a in self.actors] + ([len(label)] if overlap.strip() else []), default=0)
        lines = []
        for actor in self.actors:
            cells, holding = [], False
            for e, mark in zip(self.events, marks):
                if e.actor == actor:
                    cells.append(_VERDICT_LETTER.get(mark) or _LETTER.get(e.kind, e.kind[:1]))
                    if e.kind in starts:
                        holding = e.end is None
                    elif e.kind in ends:
                        holding = False
                else:
                    cells.append("═" if holding else "·")
            lines.append(f"{actor.ljust(width)}  {''.join(cells)}")
        if overlap.strip():
            lines.append(f"{label.ljust(width)}  {overlap}".rstrip())
        legend = ", ".join(f"{v}={k}" for k, v in _LETTER.items()
                           if any(e.kind == k and m not in _VERDICT_LETTER for e, m in zip(self.events, marks)))
        legend += "".join(f", {v}={k}" for k, v in _VERDICT_LETTER.items() if k in marks)
        extra = "; ^ = two or more holding at once" if overlap.strip() else ""
        return "\n".join(lines + [f"{'':{width}}  ({legend.lstrip(', ')}; ═ = holding{extra})"])

    def _text(self) -> str:
        if not self.events:
            return "no events"
        return "\n".join([self.summary(), H.text_table(self._columns(), self._rows(), right=(0,)),
                          "", self.swimlane()])

    # -- SVG -------------------------------------------------------------------------------------
    def _layout_labels(self, items: list[tuple[float, str]], left: float, right: float
                       ) -> list[tuple[float, str, int, str] | None]:
        """Greedy staggering: each (x, text) gets (label x, text-anchor, level, text), or None
        when it fits in none of MAX_LEVELS rows without touching its neighbours."""
        ends = [-math.inf] * MAX_LEVELS
        out: list[tuple[float, str, int, str] | None] = []
        for x, text in items:
            w = len(text) * CHAR_PX
            lx, anchor = x - 3, "start"
            if lx + w > right:  # would run off the right edge: end the label at the glyph
                lx, anchor = x + 3 - w, "end"
            lx = max(lx, left)
            for level in range(MAX_LEVELS):
                if lx >= ends[level] + 6:
                    ends[level] = lx + w
                    out.append((lx if anchor == "start" else lx + w, anchor, level, text))
                    break
            else:
                out.append(None)
        return out

    def svg(self, width: int = 760) -> str:
        """The race drawn as an SVG: lanes per actor, hold bars, overlap bands, glyphs, labels."""
        if not self.events:
            return ""
        first, last = self.window()
        unit, mult = self._unit()
        scale = self.scale()
        name_w = max(len(a) for a in self.actors) * 7 + 14
        left = min(max(name_w, 56), 170)
        right = width - 16
        plot_w = right - left

        def x(t: float) -> float:
            return left + scale.frac(t) * plot_w

        span_list = self.spans
        order = list(dict.fromkeys(m for _, _, m in self._marked()))

        # glyphs per lane, nudged apart so none hides another; then labels staggered above them
        per_lane: dict[str, list[tuple[float, int, Event, str]]] = {a: [] for a in self.actors}
        for n, e, m in self._marked():
            per_lane[e.actor].append((x(e.t), n, e, m))
        placed: dict[str, list[tuple[float, int, Event, str]]] = {}
        labels: dict[str, list] = {}
        for a, items in per_lane.items():
            items.sort(key=lambda it: (it[0], it[1]))
            out, prev = [], -math.inf
            for gx, n, e, m in items:
                gx = max(gx, prev + GLYPH_PX)
                out.append((gx, n, e, m))
                prev = gx
            placed[a] = out
            labels[a] = self._layout_labels([(gx, _label_of(e, m)) for gx, _, e, m in out], left, width - 2)
        levels = {a: 1 + max([lab[2] for lab in labels[a] if lab is not None], default=-1) for a in self.actors}

        windows = self.overlap_windows()
        top = 20 if windows else 6
        bar_h, lab_h, pad = 16, 13, 6
        lane_y: dict[str, float] = {}
        y = top
        for a in self.actors:
            lane_y[a] = y
            y += pad + levels[a] * lab_h + bar_h + pad
        lanes_bottom = y
        height = lanes_bottom + 38

        parts: list[str] = []
        for i, a in enumerate(self.actors):  # lane backgrounds and names
            y0 = lane_y[a]
            h = pad + levels[a] * lab_h + bar_h + pad
            if i % 2 == 0:
                parts.append(f'<rect x="{left}" y="{y0:.1f}" width="{plot_w}" height="{h:.1f}" fill="#f6f8fa"/>')
            by = y0 + pad + levels[a] * lab_h
            room = int((left - 12) / 7)  # a long actor name is cut to its lane's margin (whole in the tooltip)
            name = a if len(a) <= room else a[:room - 1] + "…"
            parts.append(f'<text x="{left - 8}" y="{by + bar_h / 2 + 4:.1f}" font-size="11" text-anchor="end" '
                         f'fill="#24292f"><title>{H.esc(a)}</title>{H.esc(name)}</text>')
        for b0, b1 in scale.breaks:  # idle stretches drawn short: a dashed frame behind the bars
            parts.append(f'<rect class="rt-break-band" x="{x(b0):.1f}" y="{top - 4}" width="{x(b1) - x(b0):.1f}" '
                         f'height="{lanes_bottom - top + 6:.1f}" fill="#fff" stroke="#8c959f" '
                         f'stroke-dasharray="3 3"/>')
        shown_windows = []
        label_end = -math.inf
        for a0, b0, k in windows:  # overlap bands behind the bars, across every lane
            x0, x1 = x(a0), x(b0)
            if x1 - x0 < MIN_BAR_PX:
                x0, x1 = (x0 + x1) / 2 - MIN_BAR_PX / 2, (x0 + x1) / 2 + MIN_BAR_PX / 2
            parts.append(f'<rect class="rt-overlap" x="{x0:.1f}" y="{top - 4}" width="{x1 - x0:.1f}" '
                         f'height="{lanes_bottom - top + 4:.1f}" fill="{OVERLAP}" fill-opacity="0.3" '
                         f'stroke="{OVERLAP}" stroke-width="1"><title>{k} holders at once: '
                         f'{(a0 - first) * mult:.1f}–{(b0 - first) * mult:.1f} {unit}</title></rect>')
            text = f"{k} holders"
            w = len(text) * CHAR_PX
            lx = max(left, min(x0, right - w))
            if lx >= label_end + 6:
                parts.append(f'<text x="{lx:.1f}" y="{top - 7}" font-size="10" font-weight="bold" '
                             f'fill="#9a5b00">{text}</text>')
                label_end = lx + w
            shown_windows.append((x0, x1))
        outlined = self._overlapping(span_list)
        for i, s in enumerate(span_list):  # hold bars
            end = last if s.end is None else s.end
            x0 = x(s.start)
            w = max(x(end) - x0, MIN_BAR_PX)
            by = lane_y[s.actor] + pad + levels[s.actor] * lab_h
            stroke = (f' stroke="{OUTLINE}" stroke-width="2.5"' if i in outlined else "")
            open_end = " (still held at the end)" if s.end is None else ""
            tip = (f"{s.actor} holds {(s.start - first) * mult:.1f}–{(end - first) * mult:.1f} {unit}"
                   f"{open_end}{': ' + s.detail if s.detail else ''}")
            cls = "rt-hold rt-hold-overlap" if i in outlined else "rt-hold"
            parts.append(f'<rect class="{cls}" x="{x0:.1f}" y="{by:.1f}" width="{w:.1f}" height="{bar_h}" '
                         f'rx="2" fill="{HOLD}" fill-opacity="{0.55 if s.end is None else 0.85}"{stroke}>'
                         f'<title>{H.esc(tip)}</title></rect>')
            for b0, b1 in scale.breaks:  # a hold that goes on through a break: "//" across the bar
                if s.start < b0 and end > b1:
                    mid = (x(b0) + x(b1)) / 2
                    parts.append(f'<path d="M{mid - 6:.1f},{by + bar_h + 1:.1f} l6,{-bar_h - 2} '
                                 f'M{mid:.1f},{by + bar_h + 1:.1f} l6,{-bar_h - 2}" stroke="#fff" stroke-width="2.5"/>')
            if s.detail and len(s.detail) * CHAR_PX + 8 <= w:
                parts.append(f'<text x="{x0 + 4:.1f}" y="{by + bar_h - 4:.1f}" font-size="10" fill="#fff">'
                             f'{H.esc(s.detail)}</text>')
        for a in self.actors:  # glyphs and their labels
            by = lane_y[a] + pad + levels[a] * lab_h
            cy = by + bar_h / 2
            for (gx, n, e, m), lab in zip(placed[a], labels[a]):
                shape, colour = _style(m, order)
                detail = f": {e.detail}" if e.detail else ""
                tip = f"#{n} {e.actor} {e.kind}{detail} at {(e.t - first) * mult:.1f} {unit}"
                parts.append(f'<g class="rt-event rt-mark-{H.esc(m if m in _MARKS else "other")}">'
                             f'<title>{H.esc(tip)}</title>{_shape_svg(shape, colour, gx, cy)}</g>')
                if lab is None:
                    continue
                lx, anchor, level, text = lab
                ly = by - 3 - (levels[a] - 1 - level) * lab_h
                parts.append(f'<line x1="{gx:.1f}" y1="{ly + 2:.1f}" x2="{gx:.1f}" y2="{cy - GLYPH_PX / 2:.1f}" '
                             f'stroke="#8c959f" stroke-width="0.8"/>')
                fill = {"rejected": REJECTED, "accepted": "#006b4f", "fault": FAULT}.get(m, "#24292f")
                weight = ' font-weight="bold"' if m in ("fault", "rejected", "accepted") else ""
                parts.append(f'<text class="rt-label" x="{lx:.1f}" y="{ly:.1f}" font-size="10" '
                             f'text-anchor="{anchor}" fill="{fill}"{weight} stroke="#fff" stroke-width="3" '
                             f'paint-order="stroke">{H.esc(text)}</text>')
        # time axis: 0 at the first event; a break shows how much idle time it stands for
        ay = lanes_bottom + 2
        parts.append(f'<line x1="{left}" y1="{ay}" x2="{right}" y2="{ay}" stroke="#57606a"/>')
        for v in scale.ticks(mult, min_gap=44 / plot_w):
            tx = x(first + v / mult)
            parts.append(f'<line x1="{tx:.1f}" y1="{ay}" x2="{tx:.1f}" y2="{ay + 4}" stroke="#57606a"/>'
                         f'<text x="{tx:.1f}" y="{ay + 15}" font-size="10" text-anchor="middle" '
                         f'fill="#57606a">{_fmt_tick(v)}</text>')
        for b0, b1 in scale.breaks:  # on the axis: a gap, "//", and the idle time it stands for
            x0, x1 = x(b0), x(b1)
            mid = (x0 + x1) / 2
            gap = _fmt_span((b1 - b0) * mult, unit)
            parts.append(f'<g class="rt-break"><title>{H.esc(gap)} with no event, drawn short</title>'
                         f'<rect x="{x0 + 2:.1f}" y="{ay - 3}" width="{x1 - x0 - 4:.1f}" height="6" fill="#fff"/>'
                         f'<path d="M{mid - 6:.1f},{ay + 4} l5,-8 M{mid:.1f},{ay + 4} l5,-8" stroke="#57606a"/>'
                         f'<text x="{mid:.1f}" y="{ay + 15}" font-size="9" text-anchor="middle" '
                         f'fill="#57606a">⋯{H.esc(gap)}⋯</text></g>')
        parts.append(f'<text x="{left + plot_w / 2:.0f}" y="{ay + 31}" font-size="11" text-anchor="middle" '
                     f'fill="#24292f">{unit} since the first event</text>')
        return (f'<svg class="rt-timeline" width="{width}" height="{height:.0f}" viewBox="0 0 {width} {height:.0f}" '
                f'xmlns="http://www.w3.org/2000/svg" role="img">{"".join(parts)}</svg>')

    def _svg(self, w: int = 760, lane: int = 22) -> str:  # the old private name
        return self.svg(w)

    def legend_items(self) -> list[tuple[str, str]]:
        """(what, kind of mark) for every kind of mark present, in the order of first appearance."""
        span_list = self.spans
        start = "/".join(_kinds(self.start_kind))
        end = "/".join(_kinds(self.end_kind))
        items = []
        if span_list:
            items.append((f"held ({start} → {end})", "hold"))
        if any(s.end is None for s in span_list):
            items.append(("still held at the end (paler)", "open"))
        if self.overlap_windows():
            items.append(("two or more holders at once (outlined bars)", "overlap"))
        seen: list[str] = []
        for _, _e, m in self._marked():
            if m not in seen:
                seen.append(m)
        for m in seen:
            text = {"accepted": "write accepted", "rejected": "rejected / refused",
                    "fault": "fault (labelled)"}.get(m, m)
            items.append((text, m))
        return items

    def _legend_html(self) -> str:
        order = list(dict.fromkeys(m for _, _, m in self._marked()))
        out = []
        for text, m in self.legend_items():
            if m in ("hold", "open"):
                op = "0.85" if m == "hold" else "0.55"
                sw = (f'<svg class="rt-glyph" width="22" height="12" xmlns="http://www.w3.org/2000/svg">'
                      f'<rect x="1" y="2" width="20" height="8" rx="2" fill="{HOLD}" fill-opacity="{op}"/></svg>')
            elif m == "overlap":
                sw = (f'<svg class="rt-glyph" width="22" height="12" xmlns="http://www.w3.org/2000/svg">'
                      f'<rect x="1" y="0" width="20" height="12" fill="{OVERLAP}" fill-opacity="0.3" '
                      f'stroke="{OVERLAP}"/><rect x="4" y="3" width="14" height="6" fill="{HOLD}" '
                      f'stroke="{OUTLINE}" stroke-width="1.5"/></svg>')
            else:
                sw = glyph_html(m, order)
            out.append(f'<span class="rt-item">{sw}{H.esc(text)}</span>')
        return f'<div class="rt-items rt-legend">{"".join(out)}</div>'

    def _caption(self) -> str:
        """One sentence under the chart: the overlaps (who, how long), or that there were none."""
        windows = self.overlap_windows()
        if not self.spans:
            return ""
        if not windows:
            return "no two holds overlap"
        unit, mult = self._unit()
        pairs = ", ".join(" & ".join(p) for p in overlaps(self.spans)[:4])
        total = sum(b - a for a, b, _ in windows) * mult
        return (f"overlap: {pairs} held at once, {len(windows)} time{'s' * (len(windows) != 1)}, "
                f"{_fmt_span(total, unit)} in all")

    def _table_html(self) -> str:
        marked = {n: m for n, _, m in self._marked()}
        order = list(dict.fromkeys(marked.values()))
        rows = []
        for n, (row, e) in enumerate(zip(self._rows(), self.events), 1):
            m = marked.get(n)
            if m is None:  # a bar's start or end
                sw = (f'<svg class="rt-glyph" width="12" height="12" xmlns="http://www.w3.org/2000/svg">'
                      f'<rect x="1" y="3" width="10" height="6" rx="1" fill="{HOLD}"/></svg>')
            else:
                sw = glyph_html(m, order)
            rows.append(tuple(H.esc(c) for c in row[:-2]) + (f"{sw} {H.esc(e.kind)}", H.esc(e.detail)))
        numeric = (0, 1) if self.times else (0,)
        return H.html_table(self._columns(), rows, right=numeric, raw=tuple(range(len(self._columns()))))

    def _html(self) -> str:
        if not self.events:
            return H.title("no events")
        svg = self.svg()
        skipped = len(self._marked()) - svg.count('class="rt-label"')  # labels that fit nowhere
        note = (f" · {skipped} label{'s' * (skipped != 1)} left out to avoid overprinting "
                "(every event is in the table)" if skipped else "")
        return (H.title(self.summary()) + svg + self._legend_html()
                + H.note(self._caption() + note) + self._table_html())

    # -- matplotlib ------------------------------------------------------------------------------
    def plot(self, ax=None):
        """The same race as a matplotlib chart (redistutor.charts style): one lane per actor, a
        bar per hold (never thinner than a minimum), overlap bands, a glyph and a staggered label
        per event, long idle stretches as marked breaks, a legend outside the data, and the x axis
        in ms (or s) since the first event."""
        import numpy as np
        from matplotlib.ticker import FixedLocator

        from . import charts

        charts.style()
        n = max(1, len(self.actors))
        if ax is None:
            _, ax = charts.figure(width=9.5, height=1.4 + 0.8 * n)
        fig = ax.figure
        first, last = self.window()
        unit, mult = self._unit()
        scale = self.scale()
        if len(ax.get_shared_x_axes().get_siblings(ax)) > 1 and scale.breaks:
            # axes sharing x share one scale: breaks fitted to this race would distort the others
            ts = [e.t for e in self.events] + [e.end for e in self.events if e.end is not None]
            scale = TimeScale(ts, compress=False)

        def t(v: float) -> float:  # log seconds -> data units (ms or s since the first event)
            return (v - first) * mult

        def forward(v):
            return np.vectorize(lambda u: scale.frac(first + u / mult), otypes=[float])(v)

        def inverse(f):
            return np.vectorize(lambda g: (scale.inverse(g) - first) * mult, otypes=[float])(f)

        ax.set_xscale("function", functions=(forward, inverse))
        ax.set_xlim(t(scale.lo), t(scale.hi))
        ax.set_ylim(n - 0.5, -1.0)
        ax.grid(axis="y", visible=False)
        ax.xaxis.set_major_locator(FixedLocator(scale.ticks(mult)))
        axes_px = max(ax.get_position().width * fig.get_figwidth() * fig.dpi, 1.0)

        def px(v: float) -> float:  # data units -> pixels from the left of the axes
            return float(forward(v)) * axes_px

        def data(p: float) -> float:
            return float(inverse(p / axes_px))

        lanes = {a: i for i, a in enumerate(self.actors)}
        span_list = self.spans
        outlined = self._overlapping(span_list)
        first_band = True
        for a0, b0, _k in self.overlap_windows():
            p0, p1 = px(t(a0)), px(t(b0))
            if p1 - p0 < MIN_BAR_PX:
                p0, p1 = (p0 + p1 - MIN_BAR_PX) / 2, (p0 + p1 + MIN_BAR_PX) / 2
            ax.axvspan(data(p0), data(p1), color=OVERLAP, alpha=0.3, zorder=0, lw=0,
                       label="two or more holders at once" if first_band else None)
            first_band = False
        for b0, b1 in scale.breaks:
            gap = (b1 - b0) * mult
            ax.axvspan(t(b0), t(b1), facecolor="white", edgecolor="#8c959f", hatch="//", alpha=0.9, lw=0.8,
                       ls="--", zorder=3)
            ax.annotate(_fmt_span(gap, unit),  # in the tick row
                        (data((px(t(b0)) + px(t(b1))) / 2), 0.0), xycoords=("data", "axes fraction"),
                        xytext=(0, -4), textcoords="offset points", ha="center", va="top", fontsize=7,
                        color="#57606a", style="italic")
        for i, s in enumerate(span_list):
            end = last if s.end is None else s.end
            x0 = t(s.start)
            x1 = max(t(end), data(px(x0) + MIN_BAR_PX))
            ax.broken_barh([(x0, x1 - x0)], (lanes[s.actor] - 0.22, 0.44), facecolor=HOLD,
                           alpha=1.0 if s.end is not None else 0.55, zorder=2,
                           edgecolor=OUTLINE if i in outlined else "none", linewidth=2 if i in outlined else 0)
        if span_list:
            ax.broken_barh([], (0, 0), facecolor=HOLD, label=f"held ({'/'.join(_kinds(self.start_kind))} → "
                                                             f"{'/'.join(_kinds(self.end_kind))})")
        mpl_marker = {"circle": "o", "diamond": "D", "triangle-down": "v", "triangle-up": "^", "square": "s",
                      "star": "*", "check": r"$\checkmark$", "cross": "X"}
        order = list(dict.fromkeys(m for _, _, m in self._marked()))
        shown: set[str] = set()
        for a in self.actors:
            items = sorted([(px(t(e.t)), nn, e, m) for nn, e, m in self._marked() if e.actor == a],
                           key=lambda it: (it[0], it[1]))
            ends = [-math.inf] * 2
            prev = -math.inf
            for gp, _nn, e, m in items:
                gp = max(gp, prev + GLYPH_PX)  # glyphs a glyph apart, in pixels
                prev = gp
                gx = data(gp)
                shape, colour = _style(m, order)
                legend = {"accepted": "write accepted", "rejected": "rejected / refused", "fault": "fault"}.get(m, m)
                size = {"check": 11, "star": 11, "cross": 9}.get(shape, 7)
                ax.plot([gx], [lanes[a]], linestyle="none", marker=mpl_marker[shape], color=colour,
                        markersize=size, markeredgecolor=colour if shape == "check" else "white",
                        zorder=4, label=None if m in shown else legend)
                shown.add(m)
                text = _label_of(e, m)
                w = len(text) * 7.0  # 7.5 pt labels, bold ones included, with room to spare
                lp, ha = gp, "left"
                if lp + w > axes_px:
                    lp, ha = gp - w, "right"
                for level in range(2):
                    if lp >= ends[level] + 4:
                        ends[level] = lp + w
                        ax.annotate(text, (gx, lanes[a] - 0.22), textcoords="offset points",
                                    xytext=(0, 4 + 9 * level), ha=ha, fontsize=7.5, zorder=5,
                                    color={"rejected": REJECTED, "accepted": "#006b4f"}.get(m, "#24292f"),
                                    fontweight="bold" if m in ("fault", "rejected", "accepted") else "normal")
                        break
        ax.set_yticks(range(len(self.actors)), self.actors)
        ax.set_xlabel(f"{unit} since the first event" + (" (hatched: idle time drawn short)" if scale.breaks else ""))
        mc = self.max_concurrent
        ax.set_title(f"{self.title + ': ' if self.title else ''}max {mc} holder{'s' * (mc != 1)} at once",
                     loc="left")
        handles, labels = ax.get_legend_handles_labels()
        if labels:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, frameon=False)
        return ax

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([e.as_dict() for e in self.events], columns=["t", "actor", "kind", "detail", "end"])
