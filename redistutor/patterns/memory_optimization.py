"""Memory optimization: many small values packed into hashes that stay compact (listpacks).

Notebook: notebooks/19-memory-optimization.ipynb
Redis: https://redis.io/docs/latest/operate/oss_and_stack/management/optimization/memory-optimization/

One string key per object costs a key's bookkeeping for every object (the keyspace entry, the
object header, the key name, the allocator's rounding). A hash of at most
``hash-max-listpack-entries`` fields, each value at most ``hash-max-listpack-value`` bytes, is
stored as one contiguous listpack: a few bytes per field. :class:`HashBuckets` puts object ``i``
in field ``i % size`` of hash ``prefix:<i // size>`` and reads both limits from the server, because
one field too many or one value too long turns a bucket into a hash table, and it stays one:

    time 0  bucket users:7 has 512 fields, listpack, ~5 KB
    time 1  one client writes a 65-byte value     -> hashtable, ~29 KB
    time 2  the value is deleted again             -> still hashtable (Redis never converts back)
"""

from __future__ import annotations

from typing import Any


class HashBuckets:
    """Object ``i`` is field ``i % size`` of hash ``prefix:<i // size>``; every bucket stays a listpack."""

    def __init__(self, r, prefix, size=None):
        limits = r.config_get("hash-max-listpack-*")  # read the server's limits, never assume them
        self.max_fields = int(limits["hash-max-listpack-entries"])
        self.max_bytes = int(limits["hash-max-listpack-value"])
        self.size = size or self.max_fields
        if not 0 < self.size <= self.max_fields:
            raise ValueError(f"{self.size} fields per bucket: this server keeps at most "
                             f"{self.max_fields} (hash-max-listpack-entries) in a listpack")
        self.r, self.prefix = r, prefix

    def locate(self, i):
        bucket, field = divmod(i, self.size)
        return f"{self.prefix}:{bucket}", str(field)

    def set(self, i, value):
        data = value if isinstance(value, bytes) else str(value).encode()
        if len(data) > self.max_bytes:  # one long value would make the whole bucket a hash table
            raise ValueError(f"{len(data)} bytes > hash-max-listpack-value {self.max_bytes}")
        return self.r.hset(*self.locate(i), value)

    def get(self, i):
        return self.r.hget(*self.locate(i))


def bucket_count(n: int, size: int) -> int:
    """How many buckets ``n`` objects with ids 0..n-1 fill (the last one may be partial)."""
    return -(-n // size)


def load(buckets: HashBuckets, values: dict[int, Any]) -> None:
    """Bulk load: the same checks as ``buckets.set``, then one HSET per bucket, in one round trip."""
    by_key: dict[str, dict[str, Any]] = {}
    for i, value in values.items():
        data = value if isinstance(value, bytes) else str(value).encode()
        if len(data) > buckets.max_bytes:
            raise ValueError(f"object {i}: {len(data)} bytes > hash-max-listpack-value {buckets.max_bytes}")
        key, field = buckets.locate(i)
        by_key.setdefault(key, {})[field] = value
    p = buckets.r.pipeline(transaction=False)
    for key, mapping in by_key.items():
        p.hset(key, mapping=mapping)
    p.execute()
