"""Self-tests of the vector-search-ai exercise checkers: the reference passes, known-wrong answers
fail (with the message that teaches why)."""

from __future__ import annotations

import numpy as np

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import vector_search_ai as ex
from redistutor.patterns.vector_search_ai import fp32, pairs

PROBES = [
    {"q": "a", "label": "x", "nearest": "x", "score": 0.95},
    {"q": "b", "label": None, "nearest": "x", "score": 0.93},     # wrong above 0.93
    {"q": "c", "label": "y", "nearest": "z", "score": 0.85},      # wrong above 0.85
    {"q": "d", "label": "y", "nearest": "y", "score": 0.80},
    {"q": "e", "label": None, "nearest": "y", "score": 0.60},
]


def test_try_it_counts_wrong_answers_at_the_threshold():
    assert ex.wrong_answers_at(PROBES, 0.94).evaluate(0).outcome == CORRECT
    assert ex.wrong_answers_at(PROBES, 0.90).evaluate(1).outcome == CORRECT
    assert ex.wrong_answers_at(PROBES, 0.50).evaluate(3).outcome == CORRECT
    assert ex.wrong_answers_at(PROBES, 0.90).evaluate(2).outcome == INCORRECT
    assert ex.wrong_answers_at(PROBES, 0.90).evaluate(None).outcome == NOT_ATTEMPTED


# -- Exercise 1 -----------------------------------------------------------------------------------


def test_duplicates_reference_passes(r):
    assert ex.faq_duplicates(r).evaluate(ex.near_duplicates).outcome == CORRECT
    assert not r.keys("*")


def test_duplicates_starter_is_not_attempted(r):
    def starter(r, key, threshold):
        raise NotImplementedError

    assert ex.faq_duplicates(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_duplicates_with_self_pairs_fail(r):
    def with_self(r, key, threshold):
        out = set(ex.near_duplicates(r, key, threshold))
        return out | {frozenset(("faq9",))}

    assert ex.faq_duplicates(r).evaluate(with_self).outcome == INCORRECT


def test_duplicates_threshold_read_as_a_distance_fails(r):
    def as_distance(r, key, threshold):          # keeps pairs whose distance 2 - 2*score <= threshold
        found = set()
        for name in r.execute_command("VRANDMEMBER", key, r.execute_command("VCARD", key)):
            for other, score in pairs(r.execute_command("VSIM", key, "ELE", name, "WITHSCORES", "COUNT", 10)):
                if other != name and 2 - 2 * score <= threshold:
                    found.add(frozenset((name, other)))
        return found

    assert ex.faq_duplicates(r).evaluate(as_distance).outcome == INCORRECT


def test_duplicates_strictly_above_a_fixed_cut_fail(r):
    def fixed(r, key, threshold):                # ignores the threshold
        return ex.near_duplicates(r, key, 0.8)

    assert ex.faq_duplicates(r).evaluate(fixed).outcome == INCORRECT


# -- Exercise 2 -----------------------------------------------------------------------------------


def test_recommend_reference_passes(r):
    assert ex.profile_recommendations(r).evaluate(ex.recommend_for).outcome == CORRECT
    assert not r.keys("*")


def test_recommend_including_liked_fails(r):
    def with_liked(r, key, liked, k):
        return liked[:1] + ex.recommend_for(r, key, liked, k)[:k - 1]

    assert ex.profile_recommendations(r).evaluate(with_liked).outcome == INCORRECT


def test_recommend_from_one_liked_item_fails(r):
    def first_only(r, key, liked, k):            # "more like the first thing you liked"
        hits = pairs(r.execute_command("VSIM", key, "ELE", liked[-1], "WITHSCORES", "COUNT", k + len(liked)))
        return [n for n, _ in hits if n not in liked][:k]

    assert ex.profile_recommendations(r).evaluate(first_only).outcome == INCORRECT


def test_recommend_without_normalising_still_passes(r):
    # cosine ranking does not depend on the query's length: the normalisation is hygiene, not a bug
    def raw_mean(r, key, liked, k):
        v = np.array([[float(x) for x in r.execute_command("VEMB", key, n)] for n in liked]).mean(axis=0)
        hits = pairs(r.execute_command("VSIM", key, "FP32", fp32(v), "WITHSCORES", "COUNT", k + len(liked)))
        return [n for n, _ in hits if n not in liked][:k]

    assert ex.profile_recommendations(r).evaluate(raw_mean).outcome == CORRECT
