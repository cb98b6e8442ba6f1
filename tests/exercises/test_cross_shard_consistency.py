"""Self-tests of the cross-shard exercise checkers: the reference passes, known-wrong answers fail."""

from __future__ import annotations

import json

import pytest

from redistutor import lab
from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import cross_shard_consistency as ex


@pytest.fixture(scope="module")
def fleet():
    f = lab.Fleet(names=["a", "b"]).start()
    yield f
    f.stop()


@pytest.fixture
def ab(fleet):
    for node in fleet:
        node.r.flushall()
    return fleet["a"].r, fleet["b"].r


def test_stamp_check_reference_passes(ab):
    assert ex.stamp_check(*ab).evaluate(ex.verified_read).outcome == CORRECT


def test_stamp_check_starter_is_not_attempted(ab):
    def starter(a, b, ka, kb):
        raise NotImplementedError

    assert ex.stamp_check(*ab).evaluate(starter).outcome == NOT_ATTEMPTED
    ex.stamp_check(*ab).check(starter)  # shows "not attempted", does not raise


def test_stamp_check_ignoring_tokens_fails(ab):
    def trusting(a, b, ka, kb):
        return json.loads(a.get(ka).partition("|")[2]), json.loads(b.get(kb).partition("|")[2])

    res = ex.stamp_check(*ab).evaluate(trusting)
    assert res.outcome == INCORRECT and "torn pair" in res.message


def test_stamp_check_plain_split_fails_on_a_pipe_in_the_json(ab):
    def split_all(a, b, ka, kb):
        ta, ja = a.get(ka).split("|")
        tb, jb = b.get(kb).split("|")
        return (json.loads(ja), json.loads(jb)) if ta == tb else None

    res = ex.stamp_check(*ab).evaluate(split_all)
    assert res.outcome == INCORRECT and "your code raised ValueError" in res.message


def test_stamp_check_missing_part_accepted_fails(ab):
    def lenient(a, b, ka, kb):
        ra, rb = a.get(ka), b.get(kb)
        if ra and rb and ra.partition("|")[0] != rb.partition("|")[0]:
            return None
        return json.loads(ra.partition("|")[2]), (json.loads(rb.partition("|")[2]) if rb else None)

    res = ex.stamp_check(*ab).evaluate(lenient)
    assert res.outcome == INCORRECT and "one part missing" in res.message


def test_commit_marker_reference_passes(ab):
    assert ex.commit_marker(*ab).evaluate(ex.marked_write).outcome == CORRECT


def test_commit_marker_written_first_fails(ab):
    def marker_first(a, b, prefix, txid, profile, settings):
        a.set(f"{prefix}:committed", txid)
        a.set(f"{prefix}:profile:{txid}", json.dumps(profile))
        b.set(f"{prefix}:settings:{txid}", json.dumps(settings))

    res = ex.commit_marker(*ab).evaluate(marker_first)
    assert res.outcome == INCORRECT and "marker must still point at the previous write" in res.message


def test_commit_marker_in_finally_fails(ab):
    def always_commit(a, b, prefix, txid, profile, settings):
        try:
            a.set(f"{prefix}:profile:{txid}", json.dumps(profile))
            b.set(f"{prefix}:settings:{txid}", json.dumps(settings))
        finally:
            a.set(f"{prefix}:committed", txid)

    res = ex.commit_marker(*ab).evaluate(always_commit)
    assert res.outcome == INCORRECT and "THEN the marker" in res.message


def test_commit_marker_overwriting_in_place_fails(ab):
    def in_place(a, b, prefix, txid, profile, settings):
        a.set(f"{prefix}:profile:{txid}", json.dumps(profile))
        b.set(f"{prefix}:settings", json.dumps(settings))  # not tagged with the txid
        a.set(f"{prefix}:committed", txid)

    res = ex.commit_marker(*ab).evaluate(in_place)
    assert res.outcome == INCORRECT and "finds both parts" in res.message


@pytest.fixture
def db():
    from redistutor.db import Database
    with Database() as d:
        yield d


@pytest.mark.parametrize("held_for", [1, 4])
def test_backoff_prediction_right_and_wrong(fleet, ab, db, held_for):
    shards = {"profile": ab[0], "settings": ab[1]}
    right = {"repaired": held_for > 3, "consistent": held_for <= 3}
    assert ex.backoff_prediction(shards, db, held_for).evaluate(right).outcome == CORRECT
    wrong = {"repaired": False, "consistent": True} if held_for > 3 else {"repaired": True, "consistent": False}
    assert ex.backoff_prediction(shards, db, held_for).evaluate(wrong).outcome == INCORRECT
    # "backing off always prevents the repair" is the belief this step corrects
    assert ex.backoff_prediction(shards, db, held_for).evaluate(None).outcome == NOT_ATTEMPTED
    assert ex.backoff_prediction(shards, db, held_for).evaluate({"repaired": 1}).outcome == INCORRECT
