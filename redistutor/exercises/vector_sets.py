"""Exercises for notebooks/25-vector-sets.ipynb.

Try it. ``q8_saves_half``: at vector dimension ``dim``, does Q8 take at most half the memory per
   element of NOQUANT? The check builds both and reads MEMORY USAGE.
1. ``dedup_on_insert``: ``add_unless_near(r, key, name, vector, min_score)``: a new case: refuse a
   near-duplicate (return the existing element it duplicates), add anything else.
2. ``category_search``: ``nearest_in(r, key, vector, k, category)``: the k nearest elements of one
   category, exactly as numpy would rank them among that category.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import redis

from ..check import Exercise, expect
from ..patterns.vector_sets import exact_top_k, fp32
from ..trace import trace

# -- reference solutions (self-tested in tests/exercises/test_vector_sets.py) ---------------------


def add_unless_near(r: redis.Redis, key: str, name: str, vector: Any, min_score: float) -> str | None:
    """Add ``name`` unless an element scores ``min_score`` or more against it; then return that one."""
    if r.exists(key):
        best = r.execute_command("VSIM", key, "FP32", fp32(vector), "COUNT", 1, "WITHSCORES")
        pairs = list(best.items()) if isinstance(best, dict) else list(zip(best[::2], best[1::2]))
        if pairs and float(pairs[0][1]) >= min_score:
            return str(pairs[0][0])
    r.execute_command("VADD", key, "FP32", fp32(vector), name)
    return None


def nearest_in(r: redis.Redis, key: str, vector: Any, k: int, category: str) -> list[str]:
    """The k nearest elements whose attribute ``category`` equals ``category`` (server-side FILTER,
    with a visit budget as large as the set so that rare categories are found)."""
    budget = int(r.execute_command("VCARD", key))
    return [str(x) for x in r.execute_command(
        "VSIM", key, "FP32", fp32(vector), "COUNT", k,
        "FILTER", f'.category == "{category}"', "FILTER-EF", max(budget, 100 * k))]


# -- exercises ----------------------------------------------------------------------------------


def _vectors(n: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def q8_saves_half(r: redis.Redis, dim: int, key: str = "try:vs") -> Exercise:
    """Try it: does Q8 cost at most half of NOQUANT's MEMORY USAGE per element at ``dim``?"""

    def per_element(quant: str, vectors: np.ndarray) -> float:
        r.delete(key)
        p = r.pipeline(transaction=False)
        for i, v in enumerate(vectors):
            p.execute_command("VADD", key, "FP32", fp32(v), f"e{i}", quant)
        p.execute()
        size = int(r.memory_usage(key, samples=0) or 0) / len(vectors)
        r.delete(key)
        return size

    def checker(answer: Any) -> None:
        vectors = _vectors(200, dim, seed=3)
        full, q8 = per_element("NOQUANT", vectors), per_element("Q8", vectors)
        truth = q8 <= full / 2
        expect(isinstance(answer, bool) and answer == truth,
               f"at dim {dim}: NOQUANT {full:,.0f} bytes per element, Q8 {q8:,.0f} (a ratio of "
               f"{full / q8:.2f}). The vector shrinks 4× ({4 * dim:,} → {dim:,} bytes) but the graph links, "
               "the node and the name do not shrink at all", expected=truth, actual=answer)

    return Exercise(
        f"Q8's saving at dim {dim}", checker,
        hints=["Split an element into its vector (4 bytes per component, 1 with Q8) and everything else "
               "(links to neighbours, the node, the name), which no quantization touches.",
               "The memory table above gives 'everything else' per element: subtract the vector bytes from "
               "MEMORY USAGE. Q8 saves half when 3 × dim is at least half of NOQUANT's total."],
        solution="# everything but the vector: about 690 bytes per element at M = 16 (the memory table)\n"
                 "other = 690\n"
                 "prediction = (dim + other) <= (4 * dim + other) / 2     # True from about dim = 350",
        reference=None,
    )


def dedup_on_insert(r: redis.Redis, prefix: str = "ex1") -> Exercise:
    """Exercise 1: ``add_unless_near(r, key, name, vector, min_score) -> str | None``."""

    def checker(answer: Any) -> None:
        key = f"{prefix}:articles"
        r.delete(key)
        rng = np.random.default_rng(21)
        base = rng.normal(size=(20, 48)).astype(np.float32)
        got = [answer(r, key, f"a{i}", v, 0.95) for i, v in enumerate(base)]
        expect(all(g is None for g in got), "20 unrelated vectors are all new: each is added and None returned",
               expected=[None] * 20, actual=got)
        card = int(r.execute_command("VCARD", key))
        expect(card == 20, "each new vector is added to the set", expected=20, actual=card)
        near = base[7] + 0.05 * rng.normal(size=48).astype(np.float32)      # cos ≈ 0.999 with a7
        dup = answer(r, key, "a7-copy", near, 0.95)
        expect(dup == "a7", "a vector scoring above min_score against a7 is a duplicate of a7: return "
               "'a7' and do not add it (VSIM … COUNT 1 WITHSCORES gives the closest and its score)",
               expected="a7", actual=dup)
        inside = bool(r.execute_command("VISMEMBER", key, "a7-copy"))
        expect(not inside, "the duplicate must not be added", expected=False, actual=inside)
        far = -base[3]                                                     # cos = -1 with a3: score 0
        fresh = answer(r, key, "a3-opposite", far, 0.95)
        expect(fresh is None and bool(r.execute_command("VISMEMBER", key, "a3-opposite")),
               "the opposite of a3 (score 0, cosine distance 2) is no duplicate: compare the score "
               "with min_score the right way round (higher = more similar)", expected=None, actual=fresh)
        loose = base[11] + 0.8 * rng.normal(size=48).astype(np.float32)     # cos ≈ 0.78, score ≈ 0.89
        kept = answer(r, key, "a11-variant", loose, 0.95)
        expect(kept is None, "a variant scoring about 0.89 is below min_score 0.95: add it", expected=None, actual=kept)
        with trace(r) as t:
            answer(r, key, "a5-copy", base[5] * 2.0, 0.95)                 # same direction, longer
        expect(t.round_trips <= 2, "one VSIM and at most one VADD per insert",
               expected="≤ 2 round trips", actual=f"{t.round_trips}: {[c.line() for c in t.commands][:4]}")
        r.delete(key)

    return Exercise(
        "refuse near-duplicates on insert", checker,
        hints=["Ask the set for the single closest element to the new vector, with its score, before adding.",
               "VSIM key FP32 <bytes> COUNT 1 WITHSCORES answers {name: score} (score = (cos+1)/2, 1 = same "
               "direction). Duplicate if score >= min_score; otherwise VADD."],
        solution="def add_unless_near(r, key, name, vector, min_score):\n"
                 "    if r.exists(key):\n"
                 "        best = r.execute_command('VSIM', key, 'FP32', fp32(vector), 'COUNT', 1, 'WITHSCORES')\n"
                 "        for other, score in best.items():\n"
                 "            if float(score) >= min_score:\n"
                 "                return other\n"
                 "    r.execute_command('VADD', key, 'FP32', fp32(vector), name)\n"
                 "    return None",
        reference=add_unless_near,
    )


def category_search(r: redis.Redis, prefix: str = "ex2") -> Exercise:
    """Exercise 2: ``nearest_in(r, key, vector, k, category) -> list[str]``."""

    def checker(answer: Any) -> None:
        key = f"{prefix}:products"
        r.delete(key)
        rng = np.random.default_rng(31)
        vectors = rng.normal(size=(1500, 32)).astype(np.float32)
        cats = np.where(rng.random(1500) < 0.004, "vinyl", np.where(rng.random(1500) < 0.5, "books", "games"))
        p = r.pipeline(transaction=False)
        for i, v in enumerate(vectors):
            p.execute_command("VADD", key, "FP32", fp32(v), f"p{i}", "NOQUANT",
                              "SETATTR", json.dumps({"category": str(cats[i])}))
        p.execute()
        queries = rng.normal(size=(12, 32)).astype(np.float32)
        for category, k in (("books", 5), ("vinyl", 3)):
            mask = cats == category
            for q in queries:
                exact = [f"p{i}" for i in exact_top_k(vectors, q, k, mask)]
                got = [str(x) for x in answer(r, key, q, k, category)]
                wrong = sorted(set(got) - {f"p{i}" for i in np.flatnonzero(mask)})
                expect(not wrong, f"every result must be in category {category!r}", expected=[], actual=wrong[:5])
                expect(got == exact, f"the {k} nearest {category!r} elements, best first, as numpy ranks them "
                       f"among the {int(mask.sum())} of that category (filtering k results afterwards returns "
                       "too few; a rare category needs a larger FILTER-EF)", expected=exact, actual=got)
        r.delete(key)

    return Exercise(
        "nearest within a category", checker,
        hints=["Let the server filter while it searches: VSIM … FILTER '.category == \"books\"' (a quoted "
               "string inside the expression).",
               "A rare category (a few in a thousand) is missed when VSIM stops visiting after the default "
               "FILTER-EF (100 × COUNT); raise FILTER-EF up to the set's size (VCARD)."],
        solution="def nearest_in(r, key, vector, k, category):\n"
                 "    budget = max(r.execute_command('VCARD', key), 100 * k)\n"
                 "    return r.execute_command('VSIM', key, 'FP32', fp32(vector), 'COUNT', k,\n"
                 "                             'FILTER', f'.category == \"{category}\"', 'FILTER-EF', budget)",
        reference=nearest_in,
    )
