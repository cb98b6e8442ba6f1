"""Self-tests of the uber-resilience exercise checkers: the reference passes, known-wrong answers fail."""

from __future__ import annotations

import pytest
import redis

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import uber_resilience as ex
from redistutor.patterns.uber_resilience import read, shard
from redistutor.scenarios import uber_resilience as sc


@pytest.fixture(scope="module")
def fleet():
    f = sc.start_fleet()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def db():
    d = sc.ShardedDB(capacity=160)
    yield d
    d.close()


# -- try it ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("victim", ["c1", "c3"])
def test_victim_prediction_accepts_the_aligned_shard(fleet, db, victim):
    assert ex.victim_prediction(fleet, db, victim).evaluate("d" + victim[1:]).outcome == CORRECT


def test_victim_prediction_rejects_another_shard(fleet, db):
    assert ex.victim_prediction(fleet, db, "c2").evaluate("d1").outcome == INCORRECT


# -- exercise 1: read_many ---------------------------------------------------------------------------


@pytest.fixture
def ex1(fleet):
    return ex.read_many_exercise([fleet["c1"].r, fleet["c2"].r])


def test_read_many_reference_passes(ex1):
    assert ex1.evaluate(ex.read_many).outcome == CORRECT


def test_read_many_starter_is_not_attempted(ex1):
    def starter(keys, caches, breakers, db, salt):
        raise NotImplementedError

    assert ex1.evaluate(starter).outcome == NOT_ATTEMPTED


def test_read_many_one_get_per_key_fails(ex1):
    def per_key(keys, caches, breakers, db, salt):
        return {k: read(k, caches, breakers, db, salt) for k in keys}

    res = ex1.evaluate(per_key)
    assert res.outcome == INCORRECT and "one MGET" in res.message


def test_read_many_without_the_breaker_fails(ex1):
    def no_breaker(keys, caches, breakers, db, salt):
        out = {}
        for k in keys:
            i = shard(k, len(caches), salt)
            try:
                out[k] = caches[i].mget([k])[0]
            except redis.RedisError:
                out[k] = None
        return {k: v if v is not None else db.get(k) for k, v in out.items()}

    assert ex1.evaluate(no_breaker).outcome == INCORRECT


def test_read_many_that_always_asks_the_db_fails(ex1):
    def db_only(keys, caches, breakers, db, salt):
        for i, c in enumerate(caches):
            if breakers[i].allow():
                try:
                    c.mget(keys[:1])
                    breakers[i].record(True)
                except redis.RedisError:
                    breakers[i].record(False)
        return {k: db.get(k) for k in keys}

    res = ex1.evaluate(db_only)
    assert res.outcome == INCORRECT and "database is asked only" in res.message


def test_read_many_that_drops_failed_nodes_keys_fails(ex1):
    def drops(keys, caches, breakers, db, salt):
        out = ex.read_many(keys, caches, breakers, db, salt)
        return {k: v for k, v in out.items() if shard(k, len(caches), salt) != 2}

    assert ex1.evaluate(drops).outcome == INCORRECT


# -- exercise 2: apply with deletes ------------------------------------------------------------------


@pytest.fixture
def ex2(fleet):
    return ex.apply_exercise(fleet["c3"].r)


def test_apply_reference_passes(ex2):
    assert ex2.evaluate(ex.apply).outcome == CORRECT


def test_apply_one_write_at_a_time_fails_the_kill(ex2):
    def eager(changes, r, name, mine, batch=500):
        offset = int(r.get(f"cdc:offset:{name}") or 0)
        for seq, key, value in changes(offset, batch):
            if mine(key):
                r.delete(key) if value is None else r.set(key, value)
            r.set(f"cdc:offset:{name}", seq)

    res = ex2.evaluate(eager)
    assert res.outcome == INCORRECT and "nothing of it applied" in res.message


def test_apply_that_ignores_deletes_fails(ex2):
    def no_deletes(changes, r, name, mine, batch=500):
        offset = int(r.get(f"cdc:offset:{name}") or 0)
        last = offset
        with r.pipeline(transaction=True) as p:
            for seq, key, value in changes(offset, batch):
                if mine(key) and value is not None:
                    p.set(key, value)
                last = seq
            p.set(f"cdc:offset:{name}", last)
            p.execute()

    assert ex2.evaluate(no_deletes).outcome == INCORRECT


def test_apply_that_ignores_mine_fails(ex2):
    def everything(changes, r, name, mine, batch=500):
        return ex.apply(changes, r, name, lambda key: True, batch)

    res = ex2.evaluate(everything)
    assert res.outcome == INCORRECT and "user:5" in res.message
