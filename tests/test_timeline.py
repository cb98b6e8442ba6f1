"""Race timelines: threads on one clock, spans, the overlap detector."""

from __future__ import annotations

import pytest

from redistutor.events import EventLog
from redistutor.race import PausePoint, run_in_thread
from redistutor.timeline import Timeline, max_concurrent, overlaps, run_threads, spans


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
    assert repr(tl).splitlines()[-3:] == ["A  ·A═R", "B  A═R·", "   (A=acquire, R=release; ═ = holding)"]
