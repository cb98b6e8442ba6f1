"""Scenarios for notebooks/26-vector-search-ai.ipynb: the labelled corpus, retrieval metrics, the
semantic-cache calibration, the model switch, stale chunks, the Search-module comparison and the
latency run, each as a one-line helper returning plain data.

The corpus (``redistutor/data/redis_handbook.json``) was written for this project: 84 short passages
about Redis in 14 documents, 44 questions labelled with the passages that answer them, and 12 cached
questions with 34 probes labelled with the cached question each should hit (or none).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import redis

from ..embeddings import Embedder, TfidfSvd, record_model
from ..patterns.vector_search_ai import SemanticIndex, chunk_name, fp32, pairs
from ..tables import Table

# --------------------------------------------------------------------------- the corpus


@dataclass
class Corpus:
    documents: list[dict]                      # {"doc", "category", "level", "chunks": [...]}
    questions: list[dict]                      # {"q", "answers": ["doc:i", ...]}
    entries: list[dict]                        # semantic cache: {"id", "q", "a"}
    probes: list[dict]                         # {"q", "hit": entry id or None}
    names: dict[str, str] = field(default_factory=dict)   # "doc:i" -> element name

    @property
    def chunks(self) -> list[str]:
        return [c for d in self.documents for c in d["chunks"]]

    def text(self, label: str) -> str:
        """The passage labelled ``doc:i``."""
        doc, i = label.rsplit(":", 1)
        return next(d["chunks"][int(i)] for d in self.documents if d["doc"] == doc)

    def relevant(self, question: dict) -> set[str]:
        return {self.names[a] for a in question["answers"]}


def load_corpus() -> Corpus:
    """The labelled corpus shipped with redistutor."""
    raw = json.loads(resources.files("redistutor").joinpath("data/redis_handbook.json").read_text())
    c = Corpus(raw["documents"], raw["questions"], raw["cache"]["entries"], raw["cache"]["probes"])
    for d in c.documents:
        for i, text in enumerate(d["chunks"]):
            c.names[f"{d['doc']}:{i}"] = chunk_name(d["doc"], text)
    return c


def corpus_texts() -> list[str]:
    """Every text of the corpus (passages, questions, cached questions, probes), for model checks."""
    c = load_corpus()
    return c.chunks + [q["q"] for q in c.questions] + [e["q"] for e in c.entries] + [p["q"] for p in c.probes]


def fallback_for(corpus: Corpus) -> TfidfSvd:
    """The TF-IDF fallback fitted on what a deployment stores: the passages and the cached Q&A."""
    return TfidfSvd(corpus.chunks + [e["q"] + " " + e["a"] for e in corpus.entries])


def providers_table(*embedders: Embedder) -> Table:
    return Table(["provider", "dimension", "what ran"],
                 [[e.name, e.dimension, e.description] for e in embedders],
                 title="Embedding providers in this run")


def ingest_corpus(r: redis.Redis, key: str, embedder: Embedder, corpus: Corpus) -> tuple[SemanticIndex, float]:
    """Every document into one vector set (with doc, category, level, text); returns (index, seconds)."""
    index = SemanticIndex(r, key, embedder)
    embedder.embed(corpus.chunks)                # one batch, cached: the timing below is Redis's
    start = time.perf_counter()
    for d in corpus.documents:
        index.ingest(d["doc"], d["chunks"], category=d["category"], level=d["level"])
    return index, time.perf_counter() - start


# --------------------------------------------------------------------------- retrieval metrics


def hit_at(ranked: list[str], relevant: set[str], k: int) -> float:
    """1 if any relevant element is in the first k, else 0."""
    return float(any(name in relevant for name in ranked[:k]))


def recall_at(ranked: list[str], relevant: set[str], k: int) -> float:
    """The share of the relevant elements found in the first k."""
    return len(relevant & set(ranked[:k])) / len(relevant) if relevant else 0.0


def reciprocal_rank(ranked: list[str], relevant: set[str]) -> float:
    """1 / the rank of the first relevant element (0 if none is retrieved)."""
    for i, name in enumerate(ranked, 1):
        if name in relevant:
            return 1.0 / i
    return 0.0


def rankings(index: SemanticIndex, corpus: Corpus, k: int = 10) -> list[list[str]]:
    """Each labelled question's top-k element names, from VSIM."""
    index.embedder.embed([q["q"] for q in corpus.questions])      # one batch
    return [[name for name, _, _ in index.search(q["q"], k)] for q in corpus.questions]


def retrieval_metrics(ranked: list[list[str]], corpus: Corpus, ks: tuple[int, ...] = (1, 3, 5, 10)) -> dict:
    """hit@k and recall@k for each k, and MRR, averaged over the labelled questions."""
    rel = [corpus.relevant(q) for q in corpus.questions]
    out: dict[str, float] = {}
    for k in ks:
        out[f"hit@{k}"] = float(np.mean([hit_at(r, s, k) for r, s in zip(ranked, rel)]))
        out[f"recall@{k}"] = float(np.mean([recall_at(r, s, k) for r, s in zip(ranked, rel)]))
    out["MRR"] = float(np.mean([reciprocal_rank(r, s) for r, s in zip(ranked, rel)]))
    return out


def metrics_table(results: dict[str, dict]) -> Table:
    names = list(results)
    metrics = list(next(iter(results.values())))
    return Table(["metric", *names], [[m, *[results[n][m] for n in names]] for m in metrics],
                 title="Retrieval quality on 44 labelled questions", fmt={n: ".2f" for n in names})


def plot_hit_at_k(results: dict[str, dict], title: str = "Semantic search: hit@k on 44 labelled questions") -> None:
    from .. import charts

    fig, ax = charts.figure(title, xlabel="k (passages retrieved)", ylabel="hit@k (fraction of questions)")
    for name, m in results.items():
        ks = sorted(int(x[4:]) for x in m if x.startswith("hit@"))
        ax.plot(ks, [m[f"hit@{k}"] for k in ks], marker="o", label=name)
    charts.finish(ax, summary="in this run hit@5: " + ", ".join(f"{n} {m['hit@5']:.2f}" for n, m in results.items()))


def probes_table(probes: list[dict], threshold: float) -> Table:
    rows = [[p["q"], p["label"] or "(none)", p["nearest"], p["score"],
             "right" if p["score"] >= threshold and p["nearest"] == p["label"] else
             "WRONG ANSWER" if p["score"] >= threshold else "miss" if p["label"] else "no answer (right)"]
            for p in sorted(probes, key=lambda p: -p["score"])]
    return Table(["probe", "should hit", "nearest cached", "score", f"at {threshold:.3f}"], rows,
                 title="Labelled probes against the cached questions", fmt={"score": ".3f"})


def hits_table(hits: list[tuple[str, float, dict]], title: str) -> Table:
    return Table(["element", "score", "doc", "text"],
                 [[n, s, a.get("doc"), a.get("text", "")[:70]] for n, s, a in hits],
                 title=title, fmt={"score": ".3f"})


def rag_prompt(question: str, hits: list[tuple[str, float, dict]]) -> str:
    """The prompt a RAG step sends to the LLM: the retrieved passages, then the question."""
    context = "\n".join(f"[{i}] {a['text']}" for i, (_, _, a) in enumerate(hits, 1))
    return (f"Answer using only the numbered passages; cite them like [1].\n\n{context}\n\n"
            f"Question: {question}\nAnswer:")


def stub_llm(prompt: str) -> str:
    """The LLM of this notebook: no network, no key. It quotes the first passage it was given."""
    first = next((line for line in prompt.splitlines() if line.startswith("[1] ")), "[1] (nothing retrieved)")
    return f"(stub LLM, {len(prompt.split())} words of prompt) {first[4:]} [1]"


# --------------------------------------------------------------------------- hybrid filters


def matches(attrs: dict, category: str, min_level: int) -> bool:
    return attrs.get("category") == category and int(attrs.get("level", 0)) >= min_level


# --------------------------------------------------------------------------- stale chunks


def naive_ingest(r: redis.Redis, key: str, embedder: Embedder, doc: str, chunks: list[str], **attrs: Any) -> None:
    """Re-ingest the way most tutorials show it: VADD the new chunks, remove nothing."""
    for text, vector in zip(chunks, embedder.embed(chunks)):
        r.execute_command("VADD", key, "FP32", fp32(vector), chunk_name(doc, text),
                          "SETATTR", json.dumps({"doc": doc, "text": text, **attrs}))


EXPIRY_V2 = [
    "EXPIRE gives a key a time to live in seconds; when it runs out, Redis deletes the key.",
    "Since Redis 7.0, EXPIRE takes NX, XX, GT or LT to set the expiry only under that condition.",
    "TTL returns the seconds a key has left, -1 for a key without expiry and -2 for a missing key.",
]
"""Version 2 of the "expiry" document: two passages kept, one new, four of version 1 gone."""


def doc_versions(index: SemanticIndex, doc: str, current: list[str]) -> dict[str, int]:
    """How many elements of ``doc`` the set holds: from the current version, and stale ones."""
    reply = index.r.execute_command("VSIM", index.key, "FP32", fp32(index.embedder.embed_one(doc)),
                                    "COUNT", 1000, "FILTER", f".doc == {json.dumps(doc)}")
    names = {str(n) for n in (reply.keys() if isinstance(reply, dict) else reply)}
    now = {chunk_name(doc, t) for t in current}
    return {"current": len(names & now), "stale": len(names - now)}


# --------------------------------------------------------------------------- another model


class Rotated(Embedder):
    """A stand-in for another 384-d model: the same embeddings turned by a fixed random rotation.

    It is as good a model as the original on its own vectors (all angles are kept), but its
    coordinates mean something else, which is what a different model of the same size does.
    """

    def __init__(self, base: Embedder, seed: int = 7) -> None:
        super().__init__()
        q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((base.dimension, base.dimension)))
        self.base, self.rotation = base, q.astype(np.float32)
        self.name, self.dimension = f"another-{base.dimension}-d-model", base.dimension
        self.description = f"{base.name} turned by a fixed random rotation (emulates another model)"

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        return self.base.embed(texts) @ self.rotation


def raw_rankings(r: redis.Redis, key: str, embedder: Embedder, corpus: Corpus, k: int = 10) -> list[list[str]]:
    """Rankings with VSIM sent directly, without the model guard (what a service without it does)."""
    out = []
    for v in embedder.embed([q["q"] for q in corpus.questions]):
        out.append([n for n, _ in pairs(r.execute_command("VSIM", key, "FP32", fp32(v), "WITHSCORES", "COUNT", k))])
    return out


def vsim_calls(r: redis.Redis) -> int:
    """How many VSIM commands the server has executed (INFO commandstats)."""
    return int(r.info("commandstats").get("cmdstat_vsim", {}).get("calls", 0))


# --------------------------------------------------------------------------- semantic cache


def fill_cache(cache: Any, corpus: Corpus, tenant: str) -> None:
    cache.embedder.embed([e["q"] for e in corpus.entries])
    for e in corpus.entries:
        cache.put(e["q"], e["a"], tenant)


def probe_scores(r: redis.Redis, key: str, embedder: Embedder, corpus: Corpus) -> list[dict]:
    """Each probe's nearest cached question and VSIM score, with its label."""
    by_name = {chunk_name("acme", e["q"]): e["id"] for e in corpus.entries}
    out = []
    for p, v in zip(corpus.probes, embedder.embed([p["q"] for p in corpus.probes])):
        (name, score), = pairs(r.execute_command("VSIM", key, "FP32", fp32(v), "WITHSCORES", "COUNT", 1))
        out.append({"q": p["q"], "label": p["hit"], "nearest": by_name.get(name), "score": score})
    return out


def threshold_sweep(probes: list[dict], thresholds: np.ndarray) -> list[dict]:
    """Precision, recall and F1 of the cache at each score threshold.

    A probe is answered from the cache when its nearest score reaches the threshold: a true hit
    if that is its labelled entry, a wrong answer otherwise (an unlabelled probe, or another entry).
    """
    positives = sum(p["label"] is not None for p in probes)
    out = []
    for t in thresholds:
        answered = [p for p in probes if p["score"] >= t]
        right = sum(p["nearest"] == p["label"] for p in answered)
        wrong = len(answered) - right
        precision = right / len(answered) if answered else 1.0
        recall = right / positives if positives else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.append({"threshold": float(t), "precision": precision, "recall": recall, "f1": f1,
                    "right": right, "wrong": wrong})
    return out


def candidate_thresholds(probes: list[dict]) -> np.ndarray:
    """Midpoints between consecutive probe scores: every distinct decision, none on a knife edge."""
    s = np.unique([p["score"] for p in probes])
    return (s[:-1] + s[1:]) / 2


def operating_point(sweep: list[dict], min_precision: float = 0.85) -> dict:
    """The threshold with the best F1 among those whose precision reaches ``min_precision``
    (a wrong answer costs more than a miss); the most precise one if none does."""
    ok = [s for s in sweep if s["precision"] >= min_precision and s["right"] > 0]
    if not ok:
        return max(sweep, key=lambda s: (s["precision"], s["recall"]))
    return max(ok, key=lambda s: (s["f1"], -s["threshold"]))


def plot_sweep(sweep: list[dict], chosen: dict, loose: float, title: str) -> None:
    from .. import charts

    fig, ax = charts.figure(title, xlabel="threshold on the VSIM score (1 + cos) / 2",
                            ylabel="precision / recall / F1 (fraction)")
    t = [s["threshold"] for s in sweep]
    for metric in ("precision", "recall", "f1"):
        ax.plot(t, [s[metric] for s in sweep], label=metric)
    ax.axvline(chosen["threshold"], linestyle="--", color="black", label="chosen")
    ax.axvline(loose, linestyle=":", color="grey", label="loose")
    charts.finish(ax, summary=(f"in this run the chosen threshold {chosen['threshold']:.3f} answers "
                               f"{chosen['right']} probes right and {chosen['wrong']} wrong "
                               f"(precision {chosen['precision']:.2f}, recall {chosen['recall']:.2f})"))


def distance_table(scores: list[float]) -> Table:
    """VSIM's score next to the cosine similarity and the cosine distance other libraries use."""
    rows = [[s, 2 * s - 1, 2 - 2 * s] for s in scores]
    return Table(["VSIM score (1+cos)/2", "cosine similarity", "cosine distance 1-cos = 2-2*score"], rows,
                 title="One threshold, three scales", fmt={"VSIM score (1+cos)/2": ".3f", "cosine similarity": ".3f",
                                                         "cosine distance 1-cos = 2-2*score": ".3f"})


# --------------------------------------------------------------------------- scale: vector set vs Search


def synthetic_vectors(base: np.ndarray, n: int, seed: int = 26) -> np.ndarray:
    """``n`` unit vectors around the corpus's: a random passage plus a random second one and noise."""
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(base), n), rng.integers(0, len(base), n)
    v = base[i] + 0.6 * base[j] + 0.35 * rng.standard_normal((n, base.shape[1])) / np.sqrt(base.shape[1])
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


BUILD_EF = 40
"""Build-time exploration for both stores (defaults: 200): a quicker build, recall still measured."""


def load_vector_set(r: redis.Redis, key: str, vectors: np.ndarray, quant: str = "Q8") -> float:
    start = time.perf_counter()
    for lo in range(0, len(vectors), 500):
        pipe = r.pipeline(transaction=False)
        for i in range(lo, min(lo + 500, len(vectors))):
            pipe.execute_command("VADD", key, "FP32", fp32(vectors[i]), f"v{i}", quant, "EF", BUILD_EF)
        pipe.execute()
    return time.perf_counter() - start


def load_search_index(r: redis.Redis, index: str, prefix: str, vectors: np.ndarray) -> float:
    """FT.CREATE … VECTOR HNSW over hashes (what RedisVL builds), load them, wait for indexing."""
    start = time.perf_counter()
    r.execute_command("FT.CREATE", index, "ON", "HASH", "PREFIX", 1, prefix, "SCHEMA", "vec", "VECTOR", "HNSW",
                      8, "TYPE", "FLOAT32", "DIM", vectors.shape[1], "DISTANCE_METRIC", "COSINE",
                      "EF_CONSTRUCTION", BUILD_EF)
    for lo in range(0, len(vectors), 500):
        pipe = r.pipeline(transaction=False)
        for i in range(lo, min(lo + 500, len(vectors))):
            pipe.hset(f"{prefix}v{i}", "vec", fp32(vectors[i]))
        pipe.execute()
    while ft_info(r, index).get("indexing") not in (0, "0"):
        time.sleep(0.01)
    return time.perf_counter() - start


def ft_info(r: redis.Redis, index: str) -> dict:
    reply = r.execute_command("FT.INFO", index)
    if isinstance(reply, dict):
        return {str(k): v for k, v in reply.items()}
    return {str(reply[i]): reply[i + 1] for i in range(0, len(reply), 2)}


def ft_knn(r: redis.Redis, index: str, vector: np.ndarray, k: int, ef: int = 100) -> list[tuple[str, float]]:
    """FT.SEARCH KNN: (key, cosine distance) best first. ``ef``: EF_RUNTIME, 100 by default, the
    breadth VSIM searches with by default (the Search module's own default, 10, finds less and
    varies from build to build, which made the two stores look unlike for the wrong reason)."""
    query = f"*=>[KNN {k} @vec $q EF_RUNTIME {ef} AS dist]"
    reply = r.execute_command("FT.SEARCH", index, query, "PARAMS", 2, "q", fp32(vector),
                              "SORTBY", "dist", "RETURN", 1, "dist", "LIMIT", 0, k, "DIALECT", 2)
    if isinstance(reply, dict):                                     # RESP3
        return [(str(x["id"]), float(x["extra_attributes"]["dist"])) for x in reply["results"]]
    return [(str(reply[i]), float(reply[i + 1][1])) for i in range(1, len(reply), 2)]


def memory_of(r: redis.Redis, keys: list[str]) -> int:
    pipe = r.pipeline(transaction=False)
    for k in keys:
        pipe.memory_usage(k, samples=0)
    return sum(int(m or 0) for m in pipe.execute())


def compare_stores(r: redis.Redis, vset: str, index: str, prefix: str, vectors: np.ndarray,
                   queries: np.ndarray, k: int = 10, model: Embedder | None = None) -> dict:
    """The same vectors in a vector set and in a Search HNSW index: build time, memory, recall@k
    against numpy's exact answer, and per-query latency (ms) of each on loopback. ``model``, the
    embedder whose space the vectors are in, is recorded beside both (``record_model``)."""
    if model is not None:
        record_model(r, vset, model)
        record_model(r, index, model)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :k]
    build = {"vector set": load_vector_set(r, vset, vectors), "FT index": load_search_index(r, index, prefix, vectors)}
    info = ft_info(r, index)
    index_mb = float(info.get("vector_index_sz_mb", 0)) + float(info.get("inverted_sz_mb", 0))
    memory = {"vector set": memory_of(r, [vset]),
              "FT index": int(index_mb * 2**20) + memory_of(r, [f"{prefix}v{i}" for i in range(len(vectors))])}
    lat: dict[str, list[float]] = {"vector set": [], "FT index": []}
    found: dict[str, list[set[int]]] = {"vector set": [], "FT index": []}
    for q in queries:
        t0 = time.perf_counter()
        hits = pairs(r.execute_command("VSIM", vset, "FP32", fp32(q), "WITHSCORES", "COUNT", k))
        t1 = time.perf_counter()
        knn = ft_knn(r, index, q, k)
        t2 = time.perf_counter()
        lat["vector set"].append((t1 - t0) * 1e3)
        lat["FT index"].append((t2 - t1) * 1e3)
        found["vector set"].append({int(n[1:]) for n, _ in hits})
        found["FT index"].append({int(n[len(prefix) + 1:]) for n, _ in knn})
    recall = {s: float(np.mean([len(f & set(e)) / k for f, e in zip(found[s], exact)])) for s in found}
    return {"build_s": build, "memory": memory, "recall": recall, "latency_ms": lat, "n": len(vectors)}


def stores_table(c: dict) -> Table:
    rows = []
    for s in ("vector set", "FT index"):
        lat = np.array(c["latency_ms"][s])
        rows.append([s, c["build_s"][s], c["memory"][s] / c["n"], c["recall"][s],
                     float(np.percentile(lat, 50)), float(np.percentile(lat, 99))])
    return Table(["store", "build (s)", "bytes / vector", "recall@10", "p50 (ms)", "p99 (ms)"], rows,
                 title=f"{c['n']:,} vectors of the corpus's dimension, Q8 vector set vs FLOAT32 HNSW index",
                 fmt={"build (s)": ".2f", "bytes / vector": ",.0f", "recall@10": ".3f", "p50 (ms)": ".3f",
                      "p99 (ms)": ".3f"})


def plot_latency(c: dict) -> None:
    from .. import charts

    fig, ax = charts.figure(f"Query latency at {c['n']:,} vectors (loopback)", xlabel="latency (ms)",
                            ylabel="share of queries (fraction)")
    for s, lat in c["latency_ms"].items():
        xs = np.sort(lat)
        ax.plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=s)
    p = {s: np.percentile(v, [50, 99]) for s, v in c["latency_ms"].items()}
    charts.finish(ax, summary="in this run p50/p99: " + "; ".join(
        f"{s} {a:.3f}/{b:.3f} ms" for s, (a, b) in p.items()))


# --------------------------------------------------------------------------- recommendations


def profile(vectors: np.ndarray) -> np.ndarray:
    """A user's profile: the normalised mean of the vectors of what they liked."""
    m = vectors.mean(axis=0)
    return (m / np.linalg.norm(m)).astype(np.float32)


def recommend(r: redis.Redis, key: str, liked: list[str], vector: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
    """The k nearest elements to the profile that the user has not liked yet."""
    hits = pairs(r.execute_command("VSIM", key, "FP32", fp32(vector), "WITHSCORES", "COUNT", k + len(liked)))
    return [(n, s) for n, s in hits if n not in set(liked)][:k]
