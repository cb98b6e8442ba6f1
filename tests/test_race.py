"""Pause points and threads for deterministic races."""

from __future__ import annotations

import pytest

from redistutor.race import PausePoint, RaceTimeout, call_hook, run_in_thread


def test_run_in_thread_passes_every_keyword_to_the_function():
    fut = run_in_thread(lambda **kw: kw, name="A", thread_name="writer-a")
    assert fut.result(timeout=5) == {"name": "A"}


def test_pause_point_holds_the_first_thread_until_released():
    pause = PausePoint("p")
    order = []

    def worker():
        call_hook({"here": pause}, "here", 42)
        order.append("worker resumed")

    fut = run_in_thread(worker)
    assert pause.wait_reached() == (42,)
    order.append("main ran while the worker was paused")
    pause.release()
    fut.result(timeout=5)
    assert order == ["main ran while the worker was paused", "worker resumed"]
    call_hook({"here": pause}, "here")  # later threads pass straight through
    assert pause.hits == 2


def test_unreleased_pause_point_times_out_loudly():
    pause = PausePoint("stuck", timeout=0.2)
    fut = run_in_thread(pause)
    with pytest.raises(RaceTimeout):
        fut.result(timeout=5)


def test_wait_until_returns_once_true_and_names_what_it_waited_for():
    import itertools

    import pytest

    from redistutor.race import wait_until

    calls = itertools.count()
    wait_until(lambda: next(calls) >= 3, timeout=5)
    assert next(calls) == 4
    with pytest.raises(TimeoutError, match="waiting for the replica"):
        wait_until(lambda: False, 0.05, "the replica")
