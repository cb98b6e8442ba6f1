"""What changed? A diff between two snapshots, and ``changes()`` for a block of code.

Classification (by key name, within the pattern):

* **added**: not in the first snapshot, in the second;
* **changed**: in both, and its type, value (SHA-1 of ``DUMP``) or expiry time
  (``PEXPIRETIME``: a refreshed TTL counts, a TTL merely counting down does not) differ;
* **expired**: gone, and its expiry time recorded in the first snapshot had passed by the
  server's clock at the second snapshot. Redis never removes a key before its expiry time and the
  key is logically gone at that time, so this rule is exact for expiry;
* **deleted**: gone otherwise (DEL/UNLINK, RENAME away, FLUSH, or eviction under maxmemory,
  which a snapshot cannot tell from a DEL).

A key deleted and re-created between the snapshots shows as changed (or unchanged if identical).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from . import _html as H
from .keys import KeyInfo, Snapshot, fmt_ttl, snapshot

KINDS = ("added", "changed", "expired", "deleted")
_CSS = {"added": "rt-add", "changed": "rt-chg", "expired": "rt-exp", "deleted": "rt-del"}


@dataclasses.dataclass(frozen=True)
class Change:
    key: str
    kind: str  # one of KINDS
    before: KeyInfo | None
    after: KeyInfo | None


def _describe(k: KeyInfo | None, other: KeyInfo | None) -> str:
    if k is None:
        return ""
    text = k.preview
    if other is not None and k.expire_at_ms != other.expire_at_ms:
        text += f" [TTL {fmt_ttl(k.ttl_ms)}]"
    return text


class Diff(H.Renderable):
    """Changes between two snapshots; ``added``/``changed``/``expired``/``deleted`` are sorted key lists."""

    def __init__(self, before: Snapshot, after: Snapshot) -> None:
        self.before, self.after = before, after
        b = {k.key: k for k in before.rows}
        a = {k.key: k for k in after.rows}
        changes = []
        for key in sorted(set(a) | set(b)):
            old, new = b.get(key), a.get(key)
            if old is None:
                changes.append(Change(key, "added", None, new))
            elif new is None:
                expired = old.expire_at_ms is not None and old.expire_at_ms <= after.time_ms
                changes.append(Change(key, "expired" if expired else "deleted", old, None))
            elif (old.type, old.digest, old.expire_at_ms) != (new.type, new.digest, new.expire_at_ms):
                changes.append(Change(key, "changed", old, new))
        self.changes = sorted(changes, key=lambda c: (KINDS.index(c.kind), c.key))

    def _keys(self, kind: str) -> list[str]:
        return [c.key for c in self.changes if c.kind == kind]

    @property
    def added(self) -> list[str]:
        return self._keys("added")

    @property
    def changed(self) -> list[str]:
        return self._keys("changed")

    @property
    def expired(self) -> list[str]:
        return self._keys("expired")

    @property
    def deleted(self) -> list[str]:
        return self._keys("deleted")

    @property
    def keys(self) -> list[str]:
        return [c.key for c in self.changes]

    def __bool__(self) -> bool:
        return bool(self.changes)

    def summary(self) -> str:
        counts = ", ".join(f"{len(self._keys(k))} {k}" for k in KINDS)
        return f"changes in {self.after.pattern!r}: {counts}"

    COLUMNS = ("change", "key", "type", "before", "after")

    def _rows(self) -> list[tuple[str, ...]]:
        return [(c.kind, c.key, (c.after or c.before).type,  # type: ignore[union-attr]
                 _describe(c.before, c.after) or ("" if c.kind == "added" else "-"),
                 _describe(c.after, c.before) or f"({c.kind})") for c in self.changes]

    def _text(self) -> str:
        if not self.changes:
            return f"no changes in {self.after.pattern!r}"
        return self.summary() + "\n" + H.text_table(self.COLUMNS, self._rows())

    def _html(self) -> str:
        if not self.changes:
            return H.title(f"no changes in {self.after.pattern!r}")
        rows = [(f'<span class="{_CSS[c.kind]}">{c.kind}</span>',) + r[1:]
                for c, r in zip(self.changes, self._rows())]
        return H.title(self.summary()) + H.html_table(self.COLUMNS, rows, raw=(0,))

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([{"change": c.kind, "key": c.key,
                              "before": c.before.preview if c.before else None,
                              "after": c.after.preview if c.after else None} for c in self.changes],
                            columns=["change", "key", "before", "after"])


def diff(before: Snapshot, after: Snapshot) -> Diff:
    return Diff(before, after)


class changes(H.Renderable):
    """Show what a block of code did to the keyspace::

        with changes(server, "user:*") as d:
            cache.get(1)
        d                      # the diff, as a table
        assert d.added == ["user:1"]

    Args:
        target: a server (pattern inside its namespace) or a ``redis.Redis``.
        pattern: the keys to watch (SCAN MATCH syntax).
        namespace: a prefix to strip when ``target`` is a client.
    """

    def __init__(self, target: Any, pattern: str = "*", *, namespace: str | None = None) -> None:
        self._target, self._pattern, self._namespace = target, pattern, namespace
        self.diff: Diff | None = None

    def __enter__(self) -> changes:
        self.before = snapshot(self._target, self._pattern, namespace=self._namespace)
        self.diff = None
        return self

    def __exit__(self, *exc: object) -> None:
        after = snapshot(self._target, self._pattern, namespace=self._namespace)
        self.diff = Diff(self.before, after)

    def _done(self) -> Diff:
        if self.diff is None:
            raise RuntimeError("the with-block has not finished yet: read the changes after it")
        return self.diff

    added = property(lambda self: self._done().added)
    changed = property(lambda self: self._done().changed)
    expired = property(lambda self: self._done().expired)
    deleted = property(lambda self: self._done().deleted)
    keys = property(lambda self: self._done().keys)

    def _text(self) -> str:
        return self._done()._text() if self.diff is not None else "changes(...): still inside the with-block"

    def _html(self) -> str:
        return self._done()._html()

    def to_frame(self):
        return self._done().to_frame()
