"""Self-tests of the vector-sets exercise checkers: the reference passes, known-wrong answers fail
(with the message that teaches why)."""

from __future__ import annotations

import numpy as np

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import vector_sets as ex
from redistutor.patterns.vector_sets import fp32

# -- Try it ---------------------------------------------------------------------------------------


def test_try_it_q8_saving_follows_the_dimension(r):
    assert ex.q8_saves_half(r, 128).evaluate(False).outcome == CORRECT
    assert ex.q8_saves_half(r, 128).evaluate(True).outcome == INCORRECT
    assert ex.q8_saves_half(r, 384).evaluate(True).outcome == CORRECT      # MiniLM's dimension, just over
    assert ex.q8_saves_half(r, 1024).evaluate(True).outcome == CORRECT
    assert ex.q8_saves_half(r, 1024).evaluate(False).outcome == INCORRECT
    assert ex.q8_saves_half(r, 128).evaluate("False").outcome == INCORRECT
    assert ex.q8_saves_half(r, 128).evaluate(None).outcome == NOT_ATTEMPTED
    assert not r.keys("*")


# -- Exercise 1: refuse near-duplicates -------------------------------------------------------------


def test_dedup_reference_passes(r):
    assert ex.dedup_on_insert(r).evaluate(ex.add_unless_near).outcome == CORRECT
    assert not r.keys("*")


def test_dedup_starter_is_not_attempted(r):
    def starter(r, key, name, vector, min_score):
        raise NotImplementedError

    assert ex.dedup_on_insert(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_dedup_that_always_adds_fails(r):
    def always(r, key, name, vector, min_score):
        r.execute_command("VADD", key, "FP32", fp32(vector), name)
        return None

    res = ex.dedup_on_insert(r).evaluate(always)
    assert res.outcome == INCORRECT and "duplicate of a7" in res.message


def test_dedup_reading_the_score_as_a_distance_fails(r):
    def as_distance(r, key, name, vector, min_score):
        if r.exists(key):
            best = r.execute_command("VSIM", key, "FP32", fp32(vector), "COUNT", 1, "WITHSCORES")
            for other, score in best.items():
                if float(score) <= 1 - min_score:          # the threshold-scale confusion
                    return other
        r.execute_command("VADD", key, "FP32", fp32(vector), name)
        return None

    assert ex.dedup_on_insert(r).evaluate(as_distance).outcome == INCORRECT


def test_dedup_any_neighbour_is_a_duplicate_fails(r):
    def no_threshold(r, key, name, vector, min_score):
        if r.exists(key):
            return r.execute_command("VSIM", key, "FP32", fp32(vector), "COUNT", 1)[0]
        r.execute_command("VADD", key, "FP32", fp32(vector), name)
        return None

    assert ex.dedup_on_insert(r).evaluate(no_threshold).outcome == INCORRECT


def test_dedup_that_adds_the_duplicate_too_fails(r):
    def adds_anyway(r, key, name, vector, min_score):
        found = ex.add_unless_near(r, key, name, vector, min_score)
        r.execute_command("VADD", key, "FP32", fp32(vector), name)
        return found

    res = ex.dedup_on_insert(r).evaluate(adds_anyway)
    assert res.outcome == INCORRECT and "must not be added" in res.message


def test_dedup_comparing_every_element_fails_on_round_trips(r):
    def scan_all(r, key, name, vector, min_score):
        if r.exists(key):
            q = np.asarray(vector, float) / np.linalg.norm(vector)
            for other in r.execute_command("VRANDMEMBER", key, 1000):
                v = np.asarray(r.execute_command("VEMB", key, other), float)
                if (float(v @ q) / np.linalg.norm(v) + 1) / 2 >= min_score:
                    return other
        r.execute_command("VADD", key, "FP32", fp32(vector), name)
        return None

    res = ex.dedup_on_insert(r).evaluate(scan_all)
    assert res.outcome == INCORRECT and "round trips" in res.message


# -- Exercise 2: nearest within a category -----------------------------------------------------------


def test_category_reference_passes(r):
    assert ex.category_search(r).evaluate(ex.nearest_in).outcome == CORRECT
    assert not r.keys("*")


def test_category_post_filtering_fails(r):
    def post_filter(r, key, vector, k, category):
        got = r.execute_command("VSIM", key, "FP32", fp32(vector), "COUNT", k, "WITHATTRIBS")
        return [n for n, a in got.items() if category in (a or "")]

    res = ex.category_search(r).evaluate(post_filter)
    assert res.outcome == INCORRECT and "filtering k results afterwards" in res.message


def test_category_without_a_filter_fails(r):
    def unfiltered(r, key, vector, k, category):
        return r.execute_command("VSIM", key, "FP32", fp32(vector), "COUNT", k)

    res = ex.category_search(r).evaluate(unfiltered)
    assert res.outcome == INCORRECT and "category" in res.message


def test_category_at_a_small_visit_budget_fails(r):
    def small_budget(r, key, vector, k, category):
        return r.execute_command("VSIM", key, "FP32", fp32(vector), "COUNT", k,
                                 "FILTER", f'.category == "{category}"', "FILTER-EF", 20)

    assert ex.category_search(r).evaluate(small_budget).outcome == INCORRECT
