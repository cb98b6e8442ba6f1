"""Self-tests of the lexicographic-sorted-sets exercise checkers: the reference passes, known-wrong answers fail."""

from __future__ import annotations

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import lexicographic_sorted_sets as ex
from redistutor.scenarios import lexicographic_sorted_sets as sc


def test_between_days_reference_passes(r):
    assert ex.events_on_days(r).evaluate(ex.between_days).outcome == CORRECT


def test_between_days_starter_is_not_attempted(r):
    def starter(r, key, first_day, last_day):
        raise NotImplementedError

    assert ex.events_on_days(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_between_days_inclusive_day_bound_misses_the_last_day(r):
    res = ex.events_on_days(r).evaluate(lambda r, k, a, b: r.zrange(k, f"[{a}", f"[{b}", bylex=True))
    assert res.outcome == INCORRECT and "23:59:59 on the 3rd" in res.message


def test_between_days_fetch_all_and_filter_fails(r):
    def fetch_all(r, key, a, b):
        return [e for e in r.zrange(key, 0, -1) if a <= e[:10] <= b]

    res = ex.events_on_days(r).evaluate(fetch_all)
    assert res.outcome == INCORRECT and "lex range query" in res.message


def test_between_days_exclusive_first_day_fails(r):
    def off_by_one(r, k, a, b):
        return r.zrange(k, f"({a}T00:00:00Z:e02", b"(" + b.encode() + b"\xff", bylex=True)
    res = ex.events_on_days(r).evaluate(off_by_one)
    assert res.outcome == INCORRECT


def test_remove_prefix_reference_passes(r):
    assert ex.prefix_removal(r).evaluate(ex.remove_prefix).outcome == CORRECT


def test_remove_prefix_str_ff_misses_emoji(r):
    res = ex.prefix_removal(r).evaluate(lambda r, k, p: r.zremrangebylex(k, f"[{p}", f"({p}\xff"))
    assert res.outcome == INCORRECT and "red🚀" in res.message


def test_remove_prefix_page_style_bounds_fail(r):
    # the page's [reda (redm idea: a hand-picked letter range instead of the prefix's own bounds
    res = ex.prefix_removal(r).evaluate(lambda r, k, p: r.zremrangebylex(k, f"[{p}a", f"({p}m"))
    assert res.outcome == INCORRECT


def test_remove_prefix_member_by_member_fails(r):
    def one_by_one(r, key, p):
        gone = [m for m in r.zrange(key, 0, -1) if m.startswith(p)]
        return r.zrem(key, *gone) if gone else 0

    res = ex.prefix_removal(r).evaluate(one_by_one)
    assert res.outcome == INCORRECT and "one command" in res.message


def test_padding_prediction_is_checked_against_the_server(r):
    for width, lo, hi in [(3, 25, 30), (0, 25, 30), (2, 90, 110)]:
        got, _ = sc.age_query(r, "probe", sc.random_ages(), width, lo, hi)
        assert ex.padding_prediction(r, width, lo, hi).evaluate(len(got)).outcome == CORRECT
        assert ex.padding_prediction(r, width, lo, hi).evaluate(len(got) + 1).outcome == INCORRECT
