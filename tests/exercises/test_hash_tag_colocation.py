"""Self-tests of the hash-tag exercise checkers on a real cluster: reference passes, wrong answers fail."""

from __future__ import annotations

import pytest

from redistutor import lab
from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import hash_tag_colocation as ex


@pytest.fixture(scope="module")
def cluster():
    c = lab.Cluster(3).start()
    yield c
    c.stop()


@pytest.fixture
def masters(cluster):
    return {name: cluster[name].r for name in ("m1", "m2", "m3")}


def test_hash_rule_reference_passes(masters):
    assert ex.hash_rule(masters["m1"]).evaluate(ex.hashed_part).outcome == CORRECT


def test_hash_rule_starter_not_attempted(masters):
    def starter(key):
        raise NotImplementedError

    assert ex.hash_rule(masters["m1"]).evaluate(starter).outcome == NOT_ATTEMPTED


def test_hash_rule_ignoring_tags_fails(masters):
    res = ex.hash_rule(masters["m1"]).evaluate(lambda key: key)
    assert res.outcome == INCORRECT and "user:{123}:profile" in res.message


def test_hash_rule_empty_tag_counted_fails(masters):
    def empty_ok(key):
        start = key.find("{")
        end = key.find("}", start + 1)
        return key[start + 1:end] if start != -1 and end != -1 else key

    res = ex.hash_rule(masters["m1"]).evaluate(empty_ok)
    assert res.outcome == INCORRECT and "'{}'" in res.message


def test_hash_rule_last_brace_fails(masters):
    def last(key):
        start, end = key.rfind("{"), key.rfind("}")
        return key[start + 1:end] if -1 < start < end - 1 else key

    res = ex.hash_rule(masters["m1"]).evaluate(last)
    assert res.outcome == INCORRECT and "{user}{x}" in res.message


def test_order_keys_reference_passes(cluster, masters):
    res = ex.order_keys_exercise(cluster.rc, masters, orders=120).evaluate(ex.order_keys)
    assert res.outcome == CORRECT, res.message
    assert sum(c.dbsize() for c in masters.values()) == 0  # the checker cleans up


def test_order_keys_untagged_fails(cluster, masters):
    def untagged(oid):
        return {p: f"order:{oid}:{p}" for p in ("header", "items", "status")}

    res = ex.order_keys_exercise(cluster.rc, masters, orders=120).evaluate(untagged)
    assert res.outcome == INCORRECT and "share a slot" in res.message


def test_order_keys_coarse_tag_fails(cluster, masters):
    def coarse(oid):
        return {p: f"{{orders}}:{oid}:{p}" for p in ("header", "items", "status")}

    res = ex.order_keys_exercise(cluster.rc, masters, orders=120).evaluate(coarse)
    assert res.outcome == INCORRECT and "spread over every master" in res.message


def test_order_keys_without_the_id_fails(cluster, masters):
    res = ex.order_keys_exercise(cluster.rc, masters, orders=120).evaluate(
        lambda oid: {p: f"order:{{x}}:{p}" for p in ("header", "items", "status")})
    assert res.outcome == INCORRECT and "its own three keys" in res.message


@pytest.mark.parametrize("keys, runs", [
    (["order:{A-17}:items", "order:{A-17}:status", "order:A-17:header"], False),
    (["order:{A-17}:items", "order:{A-17}:status", "order:{A-17}:header"], True),
    (["a", "a"], True),
])
def test_predict_multi_right_and_wrong(cluster, masters, keys, runs):
    assert ex.predict_multi(cluster.rc, keys).evaluate(runs).outcome == CORRECT
    assert ex.predict_multi(cluster.rc, keys).evaluate(not runs).outcome == INCORRECT
    assert ex.predict_multi(cluster.rc, keys).evaluate(None).outcome == NOT_ATTEMPTED
    assert ex.predict_multi(cluster.rc, keys).evaluate("yes").outcome == INCORRECT
    assert sum(c.dbsize() for c in masters.values()) == 0   # the check cleans up after itself
