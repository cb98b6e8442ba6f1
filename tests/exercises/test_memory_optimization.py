"""Self-tests of the memory-optimization exercise checkers: the reference passes, known-wrong answers fail."""

from __future__ import annotations

import pytest

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import memory_optimization as ex


@pytest.fixture
def lim(r):
    """The server's hash limits, put back after the test whatever it changed."""
    saved = r.config_get("hash-max-listpack-*")
    yield {k: int(v) for k, v in saved.items()}
    for k, v in saved.items():
        r.config_set(k, v)


# -- Try it ----------------------------------------------------------------------------------------

def test_try_it_is_checked_against_the_server(r, lim):
    n, v = lim["hash-max-listpack-entries"], lim["hash-max-listpack-value"]
    assert ex.encoding_exercise(r, n, v).evaluate("listpack").outcome == CORRECT
    assert ex.encoding_exercise(r, n + 1, 1).evaluate("hashtable").outcome == CORRECT
    assert ex.encoding_exercise(r, 10, v + 1).evaluate("hashtable").outcome == CORRECT
    assert ex.encoding_exercise(r, 10, v + 1).evaluate("listpack").outcome == INCORRECT
    assert ex.encoding_exercise(r, n + 1, 1).evaluate(" Listpack ").outcome == INCORRECT
    assert ex.encoding_exercise(r, 10, 10).evaluate(None).outcome == NOT_ATTEMPTED


def test_try_it_follows_a_lowered_limit(r, lim):
    r.config_set("hash-max-listpack-entries", 50)
    assert ex.encoding_exercise(r, 60, 1).evaluate("hashtable").outcome == CORRECT
    assert "50" in ex.encoding_exercise(r, 60, 1).evaluate("listpack").message


# -- Exercise 1: view counters -----------------------------------------------------------------------

def test_counter_reference_passes(r, lim):
    assert ex.counter_exercise(r).evaluate(ex.ViewCounter).outcome == CORRECT
    now = r.config_get("hash-max-listpack-entries")["hash-max-listpack-entries"]
    assert now == str(lim["hash-max-listpack-entries"])   # the checker put the limit back
    assert not list(r.scan_iter("ex1:*"))


def test_counter_starter_is_not_attempted(r, lim):
    class Starter:
        def __init__(self, r, prefix):
            raise NotImplementedError

    assert ex.counter_exercise(r).evaluate(Starter).outcome == NOT_ATTEMPTED


class _Buckets(ex.ViewCounter):
    SIZE = 512

    def __init__(self, r, prefix):
        self.r, self.prefix, self.size = r, prefix, self.SIZE


def test_counter_with_a_hard_coded_limit_fails_when_the_server_lowers_it(r, lim):
    res = ex.counter_exercise(r).evaluate(type("Hard512", (_Buckets,), {"SIZE": lim["hash-max-listpack-entries"]}))
    assert res.outcome == INCORRECT and "never assume" in res.message and "100" in res.message


def test_counter_with_the_pages_1000_fields_fails(r, lim):
    res = ex.counter_exercise(r).evaluate(type("Page1000", (_Buckets,), {"SIZE": 1000}))
    assert res.outcome == INCORRECT and "listpack" in res.message


def test_counter_with_one_key_per_article_fails(r, lim):
    class PerKey:
        def __init__(self, r, prefix):
            self.r, self.prefix = r, prefix

        def incr(self, a):
            return self.r.incr(f"{self.prefix}:{a}")

        def get(self, a):
            return int(self.r.get(f"{self.prefix}:{a}") or 0)

    res = ex.counter_exercise(r).evaluate(PerKey)
    assert res.outcome == INCORRECT and "hash" in res.message


def test_counter_with_tiny_buckets_fails(r, lim):
    res = ex.counter_exercise(r).evaluate(type("Tiny", (_Buckets,), {"SIZE": 10}))
    assert res.outcome == INCORRECT and "as large as the limit" in res.message


def test_counter_returning_none_for_unviewed_fails(r, lim):
    class NoneForZero(ex.ViewCounter):
        def get(self, a):
            v = self.r.hget(*self.locate(a))
            return None if v is None else int(v)

    res = ex.counter_exercise(r).evaluate(NoneForZero)
    assert res.outcome == INCORRECT and "0 for an article" in res.message


def test_counter_with_colliding_fields_fails(r, lim):
    class Collide(ex.ViewCounter):
        def locate(self, a):   # the bucket's field is the bucket number: every article of a bucket shares it
            return f"{self.prefix}:{a // self.size}", str(a // self.size)

    res = ex.counter_exercise(r).evaluate(Collide)
    assert res.outcome == INCORRECT and "Counter" in res.message


# -- Exercise 2: repack ---------------------------------------------------------------------------------

def test_repack_reference_passes(r, lim):
    assert ex.repack_exercise(r).evaluate(ex.repack).outcome == CORRECT


def test_repack_starter_is_not_attempted(r, lim):
    def starter(r, key):
        raise NotImplementedError

    assert ex.repack_exercise(r).evaluate(starter).outcome == NOT_ATTEMPTED


def test_repack_read_then_rewrite_loses_the_late_field(r, lim):
    def naive(r, key):
        fields, ttl = r.hgetall(key), r.pttl(key)
        if not fields:
            return
        with r.pipeline() as p:     # the rewrite is atomic, the read before it is not
            p.delete(key)
            p.hset(key, mapping=fields)
            if ttl > 0:
                p.pexpire(key, ttl)
            p.execute()

    res = ex.repack_exercise(r).evaluate(naive)
    assert res.outcome == INCORRECT and "late" in res.message


def test_repack_read_in_a_pipeline_then_rewrite_also_fails(r, lim):
    def naive(r, key):
        with r.pipeline() as p:
            p.hgetall(key)
            p.pttl(key)
            fields, ttl = p.execute()
        if fields:
            r.delete(key)
            r.hset(key, mapping=fields)
            if ttl > 0:
                r.pexpire(key, ttl)

    res = ex.repack_exercise(r).evaluate(naive)
    assert res.outcome == INCORRECT and "late" in res.message


def test_repack_dump_restore_outside_a_transaction_fails(r, lim):
    def dump_restore(r, key):
        payload, ttl = r.dump(key), r.pttl(key)
        if payload is not None:
            r.restore(key, max(ttl, 0), payload, replace=True)

    res = ex.repack_exercise(r).evaluate(dump_restore)
    assert res.outcome == INCORRECT and "late" in res.message


def test_repack_with_watch_and_retry_passes(r, lim):
    def watched(r, key):
        def rewrite(p):
            fields, ttl = p.hgetall(key), p.pttl(key)
            p.multi()
            if fields:
                p.delete(key)
                p.hset(key, mapping=fields)
                if ttl > 0:
                    p.pexpire(key, ttl)

        r.transaction(rewrite, key)

    assert ex.repack_exercise(r).evaluate(watched).outcome == CORRECT


def test_repack_by_copy_keeps_the_hash_table_and_fails(r, lim):
    def by_copy(r, key):
        r.eval("if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('COPY', KEYS[1], KEYS[2]); "
               "redis.call('RENAME', KEYS[2], KEYS[1]) end", 2, key, key + ":tmp")

    res = ex.repack_exercise(r).evaluate(by_copy)
    assert res.outcome == INCORRECT and "listpack" in res.message


def test_repack_losing_the_ttl_fails(r, lim):
    script = ("local f = redis.call('HGETALL', KEYS[1]) if #f == 0 then return 0 end "
              "redis.call('DEL', KEYS[1]) redis.call('HSET', KEYS[1], unpack(f)) return 1")

    res = ex.repack_exercise(r).evaluate(lambda r, key: r.eval(script, 1, key))
    assert res.outcome == INCORRECT and "expire" in res.message


def test_repack_pexpire_with_minus_one_deletes_and_fails(r, lim):
    script = ("local t = redis.call('PTTL', KEYS[1]) local f = redis.call('HGETALL', KEYS[1]) "
              "if #f == 0 then return 0 end redis.call('DEL', KEYS[1]) "
              "redis.call('HSET', KEYS[1], unpack(f)) redis.call('PEXPIRE', KEYS[1], t) return 1")

    res = ex.repack_exercise(r).evaluate(lambda r, key: r.eval(script, 1, key))
    assert res.outcome == INCORRECT and "PTTL -1" in res.message


def test_repack_creating_a_missing_key_fails(r, lim):
    def creates(r, key):
        ex.repack(r, key)
        if not r.exists(key):
            r.hset(key, "placeholder", "")

    res = ex.repack_exercise(r).evaluate(creates)
    assert res.outcome == INCORRECT and "missing" in res.message
