"""Value formatting shared by snapshots, views and diffs: TTL buckets, byte sizes, previews.

Pure functions with no Redis access and no rendering: :mod:`redistutor.keys` uses them to build
previews while it reads, :mod:`redistutor.viz` and :mod:`redistutor.diff` to display rows. Keeping
them here lets ``keys`` (reading Redis) and ``viz`` (rendering) depend on this module and not on
each other.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .options import option

__all__ = ["fmt_bytes", "fmt_idle", "fmt_ttl", "fmt_value", "shorten"]

# -- formatting helpers shared by views and the diff --------------------------------------------

_TTL_LADDER = [  # upper bounds (seconds) and labels: TTLs are shown as "≤ bucket" (stable output)
    (1, "1 s"), (2, "2 s"), (5, "5 s"), (10, "10 s"), (30, "30 s"), (60, "1 min"),
    (120, "2 min"), (300, "5 min"), (600, "10 min"), (1800, "30 min"), (3600, "1 h"),
    (7200, "2 h"), (21600, "6 h"), (43200, "12 h"), (86400, "1 d"), (7 * 86400, "7 d"),
    (30 * 86400, "30 d"),
]


def fmt_ttl(ttl_ms: int | None) -> str:
    """A remaining TTL as a bucket: "none", "≤ 1 min", "≤ 1 h", ... (exact values change every
    millisecond; the bucket stays put while a cell runs)."""
    if ttl_ms is None or ttl_ms < 0:
        return "none"
    for bound, label in _TTL_LADDER:
        if ttl_ms <= bound * 1000:
            return f"≤ {label}"
    return "> 30 d"


def fmt_idle(idle_ms: int | None) -> str:
    """Idle time of a pending stream entry, bucketed (it grows while you read it)."""
    if idle_ms is None:
        return ""
    for bound, label in ((10_000, "< 10 s"), (60_000, "< 1 min"), (600_000, "< 10 min")):
        if idle_ms < bound:
            return label
    return "≥ 10 min"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}"
    return f"{n} B"  # pragma: no cover


def fmt_value(v: Any) -> str:
    """A scalar as a learner would type it: numbers bare, other strings quoted."""
    if isinstance(v, bytes):
        v = v.decode("utf-8", "backslashreplace")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return _num(v)
    s = str(v)
    if re.fullmatch(r"-?\d+(\.\d+)?", s):
        return s
    if s[:1] in "{[":  # a JSON document stored as a string: show it as JSON, not escaped
        try:
            json.loads(s)
            return s
        except ValueError:
            pass
    return json.dumps(s, ensure_ascii=False)


def _num(x: float | int) -> str:
    if isinstance(x, float):
        if math.isfinite(x) and x == int(x) and abs(x) < 1e15:
            return str(int(x))
        return f"{x:.6g}"
    return str(x)


def shorten(s: str, width: int | None = None) -> str:
    width = width or option("preview_width")
    return s if len(s) <= width else s[: width - 1] + "…"
