"""Vector search for AI on Redis 8 vector sets: RAG retrieval and a semantic cache for LLM answers.

Retrieval (:class:`SemanticIndex`): a document's chunks are embedded and ``VADD``-ed to one vector
set with their text and attributes (``SETATTR``); a question is embedded by the same model and
``VSIM`` returns the nearest chunks, optionally under a ``FILTER``. Re-ingesting a document must
``VREM`` the chunks its new version no longer has, or answers keep quoting the old text.

Semantic cache (:class:`SemanticCache`): an LLM answer is stored under its question's vector, scoped
by tenant and model attributes; a new question reuses it only if VSIM's score reaches a threshold
calibrated on labelled pairs. VSIM's score is ``(1 + cos) / 2``; the cosine *distance* other
libraries use is ``1 - cos = 2 - 2 * score``. Vector sets expire only as a whole key, so each entry's
expiry lives in a sorted set and :class:`Sweeper` ``VREM``-s the expired ones.

Why the threshold: time 0 "How do I set an expiry on a key?" is cached · time 1 "How do I remove the
expiry from a key?" scores 0.95 against it · a loose threshold returns the answer to the first
question. Only labelled pairs show where wrong hits start.

Both record the embedding model beside the key and refuse a query from another model before it
reaches the server (:func:`redistutor.embeddings.check_model`).

Notebook: notebooks/26-vector-search-ai.ipynb
Redis: https://redis.io/docs/latest/develop/data-types/vector-sets/
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import redis

from redistutor.embeddings import Embedder, check_model, record_model

__all__ = ["fp32", "pairs", "chunk_name", "scope", "SemanticIndex", "SemanticCache", "Sweeper"]

#: tenant and model names that can go between double quotes in a FILTER expression
SAFE_NAME = re.compile(r"[\w.:/@+-]{1,128}")


def fp32(vector: Sequence[float] | np.ndarray) -> bytes:
    """A vector as little-endian float32 bytes, the form ``VADD … FP32`` and ``VSIM … FP32`` take."""
    return np.asarray(vector, dtype="<f4").tobytes()


def pairs(reply: Any) -> list[tuple[str, float]]:
    """``VSIM … WITHSCORES`` as ``[(element, score), ...]``, best first (RESP2 list or RESP3 map)."""
    items = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2])
    return [(str(name), float(score)) for name, score in items]


def chunk_name(doc: str, text: str) -> str:
    """A chunk's element name: its document and a digest of its text (a changed text is a new name)."""
    return f"{doc}#{hashlib.sha1(text.encode()).hexdigest()[:10]}"


class SemanticIndex:
    """Document chunks in one vector set, retrieved by meaning; ``ingest`` replaces a document."""

    def __init__(self, r: redis.Redis, key: str, embedder: Embedder) -> None:
        self.r, self.key, self.embedder = r, key, embedder

    def ingest(self, doc: str, chunks: list[str], **attrs: Any) -> list[str]:
        record_model(self.r, self.key, self.embedder)     # one model per vector set
        names = [chunk_name(doc, text) for text in chunks]
        stale = self.r.smembers(f"{self.key}:doc:{doc}") - set(names)   # the old version's chunks
        pipe = self.r.pipeline()                          # MULTI/EXEC: readers see old or new
        for name, text, vector in zip(names, chunks, self.embedder.embed(chunks)):
            pipe.execute_command("VADD", self.key, "FP32", fp32(vector), name,
                                 "SETATTR", json.dumps({"doc": doc, "text": text, **attrs}))
        for name in stale:
            pipe.execute_command("VREM", self.key, name)
        pipe.delete(f"{self.key}:doc:{doc}")
        pipe.sadd(f"{self.key}:doc:{doc}", *names)
        pipe.execute()
        return names

    def search(self, question: str, k: int = 5, filter: str | None = None) -> list[tuple[str, float, dict]]:
        check_model(self.r, self.key, self.embedder)      # refused here, before the server
        args = ["VSIM", self.key, "FP32", fp32(self.embedder.embed_one(question)), "WITHSCORES", "COUNT", k]
        hits = pairs(self.r.execute_command(*args, *(["FILTER", filter] if filter else [])))
        attrs = [self.r.execute_command("VGETATTR", self.key, name) for name, _ in hits]
        return [(name, score, json.loads(a)) for (name, score), a in zip(hits, attrs)]


def scope(tenant: str, model: str) -> str:
    """FILTER for one tenant's entries from one model. The filter language has no escapes, so a
    name that could close its quotes is refused instead of being pasted in."""
    if not all(SAFE_NAME.fullmatch(v) for v in (tenant, model)):
        raise ValueError(f"unsafe name for a FILTER expression: {tenant!r} / {model!r}")
    return f'.tenant == "{tenant}" and .model == "{model}"'


class SemanticCache:
    """LLM answers reused for questions that mean the same, per tenant and model, each with a TTL."""

    def __init__(self, r: redis.Redis, key: str, embedder: Embedder, threshold: float, ttl: float = 3600.0) -> None:
        self.r, self.key, self.embedder, self.clock = r, key, embedder, time.time
        self.threshold, self.ttl = threshold, ttl         # threshold: a VSIM score, (1 + cos) / 2
        record_model(r, key, embedder)                    # one model per cache key

    def get(self, question: str, tenant: str) -> str | None:
        check_model(self.r, self.key, self.embedder)
        hits = pairs(self.r.execute_command("VSIM", self.key, "FP32", fp32(self.embedder.embed_one(question)),
                                            "WITHSCORES", "COUNT", 1, "FILTER", scope(tenant, self.embedder.name)))
        if not hits or hits[0][1] < self.threshold:
            return None
        if (self.r.zscore(f"{self.key}:expiry", hits[0][0]) or 0) <= self.clock():
            return None                                   # expired, not yet swept
        return self.r.hget(f"{self.key}:answers", hits[0][0])

    def put(self, question: str, answer: str, tenant: str) -> str:
        name = chunk_name(tenant, question)
        meta = json.dumps({"tenant": tenant, "model": self.embedder.name, "question": question})
        pipe = self.r.pipeline()
        pipe.execute_command("VADD", self.key, "FP32", fp32(self.embedder.embed_one(question)), name, "SETATTR", meta)
        pipe.hset(f"{self.key}:answers", name, answer)
        pipe.zadd(f"{self.key}:expiry", {name: self.clock() + self.ttl})
        pipe.execute()
        return name


class Sweeper:
    """Per-entry expiry for a vector set (which expires only as a whole key): VREM what is due."""

    # KEYS: the vector set, its expiry sorted set (score = expiry time), its answers hash.
    # ARGV: now. Removes every due entry from all three, atomically; returns how many.
    LUA_SWEEP = """
    local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
    for _, name in ipairs(due) do
      redis.call('VREM', KEYS[1], name)
      redis.call('HDEL', KEYS[3], name)
      redis.call('ZREM', KEYS[2], name)
    end
    return #due
    """

    def __init__(self, r: redis.Redis, key: str) -> None:
        self.r, self.key, self.script = r, key, r.register_script(self.LUA_SWEEP)

    def sweep(self, now: float) -> int:
        return int(self.script(keys=[self.key, f"{self.key}:expiry", f"{self.key}:answers"], args=[now]))
