"""The vector-set pattern on a real Redis 8: what VADD stores, what VSIM answers, and the numpy
ground truth the notebook measures recall against."""

from __future__ import annotations

import json

import numpy as np
import pytest

from redistutor.patterns.vector_sets import VectorIndex, exact_top_k, fp32, recall_at_k


@pytest.fixture
def vectors():
    return np.random.default_rng(7).normal(size=(200, 16)).astype(np.float32)


def _load(idx, vectors, **attrs):
    for i, v in enumerate(vectors):
        idx.add(f"v{i}", v, **{k: f(i) for k, f in attrs.items()})


def test_fp32_is_little_endian_float32():
    blob = fp32([1.0, -2.5, 0.1])
    assert blob == np.array([1.0, -2.5, 0.1], dtype="<f4").tobytes() and len(blob) == 12
    assert fp32(np.array([3.0], dtype=np.float64)) == b"\x00\x00\x40\x40"


def test_add_stores_the_vector_with_the_default_q8(r):
    idx = VectorIndex(r, "vs")
    assert idx.quant == "Q8" and idx.key == "vs" and idx.r is r
    assert idx.add("a", [1.0, 2.0, 3.0]) is True
    assert idx.add("a", [1.0, 2.0, 3.0]) is False           # already there: VADD answers 0
    info = r.execute_command("VINFO", "vs")
    assert info["quant-type"] == "int8" and info["vector-dim"] == 3 and info["attributes-count"] == 0
    assert r.execute_command("VGETATTR", "vs", "a") is None


@pytest.mark.parametrize("quant,name", [("NOQUANT", "f32"), ("BIN", "bin"), ("Q8", "int8")])
def test_add_uses_the_chosen_quantization(r, quant, name):
    VectorIndex(r, "vs", quant=quant).add("a", [0.5, -1.0, 2.0, 4.0])
    assert r.execute_command("VINFO", "vs")["quant-type"] == name


def test_noquant_keeps_the_floats_exactly(r):
    VectorIndex(r, "vs", "NOQUANT").add("a", [0.1, -2.5, 3.25])
    got = [float(x) for x in r.execute_command("VEMB", "vs", "a")]
    assert np.allclose(got, [0.1, -2.5, 3.25], atol=1e-6)


def test_attributes_are_json_and_filterable(r, vectors):
    idx = VectorIndex(r, "vs", "NOQUANT")
    _load(idx, vectors[:50], year=lambda i: 1950 + i, genre=lambda i: "action" if i % 2 else "drama")
    assert json.loads(r.execute_command("VGETATTR", "vs", "v3")) == {"year": 1953, "genre": "action"}
    got = idx.search(vectors[0], k=50, filter='.year >= 1990 and .genre == "action"')
    want = {f"v{i}" for i in range(50) if 1950 + i >= 1990 and i % 2}
    assert {n for n, _ in got} == want


def test_search_scores_are_cos_plus_one_over_two(r, vectors):
    idx = VectorIndex(r, "vs", "NOQUANT")
    _load(idx, vectors)
    got = idx.search(vectors[5], k=10)
    assert got[0] == ("v5", pytest.approx(1.0, abs=1e-6))
    assert len(got) == 10 and all(isinstance(n, str) and isinstance(s, float) for n, s in got)
    assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for name, score in got:
        cos = float(unit[int(name[1:])] @ unit[5])
        assert score == pytest.approx((cos + 1) / 2, abs=1e-5)
    assert [n for n, _ in got] == [f"v{i}" for i in exact_top_k(vectors, vectors[5], 10)]


def test_search_default_k_and_resp2(redis_server, vectors):
    c2 = redis_server.client(protocol=2)
    idx = VectorIndex(c2, "vs", "NOQUANT")
    _load(idx, vectors[:30])
    got = idx.search(vectors[1])
    assert len(got) == 10 and got[0][0] == "v1" and got[0][1] == pytest.approx(1.0, abs=1e-6)
    assert idx.search(vectors[1], k=3) == got[:3]
    c2.close()


def test_filter_ef_bounds_the_visit(r, vectors):
    idx = VectorIndex(r, "vs", "NOQUANT")
    _load(idx, vectors, n=lambda i: i)
    rare = ".n == 150"                       # one match among 200
    assert [n for n, _ in idx.search(vectors[0], k=1, filter=rare, filter_ef=200)] == ["v150"]
    small = [n for q in vectors[:40] for n, _ in idx.search(q, k=1, filter=rare, filter_ef=1)]
    assert len(small) < 40                   # a visit budget of 1 misses the rare match sometimes


def test_ef_is_sent(r, vectors):
    idx = VectorIndex(r, "vs", "NOQUANT")
    _load(idx, vectors)
    from redistutor.trace import trace

    with trace(r) as t:
        idx.search(vectors[0], k=4, ef=7)
        idx.search(vectors[0], k=4, filter=".x == 1", filter_ef=9)
        idx.search(vectors[0], k=4)
    sent = [list(c.args[3:]) for c in t.commands]          # after key, FP32 and the blob
    assert sent[0] == ["WITHSCORES", "COUNT", "4", "EF", "7"]
    assert sent[1] == ["WITHSCORES", "COUNT", "4", "FILTER", ".x == 1", "FILTER-EF", "9"]
    assert sent[2] == ["WITHSCORES", "COUNT", "4"]


def test_exact_top_k_is_cosine_not_dot_product():
    vectors = np.array([[10.0, 1.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert exact_top_k(vectors, [1.0, 0.0], 4) == [1, 0, 2, 3]     # [10, 1] is longer, not closer
    assert exact_top_k(vectors, [2.0, 0.0], 2) == [1, 0]
    assert exact_top_k(vectors, [1.0, 0.0], 4, mask=np.array([True, False, True, False])) == [0, 2]
    assert exact_top_k(vectors, [0.0, 1.0], 1) == [2]
    ties = np.array([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    assert exact_top_k(ties, [1.0, 0.0], 3) == [0, 1, 2]             # stable order among equals
    many = np.array([[1.0, 0.0], [0.0, 1.0]] * 60)                    # 60 equal pairs: lowest index first
    assert exact_top_k(many, [1.0, 0.0], 12) == list(range(0, 24, 2))
    assert len(exact_top_k(many, [1.0, 0.0])) == 10                    # k defaults to 10


def test_exact_top_k_ranks_in_double_precision():
    """float32 vectors and query: the cosines 1 and 1 - 5e-11 are equal in float32, not in float64."""
    vectors = np.array([[1.0, 0.0], [1.0, 1e-5]], dtype=np.float32)
    query = np.array([1.0, 1e-5], dtype=np.float32)
    assert exact_top_k(vectors, query, 2) == [1, 0]


def test_recall_at_k():
    assert recall_at_k(["a", "b", "c"], ["a", "b", "d", "e"]) == 0.5
    assert recall_at_k(["a", "a"], ["a", "b"]) == 0.5
    assert recall_at_k([], ["a"]) == 0.0
    assert recall_at_k(["x"], []) == 1.0
