"""Self-tests of the multi-node lab's exercises: the references pass, known-wrong answers fail.

Real processes throughout: a primary with a replica behind a link proxy, a 3-master cluster with
one replica each, real kill -9.
"""

from __future__ import annotations

import time

import pytest
import redis

from redistutor import lab
from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import multi_node_lab as ex


@pytest.fixture(scope="module")
def rep():
    with lab.Replicated(replicas=1) as topology:
        yield topology


# `cluster` (3 masters, a replica each) is the shared fixture in tests/conftest.py.


# -- Try it: what kill -9 loses ----------------------------------------------------------------

@pytest.mark.parametrize("mode, lost", [("none", 20), ("rdb", 20), ("aof-no", 0), ("aof-everysec", 0)])
def test_persistence_prediction_reference_passes(mode, lost):
    try_it = ex.persistence_prediction(mode)
    assert try_it.reference == lost
    assert try_it.evaluate(lost).outcome == CORRECT


def test_persistence_prediction_crediting_fsync_for_kill9_fails():
    # The old claim: only fsync-always survives kill -9, so everysec would lose something.
    res = ex.persistence_prediction("aof-everysec").evaluate(5)
    assert res.outcome == INCORRECT and "before each reply" in res.message


def test_persistence_prediction_not_attempted_and_nonsense():
    try_it = ex.persistence_prediction("none")
    assert try_it.evaluate(...).outcome == NOT_ATTEMPTED
    assert try_it.evaluate("all").outcome == INCORRECT
    assert ex.persistence_prediction("fsync").evaluate(0).outcome == INCORRECT


# -- Exercise 1: WAIT on the writing connection ---------------------------------------------------

def test_wait_reference_passes(rep):
    assert ex.wait_exercise(rep).evaluate(ex.write_and_wait).outcome == CORRECT


def test_wait_starter_is_not_attempted(rep):
    def starter(r, key, value):
        raise NotImplementedError

    assert ex.wait_exercise(rep).evaluate(starter).outcome == NOT_ATTEMPTED


def test_wait_from_a_connection_that_never_wrote_fails(rep):
    def wait_elsewhere(r, key, value):
        r.set(key, value)
        other = redis.Redis(connection_pool=redis.ConnectionPool(**r.connection_pool.connection_kwargs))
        try:
            return other.wait(1, 200)
        finally:
            other.close()

    res = ex.wait_exercise(rep).evaluate(wait_elsewhere)
    assert res.outcome == INCORRECT and "must report 0" in res.message


def test_wait_without_waiting_fails(rep):
    def optimist(r, key, value):
        r.set(key, value)
        return 1

    res = ex.wait_exercise(rep).evaluate(optimist)
    # Caught either way: the replica may not have the unawaited write yet when the checker looks
    # (on a loaded machine), or, once the link is cut, the claimed 1 is wrong.
    assert res.outcome == INCORRECT
    assert "must report 0" in res.message or "the replica has the write WAIT counted" in res.message


def test_wait_returning_a_bool_fails(rep):
    def as_bool(r, key, value):
        p = r.pipeline(transaction=False)
        p.set(key, value)
        p.wait(1, 200)
        return p.execute()[1] >= 1

    res = ex.wait_exercise(rep).evaluate(as_bool)
    assert res.outcome == INCORRECT and "an int" in res.message


def test_wait_without_the_write_fails(rep):
    def no_write(r, key, value):
        return r.wait(1, 200)

    res = ex.wait_exercise(rep).evaluate(no_write)
    assert res.outcome == INCORRECT and "replica has the write" in res.message


# -- Exercise 2: kill the key's master, wait until the key is served again ------------------------

def test_failover_reference_passes_and_leaves_the_cluster_whole(cluster):
    assert ex.failover_exercise(cluster).evaluate(ex.fail_over).outcome == CORRECT
    assert all(node.running for node in cluster) and len(cluster.masters()) == 3


def test_failover_without_waiting_fails(cluster):
    def kill_and_go(cluster, key):
        owner = cluster.owner(key)
        owner.kill()
        return owner.name

    res = ex.failover_exercise(cluster).evaluate(kill_and_go)
    assert res.outcome == INCORRECT and "another node serves" in res.message
    assert all(node.running for node in cluster)  # the checker restored the cluster


def test_failover_killing_the_wrong_master_fails(cluster):
    def kill_m1(cluster, key):
        victim = cluster["m1"] if cluster.owner(key).name != "m1" else cluster["m2"]
        victim.kill()
        time.sleep(0.1)
        return cluster.owner(key).name

    res = ex.failover_exercise(cluster).evaluate(kill_m1)
    assert res.outcome == INCORRECT and "was killed" in res.message
    assert all(node.running for node in cluster)


def test_failover_starter_is_not_attempted(cluster):
    def starter(cluster, key):
        raise NotImplementedError

    assert ex.failover_exercise(cluster).evaluate(starter).outcome == NOT_ATTEMPTED
