"""Self-tests of the pub/sub exercise checkers: the reference passes, known-wrong answers fail."""

from __future__ import annotations

import pytest

from redistutor import lab
from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import pubsub as ex

# -- Try it: predict PUBLISH's return value -----------------------------------------------------------


@pytest.mark.parametrize("channels, patterns, to, deliveries", [
    (["news.tech"], ["news.*"], "news.tech", 2),
    (["news.tech"], ["news.*", "*.tech", "sports.*"], "news.tech", 3),
    ([], ["news.*"], "news.tech.ai", 1),          # '*' crosses dots
    (["news.tech"], [], "news.sports", 0),
    (["a", "b"], ["?"], "a", 2),
])
def test_predict_deliveries(redis_server, r, channels, patterns, to, deliveries):
    make = lambda: ex.predict_deliveries(redis_server, channels, patterns, to)
    assert make().evaluate(deliveries).outcome == CORRECT
    wrong = make().evaluate(deliveries + 1)
    assert wrong.outcome == INCORRECT and f"returned {deliveries}" in wrong.message
    assert make().evaluate(None).outcome == NOT_ATTEMPTED
    assert make().evaluate("2").outcome == INCORRECT
    assert make().evaluate(True).outcome == INCORRECT


# -- Exercise 1: resume --------------------------------------------------------------------------------


def test_resume_reference_passes(redis_server, r):
    res = ex.resume_exercise(redis_server, "prices").evaluate(ex.resume)
    assert res.outcome == CORRECT, res.message
    assert r.exists("prices:seq") == 0 and r.pubsub_numsub("prices")[0][1] == 0   # cleaned up


def test_resume_starter_not_attempted(redis_server, r):
    def starter(r, channel, last_seen):
        raise NotImplementedError

    assert ex.resume_exercise(redis_server, "prices").evaluate(starter).outcome == NOT_ATTEMPTED


def test_resume_reading_the_counter_before_subscribing_fails(redis_server, r):
    def counter_first(r, channel, last_seen):
        published = int(r.get(f"{channel}:seq") or 0)
        p = r.pubsub()
        p.subscribe(channel)
        p.get_message(timeout=1.0)
        return p, list(range(last_seen + 1, published + 1))

    res = ex.resume_exercise(redis_server, "prices").evaluate(counter_first)
    assert res.outcome == INCORRECT and "neither received nor reported missed" in res.message


def test_resume_without_the_counter_fails(redis_server, r):
    def no_counter(r, channel, last_seen):
        p = r.pubsub()
        p.subscribe(channel)
        p.get_message(timeout=1.0)
        return p, []

    res = ex.resume_exercise(redis_server, "prices").evaluate(no_counter)
    assert res.outcome == INCORRECT and "counter" in res.message


def test_resume_off_by_one_fails(redis_server, r):
    def off_by_one(r, channel, last_seen):
        p, missed = ex.resume(r, channel, last_seen)
        return p, [last_seen] + missed

    res = ex.resume_exercise(redis_server, "prices").evaluate(off_by_one)
    assert res.outcome == INCORRECT and "missed lists exactly" in res.message


def test_resume_wrong_shape_fails(redis_server, r):
    res = ex.resume_exercise(redis_server, "prices").evaluate(lambda r, c, n: [5, 6])
    assert res.outcome == INCORRECT and "(pubsub, missed)" in res.message


# -- Exercise 2: sharded room channels -----------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    c = lab.Cluster(3).start()
    yield c
    c.stop()


def test_room_channels_reference_passes(cluster):
    res = ex.room_channels_exercise(cluster).evaluate(ex.room_channels)
    assert res.outcome == CORRECT, res.message


def test_room_channels_untagged_fails(cluster):
    res = ex.room_channels_exercise(cluster).evaluate(
        lambda room: {p: f"room:{room}:{p}" for p in ("messages", "typing", "presence")})
    assert res.outcome == INCORRECT and "one SSUBSCRIBE" in res.message


def test_room_channels_one_tag_for_all_fails(cluster):
    res = ex.room_channels_exercise(cluster).evaluate(
        lambda room: {p: f"{{rooms}}:{room}:{p}" for p in ("messages", "typing", "presence")})
    assert res.outcome == INCORRECT and "spread over every master" in res.message


def test_room_channels_without_the_room_fails(cluster):
    res = ex.room_channels_exercise(cluster).evaluate(
        lambda room: {p: f"room:{{x}}:{p}" for p in ("messages", "typing", "presence")})
    assert res.outcome == INCORRECT and "its own three channels" in res.message


def test_room_channels_wrong_keys_fail(cluster):
    res = ex.room_channels_exercise(cluster).evaluate(lambda room: {"messages": f"room:{{{room}}}"})
    assert res.outcome == INCORRECT and "'presence'" in res.message


def test_room_channels_starter_not_attempted(cluster):
    def starter(room_id):
        raise NotImplementedError

    assert ex.room_channels_exercise(cluster).evaluate(starter).outcome == NOT_ATTEMPTED
