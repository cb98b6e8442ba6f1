"""Race timelines: threads on one clock, spans, the overlap detector."""

from __future__ import annotations

import html
import re

import pytest

from redistutor.events import EventLog
from redistutor.race import PausePoint, run_in_thread
from redistutor.timeline import (
    MIN_BAR_PX,
    Timeline,
    mark_of,
    max_concurrent,
    overlap_windows,
    overlaps,
    run_threads,
    spans,
)


def _log(rows):
    log = EventLog()
    for t, actor, kind in rows:
        log.record(actor, kind, t=t)
    return log


def test_max_concurrent_and_overlaps():
    serial = _log([(0, "a", "acquire"), (1, "a", "release"), (1, "b", "acquire"), (2, "b", "release")])
    assert max_concurrent(serial) == 1 and overlaps(serial) == []
    both = _log([(0, "a", "acquire"), (0.5, "b", "acquire"), (1, "a", "release"), (2, "b", "release")])
    assert max_concurrent(both) == 2 and overlaps(both) == [("a", "b")]
    crashed = _log([(0, "a", "acquire"), (0.5, "a", "crash"), (1, "b", "acquire")])
    assert max_concurrent(crashed) == 2  # a crashed holder still holds the lock...
    assert max_concurrent(crashed, end_kind=("release", "crash")) == 1  # ...unless crash ends it
    assert spans(crashed)[0].end is None


def test_events_from_other_processes_join_the_timeline():
    log = EventLog()
    log.record("thread", "acquire", t=0.1)
    log.extend([{"t": log.t0 + 0.2, "actor": "proc-1", "kind": "acquire", "end": log.t0 + 0.3}])
    assert [s.actor for s in spans(log)] == ["thread", "proc-1"]
    assert max_concurrent(log) == 2


def test_run_threads_names_and_results():
    log = EventLog()
    out = run_threads(lambda actor, log: log.record(actor, "write") and actor, 4, log=log)
    assert out == ["worker-1", "worker-2", "worker-3", "worker-4"]
    assert sorted(e.actor for e in log.events) == out


def test_run_threads_reraises():
    def boom(actor, log):
        raise ValueError(actor)

    with pytest.raises(ValueError):
        run_threads(boom, 2)


def test_pause_point_race_renders_deterministically(r):
    """A GET-then-SET 'lock', two threads interleaved by a pause point: both think they hold it."""
    log = EventLog()
    pause = PausePoint("between get and set")

    def naive(actor, hook=None):
        if r.get("lock") is None:
            if hook:
                hook()
            r.set("lock", actor)
            log.record(actor, "acquire")
            return True
        return False

    a = run_in_thread(naive, "A", pause)
    pause.wait_reached()
    assert naive("B")
    pause.release()
    assert a.result(5)
    log.record("B", "release")
    log.record("A", "release")
    tl = Timeline(log)
    assert tl.max_concurrent == 2
    assert repr(tl).splitlines()[-4:] == [
        "A        ·A═R",
        "B        A═R·",
        "overlap   ^^",
        "         (A=acquire, R=release; ═ = holding; ^ = two or more holding at once)",
    ]


# -- renders, pinned on small fixtures ------------------------------------------------------------


def _elog(rows):
    log = EventLog()
    for t, actor, kind, detail in rows:
        log.record(actor, kind, detail, t=t)
    return log


def _page(view):
    from redistutor import set_options

    with set_options(display="html"):
        return view._repr_html_()


def _attrs(svg, tag, cls=None):
    """The attributes of every <tag ...> (with class ``cls``) in an SVG, as dicts."""
    out = []
    for m in re.finditer(rf"<{tag}\b([^>]*)>", svg):
        attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', m.group(1)))
        if cls is None or cls in attrs.get("class", "").split():
            out.append(attrs)
    return out


def _labels(svg):
    """(x, y, anchor, text) of every event label."""
    return [(float(a), float(b), c, html.unescape(t)) for a, b, c, t in re.findall(
        r'<text class="rt-label" x="([\d.-]+)" y="([\d.-]+)" font-size="10" '
        r'text-anchor="(\w+)"[^>]*>([^<]*)</text>', svg)]


TWO_HOLDERS = [  # a GET-then-SET "lock": both threads saw it free, both hold it from 3 to 5 ms
    (0.000, "thread-A", "read", "saw free"),
    (0.001, "thread-B", "read", "saw free"),
    (0.002, "thread-B", "acquire", ""),
    (0.003, "thread-A", "acquire", ""),
    (0.005, "thread-B", "release", ""),
    (0.006, "thread-A", "release", ""),
]


def test_two_holder_overlap_text_marks_the_overlap():
    tl = Timeline(_elog(TWO_HOLDERS), title="GET then SET")
    assert repr(tl) == """GET then SET: 6 events, 2 actors, max concurrent holders 2
#  actor     event    detail
-  --------  -------  --------
1  thread-A  read     saw free
2  thread-B  read     saw free
3  thread-B  acquire
4  thread-A  acquire
5  thread-B  release
6  thread-A  release

thread-A  r··A═R
thread-B  ·rA═R·
overlap      ^^
          (A=acquire, R=release, r=read; ═ = holding; ^ = two or more holding at once)"""


def test_serial_holds_have_no_overlap_line():
    tl = Timeline(_elog([(0, "a", "acquire", ""), (1, "a", "release", ""), (1, "b", "acquire", ""),
                         (2, "b", "release", "")]))
    assert repr(tl).splitlines()[-3:] == ["a  AR··", "b  ··AR", "   (A=acquire, R=release; ═ = holding)"]


def test_two_holder_overlap_svg_is_visible():
    tl = Timeline(_elog(TWO_HOLDERS))
    svg = tl.svg()
    bars = _attrs(svg, "rect", "rt-hold")
    assert len(bars) == 2
    assert all(float(b["width"]) > MIN_BAR_PX * 10 for b in bars)  # 2-3 ms of a 6 ms race: wide bars
    assert all("rt-hold-overlap" in b["class"] and b["stroke"] for b in bars)  # both outlined
    (band,) = _attrs(svg, "rect", "rt-overlap")
    assert float(band["width"]) > MIN_BAR_PX
    # the band covers 3..5 ms: it starts where A's bar starts and ends where B's bar ends
    b_bar, a_bar = sorted(bars, key=lambda b: float(b["x"]))
    assert abs(float(band["x"]) - float(a_bar["x"])) < 0.5
    assert abs(float(band["x"]) + float(band["width"]) - float(b_bar["x"]) - float(b_bar["width"])) < 0.5
    assert ">2 holders<" in svg and "ms since the first event" in svg
    assert tl.overlap_windows() == [(0.003, 0.005, 2)]
    page = _page(tl)
    assert "two or more holders at once" in page  # legend
    assert "overlap: thread-A &amp; thread-B held at once" in page


def test_short_hold_is_drawn_at_the_minimum_width():
    tl = Timeline(_elog([(0.0, "slow", "acquire", ""), (1.0, "slow", "release", ""),
                         (1.5, "quick", "acquire", ""), (1.5002, "quick", "release", "")]), compress_gaps=False)
    quick, slow = sorted(float(b["width"]) for b in _attrs(tl.svg(), "rect", "rt-hold"))
    assert quick == MIN_BAR_PX  # 0.2 ms of a 1.5 s race: still a visible bar
    assert slow > 300


def test_window_starts_at_the_first_event_not_at_zero():
    tl = Timeline(_elog([(100.00, "a", "acquire", ""), (100.02, "a", "release", ""),
                         (100.03, "b", "acquire", ""), (100.05, "b", "release", "")]))
    assert tl.window() == (100.0, 100.05)
    bars = sorted(_attrs(tl.svg(width=760), "rect", "rt-hold"), key=lambda b: float(b["x"]))
    left = float(bars[0]["x"])
    right = float(bars[1]["x"]) + float(bars[1]["width"])
    assert left < 120 and right > 700  # the 50 ms race fills the width
    assert float(bars[0]["width"]) > 200  # 20 ms of 50: not a sliver at the end of a 100 s axis
    assert "ms since the first event" in tl.svg()


def test_labels_never_overprint_and_every_event_stays_in_the_table():
    rows = [(0.0, "w", "acquire", "")]
    rows += [(0.001 * i, "w", "fault", f"fault number {i}") for i in range(1, 12)]  # 11 labels in 11 ms
    rows += [(0.2, "w", "release", "")]
    tl = Timeline(_elog(rows), compress_gaps=False)  # one linear scale: 11 labels squeezed into 40 px
    labels = _labels(tl.svg())
    assert labels
    by_row: dict = {}
    for x, y, anchor, text in labels:
        width = len(text) * 6.0
        start = x if anchor == "start" else x - width
        by_row.setdefault(y, []).append((start, start + width))
    for spans_ in by_row.values():
        spans_.sort()
        for (_a0, a1), (b0, _b1) in zip(spans_, spans_[1:]):
            assert b0 >= a1 + 6 - 1e-6, "two labels overprint in one row"
    glyph = r'<g class="rt-event[^"]*"><title>[^<]*</title><polygon points="([\d.]+),'
    xs = [float(g) for g in re.findall(glyph, tl.svg())]
    assert len(xs) == 11  # every fault has its glyph...
    assert all(b - a >= 10 - 1e-6 for a, b in zip(xs, xs[1:]))  # ...at least a glyph width apart
    assert len(labels) < 11 and "left out to avoid overprinting" in _page(tl)
    assert all(f"fault number {i}" in repr(tl) for i in range(1, 12))  # the table keeps every event


def test_accepted_and_rejected_writes_and_named_faults():
    log = _elog([
        (10.0, "A", "acquire", "fence 33"), (10.2, "A", "fault", "pause (SIGSTOP)"),
        (10.5, "A", "expire", "PX ran out"), (10.52, "B", "acquire", "fence 34"),
        (10.6, "B", "write", "from-B fence 34 accepted"), (10.62, "B", "release", ""),
        (10.7, "A", "fault", "resume (SIGCONT)"), (10.71, "A", "write", "from-A fence 33 rejected"),
        (10.72, "A", "release", "lock was no longer ours"),
    ])
    tl = Timeline(log, end_kind=("release", "expire"), title="fenced")
    assert [mark_of(e.kind, e.detail) for e in log.events][4:8] == ["accepted", "release", "fault", "rejected"]
    svg = tl.svg()
    assert "rt-mark-accepted" in svg and "rt-mark-rejected" in svg and "rt-mark-fault" in svg
    assert 'stroke="#009E73"' in svg and 'stroke="#D55E00"' in svg  # green ✓, vermillion ✗
    texts = {t for *_, t in _labels(svg)}
    assert {"pause (SIGSTOP)", "resume (SIGCONT)", "write: from-B fence 34 accepted",
            "write: from-A fence 33 rejected", "expire"} <= texts
    page = _page(tl)
    for item in ("write accepted", "rejected / refused", "fault (labelled)", "expire",
                 "held (acquire → release/expire)"):
        assert item in page
    assert "two or more holders" not in page  # the legend lists only what is present
    assert repr(tl).splitlines()[-3:] == [
        "A  A!E···!✗R", "B  ···A✓R···",
        "   (A=acquire, R=release, !=fault, E=expire, ✓=accepted, ✗=rejected; ═ = holding)"]


def test_overlap_windows_counts_holders():
    tl = Timeline(_elog([(0, "a", "acquire", ""), (1, "b", "acquire", ""), (2, "c", "acquire", ""),
                         (3, "a", "release", ""), (4, "b", "release", ""), (5, "c", "release", "")]))
    assert overlap_windows(tl.spans, 5) == [(1, 4, 3)]
    assert tl.overlap_windows() == [(1, 4, 3)]


def test_timeline_html_table_aligns_numbers_right():
    page = _page(Timeline(_elog(TWO_HOLDERS), times=True))
    assert '<th class="rt-num">#</th><th class="rt-num">t (s)</th><th class="rt-text">actor</th>' in page
    assert '<td class="rt-num">1</td><td class="rt-num">0.00</td><td class="rt-text">thread-A</td>' in page


def test_text_mode_html_is_the_text(monkeypatch):
    from redistutor import set_options

    tl = Timeline(_elog(TWO_HOLDERS))
    with set_options(display="text"):
        assert tl._repr_html_() == "<pre>" + html.escape(repr(tl)) + "</pre>"


def test_plot_draws_the_same_race(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")

    tl = Timeline(_elog([(100.0, "A", "acquire", ""), (100.2, "A", "fault", "kill -9"),
                         (100.3, "B", "acquire", ""), (100.4, "B", "write", "x accepted"),
                         (100.5, "B", "release", "")]), title="kill -9 the holder")
    ax = tl.plot()
    assert ax.get_xlabel() == "ms since the first event"
    assert ax.get_title(loc="left") == "kill -9 the holder: max 2 holders at once"
    lo, hi = ax.get_xlim()
    assert lo < 0 < 500 < hi < 600  # the window, in ms since the first event, not 0..100 s
    legend = ax.get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().x0 >= ax.get_window_extent().x1 - 1
    labels = [t.get_text() for t in legend.get_texts()]
    assert "two or more holders at once" in labels and "fault" in labels and "write accepted" in labels
    assert "kill -9" in [t.get_text() for t in ax.texts]
    ax.figure.savefig(tmp_path / "t.png")


def test_lab_timeline_table_is_a_view_and_still_a_string():
    from redistutor.lab import timeline_table

    log = _elog([(0.0, "w1", "acquire", "fence 1"), (0.5, "w1", "fault", "kill -9"),
                 (1.2, "w2", "write", "v fence 2 accepted"), (1.3, "w1", "write", "v fence 1 rejected")])
    t = timeline_table(log)
    text = """#  actor  kind     detail
-  -----  -------  ------------------
1  w1     acquire  fence 1
2  w1     fault    kill -9
3  w2     write    v fence 2 accepted
4  w1     write    v fence 1 rejected"""
    assert str(t) == repr(t) == text and t == text and "kill -9" in t and t.splitlines()[2].startswith("1")
    page = _page(t)
    assert '<td class="rt-num">1</td><td class="rt-text">w1</td>' in page
    assert "rt-mark" not in page and 'stroke="#D55E00"' in page and 'stroke="#009E73"' in page  # ✗ and ✓
    from redistutor import set_options

    with set_options(display="text"):
        assert t._repr_html_() == "<pre>" + html.escape(text) + "</pre>"
    assert str(timeline_table([])) == "(no events)"
    assert timeline_table(log, times=True).splitlines()[0] == "#  t (s)  actor  kind     detail"


def test_a_long_idle_stretch_is_drawn_as_a_marked_break():
    """07's plain-DEL race: A holds 300 ms until PX runs out, then B and C overlap within 4 ms."""
    rows = [(0.0, "A", "acquire", ""), (0.300, "A", "expire", "PX ran out"), (0.3008, "B", "acquire", ""),
            (0.3012, "A", "late release", "deleted the key"), (0.3015, "C", "acquire", ""),
            (0.3030, "B", "release", ""), (0.3040, "C", "release", "")]
    tl = Timeline(_elog(rows), end_kind=("release", "expire"))
    scale = tl.scale()
    assert len(scale.breaks) == 1 and 0.0 < scale.breaks[0][0] < scale.breaks[0][1] < 0.300
    svg = tl.svg()
    assert "⋯2" in svg and " ms⋯" in svg and 'class="rt-break-band"' in svg  # the idle time it stands for
    bars = {b["x"]: float(b["width"]) for b in _attrs(svg, "rect", "rt-hold")}
    b_and_c = sorted(bars.values())[:2]
    assert min(b_and_c) > 60  # 1.5-2.5 ms holds are clearly drawn, not 6 px slivers
    (band,) = _attrs(svg, "rect", "rt-overlap")
    assert float(band["width"]) > 40
    texts = {t for *_, t in _labels(svg)}
    assert {"expire", "late release"} <= texts
    linear = Timeline(_elog(rows), end_kind=("release", "expire"), compress_gaps=False)
    assert linear.scale().breaks == [] and "rt-break" not in linear.svg()
    assert repr(tl) == repr(linear)  # the text form is by order: breaks do not touch it


def test_time_scale_is_monotonic_and_invertible():
    from redistutor.timeline import TimeScale

    scale = TimeScale([0.0, 0.001, 0.002, 1.0, 1.001])
    assert len(scale.breaks) == 1
    ts = [scale.lo + (scale.hi - scale.lo) * i / 200 for i in range(201)]
    fs = [scale.frac(t) for t in ts]
    assert fs[0] == pytest.approx(0.0) and fs[-1] == pytest.approx(1.0)
    assert all(b > a for a, b in zip(fs, fs[1:]))
    assert all(scale.inverse(f) == pytest.approx(t) for t, f in zip(ts, fs))
    (b0, b1), = scale.breaks
    assert scale.frac(b1) - scale.frac(b0) == pytest.approx(TimeScale.BREAK)
    ticks = scale.ticks(1000.0)
    assert ticks[0] == 0 and all(not (b0 * 1000 < v < b1 * 1000) for v in ticks)
    assert TimeScale([5.0, 5.1, 5.2]).breaks == []  # evenly spread: one linear scale


def test_an_overlap_is_never_drawn_short():
    """07's no-watchdog run: the job outlives its 600 ms TTL and a rival holds the lock too."""
    tl = Timeline(_elog([(0.0, "job", "acquire", "PX 600"), (0.6, "rival", "acquire", ""),
                         (1.8, "job", "release", ""), (1.81, "rival", "release", "")]))
    assert tl.scale().breaks == []  # the 1.2 s of two holders is the story: drawn to scale
    (band,) = _attrs(tl.svg(), "rect", "rt-overlap")
    job, rival = sorted(_attrs(tl.svg(), "rect", "rt-hold"), key=lambda b: float(b["x"]))
    assert float(band["width"]) == pytest.approx(float(rival["width"]) * 1.2 / 1.21, abs=1)
    assert float(band["width"]) / float(job["width"]) == pytest.approx(1.2 / 1.8, abs=0.02)


def test_interrupt_stops_the_threads_of_run_threads():
    """Jupyter's Interrupt (SIGINT) during run_threads stops that cell's threads, not only the wait."""
    import subprocess
    import sys
    import textwrap

    child = textwrap.dedent("""
        import os, signal, threading, time
        from redistutor import run_threads
        started = threading.Barrier(4)

        def busy(actor, log):
            started.wait()
            while True:
                time.sleep(0.01)

        def interrupt():
            started.wait()
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt, daemon=True).start()
        try:
            run_threads(busy, 3, timeout=60)
        except KeyboardInterrupt:
            time.sleep(0.1)
            alive = [t.name for t in threading.enumerate() if t.name.startswith("worker-") and t.is_alive()]
            print("ALIVE", alive)
    """)
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert "ALIVE []" in out.stdout, out.stdout + out.stderr
