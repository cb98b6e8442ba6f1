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

import dataclasses
import threading
from typing import Any, Callable, Iterable, Sequence

from . import _html as H
from .events import Event, EventLog

__all__ = ["Span", "Timeline", "max_concurrent", "overlaps", "run_threads", "spans"]


def run_threads(fn: Callable[[str, EventLog], Any], n: int = 4, *, log: EventLog | None = None,
                name: str = "worker", timeout: float = 30.0) -> list[Any]:
    """Run ``fn(actor, log)`` in ``n`` threads named ``worker-1..n``, released together.

    Returns the results in thread order; re-raises the first exception a worker raised.
    """
    log = log if log is not None else EventLog()
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException | None] = [None] * n

    def target(i: int) -> None:
        actor = f"{name}-{i + 1}"
        try:
            barrier.wait(timeout)
            results[i] = fn(actor, log)
        except BaseException as exc:  # handed to the caller below
            errors[i] = exc

    threads = [threading.Thread(target=target, args=(i,), name=f"{name}-{i + 1}", daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
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


_LETTER = {"acquire": "A", "release": "R", "read": "r", "write": "w", "crash": "X", "fault": "!",
           "expire": "E"}


class Timeline(H.Renderable):
    """Events of a race: text table + swimlane by order; HTML with an SVG swimlane; ``plot()``.

    Args:
        log: the shared event log (or a list of events).
        start_kind, end_kind: what opens and closes a span (drawn as a bar): acquire/release.
        times: show times (rounded to ``round_to`` seconds) in the text table. Off by default:
            times change run to run, the order of a PausePoint-driven race does not.
    """

    def __init__(self, log: EventLog | Iterable[Event], *, start_kind: str | Sequence[str] = "acquire",
                 end_kind: str | Sequence[str] = "release", times: bool = False, round_to: float = 0.01,
                 title: str = "") -> None:
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

    def swimlane(self) -> str:
        """One line per actor, one column per event: letters for events, '═' while a span is open."""
        starts, ends = _kinds(self.start_kind), _kinds(self.end_kind)
        width = max((len(a) for a in self.actors), default=0)
        lines = []
        for actor in self.actors:
            cells, holding = [], False
            for e in self.events:
                if e.actor == actor:
                    cells.append(_LETTER.get(e.kind, e.kind[:1]))
                    if e.kind in starts:
                        holding = e.end is None
                    elif e.kind in ends:
                        holding = False
                else:
                    cells.append("═" if holding else "·")
            lines.append(f"{actor.ljust(width)}  {''.join(cells)}")
        legend = ", ".join(f"{v}={k}" for k, v in _LETTER.items()
                           if any(e.kind == k for e in self.events))
        return "\n".join(lines + [f"{'':{width}}  ({legend}; ═ = holding)"])

    def _text(self) -> str:
        if not self.events:
            return "no events"
        return "\n".join([self.summary(), H.text_table(self._columns(), self._rows(), right=(0,)),
                          "", self.swimlane()])

    def _svg(self, w: int = 560, lane: int = 22) -> str:
        if not self.events:
            return ""
        t_end = max([e.t for e in self.events] + [s.end for s in self.spans if s.end is not None])
        left = 90
        h = lane * len(self.actors) + 24

        def x(t: float) -> float:
            return left + (t / t_end if t_end else 0) * (w - left - 10)

        rows = {a: i for i, a in enumerate(self.actors)}
        parts = []
        for a, i in rows.items():
            parts.append(f'<text x="4" y="{i * lane + 15}" font-size="11">{H.esc(a)}</text>')
        for s in self.spans:
            end = s.end if s.end is not None else t_end
            y = rows[s.actor] * lane + 4
            parts.append(f'<rect x="{x(s.start):.1f}" y="{y}" width="{max(x(end) - x(s.start), 2):.1f}" '
                         f'height="{lane - 8}" fill="#1f6feb" opacity="0.7"/>')
        for e in self.events:
            if e.kind not in _kinds(self.start_kind) + _kinds(self.end_kind):
                y = rows[e.actor] * lane + 15
                parts.append(f'<text x="{x(e.t):.1f}" y="{y}" font-size="11" fill="#cf222e">'
                             f'{H.esc(_LETTER.get(e.kind, e.kind[:1]))}</text>')
        parts.append(f'<text x="{left}" y="{h - 4}" font-size="10">0 s</text>'
                     f'<text x="{w - 10}" y="{h - 4}" font-size="10" text-anchor="end">{t_end:.3f} s</text>')
        return f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'

    def _html(self) -> str:
        if not self.events:
            return H.title("no events")
        return (H.title(self.summary()) + self._svg() +
                H.html_table(self._columns(), self._rows(), right=(0,)))

    def plot(self, ax=None):
        """A matplotlib Gantt chart: one lane per actor, a bar per span, marks for other events."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * max(1, len(self.actors))))
        lanes = {a: i for i, a in enumerate(self.actors)}
        t_end = max([e.t for e in self.events] + [0.0])
        for s in self.spans:
            end = s.end if s.end is not None else t_end
            ax.broken_barh([(s.start, max(end - s.start, t_end / 500 or 1e-4))], (lanes[s.actor] - 0.35, 0.7),
                           color="#1f6feb", alpha=0.75)
        others = [e for e in self.events if e.kind not in _kinds(self.start_kind) + _kinds(self.end_kind)]
        for e in others:
            ax.plot(e.t, lanes[e.actor], marker="x" if e.kind == "crash" else "o", color="#cf222e")
            ax.annotate(e.kind, (e.t, lanes[e.actor]), textcoords="offset points", xytext=(3, 6), fontsize=7)
        ax.set_yticks(range(len(self.actors)), self.actors)
        ax.invert_yaxis()
        ax.set_xlabel("seconds since the log started")
        ax.set_title(self.summary())
        return ax

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([e.as_dict() for e in self.events], columns=["t", "actor", "kind", "detail", "end"])
