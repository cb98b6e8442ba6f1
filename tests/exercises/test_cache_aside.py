"""Self-tests of the cache-aside exercise checkers: the reference passes, known-wrong answers fail."""

from __future__ import annotations

import json

import pytest

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exceptions import CheckFailed
from redistutor.exercises import cache_aside as ex


def verdict(exercise, answer):
    return exercise.evaluate(answer)


def test_read_path_reference_passes(r, db):
    assert verdict(ex.read_path(r, db), ex.get_user).outcome == CORRECT


def test_read_path_starter_is_not_attempted(r, db):
    def starter(r, db, key, user_id):
        raise NotImplementedError

    res = verdict(ex.read_path(r, db), starter)
    assert res.outcome == NOT_ATTEMPTED
    ex.read_path(r, db).check(starter)  # shows "not attempted" and does not raise


def test_read_path_always_db_fails(r, db):
    def no_cache(r, db, key, user_id):
        return db.get_user(user_id)

    res = verdict(ex.read_path(r, db), no_cache)
    assert res.outcome == INCORRECT and "is stored in Redis" in res.message


def test_read_path_without_ttl_fails(r, db):
    def forever(r, db, key, user_id):
        cached = r.get(key)
        if cached:
            return json.loads(cached)
        row = db.get_user(user_id)
        r.set(key, json.dumps(row))
        return row

    res = verdict(ex.read_path(r, db), forever)
    assert res.outcome == INCORRECT and "expires within 60 s" in res.message and "-1" in res.message


def test_read_path_never_reading_cache_fails(r, db):
    def write_only(r, db, key, user_id):
        row = db.get_user(user_id)
        if row:
            r.set(key, json.dumps(row), ex=60)
        return row

    res = verdict(ex.read_path(r, db), write_only)
    assert res.outcome == INCORRECT and "read the DB once" in res.message


def test_learner_exception_becomes_a_failed_check(r, db):
    def buggy(r, db, key, user_id):
        return json.loads(r.get(key))  # TypeError on a miss

    res = verdict(ex.read_path(r, db), buggy)
    assert res.outcome == INCORRECT and "your code raised TypeError" in res.message
    with pytest.raises(CheckFailed):
        ex.read_path(r, db).check(buggy)


def test_write_path_reference_passes(r, db):
    assert verdict(ex.write_path(r, db), ex.update_user_name).outcome == CORRECT


def test_write_path_forgetting_the_delete_fails(r, db):
    def no_delete(r, db, key, user_id, name):
        db.update_user(user_id, name=name)

    res = verdict(ex.write_path(r, db), no_delete)
    assert res.outcome == INCORRECT and "no longer holds the old row" in res.message


def test_write_path_cache_only_fails(r, db):
    def cache_only(r, db, key, user_id, name):
        row = db.get_user(user_id)
        r.set(key, json.dumps({**row, "name": name}))

    res = verdict(ex.write_path(r, db), cache_only)
    assert res.outcome == INCORRECT and "database holds the new name" in res.message


def test_write_path_delete_before_write_fails(r, db):
    def wrong_order(r, db, key, user_id, name):
        r.delete(key)
        db.update_user(user_id, name=name)

    res = verdict(ex.write_path(r, db), wrong_order)
    assert res.outcome == INCORRECT and "DEL, then DB write" in res.message


def test_batch_read_reference_passes(r, db):
    assert verdict(ex.batch_read(r, db), ex.get_users).outcome == CORRECT


def test_batch_read_one_round_trip_per_user_fails(r, db):
    def one_by_one(r, db, prefix, user_ids):
        return [ex.get_user(r, db, f"{prefix}:{i}", i) for i in user_ids]

    res = verdict(ex.batch_read(r, db), one_by_one)
    assert res.outcome == INCORRECT and "one round trip (MGET)" in res.message


def test_batch_read_all_from_db_fails(r, db):
    def ignore_cache(r, db, prefix, user_ids):
        rows = [db.get_user(i) for i in user_ids]
        r.mset({f"{prefix}:{i}": json.dumps(row) for i, row in zip(user_ids, rows) if row})
        return rows

    res = verdict(ex.batch_read(r, db), ignore_cache)
    assert res.outcome == INCORRECT and "only for the ids Redis did not have" in res.message


def test_batch_read_without_ttl_fails(r, db):
    def forever(r, db, prefix, user_ids):
        cached = r.mget([f"{prefix}:{i}" for i in user_ids])
        rows = [json.loads(c) if c else db.get_user(i) for c, i in zip(cached, user_ids)]
        r.mset({f"{prefix}:{i}": json.dumps(row) for c, i, row in zip(cached, user_ids, rows) if row and not c})
        return rows

    res = verdict(ex.batch_read(r, db), forever)
    assert res.outcome == INCORRECT and "expires within 60 s" in res.message
