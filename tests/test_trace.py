"""The command trace: names, arguments, threads, clients, and round trips counted correctly."""

from __future__ import annotations

import threading

import redis
from redis.client import Pipeline

from redistutor import check, set_options, trace


def test_single_commands_and_pipelines(r):
    with trace(r) as t:
        r.set("a", 1, nx=True, px=500)
        r.get("a")
        p = r.pipeline(transaction=False)
        for i in range(10):
            p.incr(f"c{i}")
        p.execute()
        tx = r.pipeline()
        tx.set("b", 1)
        tx.get("b")
        tx.execute()
    assert t.names()[:2] == ["SET", "GET"]
    assert t.commands[0].args == ("a", "1", "NX", "PX", "500") and t.commands[0].has("nx", "PX")
    assert t.count("INCRBY") == 10
    assert t.names()[-4:] == ["MULTI", "SET", "GET", "EXEC"]
    assert t.round_trips == 4  # SET, GET, the 10-command pipeline, the transaction
    assert len({c.round_trip for c in t.select("INCRBY")}) == 1


def test_watch_then_multi_counts_each_immediate_command(r):
    r.set("k", 1)
    with trace(r) as t:
        with r.pipeline() as p:
            p.watch("k")
            value = int(p.get("k"))
            p.multi()
            p.set("k", value + 1)
            p.execute()
    assert t.names() == ["WATCH", "GET", "MULTI", "SET", "EXEC"]
    assert t.round_trips == 3


def test_threads_clients_and_errors_are_recorded(redis_server, r):
    other = redis_server.client()
    with trace(alice=r, bob=other) as t:
        r.set("x", 1)
        th = threading.Thread(target=lambda: other.get("x"), name="reader-1")
        th.start()
        th.join()
        try:
            r.incr("not-a-number-key") if r.set("not-a-number-key", "abc") else None
        except redis.exceptions.ResponseError:
            pass
    first_two = [(c.name, c.client, c.thread) for c in t.commands[:2]]
    assert first_two == [("SET", "alice", "MainThread"), ("GET", "bob", "reader-1")]
    assert t.commands[-1].error == "ResponseError: value is not an integer or out of range"
    with set_options(display="text"):
        text = repr(t)
    assert text.splitlines()[0] == "4 commands in 4 round trips"
    assert "bob     reader-1    GET x" in text and "✗ ResponseError" in text
    other.close()


def test_untraced_clients_are_ignored_and_hooks_are_restored(redis_server, r):
    other = redis_server.client()
    orig = (redis.Redis.execute_command, Pipeline.execute, Pipeline.immediate_execute_command)
    with trace(r) as t:
        other.set("quiet", 1)
        with trace(other) as t2:
            other.get("quiet")
    assert len(t) == 0 and t2.names() == ["GET"]
    assert (redis.Redis.execute_command, Pipeline.execute, Pipeline.immediate_execute_command) == orig
    other.close()


def test_server_trace_strips_namespace_and_renders_exactly(redis_server, r):
    with trace(redis_server) as t:
        r.set(redis_server.key("user:1"), "x" * 40)
    with set_options(display="text"):
        assert repr(t) == ("1 command in 1 round trip\n"
                           "#  round trip  command\n"
                           "-  ----------  -----------------------------------\n"
                           "1           1  SET user:1 xxxxxxxxxxxxxxxxxxxxxxx…")
    check.commands_were(t, ["SET"], show=False)
    check.round_trips(t, 1, show=False)
