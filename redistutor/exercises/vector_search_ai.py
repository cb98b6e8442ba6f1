"""Exercises for notebooks/26-vector-search-ai.ipynb.

Try it. ``wrong_answers_at``: at a threshold of your choice, how many of the labelled probes would
   the semantic cache answer with another question's answer? The check counts them.
1. ``faq_duplicates``: ``near_duplicates(r, key, threshold)``: a new case for VSIM: the pairs of
   FAQ entries in a vector set whose VSIM score reaches the threshold (a score, not a distance).
2. ``profile_recommendations``: ``recommend_for(r, key, liked, k)``: the k elements nearest to the
   mean of the liked elements' vectors (read with VEMB), never one the user already liked.
"""

from __future__ import annotations

import numpy as np
import redis

from ..check import Exercise, expect
from ..patterns.vector_search_ai import fp32, pairs

# -- reference solutions (self-tested in tests/exercises/test_vector_search_ai.py) -------------


def near_duplicates(r: redis.Redis, key: str, threshold: float) -> set[frozenset[str]]:
    """Pairs of distinct elements whose VSIM score is at least ``threshold``."""
    found: set[frozenset[str]] = set()
    for name in r.execute_command("VRANDMEMBER", key, r.execute_command("VCARD", key)):
        for other, score in pairs(r.execute_command("VSIM", key, "ELE", name, "WITHSCORES", "COUNT", 10)):
            if other != name and score >= threshold:
                found.add(frozenset((name, other)))
    return found


def recommend_for(r: redis.Redis, key: str, liked: list[str], k: int) -> list[str]:
    """The k elements nearest to the normalised mean of the liked ones, none of them liked."""
    vectors = np.array([[float(x) for x in r.execute_command("VEMB", key, name)] for name in liked])
    mean = vectors.mean(axis=0)
    hits = pairs(r.execute_command("VSIM", key, "FP32", fp32(mean / np.linalg.norm(mean)),
                                   "WITHSCORES", "COUNT", k + len(liked)))
    return [name for name, _ in hits if name not in liked][:k]


# -- fixtures -----------------------------------------------------------------------------------


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def faq_set(r: redis.Redis, key: str, seed: int = 14) -> set[frozenset[str]]:
    """40 FAQ vectors (32-d, NOQUANT): 4 planted near-duplicate pairs (score ~0.99) and 4 merely
    related pairs (score ~0.85). Returns the planted pairs."""
    rng = np.random.default_rng(seed)
    base = _unit(rng.standard_normal((32, 32)))
    vectors = {f"faq{i}": base[i] for i in range(32)}
    planted = set()
    for i in range(4):
        vectors[f"faq{i}-again"] = _unit(base[i] + 0.1 * _unit(rng.standard_normal(32)))
        planted.add(frozenset((f"faq{i}", f"faq{i}-again")))
    for i in range(4, 8):
        vectors[f"faq{i}-related"] = _unit(base[i] + 1.0 * _unit(rng.standard_normal(32)))
    r.delete(key)
    for name, v in vectors.items():
        r.execute_command("VADD", key, "FP32", fp32(v), name, "NOQUANT")
    return planted


def catalogue(r: redis.Redis, key: str, seed: int = 5) -> dict[str, np.ndarray]:
    """120 items in 4 topics (16-d, NOQUANT), as a vector set; returns the stored vectors."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((4, 16)))
    items = {f"item{t}-{i}": _unit(centres[t] + 0.45 * rng.standard_normal(16) / 4)
             for t in range(4) for i in range(30)}
    r.delete(key)
    for name, v in items.items():
        r.execute_command("VADD", key, "FP32", fp32(v), name, "NOQUANT")
    return {n: v.astype(np.float32) for n, v in items.items()}


# -- exercises ----------------------------------------------------------------------------------


def wrong_answers_at(probes: list[dict], threshold: float) -> Exercise:
    """Try it: how many probes get another question's answer at ``threshold``?"""
    wrong = sum(p["score"] >= threshold and p["nearest"] != p["label"] for p in probes)

    def checker(answer) -> None:
        expect(answer == wrong, f"at threshold {threshold:.3f}, {wrong} of {len(probes)} probes reach a cached "
               "question that is not theirs and would get its answer", expected=wrong, actual=answer)

    return Exercise(
        f"wrong answers at threshold {threshold:.3f}", checker,
        hints=["A probe is answered when its nearest cached question scores at least the threshold; the answer "
               "is wrong when that nearest question is not its label (an unlabelled probe has no right answer).",
               "Count the rows of the probe table above with score >= threshold and nearest != label."],
        solution="answer = sum(p['score'] >= threshold and p['nearest'] != p['label'] for p in probes)",
        reference=None,
    )


def faq_duplicates(r: redis.Redis, key: str = "ex1:faq") -> Exercise:
    """Exercise 1: ``near_duplicates(r, key, threshold) -> set of frozenset pairs``."""

    def checker(answer) -> None:
        planted = faq_set(r, key)
        got = answer(r, key, 0.95)
        got = {frozenset(p) for p in got}
        selfs = [sorted(p) for p in got if len(p) < 2]
        expect(not selfs, "VSIM ELE returns the element itself first (score 1): a pair needs two elements",
               expected=[], actual=selfs[:3])
        expect(got == planted, "the 4 planted duplicates score about 0.99; the related pairs about 0.85 stay "
               "below 0.95 (a score threshold keeps what is at least as similar: score >= threshold)",
               expected=sorted(sorted(p) for p in planted), actual=sorted(sorted(p) for p in got)[:8])
        loose = {frozenset(p) for p in answer(r, key, 0.80)}
        expect(planted < loose, "a lower score threshold keeps more pairs (the related ones join)",
               expected="the 4 planted pairs and more", actual=len(loose))
        r.delete(key)

    return Exercise(
        "near-duplicate FAQ entries", checker,
        hints=["VRANDMEMBER key <VCARD> lists every element; VSIM key ELE name WITHSCORES COUNT 10 gives its "
               "neighbours with scores (1 = same direction).",
               "Skip the element itself, keep score >= threshold, and store each pair as frozenset((a, b)) "
               "so (a, b) and (b, a) count once."],
        solution="def near_duplicates(r, key, threshold):\n"
                 "    found = set()\n"
                 "    for name in r.execute_command('VRANDMEMBER', key, r.execute_command('VCARD', key)):\n"
                 "        reply = r.execute_command('VSIM', key, 'ELE', name, 'WITHSCORES', 'COUNT', 10)\n"
                 "        for other, score in pairs(reply):\n"
                 "            if other != name and score >= threshold:\n"
                 "                found.add(frozenset((name, other)))\n"
                 "    return found",
        reference=near_duplicates,
    )


def profile_recommendations(r: redis.Redis, key: str = "ex2:items") -> Exercise:
    """Exercise 2: ``recommend_for(r, key, liked, k) -> list of element names``."""

    def checker(answer) -> None:
        items = catalogue(r, key)
        names = list(items)
        liked = ["item0-1", "item0-2", "item1-3"]                    # two topics, mostly topic 0
        mean = np.mean([items[n] for n in liked], axis=0)
        scores = np.array([items[n] @ (mean / np.linalg.norm(mean)) for n in names])
        exact = [names[i] for i in np.argsort(-scores) if names[i] not in liked][:5]
        got = list(answer(r, key, liked, 5))
        repeats = [n for n in got if n in liked]
        expect(not repeats, "a recommendation is something the user has not liked yet",
               expected=[], actual=repeats)
        expect(len(got) == 5, "k = 5 recommendations", expected=5, actual=len(got))
        expect(set(got) == set(exact), "the 5 items nearest to the mean of all 3 liked vectors (not to one of "
               "them): numpy's exact answer on the stored vectors", expected=exact, actual=got)
        r.delete(key)

    return Exercise(
        "recommendations from a profile vector", checker,
        hints=["VEMB key name returns an element's vector; average the liked ones and normalise the mean.",
               "VSIM key FP32 <mean bytes> COUNT k + len(liked), then drop the liked elements and keep k."],
        solution="def recommend_for(r, key, liked, k):\n"
                 "    vectors = np.array([[float(x) for x in r.execute_command('VEMB', key, n)] for n in liked])\n"
                 "    mean = vectors.mean(axis=0)\n"
                 "    hits = pairs(r.execute_command('VSIM', key, 'FP32', fp32(mean / np.linalg.norm(mean)),\n"
                 "                                   'WITHSCORES', 'COUNT', k + len(liked)))\n"
                 "    return [n for n, _ in hits if n not in liked][:k]",
        reference=recommend_for,
    )
