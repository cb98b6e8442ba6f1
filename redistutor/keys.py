"""Read key state: resolve a target (server or client), scan sorted, take snapshots.

Every function accepts either a server (``start_server(...)``) or a ``redis.Redis``. With a
server, patterns and key names are *inside its namespace* (empty for a private server, a unique
prefix in attach mode) and displayed names have the prefix stripped, so outputs are the same in
both modes. With a client, pass ``namespace=`` to get the same effect.

A :class:`Snapshot` records, per key: type, encoding, TTL, memory, a short preview, the absolute
expiry time and a digest of the value (SHA-1 of ``DUMP``). The last two are never displayed;
:mod:`redistutor.diff` uses them to tell changed, expired and deleted keys apart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import weakref
from collections.abc import Iterable
from typing import Any

import redis

# The value formatters (TTL buckets, byte sizes, value previews) live in ``_format``, a module with
# no Redis access and no views; re-exported here for callers that import them from ``keys``.
from ._format import _num, fmt_bytes, fmt_idle, fmt_ttl, fmt_value, shorten  # noqa: F401

# Friendly names for TYPE replies (module types have odd names).
TYPE_NAMES = {
    "MBbloom--": "bloom",
    "MBbloomCF": "cuckoo",
    "CMSk-TYPE": "cms",
    "TopK-TYPE": "topk",
    "TDIS-TYPE": "tdigest",
    "ReJSON-RL": "json",
}
GLOB = re.compile(r"(?<!\\)[*?\[]")
SCAN_LIMIT = 10_000  # keys read per snapshot; tutorials are small, and a runaway SCAN is not

_server_clients: weakref.WeakKeyDictionary[Any, redis.Redis] = weakref.WeakKeyDictionary()


def is_server(target: Any) -> bool:
    return not isinstance(target, redis.Redis) and hasattr(target, "client") and hasattr(target, "namespace")


def resolve(target: Any, namespace: str | None = None) -> tuple[redis.Redis, str]:
    """(client, namespace) for a server or a client.

    A server gets one cached client (created through ``server.client()``, so ``server.stop()``
    closes it) and its own namespace unless ``namespace`` overrides it.
    """
    if isinstance(target, redis.Redis):
        return target, namespace or ""
    if is_server(target):
        c = _server_clients.get(target)
        if c is None:
            c = target.client()
            _server_clients[target] = c
        return c, target.namespace if namespace is None else namespace
    raise TypeError(f"expected a server from start_server() or a redis.Redis client, got {type(target).__name__}")


def strip(key: str, namespace: str) -> str:
    return key[len(namespace):] if namespace and key.startswith(namespace) else key


def has_glob(pattern: str) -> bool:
    return bool(GLOB.search(pattern))


def scan_sorted(r: redis.Redis, pattern: str = "*", *, limit: int = SCAN_LIMIT) -> list[str]:
    """Keys matching ``pattern``, sorted (SCAN order follows the hash table: never show it)."""
    keys: set[str] = set()
    for k in r.scan_iter(match=pattern, count=1000):
        keys.add(k.decode() if isinstance(k, bytes) else k)
        if len(keys) >= limit:
            break
    return sorted(keys)


# -- snapshots ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KeyInfo:
    """One key's state. ``key`` is the displayed name (namespace stripped)."""

    key: str
    type: str  # string, hash, list, set, zset, stream, json, vectorset, hyperloglog, bloom, ...
    encoding: str
    ttl_ms: int | None  # remaining TTL (None: no TTL)
    memory: int | None  # MEMORY USAGE, bytes
    preview: str
    expire_at_ms: int | None = None  # absolute, server clock (PEXPIRETIME); for the diff only
    digest: str = ""  # SHA-1 of DUMP; for the diff only

    @property
    def ttl(self) -> str:
        return fmt_ttl(self.ttl_ms)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The keys matching a pattern at one moment (server clock ``time_ms``)."""

    pattern: str
    namespace: str
    time_ms: int
    rows: tuple[KeyInfo, ...]

    @property
    def keys(self) -> list[str]:
        return [row.key for row in self.rows]

    def __getitem__(self, key: str) -> KeyInfo:
        for row in self.rows:
            if row.key == key:
                return row
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return any(row.key == key for row in self.rows)

    def __repr__(self) -> str:
        # Data, not a view: ``show(server, pattern)`` (or ``viz.KeyTable.from_snapshot``) renders it.
        shown = ", ".join(self.keys[:5]) + (", …" if len(self.rows) > 5 else "")
        n = len(self.rows)
        return f"Snapshot({self.pattern!r}: {n} key{'s' * (n != 1)}{': ' + shown if shown else ''})"

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([(k.key, k.type, k.encoding, k.ttl_ms, k.memory, k.preview) for k in self.rows],
                            columns=["key", "type", "encoding", "ttl_ms", "memory", "value"])


def server_time_ms(r: redis.Redis) -> int:
    sec, usec = r.time()
    return int(sec) * 1000 + int(usec) // 1000


def snapshot(target: Any, pattern: str = "*", *, namespace: str | None = None) -> Snapshot:
    """Read every key matching ``pattern`` (inside the namespace): one pipeline, then previews."""
    r, ns = resolve(target, namespace)
    full = scan_sorted(r, ns + pattern)
    now = server_time_ms(r)
    rows = [info(r, k, ns, _pre) for k, _pre in zip(full, _prefetch(r, full))]
    # A key can vanish between SCAN and the reads (another client, an expiry): leave it out.
    return Snapshot(pattern, ns, now, tuple(row for row in rows if row is not None))


def _prefetch(r: redis.Redis, keys: list[str]) -> list[list[Any]]:
    """TYPE, OBJECT ENCODING, PTTL, PEXPIRETIME, MEMORY USAGE, DUMP per key, in one round trip."""
    if not keys:
        return []
    p = r.pipeline(transaction=False)
    for k in keys:
        p.type(k)
        p.object("encoding", k)
        p.pttl(k)
        p.pexpiretime(k)
        p.memory_usage(k)
        p.dump(k)
    out = p.execute(raise_on_error=False)
    return [out[i:i + 6] for i in range(0, len(out), 6)]


def info(r: redis.Redis, key: str, namespace: str = "", pre: list[Any] | None = None) -> KeyInfo | None:
    """The :class:`KeyInfo` of one full key name (None if it does not exist)."""
    if pre is None:
        pre = _prefetch(r, [key])[0]
    rtype, enc, pttl, expire_at, mem, dump = [None if isinstance(x, Exception) else x for x in pre]
    rtype = rtype.decode() if isinstance(rtype, bytes) else rtype
    if rtype in (None, "none"):
        return None
    kind = TYPE_NAMES.get(rtype, rtype)
    if kind == "string" and r.execute_command("GETRANGE", key, 0, 3, NEVER_DECODE=True) == b"HYLL":
        kind = "hyperloglog"
    try:
        if kind == "string" and get_text(r, key) is None:
            return None  # expired or deleted since the prefetch
        preview = shorten(preview_of(r, key, kind))
    except redis.exceptions.RedisError as exc:  # e.g. a module command missing in attach mode
        preview = f"({type(exc).__name__}: {exc})"  # whole: a cut error message hides the cause
    return KeyInfo(
        key=strip(key, namespace), type=kind, encoding=str(enc or ""),
        ttl_ms=pttl if isinstance(pttl, int) and pttl >= 0 else None,
        memory=mem if isinstance(mem, int) else None, preview=preview,
        expire_at_ms=expire_at if isinstance(expire_at, int) and expire_at >= 0 else None,
        digest=hashlib.sha1(dump).hexdigest() if isinstance(dump, bytes) else "",
    )


def get_text(r: redis.Redis, key: str) -> str | None:
    """GET that survives binary values (bitmaps): undecodable bytes are shown as \\x escapes."""
    raw = r.execute_command("GET", key, NEVER_DECODE=True)
    return None if raw is None else raw.decode("utf-8", "backslashreplace")


def _join(items: Iterable[str], total: int, shown: int) -> str:
    body = ", ".join(items)
    return body + (", …" if total > shown else "")


def preview_of(r: redis.Redis, key: str, kind: str) -> str:
    """A one-line summary of a value, deterministic (sorted where Redis has no order)."""
    n = 5
    if kind == "string":
        return fmt_value(get_text(r, key))
    if kind == "hash":
        total = r.hlen(key)
        fields: list[tuple[Any, Any]] = sorted(r.hgetall(key).items())[:n] if total <= 200 else []
        if not fields:
            return f"({total} fields)"
        return "{" + _join((f"{f}: {fmt_value(v)}" for f, v in fields), total, len(fields)) + "}"
    if kind == "list":
        total = r.llen(key)
        items = r.lrange(key, 0, n - 1)
        return "[" + _join(map(fmt_value, items), total, len(items)) + "]"
    if kind == "set":
        total = r.scard(key)
        if total > 200:
            return f"({total} members)"
        items = sorted(r.smembers(key))[:n]
        return "{" + _join(map(fmt_value, items), total, len(items)) + "}"
    if kind == "zset":
        total = r.zcard(key)
        scored: list[tuple[str, float]] = r.zrange(key, 0, n - 1, withscores=True)  # type: ignore[assignment]
        return _join((f"{m}={_num(s)}" for m, s in scored), total, len(scored))
    if kind == "stream":
        length = r.xlen(key)
        groups = len(r.xinfo_groups(key))
        return f"{length} entries, {groups} group{'s' * (groups != 1)}"
    if kind == "json":
        doc: list[Any] = r.json().get(key, "$")  # type: ignore[assignment]
        return json.dumps(doc[0], separators=(",", ":"), ensure_ascii=False)
    if kind == "vectorset":
        vi: dict[str, Any] = r.vset().vinfo(key) or {}
        return f"{vi['size']} × dim {vi['vector-dim']} ({vi['quant-type']})"
    if kind == "hyperloglog":
        return f"≈ {r.pfcount(key)} distinct"
    if kind == "bloom":
        bi = r.bf().info(key)
        return f"{bi['Number of items inserted']} items, capacity {bi['Capacity']}"
    if kind == "cuckoo":
        ci = r.cf().info(key)
        return f"{ci['Number of items inserted']} items, {ci['Number of buckets']} buckets"
    if kind == "cms":
        mi = r.cms().info(key)
        return f"{mi['width']}×{mi['depth']}, count {mi['count']}"
    if kind == "topk":
        top = r.topk().list(key)
        return f"k={r.topk().info(key)['k']}: " + ", ".join(str(x) for x in top if x is not None)
    if kind == "tdigest":
        ti = r.tdigest().info(key)
        return f"{ti['Observations']} observations"
    return ""
