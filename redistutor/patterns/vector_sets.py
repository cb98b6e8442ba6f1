"""Similarity search in a Redis 8 vector set: VADD vectors (with attributes), VSIM the nearest.

A vector set is one key holding named elements, each with a vector of one fixed dimension, in an
HNSW graph. ``VSIM`` walks the graph to the approximate nearest elements by cosine similarity and
answers a score ``(cos + 1) / 2`` in [0, 1] (1 = same direction). Vectors are sent as FP32 bytes
(exact floats, one argument) and quantized on the server: ``Q8`` (the default), ``BIN`` or
``NOQUANT``. Attributes are a JSON object per element, tested by ``VSIM … FILTER``.

Why measure recall: a time 0 index built BIN · a query asks the 10 nearest · VSIM answers 10
elements quickly, most of them not among the true 10. Nothing errs; only a comparison with exact
(numpy) ground truth shows it.

Notebook: notebooks/25-vector-sets.ipynb
Redis: https://redis.io/docs/latest/develop/data-types/vector-sets/
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import redis


def fp32(vector: Sequence[float] | np.ndarray) -> bytes:
    """A vector as little-endian float32 bytes, the form ``VADD … FP32`` and ``VSIM … FP32`` take."""
    return np.asarray(vector, dtype="<f4").tobytes()


class VectorIndex:
    """Named vectors in one vector set: add with attributes, search the k most similar."""

    def __init__(self, r: redis.Redis, key: str, quant: str = "Q8") -> None:
        self.r, self.key, self.quant = r, key, quant     # quant: "Q8" (default), "BIN" or "NOQUANT"

    def add(self, name: str, vector: Sequence[float], **attrs: Any) -> bool:
        """VADD (True if new); keyword attributes are stored as JSON for FILTER expressions."""
        args: list[Any] = ["VADD", self.key, "FP32", fp32(vector), name, self.quant]
        if attrs:
            args += ["SETATTR", json.dumps(attrs)]
        return bool(self.r.execute_command(*args))

    def search(self, vector: Sequence[float], k: int = 10, *, filter: str | None = None,
               ef: int | None = None, filter_ef: int | None = None) -> list[tuple[str, float]]:
        """The k most similar elements as (name, score), best first; only those matching ``filter``."""
        args: list[Any] = ["VSIM", self.key, "FP32", fp32(vector), "WITHSCORES", "COUNT", k]
        if filter:
            args += ["FILTER", filter]
        if filter_ef:
            args += ["FILTER-EF", filter_ef]                # default: 100 × k elements visited
        if ef:
            args += ["EF", ef]
        reply = self.r.execute_command(*args)             # RESP3: a map; RESP2: name, score, ...
        pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2])
        return [(str(name), float(score)) for name, score in pairs]


def exact_top_k(vectors: np.ndarray, query: Sequence[float], k: int = 10,
                mask: np.ndarray | None = None) -> list[int]:
    """Ground truth: the rows with the highest cosine to ``query`` (among ``mask``), best first."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cos = unit @ (np.asarray(query, dtype=float) / np.linalg.norm(query))
    if mask is not None:
        cos = np.where(mask, cos, -np.inf)
    best = np.argsort(-cos, kind="stable")[:k]
    return [int(i) for i in best if np.isfinite(cos[i])]


def recall_at_k(found: Sequence[str], truth: Sequence[str]) -> float:
    """The share of the true nearest that the search returned (1.0 = all of them)."""
    return len(set(found) & set(truth)) / len(truth) if truth else 1.0
