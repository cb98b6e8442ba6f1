"""The diff classifies added / changed / expired / deleted, and changes() wraps a block."""

from __future__ import annotations

import pytest

from redistutor import changes, set_options
from redistutor.diff import diff
from redistutor.keys import snapshot
from redistutor.race import wait_until


def test_added_changed_expired_deleted(r):
    r.set("keep", 1)
    r.set("edit", 1)
    r.set("drop", 1)
    r.set("short", 1, px=30)
    r.set("ttl", 1, ex=100)
    with changes(r, "*") as d:
        r.set("new", 1)
        r.set("edit", 2)
        r.delete("drop")
        r.expire("ttl", 500)  # a refreshed TTL is a change
        wait_until(lambda: not r.exists("short"), 5, "the short key to expire")
    assert d.added == ["new"]
    assert d.changed == ["edit", "ttl"]
    assert d.deleted == ["drop"]
    assert d.expired == ["short"]
    with set_options(display="text"):
        assert repr(d).splitlines()[0] == "changes in '*': 1 added, 2 changed, 1 expired, 1 deleted"
        rows = [" ".join(line.split()) for line in repr(d).splitlines()]
        assert "changed ttl string 1 [TTL ≤ 2 min] 1 [TTL ≤ 10 min]" in rows


def test_deleted_just_before_expiry_is_deleted(r):
    r.set("k", 1, ex=100)
    before = snapshot(r, "*")
    r.delete("k")
    assert diff(before, snapshot(r, "*")).deleted == ["k"]


def test_no_changes_and_reading_inside_the_block(r):
    r.set("a", 1)
    with changes(r, "*") as d:
        r.get("a")
        assert repr(d) == "changes(...): still inside the with-block"
        with pytest.raises(RuntimeError):
            d.added
    assert repr(d) == "no changes in '*'" and not d.diff


def test_pattern_and_namespace(r):
    with changes(r, "user:*", namespace="ns:") as d:
        r.set("ns:user:1", 1)
        r.set("ns:other", 1)
        r.set("user:2", 1)
    assert d.added == ["user:1"]
    assert list(d.to_frame()["change"]) == ["added"]
