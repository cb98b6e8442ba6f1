"""Views of Redis state: a key table and one view per data type that teaches its shape.

Every view holds plain rows, and builds ``__repr__`` (aligned text), ``_repr_html_`` (tables,
boxes, bit grids, SVG scatter plots) and ``to_frame()`` (pandas) from them. Views can be built
from data directly (tests pin their exact text) or read from Redis with :func:`show` /
:func:`view`.

Determinism: keys and set members are sorted, TTLs and idle times are bucketed, auto-generated
stream ids (millisecond timestamps) are shown by position (#1, #2...), projections are rounded
and sign-fixed. Memory (``MEMORY USAGE``) is exact and depends on the Redis build and key-name
length, so notebooks mask it when comparing outputs (tests/nbval_sanitize.cfg).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis

from . import _html as H
from ._format import _num, fmt_bytes, fmt_idle, fmt_ttl, fmt_value
from .keys import KeyInfo, Snapshot, get_text, has_glob, resolve, snapshot
from .keys import info as key_info

__all__ = [
    "BitmapView", "GeoView", "HashView", "HyperLogLogView", "JSONView", "KeyTable", "ListView",
    "ModuleInfoView", "SetView", "StreamView", "StringView", "VectorSetView", "ZSetView",
    "show", "view",
]

MEM_WIDTH = 9  # memory is right-aligned in a fixed width, so a sanitizer can mask it cleanly


def _frame(columns: Sequence[str], rows: Sequence[Sequence[Any]]):
    import pandas as pd

    return pd.DataFrame([list(r) for r in rows], columns=list(columns))


def _header(key: str, kind: str, *facts: str) -> str:
    return " · ".join([key, kind, *[f for f in facts if f]])


# ---------------------------------------------------------------------------------------------
# Key table


class KeyTable(H.Renderable):
    """A snapshot of a key pattern: key, type, encoding, TTL, memory, value preview."""

    COLUMNS = ("key", "type", "encoding", "ttl", "memory", "value")

    def __init__(self, rows: Sequence[KeyInfo], *, pattern: str = "*") -> None:
        self.rows = sorted(rows, key=lambda k: k.key)
        self.pattern = pattern

    @classmethod
    def from_snapshot(cls, snap: Snapshot) -> KeyTable:
        return cls(snap.rows, pattern=snap.pattern)

    @property
    def keys(self) -> list[str]:
        return [k.key for k in self.rows]

    def _cells(self) -> list[tuple[str, ...]]:
        return [(k.key, k.type, k.encoding, fmt_ttl(k.ttl_ms), fmt_bytes(k.memory).rjust(MEM_WIDTH),
                 k.preview) for k in self.rows]

    def _title(self) -> str:
        n = len(self.rows)
        return f"{n} key{'s' * (n != 1)} matching {self.pattern!r}"

    def _text(self) -> str:
        if not self.rows:
            return self._title()
        return self._title() + "\n" + H.text_table(self.COLUMNS, self._cells(), right=(4,))

    def _html(self) -> str:
        if not self.rows:
            return H.title(self._title())
        cells = [c[:4] + (c[4].strip(),) + c[5:] for c in self._cells()]
        return H.title(self._title()) + H.html_table(self.COLUMNS, cells, right=(4,))

    def to_frame(self):
        return _frame(("key", "type", "encoding", "ttl_ms", "memory", "value"),
                      [(k.key, k.type, k.encoding, k.ttl_ms, k.memory, k.preview) for k in self.rows])


# ---------------------------------------------------------------------------------------------
# Per-type views. Each holds ``key`` (display name), ``ttl_ms`` and its own rows.


class _KeyView(H.Renderable):
    kind = "?"

    def __init__(self, key: str, *, ttl_ms: int | None = None, encoding: str = "") -> None:
        self.key = key
        self.ttl_ms = ttl_ms
        self.encoding = encoding

    def facts(self) -> list[str]:
        return []

    def head(self) -> str:
        enc = f"({self.encoding})" if self.encoding else ""
        return _header(self.key, " ".join(x for x in (self.kind, enc) if x), *self.facts(),
                       f"TTL {fmt_ttl(self.ttl_ms)}")

    # subclasses: columns/rows for a simple table, or override _text/_html
    columns: tuple[str, ...] = ()
    right: tuple[int, ...] = ()

    def rows(self) -> list[tuple[Any, ...]]:
        return []

    def _text(self) -> str:
        body = H.text_table(self.columns, self.rows(), right=self.right) if self.columns else ""
        return self.head() + ("\n" + body if body else "")

    def _html(self) -> str:
        body = H.html_table(self.columns, self.rows(), right=self.right) if self.columns else ""
        return H.title(self.head()) + body

    def to_frame(self):
        return _frame(self.columns, self.rows())

    @property
    def keys(self) -> list[str]:
        return [self.key]


class StringView(_KeyView):
    """A string; an integer value is shown as a counter (INCR/DECR work on it)."""

    def __init__(self, key: str, value: str, **kw: Any) -> None:
        super().__init__(key, **kw)
        self.value = value

    @property
    def is_counter(self) -> bool:
        try:
            int(self.value)
            return True
        except (TypeError, ValueError):
            return False

    @property
    def kind(self) -> str:  # type: ignore[override]
        return "counter" if self.is_counter else "string"

    def facts(self) -> list[str]:
        return [] if self.is_counter else [f"{len(self.value)} chars"]

    def _text(self) -> str:
        return self.head() + "\n" + fmt_value(self.value)

    def _html(self) -> str:
        big = "font-size:20px;font-weight:600" if self.is_counter else ""
        return H.title(self.head()) + f'<div style="{big}">{H.esc(fmt_value(self.value))}</div>'

    def to_frame(self):
        return _frame(("key", "value"), [(self.key, self.value)])


class HashView(_KeyView):
    """Field/value pairs, sorted by field; a ttl column appears when fields expire (HEXPIRE)."""

    kind = "hash"

    def __init__(self, key: str, fields: dict[str, str], *, field_ttls_ms: dict[str, int] | None = None,
                 **kw: Any) -> None:
        super().__init__(key, **kw)
        self.fields = dict(sorted(fields.items()))
        self.field_ttls_ms = {f: t for f, t in (field_ttls_ms or {}).items() if t is not None and t >= 0}

    def facts(self) -> list[str]:
        return [f"{len(self.fields)} field{'s' * (len(self.fields) != 1)}"]

    @property
    def columns(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("field", "value", "field ttl") if self.field_ttls_ms else ("field", "value")

    def rows(self) -> list[tuple[Any, ...]]:
        if self.field_ttls_ms:
            return [(f, fmt_value(v), fmt_ttl(self.field_ttls_ms.get(f))) for f, v in self.fields.items()]
        return [(f, fmt_value(v)) for f, v in self.fields.items()]


class ListView(_KeyView):
    """Ordered boxes from head (index 0, LPUSH/LPOP side) to tail (RPUSH/RPOP side)."""

    kind = "list"
    LIMIT = 20

    def __init__(self, key: str, items: list[str], *, length: int | None = None, **kw: Any) -> None:
        super().__init__(key, **kw)
        self.items = list(items)[: self.LIMIT]
        self.length = len(items) if length is None else length

    def facts(self) -> list[str]:
        return [f"{self.length} item{'s' * (self.length != 1)}"]

    def _more(self) -> str:
        extra = self.length - len(self.items)
        return f" … {extra} more" if extra > 0 else ""

    def _text(self) -> str:
        if not self.items:
            return self.head() + "\n(empty)"
        boxes = " ".join(f"[{i}] {fmt_value(v)}" for i, v in enumerate(self.items))
        return f"{self.head()}\nhead → {boxes}{self._more()} ← tail"

    def _html(self) -> str:
        boxes = "".join(f'<div class="rt-box">{H.esc(fmt_value(v))}<span class="rt-idx">{i}</span></div>'
                        for i, v in enumerate(self.items))
        more = f'<div class="rt-note">{H.esc(self._more())}</div>' if self._more() else ""
        return (H.title(self.head()) + '<div class="rt-boxes"><div class="rt-note">head →</div>'
                f'{boxes}{more}<div class="rt-note">← tail</div></div>')

    def to_frame(self):
        return _frame(("index", "value"), list(enumerate(self.items)))


class SetView(_KeyView):
    """Members, sorted (a set has no order; sorting makes the output stable)."""

    kind = "set"

    def __init__(self, key: str, members: Sequence[str], **kw: Any) -> None:
        super().__init__(key, **kw)
        self.members = sorted(members)

    def facts(self) -> list[str]:
        return [f"{len(self.members)} member{'s' * (len(self.members) != 1)}"]

    def _text(self) -> str:
        return self.head() + "\n{" + ", ".join(fmt_value(m) for m in self.members) + "}"

    def _html(self) -> str:
        chips = "".join(f'<span class="rt-chip">{H.esc(fmt_value(m))}</span>' for m in self.members)
        return H.title(self.head()) + f"<div>{chips}</div>"

    def to_frame(self):
        return _frame(("member",), [(m,) for m in self.members])


class ZSetView(_KeyView):
    """Members ranked by score (ZRANGE order, or highest first with ``desc=True``), with bars."""

    kind = "zset"
    BAR = 20  # characters of the longest bar

    def __init__(self, key: str, members: Sequence[tuple[str, float]], *, desc: bool = False,
                 bars: bool = False, **kw: Any) -> None:
        super().__init__(key, **kw)
        self.desc = desc
        self.bars = bars
        # Redis orders equal scores by member (lexicographically); so do we.
        ordered = sorted(members, key=lambda ms: (ms[1], ms[0]))
        self.members = list(reversed(ordered)) if desc else ordered

    def facts(self) -> list[str]:
        return [f"{len(self.members)} member{'s' * (len(self.members) != 1)}",
                "highest first" if self.desc else "lowest first"]

    def _fraction(self, score: float) -> float:
        scores = [s for _, s in self.members]
        lo, hi = min(scores), max(scores)
        if lo >= 0:
            return score / hi if hi else 0.0
        return (score - lo) / (hi - lo) if hi > lo else 1.0

    @property
    def columns(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("rank", "member", "score", "") if self.bars else ("rank", "member", "score")

    right = (0, 2)

    def rows(self) -> list[tuple[Any, ...]]:
        out = []
        for rank, (m, s) in enumerate(self.members):
            row: tuple[Any, ...] = (rank, m, _num(s))
            if self.bars:
                row += ("█" * round(self._fraction(s) * self.BAR),)
            out.append(row)
        return out

    def _html(self) -> str:
        rows = self.rows()
        if self.bars:
            rows = [r[:3] + (f'<span class="rt-bar" style="width:{round(self._fraction(s) * 160)}px"></span>',)
                    for r, (_, s) in zip(rows, self.members)]
        return H.title(self.head()) + H.html_table(self.columns, rows, right=self.right, raw=(3,))

    def to_frame(self):
        return _frame(("rank", "member", "score"), [(i, m, s) for i, (m, s) in enumerate(self.members)])


def _is_auto_id(entry_id: str) -> bool:
    return int(entry_id.split("-")[0]) > 10**11  # a millisecond timestamp (after 1973)


class StreamView(_KeyView):
    """Entries, consumer groups, and pending entries (delivered, not acknowledged) with owner.

    Auto-generated ids are timestamps; they are shown by position (#1 = first entry shown) so
    outputs repeat. ``to_frame()`` keeps the real ids.
    """

    kind = "stream"

    def __init__(self, key: str, entries: Sequence[tuple[str, dict]], *, length: int | None = None,
                 groups: Sequence[dict] = (), pending: Sequence[dict] = (), **kw: Any) -> None:
        super().__init__(key, **kw)
        self.entries = list(entries)
        self.length = len(self.entries) if length is None else length
        self.groups = sorted(groups, key=lambda g: g["name"])
        self.pending = sorted(pending, key=lambda p: (p["group"], p["id"]))
        self._auto = any(_is_auto_id(i) for i, _ in self.entries)
        self._pos = {i: f"#{n}" for n, (i, _) in enumerate(self.entries, 1)}

    def show_id(self, entry_id: str) -> str:
        if entry_id in ("0-0", "", None):
            return "-"
        if not self._auto:
            return entry_id
        return self._pos.get(entry_id, "(older)")

    def facts(self) -> list[str]:
        g = len(self.groups)
        return [f"{self.length} entries", f"{g} group{'s' * (g != 1)}"]

    def _tables(self) -> list[tuple[str, tuple[str, ...], list[tuple], tuple[int, ...]]]:
        out: list[tuple[str, tuple[str, ...], list[tuple], tuple[int, ...]]] = [("entries", ("id", "fields"),
                [(self.show_id(i), " ".join(f"{k}={fmt_value(v)}" for k, v in f.items())) for i, f in self.entries],
                ())]
        if self.groups:
            out.append(("consumer groups", ("group", "consumers", "pending", "last delivered", "lag"),
                        [(g["name"], g["consumers"], g["pending"], self.show_id(g["last-delivered-id"]),
                          "" if g.get("lag") is None else g["lag"]) for g in self.groups], (1, 2, 4)))
        if self.pending:
            out.append(("pending entries (delivered, not acknowledged)",
                        ("id", "group", "owner", "idle", "deliveries"),
                        [(self.show_id(p["id"]), p["group"], p["consumer"], fmt_idle(p["idle_ms"]),
                          p["deliveries"]) for p in self.pending], (4,)))
        return out

    def _text(self) -> str:
        parts = [self.head()]
        if self._auto:
            parts.append("(auto-generated ids shown by position: #1 is the first entry)")
        for name, cols, rows, right in self._tables():
            parts += [f"{name}:", H.text_table(cols, rows, right=right)]
        return "\n".join(parts)

    def _html(self) -> str:
        parts = [H.title(self.head())]
        if self._auto:
            parts.append(H.note("auto-generated ids shown by position: #1 is the first entry"))
        for name, cols, rows, right in self._tables():
            parts += [H.note(name), H.html_table(cols, rows, right=right)]
        return "".join(parts)

    def to_frame(self):
        return _frame(("id", "fields"), [(i, f) for i, f in self.entries])


class BitmapView(_KeyView):
    """A string read as bits: a grid, one row per byte, bit 0 = leftmost (SETBIT/GETBIT offsets)."""

    kind = "bitmap"
    LIMIT = 16  # bytes shown

    def __init__(self, key: str, data: bytes, **kw: Any) -> None:
        super().__init__(key, **kw)
        self.data = bytes(data)

    @property
    def bits(self) -> list[int]:
        return [(b >> (7 - i)) & 1 for b in self.data for i in range(8)]

    def facts(self) -> list[str]:
        return [f"{len(self.data) * 8} bits", f"{sum(self.bits)} set (BITCOUNT)"]

    def _text(self) -> str:
        lines = [self.head(), "offset   " + " ".join(str(i) for i in range(8))]
        for n, b in enumerate(self.data[: self.LIMIT]):
            lines.append(f"{n * 8:>6}   " + " ".join(str((b >> (7 - i)) & 1) for i in range(8)))
        if len(self.data) > self.LIMIT:
            lines.append(f"... {len(self.data) - self.LIMIT} more bytes")
        return "\n".join(lines)

    def _html(self) -> str:
        # Header cells for the bit positions and each row's offset: the grid reads without colour.
        head = '<tr><th scope="col">offset</th>' + "".join(f'<th scope="col">{i}</th>' for i in range(8)) + "</tr>"
        rows = []
        for n, b in enumerate(self.data[: self.LIMIT]):
            tds = "".join(f'<td class="{"rt-on" if (b >> (7 - i)) & 1 else ""}" title="bit {n * 8 + i}">'
                          f'{(b >> (7 - i)) & 1}</td>' for i in range(8))
            rows.append(f'<tr><th scope="row" style="width:auto;border:none">{n * 8}</th>{tds}</tr>')
        return H.title(self.head()) + f'<table class="rt-bits">{head}{"".join(rows)}</table>'

    def to_frame(self):
        return _frame(("offset", "bit"), list(enumerate(self.bits)))


class HyperLogLogView(_KeyView):
    """PFCOUNT's estimate, next to the exact count when you know it."""

    kind = "hyperloglog"

    def __init__(self, key: str, estimate: int, *, exact: int | None = None, **kw: Any) -> None:
        super().__init__(key, **kw)
        self.estimate = estimate
        self.exact = exact

    columns = ("estimate (PFCOUNT)", "exact", "error")
    right = (0, 1, 2)

    def rows(self) -> list[tuple[Any, ...]]:
        if self.exact is None:
            return [(self.estimate, "unknown", "")]
        err = (self.estimate - self.exact) / self.exact * 100 if self.exact else 0.0
        return [(self.estimate, self.exact, f"{err:+.2f}%")]


class GeoView(_KeyView):
    """Members with longitude/latitude (a geo set is a sorted set of geohashes): table + scatter."""

    kind = "geo"

    def __init__(self, key: str, points: Sequence[tuple[str, float, float]], **kw: Any) -> None:
        super().__init__(key, **kw)
        self.points = sorted((m, round(lon, 4), round(lat, 4)) for m, lon, lat in points)

    columns = ("member", "longitude", "latitude")
    right = (1, 2)

    def facts(self) -> list[str]:
        return [f"{len(self.points)} members"]

    def rows(self) -> list[tuple[Any, ...]]:
        return [(m, f"{lon:.4f}", f"{lat:.4f}") for m, lon, lat in self.points]

    def _html(self) -> str:
        pts = [(m, lon, lat) for m, lon, lat in self.points]
        return H.title(self.head()) + _svg_scatter(pts, "longitude", "latitude") + H.html_table(
            self.columns, self.rows(), right=self.right)

    def plot(self, ax=None):
        """A matplotlib scatter of the members (longitude, latitude)."""
        return _mpl_scatter(self.points, "longitude", "latitude", f"{self.key} (geo)", ax)


class JSONView(_KeyView):
    """A JSON document as a tree (objects keep RedisJSON's insertion order)."""

    kind = "json"

    def __init__(self, key: str, doc: Any, **kw: Any) -> None:
        super().__init__(key, **kw)
        self.doc = doc

    def _lines(self, value: Any, prefix: str = "") -> list[str]:
        items = list(value.items()) if isinstance(value, dict) else [(f"[{i}]", v) for i, v in enumerate(value)]
        out = []
        for n, (name, v) in enumerate(items):
            last = n == len(items) - 1
            branch, cont = ("└── ", "    ") if last else ("├── ", "│   ")
            if isinstance(v, (dict, list)) and v:
                out.append(f"{prefix}{branch}{name}")
                out += self._lines(v, prefix + cont)
            else:
                out.append(f"{prefix}{branch}{name}: {json.dumps(v, ensure_ascii=False)}")
        return out

    def _text(self) -> str:
        if not isinstance(self.doc, (dict, list)) or not self.doc:
            return f"{self.head()}\n$: {json.dumps(self.doc, ensure_ascii=False)}"
        return "\n".join([self.head(), "$", *self._lines(self.doc)])

    def _tree_html(self, value: Any) -> str:
        items = list(value.items()) if isinstance(value, dict) else [(f"[{i}]", v) for i, v in enumerate(value)]
        lis = []
        for name, v in items:
            if isinstance(v, (dict, list)) and v:
                lis.append(f"<li><details open><summary>{H.esc(name)}</summary>{self._tree_html(v)}</details></li>")
            else:
                lis.append(f"<li>{H.esc(name)}: <b>{H.esc(json.dumps(v, ensure_ascii=False))}</b></li>")
        return f'<ul class="rt-tree">{"".join(lis)}</ul>'

    def _html(self) -> str:
        if not isinstance(self.doc, (dict, list)) or not self.doc:
            return H.title(self.head()) + H.esc(json.dumps(self.doc))
        return H.title(self.head()) + "$" + self._tree_html(self.doc)

    def to_frame(self):
        import pandas as pd

        return pd.json_normalize(self.doc) if isinstance(self.doc, (dict, list)) else _frame(("value",), [(self.doc,)])


class VectorSetView(_KeyView):
    """Size, dimension, quantization, and a 2-D projection (PCA of the stored vectors).

    The projection is computed from VEMB (the vectors as stored, i.e. after quantization), centred,
    projected on the two main axes, sign-fixed and rounded, so it repeats run after run.
    """

    kind = "vectorset"
    LIMIT = 200

    def __init__(self, key: str, *, size: int, dim: int, quant: str,
                 vectors: dict[str, Sequence[float]] | None = None, **kw: Any) -> None:
        super().__init__(key, **kw)
        self.size, self.dim, self.quant = size, dim, quant
        self.vectors = dict(sorted((vectors or {}).items()))
        self.points = self._project()

    def _project(self) -> list[tuple[str, float, float]]:
        import numpy as np

        if not self.vectors:
            return []
        names = list(self.vectors)
        X = np.array([self.vectors[n] for n in names], dtype=float)
        X = X - X.mean(axis=0)
        if X.shape[0] < 2 or not np.any(X):
            return [(n, 0.0, 0.0) for n in names]
        _, _, vt = np.linalg.svd(X, full_matrices=False)
        P = X @ vt[:2].T
        for j in range(P.shape[1]):  # an axis' sign is arbitrary: the first element (by name)
            col = P[:, j]            # off the axis' zero gets a positive coordinate
            nonzero = np.flatnonzero(np.abs(col) > 1e-9)
            if nonzero.size and col[nonzero[0]] < 0:
                P[:, j] = -col
        if P.shape[1] == 1:
            P = np.hstack([P, np.zeros((P.shape[0], 1))])
        return [(n, round(float(x), 2) + 0.0, round(float(y), 2) + 0.0) for n, (x, y) in zip(names, P)]

    def facts(self) -> list[str]:
        return [f"{self.size} elements", f"dim {self.dim}", f"quantization {self.quant}"]

    columns = ("element", "x", "y")
    right = (1, 2)

    def rows(self) -> list[tuple[Any, ...]]:
        return [(n, f"{x:.2f}", f"{y:.2f}") for n, x, y in self.points]

    def _text(self) -> str:
        if not self.points:
            return self.head()
        table = H.text_table(self.columns, self.rows(), right=self.right)
        return f"{self.head()}\n2-D projection (PCA of VEMB):\n" + table

    def _html(self) -> str:
        return (H.title(self.head()) + H.note("2-D projection (PCA of VEMB)") +
                _svg_scatter(self.points, "pc1", "pc2") + H.html_table(self.columns, self.rows(), right=self.right))

    def plot(self, ax=None):
        return _mpl_scatter(self.points, "pc1", "pc2", f"{self.key} (vector set, PCA)", ax)


class ModuleInfoView(_KeyView):
    """Bloom, Cuckoo, Count-Min Sketch, Top-K, T-Digest: the module's own INFO (and Top-K's list)."""

    LABELS = {"bloom": "BF.INFO", "cuckoo": "CF.INFO", "cms": "CMS.INFO", "topk": "TOPK.INFO",
              "tdigest": "TDIGEST.INFO"}

    def __init__(self, key: str, kind: str, info: dict[str, Any], *,
                 top: Sequence[tuple[str, int]] | None = None, **kw: Any) -> None:
        super().__init__(key, **kw)
        self.kind = kind
        self.info = dict(info)
        self.top = list(top or [])

    columns = ("field", "value")
    right = (1,)

    def rows(self) -> list[tuple[Any, ...]]:
        return [(k, _num(v) if isinstance(v, (int, float)) else v) for k, v in self.info.items()]

    def _text(self) -> str:
        table = H.text_table(self.columns, self.rows(), right=self.right)
        out = f"{self.head()}\n{self.LABELS.get(self.kind, 'INFO')}:\n" + table
        if self.top:
            out += "\nTOPK.LIST WITHCOUNT:\n" + H.text_table(("item", "count"), self.top, right=(1,))
        return out

    def _html(self) -> str:
        out = (H.title(self.head()) + H.note(self.LABELS.get(self.kind, "INFO"))
               + H.html_table(self.columns, self.rows(), right=self.right))
        if self.top:
            out += H.note("TOPK.LIST WITHCOUNT") + H.html_table(("item", "count"), self.top, right=(1,))
        return out


# ---------------------------------------------------------------------------------------------
# Drawing


def _svg_scatter(points: Sequence[tuple[str, float, float]], xlabel: str, ylabel: str,
                 w: int = 320, h: int = 220) -> str:
    """A small labelled scatter plot as inline SVG (deterministic: no ids, fixed precision)."""
    if not points:
        return ""
    xs = [p[1] for p in points]
    ys = [p[2] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    pad = 30

    def sx(x: float) -> float:
        return pad + (x - x0) / (x1 - x0 or 1) * (w - 2 * pad)

    def sy(y: float) -> float:
        return h - pad - (y - y0) / (y1 - y0 or 1) * (h - 2 * pad)

    def label(m: str, x: float, y: float) -> str:
        # Labels sit right of their dot unless that would run past the edge (clipped text): then
        # they end left of it. Never placed above the top edge either.
        px, py, width = sx(x), max(sy(y) - 4, 10), len(m) * 6.0
        if px + 5 + width > w - 2 and px - 5 - width >= 2:
            return f'<text x="{px - 5:.1f}" y="{py:.1f}" font-size="10" text-anchor="end">{H.esc(m)}</text>'
        return f'<text x="{min(px + 5, w - 2 - width):.1f}" y="{py:.1f}" font-size="10">{H.esc(m)}</text>'

    dots = "".join(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="#d6336c"/>{label(m, x, y)}'
                   for m, x, y in points[:100])
    axes = (f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#888"/>'
            f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#888"/>'
            f'<text x="{w / 2:.0f}" y="{h - 8}" font-size="10" text-anchor="middle">{H.esc(xlabel)}</text>'
            f'<text x="10" y="{h / 2:.0f}" font-size="10" transform="rotate(-90 10 {h / 2:.0f})" '
            f'text-anchor="middle">{H.esc(ylabel)}</text>')
    summary = f"scatter of {len(points)} points, {xlabel} against {ylabel}"
    return (f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" overflow="visible" role="img" '
            f'aria-label="{H.esc(summary)}" xmlns="http://www.w3.org/2000/svg">{axes}{dots}</svg>')


def _mpl_scatter(points, xlabel, ylabel, title, ax=None):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    ax.scatter([p[1] for p in points], [p[2] for p in points], color="#d6336c")
    ax.margins(0.18)  # room for the labels: none clipped at the edges
    for m, x, y in points:
        ax.annotate(m, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return ax


# ---------------------------------------------------------------------------------------------
# Reading from Redis


def _decode(x: Any) -> Any:
    return x.decode("utf-8", "backslashreplace") if isinstance(x, bytes) else x


def view(target: Any, key: str, *, kind: str | None = None, namespace: str | None = None,
         **options: Any) -> H.Renderable:
    """The view of one key, chosen by its type.

    Args:
        target: a server (key is inside its namespace) or a ``redis.Redis``.
        key: the key name (without the namespace prefix).
        kind: read the key as "bitmap", "geo" or "hyperloglog" (shapes that TYPE cannot tell).
        **options: passed to the view: ``desc``/``bars`` (zset), ``exact`` (HyperLogLog),
            ``count`` (stream entries, default 10).
    """
    client, ns = resolve(target, namespace)
    # Replies arrive decoded (the runtime's clients use decode_responses=True); redis-py's
    # annotations cannot know that and type them as bytes | str, so they are read as Any here.
    r: Any = client
    full = ns + key
    meta = key_info(r, full, ns)
    if meta is None:
        return KeyTable([], pattern=key)
    kind = kind or meta.type
    kw = {"ttl_ms": meta.ttl_ms}
    if kind == "string":
        return StringView(key, get_text(r, full) or "", encoding=meta.encoding, **kw)
    if kind == "bitmap":
        raw = r.execute_command("GET", full, NEVER_DECODE=True) or b""
        return BitmapView(key, raw, **kw)
    if kind == "hyperloglog":
        return HyperLogLogView(key, r.pfcount(full), exact=options.get("exact"), **kw)
    if kind == "hash":
        fields = r.hgetall(full)
        ttls = {}
        if fields:
            names = sorted(fields)
            try:
                ttls = dict(zip(names, r.hpttl(full, *names)))
            except redis.exceptions.RedisError:
                pass  # a server without hash-field TTL
        return HashView(key, fields, field_ttls_ms=ttls, encoding=meta.encoding, **kw)
    if kind == "list":
        return ListView(key, r.lrange(full, 0, ListView.LIMIT - 1), length=r.llen(full),
                        encoding=meta.encoding, **kw)
    if kind == "set":
        return SetView(key, r.smembers(full), encoding=meta.encoding, **kw)
    if kind == "zset":
        return ZSetView(key, r.zrange(full, 0, -1, withscores=True), desc=options.get("desc", False),
                        bars=options.get("bars", False), encoding=meta.encoding, **kw)
    if kind == "geo":
        members = r.zrange(full, 0, -1)
        pos = r.geopos(full, *members) if members else []
        return GeoView(key, [(m, p[0], p[1]) for m, p in zip(members, pos) if p], **kw)
    if kind == "stream":
        return _stream(r, full, key, options.get("count", 10), kw)
    if kind == "json":
        return JSONView(key, r.json().get(full, "$")[0], **kw)
    if kind == "vectorset":
        vi = r.vset().vinfo(full)
        members = sorted(_decode(m) for m in (r.vset().vrandmember(full, VectorSetView.LIMIT) or []))
        vectors = {m: r.vset().vemb(full, m) for m in members}
        return VectorSetView(key, size=vi["size"], dim=vi["vector-dim"], quant=vi["quant-type"],
                             vectors=vectors, **kw)
    if kind in ModuleInfoView.LABELS:
        api = {"bloom": r.bf, "cuckoo": r.cf, "cms": r.cms, "topk": r.topk, "tdigest": r.tdigest}[kind]()
        top = None
        if kind == "topk":
            flat = r.topk().list(full, withcount=True)
            top = sorted(zip(flat[::2], flat[1::2]), key=lambda t: (-t[1], t[0]))
        data = api.info(full)
        if kind == "tdigest":  # memory depends on the build; everything else is the digest's shape
            data = {k: v for k, v in data.items() if k != "Memory usage"}
        return ModuleInfoView(key, kind, data, top=top, **kw)
    return KeyTable([meta], pattern=key)


def _stream(r: Any, full: str, key: str, count: int, kw: dict) -> StreamView:
    entries = [(i, f) for i, f in r.xrange(full, count=count)]
    groups = []
    pending = []
    for g in r.xinfo_groups(full):
        g = {k: _decode(v) for k, v in g.items()}
        groups.append(g)
        for p in r.xpending_range(full, g["name"], "-", "+", 100):
            pending.append({"id": p["message_id"], "group": g["name"], "consumer": p["consumer"],
                            "idle_ms": p["time_since_delivered"], "deliveries": p["times_delivered"]})
    return StreamView(key, entries, length=r.xlen(full), groups=groups, pending=pending, **kw)


def show(target: Any, pattern: str = "*", *, namespace: str | None = None, kind: str | None = None,
         **options: Any) -> H.Renderable:
    """Show Redis state: a pattern with wildcards gives a :class:`KeyTable`; one key gives its view.

    Example:
        ``show(server, "user:*")`` lists this notebook's ``user:*`` keys;
        ``show(server, "user:1")`` shows that hash field by field;
        ``show(server, "leaderboard", desc=True, bars=True)`` ranks a sorted set.
    """
    if has_glob(pattern):
        return KeyTable.from_snapshot(snapshot(target, pattern, namespace=namespace))
    return view(target, pattern, kind=kind, namespace=namespace, **options)
