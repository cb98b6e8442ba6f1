"""The experiments of notebooks/25-vector-sets.ipynb, each behind a one-line helper.

Every helper loads vectors into the notebook's own server, asks ``VSIM``, and compares the answer
with exact ground truth computed by numpy on the original float vectors. The data are clustered
Gaussian vectors from fixed seeds, so every run builds the same sets; HNSW insertion is
deterministic for a given order too, which keeps the recall figures stable from run to run.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import redis

from .. import charts
from ..patterns.vector_sets import VectorIndex, exact_top_k, fp32, recall_at_k
from ..tables import Table

QUANTS = ("NOQUANT", "Q8", "BIN")


def _reply(x: Any) -> Any:
    """Decode bytes (and lists of them) from a client without decode_responses."""
    if isinstance(x, bytes):
        return x.decode()
    if isinstance(x, list):
        return [_reply(v) for v in x]
    if isinstance(x, dict):
        return {_reply(k): _reply(v) for k, v in x.items()}
    return x


def clustered(n: int, dim: int = 128, *, clusters: int = 40, spread: float = 1.0,
              seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float32 vectors around ``clusters`` fixed centres (the same centres for every seed),
    with the cluster of each. Different seeds give different points around the same centres, so
    queries (another seed) look like the data without being copies of it."""
    centres = np.random.default_rng(0).normal(size=(clusters, dim))
    rng = np.random.default_rng(seed)
    label = rng.integers(0, clusters, n)
    return (centres[label] + spread * rng.normal(size=(n, dim))).astype(np.float32), label


def names(n: int) -> list[str]:
    return [f"v{i}" for i in range(n)]


def load(r: redis.Redis, key: str, vectors: np.ndarray, *, quant: str = "Q8", reduce: int | None = None,
         attrs: Callable[[int], dict] | None = None, batch: int = 500) -> float:
    """VADD every row as element ``v<i>`` (pipelined, ``batch`` per round trip); returns seconds."""
    start = time.perf_counter()
    p = r.pipeline(transaction=False)
    for i, v in enumerate(vectors):
        head: list[Any] = ["VADD", key] + (["REDUCE", reduce] if reduce else [])
        tail: list[Any] = [quant] + (["SETATTR", json.dumps(attrs(i))] if attrs else [])
        p.execute_command(*head, "FP32", fp32(v), f"v{i}", *tail)
        if i % batch == batch - 1:
            p.execute()
    p.execute()
    return time.perf_counter() - start


def search_many(r: redis.Redis, key: str, queries: np.ndarray, k: int = 10, *extra: Any) -> list[list[str]]:
    """One pipelined VSIM per query (names only, best first)."""
    p = r.pipeline(transaction=False)
    for q in queries:
        p.execute_command("VSIM", key, "FP32", fp32(q), "COUNT", k, *extra)
    return [[str(x) for x in _reply(res)] for res in p.execute()]


def truth(vectors: np.ndarray, queries: np.ndarray, k: int = 10, mask: np.ndarray | None = None) -> list[list[str]]:
    """numpy's exact top k per query, as element names."""
    return [[f"v{i}" for i in exact_top_k(vectors, q, k, mask)] for q in queries]


def mean_recall(found: list[list[str]], exact: list[list[str]]) -> float:
    return float(np.mean([recall_at_k(f, t) for f, t in zip(found, exact)]))


# -- a small catalogue for the tour ---------------------------------------------------------------

GENRES = ("drama", "comedy", "horror")


def catalogue(n: int = 12, dim: int = 8, seed: int = 4) -> list[tuple[str, np.ndarray, dict[str, Any]]]:
    """``n`` films: a name, a vector near its genre's centre, and attributes (year, genre)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(GENRES), dim))
    out = []
    for i in range(n):
        g = i % len(GENRES)
        out.append((f"film-{i + 1:02d}", (centres[g] + 0.4 * rng.normal(size=dim)).astype(np.float32),
                    {"year": 1990 + 3 * i, "genre": GENRES[g]}))
    return out


# -- a small labelled text corpus (written for this notebook) ----------------------------------------

CORPUS: dict[str, list[str]] = {
    "astronomy": [
        "Saturn's rings are made of ice and rock.",
        "A telescope gathers more light than the eye.",
        "Jupiter has dozens of moons.",
        "The Moon always shows the same face to the Earth.",
        "A light year is a distance, not a time.",
        "Comets grow a tail when they pass near the Sun.",
        "Mars looks red because of iron oxide dust.",
        "The Milky Way holds hundreds of billions of stars.",
    ],
    "cooking": [
        "Salt the pasta water before the pasta goes in.",
        "Rest a steak for a few minutes after cooking it.",
        "Bread dough rises while the yeast ferments.",
        "A roux of butter and flour thickens a sauce.",
        "Caramelise onions slowly over low heat.",
        "Whisk egg whites until they hold stiff peaks.",
        "Toast spices in a dry pan to wake their aroma.",
        "A sharp knife is safer than a blunt one.",
    ],
    "football": [
        "The goalkeeper saved a penalty in the last minute.",
        "A hat-trick is three goals by one player in a match.",
        "The referee showed a red card for a late tackle.",
        "Offside is judged when the ball is played.",
        "The striker headed the corner into the net.",
        "Extra time is played when a cup match ends level.",
        "The midfielder passed the ball through the defence.",
        "Fans sang for ninety minutes in the stadium.",
    ],
    "gardening": [
        "Water tomatoes at the base, not on the leaves.",
        "Compost feeds the soil with organic matter.",
        "Prune roses in late winter before new growth.",
        "Seedlings need light or they grow long and weak.",
        "Mulch keeps moisture in the soil during summer.",
        "Plant bulbs in autumn for flowers in spring.",
        "Slugs eat lettuce leaves at night.",
        "Rotate crops so the soil does not tire.",
    ],
}


def corpus() -> tuple[list[str], list[str]]:
    """The sentences and their topics, in a fixed order."""
    texts = [t for topic in CORPUS for t in CORPUS[topic]]
    return texts, [topic for topic in CORPUS for _ in CORPUS[topic]]


# -- the naive way: vectors in a hash, every query reads them all ---------------------------------

def naive_scan(server: Any, key: str, vectors: np.ndarray, query: np.ndarray, k: int = 10) -> dict[str, Any]:
    """Store the vectors in a hash (field = name, value = FP32 bytes), then answer one query the
    client-side way: HGETALL everything, cosine in numpy. Returns the answer and the bytes read."""
    rb = server.client(decode_responses=False)
    p = rb.pipeline(transaction=False)
    for i, v in enumerate(vectors):
        p.hset(key, f"v{i}", fp32(v))
    p.execute()
    before = _net_out(rb)
    start = time.perf_counter()
    raw = cast(dict, rb.hgetall(key))
    names_ = [k_.decode() for k_ in raw]
    matrix = np.frombuffer(b"".join(raw.values()), dtype="<f4").reshape(len(raw), -1)
    best = exact_top_k(matrix, query, k)
    ms = 1000 * (time.perf_counter() - start)
    read = _net_out(rb) - before
    rb.close()
    return {"top": [names_[i] for i in best], "bytes": read, "ms": ms, "vectors": len(raw)}


def vsim_cost(r: redis.Redis, key: str, query: np.ndarray, k: int = 10) -> dict[str, Any]:
    """One VSIM for the same query, with the bytes the server sent back."""
    before = _net_out(r)
    start = time.perf_counter()
    top = search_many(r, key, np.asarray([query]), k)[0]
    ms = 1000 * (time.perf_counter() - start)
    return {"top": top, "bytes": _net_out(r) - before, "ms": ms}


def _net_out(r: redis.Redis) -> int:
    """Bytes the server has written to clients so far (INFO stats total_net_output_bytes)."""
    return int(_reply(r.info("stats"))["total_net_output_bytes"])


# -- scores --------------------------------------------------------------------------------------

def score_errors(r: redis.Redis, key: str, vectors: np.ndarray, query: np.ndarray, k: int = 100) -> dict[str, float]:
    """VSIM's score for its k best vs ``(cos + 1) / 2`` from numpy on the original vectors."""
    idx = VectorIndex(r, key)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    qn = query / np.linalg.norm(query)
    errs = [abs(score - (float(unit[int(name[1:])] @ qn) + 1) / 2) for name, score in idx.search(query, k)]
    return {"max": float(np.max(errs)), "mean": float(np.mean(errs)), "n": len(errs)}


def score_table(errors: dict[str, dict[str, float]]) -> Table:
    return Table(["quantization", "results compared", "mean |score − (cos+1)/2|", "max"],
                 [[q, e["n"], e["mean"], e["max"]] for q, e in errors.items()],
                 title="VSIM's score vs numpy's cosine on the original vectors",
                 fmt={"mean |score − (cos+1)/2|": ".2e", "max": ".2e"})


# -- recall vs EF, and TRUTH ----------------------------------------------------------------------

def recall_vs_ef(r: redis.Redis, keys: dict[str, str], vectors: np.ndarray, queries: np.ndarray,
                 efs: Sequence[int], k: int = 10) -> dict[str, Any]:
    """recall@k per quantization and EF, plus ``VSIM … TRUTH`` against numpy, plus query time."""
    exact = truth(vectors, queries, k)
    out: dict[str, Any] = {"efs": list(efs), "recall": {}, "truth": {}, "ms per query": {}}
    for quant, key in keys.items():
        rec, ms = [], []
        for ef in efs:
            start = time.perf_counter()
            found = search_many(r, key, queries, k, "EF", ef)
            ms.append(1000 * (time.perf_counter() - start) / len(queries))
            rec.append(mean_recall(found, exact))
        out["recall"][quant], out["ms per query"][quant] = rec, ms
        out["truth"][quant] = mean_recall(search_many(r, key, queries, k, "TRUTH"), exact)
    return out


def recall_table(res: dict[str, Any]) -> Table:
    efs = res["efs"]
    return Table(["quantization"] + [f"EF {e}" for e in efs] + ["VSIM … TRUTH"],
                 [[q, *rec, res["truth"][q]] for q, rec in res["recall"].items()],
                 title="recall@10 against numpy's exact top 10 (the original float vectors)",
                 fmt={**{f"EF {e}": ".3f" for e in efs}, "VSIM … TRUTH": ".3f"})


def plot_recall_vs_ef(res: dict[str, Any]) -> None:
    fig, ax = charts.figure("recall@10 vs EF, per quantization", xlabel="EF (candidates explored per query)",
                            ylabel="recall@10 vs exact numpy")
    for quant, rec in res["recall"].items():
        ax.plot(res["efs"], rec, marker="o", label=quant)
    ax.set_xscale("log")
    ax.set_ylim(0, 1.05)
    best = {q: max(rec) for q, rec in res["recall"].items()}
    charts.finish(ax, summary="in this run the best recall was " + ", ".join(f"{q} {v:.3f}" for q, v in best.items())
                  + f"; at the lowest EF ({res['efs'][0]}): "
                  + ", ".join(f"{q} {rec[0]:.3f}" for q, rec in res["recall"].items()))


# -- memory ---------------------------------------------------------------------------------------

def nominal_vector_bytes(quant: str, dim: int) -> int:
    """Bytes of one stored vector: 4 per float, 1 per Q8 component, 1 bit per BIN component
    (rounded up to 64-bit words)."""
    return {"NOQUANT": 4 * dim, "Q8": dim, "BIN": (dim + 63) // 64 * 8}[quant]


def memory_rows(r: redis.Redis, keys: dict[str, str], dim: int, used: dict[str, int]) -> list[list[Any]]:
    """Per quantization: MEMORY USAGE per element, the allocator's growth per element (INFO
    used_memory measured around the load), and the nominal vector bytes."""
    rows = []
    for quant, key in keys.items():
        n = int(r.execute_command("VCARD", key))
        rows.append([quant, nominal_vector_bytes(quant, dim), r.memory_usage(key, samples=0) / n, used[quant] / n])
    return rows


def used_memory(r: redis.Redis) -> int:
    return int(_reply(r.info("memory"))["used_memory"])


def memory_table(rows: list[list[Any]]) -> Table:
    base = {row[0]: row for row in rows}["NOQUANT"]
    return Table(["quantization", "vector bytes", "MEMORY USAGE / element", "used_memory growth / element",
                  "NOQUANT ÷ this (vectors)", "NOQUANT ÷ this (MEMORY USAGE)"],
                 [[q, v, mu, um, base[1] / v, base[2] / mu] for q, v, mu, um in rows],
                 title="bytes per element", note="the vectors shrink 4× and 32×; the whole element does not",
                 fmt={"MEMORY USAGE / element": ".0f", "used_memory growth / element": ".0f",
                      "NOQUANT ÷ this (vectors)": ".1f", "NOQUANT ÷ this (MEMORY USAGE)": ".2f"})


def plot_memory(rows: list[list[Any]]) -> None:
    fig, ax = charts.figure("Bytes per element by quantization", xlabel="quantization", ylabel="bytes per element")
    xs = np.arange(len(rows))
    ax.bar(xs - 0.2, [row[1] for row in rows], 0.4, label="the vector alone (nominal)")
    ax.bar(xs + 0.2, [row[2] for row in rows], 0.4, label="MEMORY USAGE ÷ VCARD")
    ax.set_xticks(xs, [row[0] for row in rows])
    graph = sorted({round(row[2] - row[1]) for row in rows})
    charts.finish(ax, summary=f"in this run everything but the vector (links, node, name) took "
                  f"{'-'.join(map(str, graph[::max(1, len(graph) - 1)]))} bytes per element, so NOQUANT ÷ BIN was "
                  f"{rows[0][2] / rows[-1][2]:.2f}, not 32")


# -- filters ---------------------------------------------------------------------------------------

def filter_trial(r: redis.Redis, key: str, vectors: np.ndarray, queries: np.ndarray, shard: np.ndarray,
                 share: int, filter_efs: Sequence[int], k: int = 10) -> dict[str, Any]:
    """``FILTER '.shard < share'`` (share in 1000ths of the elements) at several FILTER-EF values and
    the default; recall against numpy's exact top k among the matching elements."""
    mask = shard < share
    expr = f".shard < {share}"
    exact = truth(vectors, queries, k, mask)
    allowed = {f"v{i}" for i in np.flatnonzero(mask)}
    runs = {"default": search_many(r, key, queries, k, "FILTER", expr)}
    for fe in filter_efs:
        runs[fe] = search_many(r, key, queries, k, "FILTER", expr, "FILTER-EF", fe)
    return {"filter": expr, "matching": int(mask.sum()), "share": float(mask.mean()),
            "recall": {fe: mean_recall(found, exact) for fe, found in runs.items()},
            "returned": {fe: float(np.mean([len(f) for f in found])) for fe, found in runs.items()},
            "outside filter": sum(len(set(f) - allowed) for found in runs.values() for f in found)}


def plot_filters(trials: list[dict[str, Any]], k: int = 10) -> None:
    fig, ax = charts.figure("Filtered search: recall vs FILTER-EF", xlabel="FILTER-EF (elements visited at most)",
                            ylabel=f"recall@{k} vs exact numpy")
    for t in trials:
        points = sorted((100 * k if fe == "default" else fe, v) for fe, v in t["recall"].items())
        ax.plot([x for x, _ in points], [v for _, v in points], marker="o",
                label=f"{t['filter']} ({t['share']:.1%} match)")
    ax.axvline(100 * k, color="grey", ls=":", label=f"default FILTER-EF = 100 × COUNT = {100 * k}")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.05)
    worst = min(trials, key=lambda t: t["share"])
    low = min(fe for fe in worst["recall"] if fe != "default")
    charts.finish(ax, summary=f"in this run the most selective filter ({worst['share']:.1%}) had recall "
                  f"{worst['recall'][low]:.2f} at FILTER-EF {low}, {worst['recall']['default']:.2f} at the default, "
                  f"{max(v for fe, v in worst['recall'].items() if fe != 'default'):.2f} at best")


def filter_table(trials: list[dict[str, Any]], k: int = 10) -> Table:
    fes = list(trials[0]["recall"])
    heads = [f"default ({100 * k})" if fe == "default" else f"FILTER-EF {fe}" for fe in fes]
    return Table(["FILTER", "matching elements"] + heads,
                 [[t["filter"], t["matching"], *[t["recall"][fe] for fe in fes]] for t in trials],
                 title=f"recall@{k} of filtered VSIM (COUNT {k})", fmt={h: ".2f" for h in heads})


# -- REDUCE ---------------------------------------------------------------------------------------

def reduce_trial(r: redis.Redis, prefix: str, vectors: np.ndarray, queries: np.ndarray,
                 dims: Sequence[int], k: int = 10) -> list[list[Any]]:
    """The same vectors with ``REDUCE d`` (random projection) for each d, NOQUANT so that only the
    projection costs recall: [d, VDIM, recall@k, MEMORY USAGE per element]."""
    exact = truth(vectors, queries, k)
    rows = []
    for d in dims:
        key = f"{prefix}:{d}"
        load(r, key, vectors, quant="NOQUANT", reduce=d if d < vectors.shape[1] else None)
        found = search_many(r, key, queries, k)
        rows.append([d, int(r.execute_command("VDIM", key)), mean_recall(found, exact),
                     r.memory_usage(key, samples=0) / len(vectors)])
        r.delete(key)
    return rows


# -- VREM -----------------------------------------------------------------------------------------

def vrem_trial(r: redis.Redis, key: str, vectors: np.ndarray, queries: np.ndarray, remove: float = 0.8,
               k: int = 10, seed: int = 9) -> dict[str, Any]:
    """Remove a share of the elements (random order), then recall@k against numpy on the survivors,
    at the default EF and at the smallest (EF = COUNT)."""
    n = len(vectors)
    gone = np.random.default_rng(seed).permutation(n)[: int(remove * n)]
    mask = np.ones(n, bool)
    mask[gone] = False
    before = {"card": int(r.execute_command("VCARD", key)), "bytes": r.memory_usage(key, samples=0),
              "recall": mean_recall(search_many(r, key, queries, k), truth(vectors, queries, k))}
    p = r.pipeline(transaction=False)
    for i in gone:
        p.execute_command("VREM", key, f"v{i}")
    removed = sum(int(x) for x in p.execute())
    exact = truth(vectors, queries, k, mask)
    found = search_many(r, key, queries, k)
    after = {"card": int(r.execute_command("VCARD", key)), "bytes": r.memory_usage(key, samples=0),
             "recall": mean_recall(found, exact),
             "recall EF=COUNT": mean_recall(search_many(r, key, queries, k, "EF", k), exact),
             "removed returned": sum(not mask[int(x[1:])] for f in found for x in f)}
    return {"removed": removed, "before": before, "after": after}


# -- restart with RDB -----------------------------------------------------------------------------

def restart_trial(vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> dict[str, Any]:
    """A vector set on a separate server with RDB persistence: SAVE, kill -9, restart on the same
    data directory, and compare VCARD, VINFO, VEMB, attributes and VSIM answers before and after."""
    from ..server import RedisServer

    data_dir = tempfile.mkdtemp(prefix="redistutor-vs-")
    extra = RedisServer(persistence="rdb", data_dir=data_dir, modules=(), config={"save": ""}).start()
    try:
        c = extra.client(fail_fast=True)
        load(c, "docs", vectors, quant="Q8", attrs=lambda i: {"n": i})

        def state() -> dict[str, Any]:
            info = _reply(c.execute_command("VINFO", "docs"))
            return {"card": int(c.execute_command("VCARD", "docs")), "info": {k_: info[k_] for k_ in
                    ("quant-type", "vector-dim", "hnsw-m", "size")},
                    "vemb": [float(x) for x in _reply(c.execute_command("VEMB", "docs", "v7"))],
                    "attr": _reply(c.execute_command("VGETATTR", "docs", "v7")),
                    "answers": search_many(c, "docs", queries, k)}

        before = state()
        c.save()
        extra.kill()                                   # kill -9: only the snapshot remains
        extra.restart()                                # same port and data dir: loads dump.rdb
        c = extra.client(fail_fast=True)
        after = state()
        loaded = int(_reply(c.info("persistence")).get("rdb_last_load_keys_loaded", -1))
    finally:
        extra.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return {"before": before, "after": after, "keys loaded": loaded}


def restart_table(res: dict[str, Any]) -> Table:
    b, a = res["before"], res["after"]
    rows = [["VCARD", b["card"], a["card"]],
            *[[f"VINFO {k}", b["info"][k], a["info"][k]] for k in b["info"]],
            ["VEMB v7 (first 3)", str([round(x, 4) for x in b["vemb"][:3]]), str([round(x, 4) for x in a["vemb"][:3]])],
            ["VGETATTR v7", b["attr"], a["attr"]],
            ["VSIM answers equal", "", str(b["answers"] == a["answers"])]]
    return Table(["what", "before kill -9", "after restart"], rows, title="vector set across a restart (RDB)")


# -- 2-D projection --------------------------------------------------------------------------------

def pca2(vectors: np.ndarray) -> np.ndarray:
    """The rows projected on their two main axes (centred PCA, signs fixed by the first row)."""
    x = vectors - vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    p = x @ vt[:2].T
    return p * np.where(p[0] < 0, -1.0, 1.0)


def plot_projection(vectors: np.ndarray, labels: Sequence[Any], query_row: int, neighbours: Sequence[int],
                    title: str = "2-D projection (PCA): a query and its VSIM neighbours") -> dict[str, Any]:
    """Scatter of every vector (coloured by label), the query (row ``query_row``, labelled with its
    own group) as a star, VSIM's neighbours circled. Returns how many neighbours share the query's
    label and their mean distance in the plane."""
    p = pca2(vectors)
    fig, ax = charts.figure(title, xlabel="first principal component (unitless)",
                            ylabel="second principal component (unitless)", height=4.5)
    uniq = list(dict.fromkeys(labels))
    for j, lab in enumerate(uniq):
        rows = [i for i, x in enumerate(labels) if x == lab and i != query_row]
        colour = charts.PALETTE[j % len(charts.PALETTE)]
        ax.scatter(p[rows, 0], p[rows, 1], s=12 if len(p) > 200 else 30, alpha=0.6, color=colour, label=str(lab))
    nb = list(neighbours)
    ax.scatter(p[nb, 0], p[nb, 1], s=90, facecolors="none", edgecolors="black", linewidths=1.5, label="VSIM neighbours")
    ax.scatter([p[query_row, 0]], [p[query_row, 1]], marker="*", s=260, color="black", label="query")
    same = sum(labels[i] == labels[query_row] for i in nb)
    dist = float(np.mean(np.linalg.norm(p[nb] - p[query_row], axis=1)))
    spread = float(np.mean(np.linalg.norm(p - p[query_row], axis=1)))
    charts.finish(ax, summary=f"in this run {same} of {len(nb)} neighbours share the query's group; their mean "
                  f"distance in the plane is {dist:.2f} against {spread:.2f} for all points")
    return {"same group": same, "neighbours": len(nb), "distance": dist, "all": spread}
