"""Users (hashes + hand-made indexes, atomic add and delete) and durable_set (SET + WAITAOF on one
connection), on a real Redis: the state each leaves, the commands each sends, and the crash and race
that the non-atomic versions lose to."""

from __future__ import annotations

import pytest

from redistutor import trace
from redistutor.lab import Node, Replicated
from redistutor.patterns.redis_as_primary_database import Users, durable_set


@pytest.fixture
def users(r):
    return Users(r, "u")


def test_keys_layout(users):
    assert users.keys("7", "ann@x") == ["u:7", "u:email:ann@x", "us:by:age"]


def test_default_prefix(r):
    Users(r).add("1", "a@x", 30)
    assert r.hgetall("user:1") == {"email": "a@x", "age": "30"}
    assert r.get("user:email:a@x") == "1" and r.zscore("users:by:age", "1") == 30


def test_add_writes_the_record_and_both_indexes_in_one_transaction(r, users):
    with trace(r) as t:
        users.add("7", "ann@x", 41, name="Ann", city="Oslo")
    assert r.hgetall("u:7") == {"email": "ann@x", "age": "41", "name": "Ann", "city": "Oslo"}
    assert r.get("u:email:ann@x") == "7"
    assert r.zrange("us:by:age", 0, -1, withscores=True) == [["7", 41.0]]
    assert t.round_trips == 1 and t.names() == ["MULTI", "HSET", "SET", "ZADD", "EXEC"]


def test_add_returns_none_and_keeps_other_users(r, users):
    assert users.add("1", "a@x", 20) is None
    users.add("2", "b@x", 30)
    assert r.zrange("us:by:age", 0, -1) == ["1", "2"] and r.get("u:email:a@x") == "1"


def test_delete_removes_record_and_both_entries_only(r, users):
    users.add("1", "a@x", 20)
    users.add("2", "b@x", 30)
    with trace(r) as t:
        assert users.delete("1") is True
    assert not r.exists("u:1", "u:email:a@x")
    assert r.zrange("us:by:age", 0, -1) == ["2"] and r.hget("u:2", "email") == "b@x"
    assert r.get("u:email:b@x") == "2"
    assert t.names()[0] == "HGET" and t.names()[-1] == "EVALSHA" and t.count("HGET") == 1
    assert t.commands[-1].args[1:] == ("3", "u:1", "u:email:a@x", "us:by:age", "1", "a@x")


def test_delete_of_a_missing_user_is_false_and_touches_nothing(r, users):
    users.add("1", "a@x", 20)
    with trace(r) as t:
        assert users.delete("9") is False
    assert t.names() == ["HGET"]
    assert r.exists("u:1", "u:email:a@x") == 2 and r.zcard("us:by:age") == 1


def test_delete_twice(users):
    users.add("1", "a@x", 20)
    assert users.delete("1") is True and users.delete("1") is False


def test_delete_retries_when_the_email_changed_under_it(r, users):
    users.add("1", "a@x", 20)
    real = users._delete
    calls = []

    def email_changes_first(keys, args):
        if not calls:  # another client moves the email between our HGET and our script
            with r.pipeline(transaction=True) as tx:
                tx.hset("u:1", "email", "b@x")
                tx.set("u:email:b@x", "1")
                tx.delete("u:email:a@x")
                tx.execute()
        calls.append(list(keys))
        return real(keys=keys, args=args)

    users._delete = email_changes_first
    assert users.delete("1") is True
    assert calls == [["u:1", "u:email:a@x", "us:by:age"], ["u:1", "u:email:b@x", "us:by:age"]]
    assert not r.exists("u:1", "u:email:a@x", "u:email:b@x") and r.zcard("us:by:age") == 0


def test_the_delete_script_refuses_a_stale_email(r, users):
    users.add("1", "a@x", 20)
    assert users._delete(keys=users.keys("1", "z@x"), args=["1", "z@x"]) == 0
    assert r.exists("u:1", "u:email:a@x") == 2 and r.zcard("us:by:age") == 1


def test_naive_delete_killed_half_way_leaves_dangling_entries_and_the_pattern_does_not(r, users):
    from redistutor.scenarios.redis_as_primary_database import dangling, naive_delete

    users.add("1", "a@x", 20)
    users.add("2", "b@x", 30)

    class Killed(Exception):
        pass

    def crash():
        raise Killed

    with pytest.raises(Killed):
        naive_delete(r, users, "1", hook=crash)
    assert dangling(r, users) == {"email": ["a@x"], "age": ["1"]}
    users.delete("2")
    assert dangling(r, users) == {"email": ["a@x"], "age": ["1"]}


@pytest.fixture(scope="module")
def aof_node():
    node = Node("durable", persistence="aof-always").start()
    yield node
    node.stop()


def test_durable_set_is_one_round_trip_on_the_writing_connection(aof_node):
    c = aof_node.client(socket_timeout=5)
    with trace(c) as t:
        acks = durable_set(c, "k", "v")
    assert acks == (1, 0) and type(acks[0]) is int and type(acks[1]) is int
    assert c.get("k") == "v"
    assert t.round_trips == 1 and [cmd.line() for cmd in t.commands] == ["SET k v", "WAITAOF 1 0 1000"]
    c.close()


def test_durable_set_passes_replicas_and_timeout(aof_node):
    c = aof_node.client(socket_timeout=5)
    with trace(c) as t:
        acks = durable_set(c, "k2", "v2", replicas=1, timeout_ms=50)
    assert acks == (1, 0)          # no replica here: timed out with the local fsync only
    assert t.commands[1].line() == "WAITAOF 1 1 50" and c.get("k2") == "v2"
    c.close()


def test_durable_set_counts_a_replica_that_fsynced_and_not_a_frozen_one():
    with Replicated(1, persistence="aof-always", name="pattern-test") as lab:
        c = lab.primary.client(socket_timeout=10)
        assert durable_set(c, "k", "1", replicas=1, timeout_ms=5000) == (1, 1)
        lab.replicas[0].pause()
        try:
            assert durable_set(c, "k", "2", replicas=1, timeout_ms=200) == (1, 0)
            assert lab.primary.r.get("k") == "2"   # a timed-out WAITAOF undoes nothing
        finally:
            lab.replicas[0].resume()
        c.close()


def test_durable_set_without_aof_is_refused(r):
    import redis

    with pytest.raises(redis.ResponseError, match="appendonly"):
        durable_set(r, "k", "v")
