"""Exercises for notebooks/19-memory-optimization.ipynb.

Every checker runs on the notebook's measuring server (its own local Redis), because two of them
change a limit with CONFIG SET for a moment (and put it back).

Try it. ``encoding_exercise``: a hash of ``fields`` fields whose values are ``value_bytes`` long:
   listpack or hashtable on this server? The check builds it and asks OBJECT ENCODING.
1. ``ViewCounter``: a new case: page-view counters for many articles, as HINCRBY in buckets that
   stay listpacks at whatever limit the server has (the check lowers it once).
2. ``repack``: make a bucket that turned into a hash table compact again, without losing a field
   another client writes at the same moment, and keeping its TTL.
"""

from __future__ import annotations

import inspect
import random
from collections import Counter

import redis
from redis.client import Pipeline

from ..check import Exercise, expect
from ..scenarios.memory_optimization import encoding, limits

# -- reference solutions (self-tested in tests/exercises/test_memory_optimization.py) -------------


class ViewCounter:
    def __init__(self, r, prefix):
        self.r, self.prefix = r, prefix
        self.size = int(r.config_get("hash-max-listpack-entries")["hash-max-listpack-entries"])

    def locate(self, article_id):
        bucket, field = divmod(article_id, self.size)
        return f"{self.prefix}:{bucket}", str(field)

    def incr(self, article_id):
        return self.r.hincrby(*self.locate(article_id), 1)

    def get(self, article_id):
        return int(self.r.hget(*self.locate(article_id)) or 0)


REPACK = """
local ttl = redis.call('PTTL', KEYS[1])
local flat = redis.call('HGETALL', KEYS[1])
if #flat == 0 then return 0 end
redis.call('DEL', KEYS[1])
for i = 1, #flat, 1000 do
  redis.call('HSET', KEYS[1], unpack(flat, i, math.min(i + 999, #flat)))
end
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return #flat / 2
"""


def repack(r, key):
    # One script: no other client runs between the read and the rewrite.
    return r.eval(REPACK, 1, key)


# -- helpers -------------------------------------------------------------------------------------

FIELD_READS = {"HGETALL", "HSCAN", "HKEYS", "HVALS", "HMGET", "HGET", "HLEN", "DUMP", "HRANDFIELD"}


class _Intruder:
    """Writes field ``late`` into ``key`` from another client right after the first command that
    reads the hash's fields (outside a script), the moment a non-atomic rewrite can lose it."""

    def __init__(self, r: redis.Redis, key: str) -> None:
        self.other = redis.Redis(connection_pool=r.connection_pool)
        self.key, self.fired = key, False

    def after(self, args: tuple) -> None:
        name = args[0].upper() if isinstance(args[0], str) else str(args[0])
        if not self.fired and name.split()[0] in FIELD_READS and len(args) > 1 and args[1] == self.key:
            self.fired = True
            self.other.hset(self.key, "late", "written during the repack")


def _intruded(r: redis.Redis, intruder: _Intruder) -> redis.Redis:
    """A client like ``r`` (same pool) whose reads of the bucket let the intruder in; its
    pipelines (MULTI, WATCH) do too."""

    class IntrudedPipeline(Pipeline):
        def immediate_execute_command(self, *args, **options):
            reply = super().immediate_execute_command(*args, **options)
            intruder.after(args)
            return reply

        def execute(self, raise_on_error: bool = True):
            stack = [args for args, _ in self.command_stack]
            try:
                return super().execute(raise_on_error)
            finally:
                for args in stack:
                    intruder.after(args)

    class Intruded(redis.Redis):
        def execute_command(self, *args, **options):
            reply = super().execute_command(*args, **options)
            intruder.after(args)
            return reply

        def pipeline(self, transaction=True, shard_hint=None):
            return IntrudedPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)

    return Intruded(connection_pool=r.connection_pool)


def _flipped_bucket(r: redis.Redis, key: str, fields: int) -> dict[str, str]:
    """A bucket of ``fields`` short names that one long value turned into a hash table."""
    r.delete(key)
    data = {str(i): f"name-{i}" for i in range(fields)}
    r.hset(key, mapping=data)
    r.hset(key, "bio", "x" * (limits(r)["hash-max-listpack-value"] + 1))
    r.hdel(key, "bio")
    return data


# -- exercises -------------------------------------------------------------------------------------

def encoding_exercise(r: redis.Redis, fields: int, value_bytes: int, prefix: str = "try") -> Exercise:
    """Try it: the answer is "listpack" or "hashtable"."""

    def checker(answer) -> None:
        key = f"{prefix}:hash"
        r.delete(key)
        r.hset(key, mapping={f"f{i}": "x" * value_bytes for i in range(fields)})
        actual = encoding(r, key)
        r.delete(key)
        lim = limits(r)
        expect(str(answer).strip().lower() == actual,
               f"{fields} fields of {value_bytes} bytes; this server's limits are hash-max-listpack-entries "
               f"{lim['hash-max-listpack-entries']} and hash-max-listpack-value {lim['hash-max-listpack-value']}",
               expected=actual, actual=answer)

    return Exercise(
        f"encoding of {fields} fields x {value_bytes} bytes", checker,
        hints=["Two limits apply at once, both read with CONFIG GET hash-max-listpack-*: the number of "
               "fields, and the length of the longest field name or value.",
               "listpack only if fields <= hash-max-listpack-entries AND value_bytes <= "
               "hash-max-listpack-value (the field names f0, f1, ... are short)."],
        solution='lim = r.config_get("hash-max-listpack-*")\n'
                 'prediction = ("listpack" if fields <= int(lim["hash-max-listpack-entries"])\n'
                 '              and value_bytes <= int(lim["hash-max-listpack-value"]) else "hashtable")',
        reference=None,
    )


def counter_exercise(r: redis.Redis, prefix: str = "ex1", articles: int = 1_500, views: int = 3_000,
                     lowered: int = 100) -> Exercise:
    """Exercise 1: ``ViewCounter(r, prefix)`` with ``incr(article_id)`` and ``get(article_id)``."""

    def run(answer, run_prefix: str, limit: int) -> None:
        rng = random.Random(limit)
        events = rng.choices(range(articles), weights=[1 / (i + 1) for i in range(articles)], k=views)
        counter = answer(r, run_prefix)
        try:
            replies = [counter.incr(a) for a in events]
            got = {a: counter.get(a) for a in range(articles)}
        except NotImplementedError:
            expect(False, "incr or get still raises NotImplementedError", expected="your code", actual="starter")
        truth = Counter(events)
        wrong = [a for a in range(articles) if got[a] != truth[a]]
        expect(not wrong, f"counts after {views:,} views (limit {limit}): get() must equal Python's Counter, "
               "and 0 for an article nobody viewed", expected={a: truth[a] for a in wrong[:3]},
               actual={a: got[a] for a in wrong[:3]})
        expect(replies[-1] == truth[events[-1]] and replies.count(1) == len(truth),
               "incr returns the new count (what HINCRBY replies)", expected=truth[events[-1]], actual=replies[-1])
        keys = sorted(r.scan_iter(f"{run_prefix}:*"))
        kinds = {k: (r.type(k), encoding(r, k)) for k in keys}
        bad = {k: v for k, v in kinds.items() if v != ("hash", "listpack")}
        expect(not bad, f"every key must be a hash stored as a listpack; this server's hash-max-listpack-entries "
               f"is {limit} right now (read it with CONFIG GET, never assume it)",
               expected="hash/listpack", actual=dict(list(bad.items())[:3]))
        most = 2 * -(-articles // limit)
        expect(len(keys) <= most, f"{articles:,} articles fit in {-(-articles // limit)} buckets of {limit}: "
               "use buckets as large as the limit allows", expected=f"<= {most} keys", actual=len(keys))

    def checker(answer) -> None:
        default = limits(r)["hash-max-listpack-entries"]
        try:
            run(answer, f"{prefix}:a", default)
            r.config_set("hash-max-listpack-entries", lowered)  # another server, another limit
            run(answer, f"{prefix}:b", lowered)
        finally:
            r.config_set("hash-max-listpack-entries", default)
            for k in list(r.scan_iter(f"{prefix}:*")):
                r.delete(k)

    return Exercise(
        "page-view counters in listpack buckets", checker,
        hints=["It is HashBuckets with HINCRBY instead of HSET: article a is field a % size of bucket a // size, "
               "and size comes from CONFIG GET hash-max-listpack-entries when the counter is created.",
               "In __init__: self.size = int(r.config_get('hash-max-listpack-entries')['hash-max-listpack-entries']); "
               "incr: return r.hincrby(key, field, 1); get: int(r.hget(key, field) or 0)."],
        solution=inspect.getsource(ViewCounter), reference=ViewCounter,
    )


def repack_exercise(r: redis.Redis, prefix: str = "ex2") -> Exercise:
    """Exercise 2: ``repack(r, key)``."""

    def checker(answer) -> None:
        key = f"{prefix}:bucket"
        try:
            data = _flipped_bucket(r, key, 300)
            r.pexpire(key, 60_000)
            intruder = _Intruder(r, key)
            answer(_intruded(r, intruder), key)
            if intruder.fired:
                data["late"] = "written during the repack"
            after = r.hgetall(key)
            lost = sorted(set(data) - set(after))
            expect(not lost, "another client wrote field 'late' right after your repack read the fields: "
                   "a rewrite must not lose it (do the read and the rewrite as one atomic step)",
                   expected="every field", actual=f"lost {lost[:5]}")
            expect(after == data, "the values must be unchanged", expected=len(data), actual=len(after))
            expect(encoding(r, key) == "listpack", "300 short fields fit the limits: the rewritten bucket must "
                   "be a listpack again", expected="listpack", actual=encoding(r, key))
            ttl = r.pttl(key)
            expect(0 < ttl <= 60_000, "the bucket expired in 60 s before the repack and must still expire",
                   expected="0 < PTTL <= 60000", actual=ttl)
            data = _flipped_bucket(r, key, 50)
            answer(r, key)
            expect(r.hgetall(key) == data and r.pttl(key) == -1, "a bucket without a TTL keeps its 50 fields "
                   "and gets no TTL (PEXPIRE with a negative time deletes the key)",
                   expected="50 fields, PTTL -1", actual=f"{r.hlen(key)} fields, PTTL {r.pttl(key)}")
            big = _flipped_bucket(r, key, limits(r)["hash-max-listpack-entries"] + 88)
            answer(r, key)
            expect(r.hgetall(key) == big, "a bucket over the limit stays a hash table, with every field",
                   expected=len(big), actual=r.hlen(key))
            r.delete(key)
            answer(r, key)
            expect(not r.exists(key), "repacking a bucket that does not exist leaves it missing",
                   expected=0, actual=r.exists(key))
            left = sorted(k for k in r.scan_iter(f"{prefix}:*"))
            expect(not left, "leave no temporary key behind", expected=[], actual=left)
        finally:
            for k in list(r.scan_iter(f"{prefix}:*")):
                r.delete(k)

    return Exercise(
        "repack a bucket atomically", checker,
        hints=["Building the hash again from scratch makes Redis choose its encoding again. The hard part is "
               "that nobody may write between your read and your rewrite, and the TTL must survive.",
               "One Lua script: PTTL, HGETALL, DEL, HSET the pairs back (in chunks of up to 1,000 values "
               "for unpack), PEXPIRE only if the PTTL was positive."],
        solution=f"REPACK = '''{REPACK}'''\n\n" + inspect.getsource(repack), reference=repack,
    )
