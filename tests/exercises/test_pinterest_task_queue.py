"""Self-tests of the pinterest-task-queue exercise checkers: the reference passes, known-wrong answers fail."""

from __future__ import annotations

import pytest
import redis

from redistutor.check import CORRECT, INCORRECT, NOT_ATTEMPTED
from redistutor.exercises import pinterest_task_queue as ex
from redistutor.patterns.reliable_queue import ReliableQueue
from redistutor.scenarios import pinterest_task_queue as sc


@pytest.fixture(scope="module")
def fleet():
    f = sc.start_fleet()
    yield f
    f.stop()
    sc.close_sinks()


@pytest.fixture
def ex1(fleet):
    return ex.move_shard_exercise([fleet["cache1"].r, fleet["cache2"].r, fleet["shared"].r])


@pytest.fixture
def ex2(fleet):
    return ex.enqueue_exercise(fleet["queue"], fleet["cache1"].r)


# -- exercise 1: move a virtual shard ------------------------------------------------------------


def test_move_shard_reference_passes(ex1):
    assert ex1.evaluate(ex.move_shard).outcome == CORRECT


def test_move_shard_starter_is_not_attempted(ex1):
    def starter(p, function, shard, to):
        raise NotImplementedError

    assert ex1.evaluate(starter).outcome == NOT_ATTEMPTED


def test_move_shard_that_only_repoints_the_router_fails(ex1):
    def repoint(p, function, shard, to):
        p.placement[function][shard] = to

    res = ex1.evaluate(repoint)
    assert res.outcome == INCORRECT and "exactly shard" in res.message


def test_move_shard_that_copies_without_deleting_fails(ex1):
    def copy_only(p, function, shard, to):
        src = p.routes[function][p.placement[function][shard]]
        dst = p.routes[function][to]
        for key in [k for k in src.scan_iter() if p.shard(k) == shard]:
            dst.restore(key, max(src.pttl(key), 0), src.dump(key), replace=True)
        p.placement[function][shard] = to

    res = ex1.evaluate(copy_only)
    assert res.outcome == INCORRECT and "no longer holds" in res.message


def test_move_shard_that_drops_the_ttl_fails(ex1):
    def no_ttl(p, function, shard, to):
        src = p.routes[function][p.placement[function][shard]]
        dst = p.routes[function][to]
        for key in [k for k in src.scan_iter() if p.shard(k) == shard]:
            dst.set(key, src.get(key))
            src.delete(key)
        p.placement[function][shard] = to

    res = ex1.evaluate(no_ttl)
    assert res.outcome == INCORRECT and "keeps its TTL" in res.message


def test_move_shard_that_moves_the_whole_instance_fails(ex1):
    def everything(p, function, shard, to):
        old = p.placement[function][shard]
        src, dst = p.routes[function][old], p.routes[function][to]
        for key in list(src.scan_iter()):
            dst.restore(key, max(src.pttl(key), 0), src.dump(key), replace=True)
            src.delete(key)
        p.placement[function][shard] = to

    res = ex1.evaluate(everything)
    assert res.outcome == INCORRECT and "exactly shard" in res.message


def test_move_shard_that_forgets_the_router_fails(ex1):
    def data_only(p, function, shard, to):
        src = p.routes[function][p.placement[function][shard]]
        dst = p.routes[function][to]
        for key in [k for k in src.scan_iter() if p.shard(k) == shard]:
            dst.restore(key, max(src.pttl(key), 0), src.dump(key), replace=True)
            src.delete(key)

    res = ex1.evaluate(data_only)
    assert res.outcome == INCORRECT and "router must send" in res.message


# -- exercise 2: a producer that is told ----------------------------------------------------------


def test_enqueue_reference_passes(ex2, fleet):
    assert ex2.evaluate(ex.enqueue).outcome == CORRECT
    # the checker leaves the queue instance as it found it
    cfg = fleet["queue"].r.config_get("maxmemory*")
    assert (cfg["maxmemory"], cfg["maxmemory-policy"]) == (str(sc.POLICIES["queue"][0]), "noeviction")


def test_enqueue_starter_is_not_attempted(ex2):
    def starter(p, job, tasks):
        raise NotImplementedError

    assert ex2.evaluate(starter).outcome == NOT_ATTEMPTED


def test_enqueue_that_swallows_the_error_fails(ex2):
    def swallow(p, job, tasks):
        q = ReliableQueue(p.client("queue", f"tasks:{job}"), f"tasks:{job}")
        for task in tasks:
            try:
                q.push(task)
            except redis.exceptions.ResponseError:
                pass
        return []

    res = ex2.evaluate(swallow)
    assert res.outcome == INCORRECT and "must be returned, not dropped" in res.message


def test_enqueue_to_the_cache_instance_fails(ex2):
    def wrong_function(p, job, tasks):
        ReliableQueue(p.client("cache", f"tasks:{job}"), f"tasks:{job}").push(*tasks)
        return []

    res = ex2.evaluate(wrong_function)
    assert res.outcome == INCORRECT and "queue instance" in res.message


def test_enqueue_pipeline_ignoring_errors_fails(ex2):
    def pipelined(p, job, tasks):
        r = p.client("queue", f"tasks:{job}")
        pipe = r.pipeline(transaction=False)
        for task in tasks:
            pipe.lpush(f"tasks:{job}:queue", task)
        pipe.execute(raise_on_error=False)
        return []

    assert ex2.evaluate(pipelined).outcome == INCORRECT


def test_enqueue_that_keeps_going_after_a_refusal_returns_out_of_order_or_fails(ex2):
    def keep_going(p, job, tasks):
        q = ReliableQueue(p.client("queue", f"tasks:{job}"), f"tasks:{job}")
        left = []
        for task in tasks:
            try:
                q.push(task)
            except redis.exceptions.OutOfMemoryError:
                left.append(task)
        return left[:-1]          # and loses one on the way

    assert ex2.evaluate(keep_going).outcome == INCORRECT


# -- try it: the shared instance's policy --------------------------------------------------------


def test_policy_prediction_is_checked_against_a_run(fleet):
    assert ex.policy_prediction(fleet, "allkeys-lru").evaluate(True).outcome == CORRECT
    assert ex.policy_prediction(fleet, "allkeys-lru").evaluate(False).outcome == INCORRECT
    assert ex.policy_prediction(fleet, "volatile-lru").evaluate(False).outcome == CORRECT
    assert ex.policy_prediction(fleet, "noeviction").evaluate(True).outcome == INCORRECT
    assert ex.policy_prediction(fleet, "allkeys-lru").evaluate(None).outcome == NOT_ATTEMPTED
    assert fleet["shared"].r.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"
