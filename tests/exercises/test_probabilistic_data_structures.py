"""Self-tests of the probabilistic-data-structures exercise checkers: the reference passes, known-wrong
answers fail (with the message that teaches why)."""

from __future__ import annotations

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import probabilistic_data_structures as ex
from redistutor.scenarios.probabilistic_data_structures import hll_encoding, items

# -- Try it ---------------------------------------------------------------------------------------

def _truth(r, n):
    r.pfadd("probe", *items(n, seed=77))
    got = hll_encoding(r, "probe")
    r.delete("probe")
    return got


def test_try_it_prediction_is_checked_against_the_server(r):
    for n in (100, 1_500, 2_500):
        truth = _truth(r, n)
        assert ex.hll_encoding_prediction(r, n).evaluate(truth).outcome == CORRECT
        wrong = "dense" if truth == "sparse" else "sparse"
        assert ex.hll_encoding_prediction(r, n).evaluate(wrong).outcome == INCORRECT
    assert ex.hll_encoding_prediction(r, 100).evaluate(" Sparse ").outcome == CORRECT
    assert ex.hll_encoding_prediction(r, 100).evaluate(None).outcome == NOT_ATTEMPTED
    assert not r.keys("*")


# -- Exercise 1: a news feed without repeats --------------------------------------------------------

def test_feed_reference_passes(r):
    assert ex.feed_dedup(r).evaluate(ex.unseen).outcome == CORRECT


def test_feed_starter_is_not_attempted(r):
    def starter(r, key, articles):
        raise NotImplementedError

    assert ex.feed_dedup(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_feed_that_never_records_fails(r):
    def only_check(r, key, articles):
        return [a for a, hit in zip(articles, r.bf().mexists(key, *articles)) if not hit]

    res = ex.feed_dedup(r).evaluate(only_check)
    assert res.outcome == INCORRECT and "never be shown again" in res.message


def test_feed_check_then_add_in_two_round_trips_fails(r):
    def two_steps(r, key, articles):
        fresh = [a for a, hit in zip(articles, r.bf().mexists(key, *articles)) if not hit]
        if fresh:
            r.bf().madd(key, *fresh)
        return fresh

    res = ex.feed_dedup(r).evaluate(two_steps)
    assert res.outcome == INCORRECT and "one round trip" in res.message


def test_feed_returning_everything_fails(r):
    def everything(r, key, articles):
        r.bf().madd(key, *articles)
        return list(articles)

    res = ex.feed_dedup(r).evaluate(everything)
    assert res.outcome == INCORRECT and "never be shown again" in res.message


def test_feed_with_inverted_flags_fails(r):
    def inverted(r, key, articles):
        return [a for a, new in zip(articles, r.bf().madd(key, *articles)) if not new]

    assert ex.feed_dedup(r).evaluate(inverted).outcome == INCORRECT


def test_feed_in_an_exact_set_fails(r):
    def with_a_set(r, key, articles):
        flags = r.execute_command("SMISMEMBER", key + ":ids", *articles)
        fresh = [a for a, hit in zip(articles, flags) if not hit]
        return fresh

    res = ex.feed_dedup(r).evaluate(with_a_set)
    assert res.outcome == INCORRECT


# -- Exercise 2: distinct visitors over a week --------------------------------------------------------

def test_week_reference_passes(r):
    assert ex.week_uniques(r).evaluate(ex.weekly).outcome == CORRECT
    assert not r.keys("*")


def test_week_starter_is_not_attempted(r):
    def starter(r, day_keys):
        raise NotImplementedError

    assert ex.week_uniques(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_week_summing_days_fails(r):
    res = ex.week_uniques(r).evaluate(lambda r, keys: sum(r.pfcount(k) for k in keys))
    assert res.outcome == INCORRECT and "sum of the days" in res.message


def test_week_merging_into_the_first_day_fails(r):
    def merge_into_monday(r, keys):
        r.pfmerge(keys[0], *keys[1:])
        return r.pfcount(keys[0])

    res = ex.week_uniques(r).evaluate(merge_into_monday)
    assert res.outcome == INCORRECT and "must stay as they were" in res.message


def test_week_leaving_a_merged_key_fails(r):
    def merge_and_keep(r, keys):
        r.pfmerge("ex2:week", *keys)
        return r.pfcount("ex2:week")

    res = ex.week_uniques(r).evaluate(merge_and_keep)
    assert res.outcome == INCORRECT and "no extra key" in res.message
    assert not r.keys("*")


def test_week_merging_into_a_temporary_then_deleting_passes(r):
    def merge_and_delete(r, keys):
        r.pfmerge("ex2:tmp", *keys)
        n = r.pfcount("ex2:tmp")
        r.delete("ex2:tmp")
        return n

    assert ex.week_uniques(r).evaluate(merge_and_delete).outcome == CORRECT


def test_week_counting_one_day_fails(r):
    assert ex.week_uniques(r).evaluate(lambda r, keys: r.pfcount(keys[0])).outcome == INCORRECT
