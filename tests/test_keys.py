"""Snapshots: sorted, namespaced, TTL buckets, module and HyperLogLog detection."""

from __future__ import annotations

import pytest

from redistutor.keys import fmt_bytes, fmt_idle, fmt_ttl, fmt_value, has_glob, scan_sorted, snapshot, strip


def test_scan_sorted_and_snapshot_rows(r):
    for k in ["b", "a", "c:1", "c:0"]:
        r.set(k, 1)
    r.expire("a", 100)
    r.pfadd("hll", "x")
    assert scan_sorted(r, "c:*") == ["c:0", "c:1"]
    snap = snapshot(r, "*")
    assert snap.keys == ["a", "b", "c:0", "c:1", "hll"]
    assert snap["a"].ttl == "≤ 2 min" and snap["b"].ttl == "none"
    assert snap["a"].expire_at_ms and snap["b"].expire_at_ms is None
    assert snap["hll"].type == "hyperloglog"
    assert snap["a"].digest == snap["b"].digest  # same value, same DUMP
    assert "zz" not in snap and "a" in snap


def test_namespace_is_stripped(r):
    r.set("rt:nb:abc:user:1", "x")
    r.set("user:1", "other notebook")
    snap = snapshot(r, "user:*", namespace="rt:nb:abc:")
    assert snap.keys == ["user:1"] and snap["user:1"].preview == '"x"'


def test_server_target_uses_its_namespace(redis_server, r):
    r.set(redis_server.key("user:9"), "v")
    assert snapshot(redis_server, "user:*").keys == ["user:9"]


@pytest.mark.parametrize("ms, text", [(None, "none"), (-1, "none"), (500, "≤ 1 s"), (59_999, "≤ 1 min"),
                                      (60_000, "≤ 1 min"), (60_001, "≤ 2 min"), (3_600_000, "≤ 1 h"),
                                      (40 * 86_400_000, "> 30 d")])
def test_ttl_buckets(ms, text):
    assert fmt_ttl(ms) == text


def test_small_formatters():
    assert fmt_idle(5) == "< 10 s" and fmt_idle(700_000) == "≥ 10 min"
    assert fmt_bytes(80) == "80 B" and fmt_bytes(2048) == "2.0 KiB"
    assert fmt_value("3") == "3" and fmt_value("a b") == '"a b"' and fmt_value(2.0) == "2"
    assert has_glob("user:*") and not has_glob(r"user:\*") and not has_glob("user:1")
    assert strip("ns:k", "ns:") == "k" and strip("k", "ns:") == "k"


def test_reading_does_not_import_rendering():
    """keys.py reads Redis; viz.py renders. No import cycle: keys never imports viz."""
    import ast
    import pathlib

    import redistutor.keys as keys_module

    tree = ast.parse(pathlib.Path(keys_module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert not {m for m in imported if m and m.split(".")[-1] in ("viz", "timeline", "watch", "_html")}


def test_snapshot_is_data_with_a_short_repr(r):
    r.set("a", 1)
    r.set("b", 2)
    snap = snapshot(r, "*")
    assert repr(snap) == "Snapshot('*': 2 keys: a, b)"
    assert not hasattr(snap, "_repr_html_")
