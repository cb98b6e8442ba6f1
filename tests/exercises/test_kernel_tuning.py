"""Self-tests of the kernel-tuning exercise checkers: the reference passes, known-wrong answers fail."""

from __future__ import annotations

import time

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import kernel_tuning as ex


def test_measure_fork_reference_passes(r):
    assert ex.measure_fork(r).evaluate(ex.fork_cost).outcome == CORRECT


def test_measure_fork_starter_is_not_attempted(r):
    def starter(r):
        raise NotImplementedError

    assert ex.measure_fork(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_measure_fork_without_waiting_fails(r):
    def no_wait(r):
        r.bgsave()
        return {"fork_ms": r.info("stats")["latest_fork_usec"] / 1000,
                "cow_bytes": r.info("persistence")["rdb_last_cow_size"]}

    res = ex.measure_fork(r).evaluate(no_wait)
    assert res.outcome == INCORRECT and "finished" in res.message


def test_measure_fork_in_microseconds_fails(r):
    def usec(r):
        out = ex.fork_cost(r)
        return {"fork_ms": r.info("stats")["latest_fork_usec"], "cow_bytes": out["cow_bytes"]}

    res = ex.measure_fork(r).evaluate(usec)
    assert res.outcome == INCORRECT and "microseconds" in res.message


def test_measure_fork_reading_current_cow_peak_after_the_save_fails(r):
    def peak(r):
        out = ex.fork_cost(r)
        return {"fork_ms": out["fork_ms"], "cow_bytes": r.info("persistence")["current_cow_peak"]}

    res = ex.measure_fork(r).evaluate(peak)
    assert res.outcome == INCORRECT and "rdb_last_cow_size" in res.message


def test_measure_fork_starting_two_saves_fails(r):
    def twice(r):
        ex.fork_cost(r)
        while r.info("persistence")["rdb_bgsave_in_progress"]:
            time.sleep(0.01)
        return ex.fork_cost(r)

    res = ex.measure_fork(r).evaluate(twice)
    assert res.outcome == INCORRECT and "exactly one BGSAVE" in res.message


def test_warning_rules_reference_passes(r):
    assert ex.warning_rules(r).evaluate(ex.predict).outcome == CORRECT


def test_warning_rules_checklist_fails(r):
    def checklist(host):          # "THP on -> warning", "somaxconn >= 511"
        out = set()
        if host["overcommit_memory"] != "1":
            out.add("overcommit")
        if "[never]" not in host["thp"]:
            out.add("thp")
        if int(host["somaxconn"]) < 511:
            out.add("somaxconn")
        return out

    assert ex.warning_rules(r).evaluate(checklist).outcome == INCORRECT


def test_warning_rules_ignoring_disable_thp_fails(r):
    def no_opt_out(host):
        out = ex.predict(host)
        if "[always]" in host["thp"]:
            out.add("thp")
        return out

    res = ex.warning_rules(r).evaluate(no_opt_out)
    assert res.outcome == INCORRECT and "thp" in res.message


def test_warning_rules_fixed_511_fails(r):
    def fixed(host):
        return ex.predict({**host, "tcp_backlog": "511"})

    assert ex.warning_rules(r).evaluate(fixed).outcome == INCORRECT


def test_warning_rules_overcommit_two_counts_as_enabled_fails(r):
    def lenient(host):
        return ex.predict(host) - ({"overcommit"} if host["overcommit_memory"] == "2" else set())

    assert ex.warning_rules(r).evaluate(lenient).outcome == INCORRECT


def test_cow_prediction_four_kb_per_write_passes():
    stride = 256
    assert ex.cow_prediction(stride).evaluate(64 * 1024 // stride * 4).outcome == CORRECT


def test_cow_prediction_two_mb_per_huge_page_fails():
    stride = 256
    # the stale claim: every write copies the whole 2 MB huge page it lands in
    assert ex.cow_prediction(stride).evaluate(64 // 2 * 2048).outcome == INCORRECT


def test_cow_prediction_small_stride_copies_each_page_once():
    assert ex.cow_prediction(1).evaluate(64 * 1024).outcome == CORRECT
    assert ex.cow_prediction(1).evaluate(64 * 1024 * 4).outcome == INCORRECT


def test_cow_prediction_not_attempted():
    assert ex.cow_prediction(256).evaluate(None).outcome == NOT_ATTEMPTED
