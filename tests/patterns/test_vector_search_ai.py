"""redistutor.patterns.vector_search_ai on a real Redis 8: retrieval with re-ingest and the model
guard, the semantic cache (threshold, scope, expiry) and the sweeper."""

from __future__ import annotations

import json

import numpy as np
import pytest

from redistutor.embeddings import Embedder, ModelMismatch
from redistutor.patterns import vector_search_ai as p
from redistutor.patterns.vector_search_ai import SemanticCache, SemanticIndex, Sweeper, chunk_name, fp32, pairs, scope


class Table(Embedder):
    """A test embedder: fixed unit vectors per text (4-d), so scores are known exactly."""

    def __init__(self, vectors: dict[str, list[float]], name: str = "table-model") -> None:
        super().__init__()
        self.vectors, self.name, self.dimension = vectors, name, 4

    def _embed_batch(self, texts):
        return np.array([self.vectors.get(t, [0.0, 0.0, 0.0, 1.0]) for t in texts], dtype=np.float32)


def at(cos: float) -> list[float]:
    """A unit vector whose cosine with [1, 0, 0, 0] is ``cos``."""
    return [cos, float(np.sqrt(1 - cos * cos)), 0.0, 0.0]


VECTORS = {
    "alpha": [1, 0, 0, 0], "beta": [0, 1, 0, 0], "gamma": [0, 0, 1, 0],
    "alpha question": [1, 0, 0, 0], "beta question": [0, 1, 0, 0],
    "near": at(0.8), "far": at(0.2),
}


@pytest.fixture
def emb():
    return Table(VECTORS)


# --------------------------------------------------------------------------- helpers


def test_fp32_is_little_endian_float32():
    assert fp32([1.0, -2.5]) == np.array([1.0, -2.5], dtype="<f4").tobytes()
    assert len(fp32(np.zeros(3, dtype=np.float64))) == 12


def test_pairs_reads_resp2_and_resp3():
    assert pairs(["a", "0.5", "b", "0.25"]) == [("a", 0.5), ("b", 0.25)]
    assert pairs({"a": 1, "b": "0.75"}) == [("a", 1.0), ("b", 0.75)]
    assert pairs([]) == []


def test_chunk_name_is_doc_and_a_text_digest():
    name = chunk_name("doc", "text")
    assert name == "doc#" + __import__("hashlib").sha1(b"text").hexdigest()[:10]
    assert chunk_name("doc", "other") != name


def test_scope_is_exact_and_refuses_unsafe_names():
    assert scope("acme", "sentence-transformers/all-MiniLM-L6-v2") == \
        '.tenant == "acme" and .model == "sentence-transformers/all-MiniLM-L6-v2"'
    assert scope("a.b:c@d+e-f_g", "m") == '.tenant == "a.b:c@d+e-f_g" and .model == "m"'
    for bad in ['x" or .tenant == "acme', "o'brien", "", "a b", "x" * 129]:
        with pytest.raises(ValueError, match="unsafe"):
            scope(bad, "m")
    with pytest.raises(ValueError):
        scope("acme", 'm" or "1')
    scope("x" * 128, "m")


# --------------------------------------------------------------------------- SemanticIndex


def test_ingest_adds_chunks_with_attributes_and_records_the_model(r, emb):
    idx = SemanticIndex(r, "docs", emb)
    names = idx.ingest("d1", ["alpha", "beta"], category="ops", level=2)
    assert names == [chunk_name("d1", "alpha"), chunk_name("d1", "beta")]
    assert r.execute_command("VCARD", "docs") == 2 and r.execute_command("VDIM", "docs") == 4
    assert json.loads(r.execute_command("VGETATTR", "docs", names[0])) == \
        {"doc": "d1", "text": "alpha", "category": "ops", "level": 2}
    assert r.smembers("docs:doc:d1") == set(names)
    assert r.hgetall("docs:model") == {"name": "table-model", "dimension": "4"}


def test_reingest_removes_exactly_the_dropped_chunks(r, emb):
    idx = SemanticIndex(r, "docs", emb)
    idx.ingest("d1", ["alpha", "beta"])
    other = idx.ingest("d2", ["gamma"])
    new = idx.ingest("d1", ["beta", "near"])
    members = set(r.execute_command("VSIM", "docs", "FP32", fp32([1, 0, 0, 0]), "COUNT", 10))
    assert members == set(new) | set(other)                 # alpha gone, d2 untouched
    assert r.smembers("docs:doc:d1") == set(new)
    assert r.smembers("docs:doc:d2") == set(other)


def test_ingest_refuses_another_model(r, emb):
    SemanticIndex(r, "docs", emb).ingest("d1", ["alpha"])
    with pytest.raises(ModelMismatch):
        SemanticIndex(r, "docs", Table(VECTORS, name="other")).ingest("d1", ["beta"])
    assert r.execute_command("VCARD", "docs") == 1


def test_search_ranks_scores_and_returns_attributes(r, emb):
    idx = SemanticIndex(r, "docs", emb)
    idx.ingest("d1", ["alpha", "near", "far"], level=1)
    idx.ingest("d2", ["beta"], level=3)
    hits = idx.search("alpha", k=3)
    assert [h[2]["text"] for h in hits] == ["alpha", "near", "far"]
    assert hits[0][1] == pytest.approx(1.0, abs=0.01) and hits[1][1] == pytest.approx(0.9, abs=0.01)
    assert len(idx.search("alpha")) == 4                  # default k = 5, 4 elements
    idx.ingest("d3", ["gamma", "alpha question", "beta question"])
    assert len(idx.search("alpha")) == 5                  # default k = 5 of 7 elements
    assert len(idx.search("alpha", k=2)) == 2
    only = idx.search("alpha", k=5, filter=".level >= 3")
    assert [h[2]["text"] for h in only] == ["beta"]


def test_search_refuses_another_model_before_the_server(r, emb):
    SemanticIndex(r, "docs", emb).ingest("d1", ["alpha"])
    calls = r.info("commandstats").get("cmdstat_vsim", {}).get("calls", 0)
    with pytest.raises(ModelMismatch):
        SemanticIndex(r, "docs", Table(VECTORS, name="other")).search("alpha")
    assert r.info("commandstats").get("cmdstat_vsim", {}).get("calls", 0) == calls


# --------------------------------------------------------------------------- SemanticCache


def make_cache(r, emb, threshold=0.85, ttl=100.0, now=1000.0):
    cache = SemanticCache(r, "cache", emb, threshold=threshold, ttl=ttl)
    cache.clock = lambda: now
    return cache


def test_cache_defaults_and_model_record(r, emb):
    cache = SemanticCache(r, "cache", emb, threshold=0.9)
    assert cache.ttl == 3600.0 and cache.threshold == 0.9
    assert r.hgetall("cache:model") == {"name": "table-model", "dimension": "4"}
    with pytest.raises(ModelMismatch):
        SemanticCache(r, "cache", Table(VECTORS, name="other"), threshold=0.9)


def test_put_stores_vector_attributes_answer_and_expiry(r, emb):
    cache = make_cache(r, emb)
    name = cache.put("alpha question", "A", "acme")
    assert name == chunk_name("acme", "alpha question")
    assert json.loads(r.execute_command("VGETATTR", "cache", name)) == \
        {"tenant": "acme", "model": "table-model", "question": "alpha question"}
    assert r.hget("cache:answers", name) == "A"
    assert r.zscore("cache:expiry", name) == 1100.0


def test_get_hits_at_or_above_the_threshold_only(r, emb):
    cache = make_cache(r, emb, threshold=0.9)
    cache.put("alpha question", "A", "acme")
    assert cache.get("alpha", "acme") == "A"              # score 1.0
    (_, score), = pairs(r.execute_command("VSIM", "cache", "FP32", fp32(at(0.8)), "WITHSCORES", "COUNT", 1))
    assert score == pytest.approx(0.9, abs=0.01)          # (1 + 0.8) / 2, Q8-rounded
    cache.threshold = score
    assert cache.get("near", "acme") == "A"               # exactly at the threshold: a hit
    cache.threshold = score + 1e-6
    assert cache.get("near", "acme") is None
    cache.threshold = 0.95
    assert cache.get("near", "acme") is None
    assert cache.get("far", "acme") is None               # score 0.6


def test_get_returns_the_nearest_entrys_answer(r, emb):
    cache = make_cache(r, emb, threshold=0.5)
    cache.put("alpha question", "A", "acme")
    cache.put("beta question", "B", "acme")
    assert cache.get("beta", "acme") == "B" and cache.get("alpha", "acme") == "A"


def test_get_is_scoped_to_tenant_and_model(r, emb):
    cache = make_cache(r, emb, threshold=0.5)
    cache.put("alpha question", "A", "acme")
    assert cache.get("alpha", "globex") is None
    # an entry of another model (same dimension) in the same set is never served
    r.execute_command("VADD", "cache", "FP32", fp32([0, 1, 0, 0]), "x", "SETATTR",
                      json.dumps({"tenant": "acme", "model": "old-model"}))
    r.hset("cache:answers", "x", "OLD")
    r.zadd("cache:expiry", {"x": 10**12})
    assert cache.get("beta", "acme") == "A" or cache.get("beta", "acme") is None
    assert cache.get("beta", "acme") != "OLD"


def test_get_refuses_an_expired_entry_before_the_sweep(r, emb):
    cache = make_cache(r, emb, ttl=100.0, now=1000.0)
    cache.put("alpha question", "A", "acme")              # expires at 1100
    cache.clock = lambda: 1099.5
    assert cache.get("alpha", "acme") == "A"
    cache.clock = lambda: 1100.0
    assert cache.get("alpha", "acme") is None             # due at 1100 exactly
    r.zrem("cache:expiry", chunk_name("acme", "alpha question"))
    cache.clock = lambda: 0.0
    assert cache.get("alpha", "acme") is None             # no expiry entry: not served


def test_get_on_an_empty_cache_is_a_miss(r, emb):
    assert make_cache(r, emb).get("alpha", "acme") is None


def test_cache_refuses_a_query_from_another_model(r, emb):
    cache = make_cache(r, emb)
    cache.put("alpha question", "A", "acme")
    r.hset("cache:model", "name", "newer-model")
    with pytest.raises(ModelMismatch):
        cache.get("alpha", "acme")


# --------------------------------------------------------------------------- Sweeper


def test_sweeper_removes_exactly_the_due_entries(r, emb):
    cache = make_cache(r, emb, ttl=100.0, now=1000.0)
    a = cache.put("alpha question", "A", "acme")         # due 1100
    cache.ttl = 200.0
    b = cache.put("beta question", "B", "acme")          # due 1200
    sweeper = Sweeper(r, "cache")
    assert sweeper.sweep(1099.0) == 0
    assert sweeper.sweep(1100.0) == 1                     # inclusive
    assert r.execute_command("VCARD", "cache") == 1 and r.hkeys("cache:answers") == [b]
    assert r.zrange("cache:expiry", 0, -1) == [b] and not r.execute_command("VISMEMBER", "cache", a)
    assert sweeper.sweep(5000.0) == 1 and sweeper.sweep(5000.0) == 0
    assert r.zcard("cache:expiry") == 0 and r.hlen("cache:answers") == 0


def test_module_exports():
    assert set(p.__all__) >= {"SemanticIndex", "SemanticCache", "Sweeper", "scope", "fp32", "pairs", "chunk_name"}
