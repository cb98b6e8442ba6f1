"""The queue notebooks' toolkit (redistutor/sink.py) on a real Redis and real SQLite files."""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import pytest
import redis

from redistutor import lab
from redistutor import sink as toolkit
from redistutor.race import run_in_thread
from redistutor.sink import CommandStats, Sampler, Sink, commandstats, config, kill_client, standby, takeover

xread_entries, close_sinks = toolkit.xread_entries, toolkit.close_sinks

# -- Sink -------------------------------------------------------------------------------------------


def test_sink_counts_a_duplicate_and_a_loss():
    with Sink() as sink:
        sink.produce("m1", "m2", "m3")
        sink.record("m1", "w1")
        sink.record("m2", "w1")
        sink.record("m2", "w2")            # m2's side effect ran twice; m3 never ran
        sink.record("m9", "w2")            # an id nobody produced
        rep = sink.report()
        assert rep == dict(produced=3, effects=4, distinct=3, lost=["m3"], duplicated={"m2": 2},
                           unknown=["m9"], results_match=False)
        assert sink.counts() == {"m1": 1, "m2": 2, "m9": 1}
        assert sink.results() == {"m1", "m2", "m9"}       # idempotent: m2 once
        assert sink.by_worker() == {"w1": 2, "w2": 2}
        assert sink.ids() == ["m1", "m2", "m2", "m9"] and sink.count() == 4
        assert sink.last() == ("m9", "w2", "")
        text = str(sink.table())
        assert "m3" in text and "m2 x2" in text


def test_sink_report_against_a_given_list_and_a_clean_run():
    with Sink() as sink:
        for i in ("a", "b"):
            sink.record(i, "w1")
        assert sink.report(["a", "b"]) == dict(produced=2, effects=2, distinct=2, lost=[], duplicated={},
                                                unknown=[], results_match=True)
        assert "none" in str(sink.table(["a", "b"]))


def test_produce_keeps_the_first_record_and_its_order():
    with Sink() as sink:
        sink.produce("t2", "t1", info="first")
        sink.produce("t1", info="again")            # already produced: unchanged
        assert sink.produced() == ["t2", "t1"]
        assert sink.produced_info() == {"t2": "first", "t1": "first"}


def test_runs_keep_experiments_apart_and_clear_forgets_one():
    with Sink() as sink:
        sink.produce("1", run="a")
        sink.record("1", "w1", run="a", info="5-0")
        sink.record("1", "w1", run="b")
        assert sink.counts("a") == {"1": 1} and sink.counts("b") == {"1": 1} and sink.counts() == {}
        assert sink.last("a") == ("1", "w1", "5-0") and sink.last("c") is None
        assert sink.effects("a") == [("1", "w1", "5-0")]
        sink.clear("a")
        assert sink.produced("a") == [] and sink.count("a") == 0 and sink.results("a") == set()
        assert sink.count("b") == 1


def test_a_second_connection_to_the_file_sees_the_same_rows():
    """Worker processes open the notebook's sink by path; rows from both land in one file."""
    with Sink() as sink:
        other = Sink(sink.path)
        try:
            sink.record("m1", "w1")
            other.record("m1", "w2")
            assert sink.counts() == {"m1": 2} and other.report(["m1"])["duplicated"] == {"m1": 2}
        finally:
            other.close()


def test_threads_may_share_one_sink():
    with Sink() as sink:
        def work(k: int) -> None:
            for i in range(50):
                sink.record(f"{k}-{i}", f"t{k}")
        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sink.count() == 200 and len(sink.results()) == 200


def test_a_failed_record_leaves_no_half_row():
    with Sink() as sink:
        sink.db.execute("CREATE TRIGGER boom BEFORE INSERT ON results WHEN NEW.id = 'bad'"
                        " BEGIN SELECT RAISE(ABORT, 'refused'); END")
        with pytest.raises(Exception, match="refused"):
            sink.record("bad", "w1")
        assert sink.count() == 0                   # the effects row was rolled back with it
        sink.record("good", "w1")
        assert sink.ids() == ["good"]


def test_close_sinks_closes_and_deletes_fresh_sinks():
    a, b = Sink(), Sink()
    path = a.path
    close_sinks()
    assert not os.path.exists(path)
    with pytest.raises(sqlite3.ProgrammingError):
        b.count()
    close_sinks()                                   # nothing left: no error


def test_repr_names_the_file():
    with Sink() as sink:
        assert sink.path in repr(sink)


# -- Sampler ------------------------------------------------------------------------------------------


def test_sampler_samples_until_stopped_then_once_more():
    n = {"v": 0}

    def read() -> int:
        n["v"] += 1
        return n["v"]

    s = Sampler(read, every_ms=1).start()
    time.sleep(0.05)
    samples = s.stop()
    values = [v for _, v in samples]
    assert values == list(range(1, len(values) + 1)) and len(values) >= 3
    assert s.values() == values
    assert [t for t, _ in samples] == sorted(t for t, _ in samples)
    after = n["v"]
    time.sleep(0.02)
    assert n["v"] == after                      # the thread has ended


def test_sampler_without_final_sample_and_without_keeping():
    calls = []
    s = Sampler(lambda: calls.append(1), every_ms=1, final=False, keep=False)
    with s:
        time.sleep(0.02)
    assert s.samples == [] and len(calls) >= 1
    n = len(calls)
    time.sleep(0.02)
    assert len(calls) == n


def test_sampler_final_sample_is_the_end_state():
    state = {"x": 0}
    s = Sampler(lambda: state["x"], every_ms=1000).start()     # one sample at the start
    state["x"] = 7
    assert s.stop()[-1][1] == 7


def test_sampler_raises_what_read_raised():
    def read():
        raise ValueError("broken invariant read")

    s = Sampler(read, every_ms=1).start()
    time.sleep(0.02)
    with pytest.raises(ValueError, match="broken invariant read"):
        s.stop()


def test_sampler_violations_and_its_clock():
    ticks = iter(range(100))
    s = Sampler(lambda: 5, clock=lambda: next(ticks), every_ms=1000).start()
    s.stop()
    assert [t for t, _ in s.samples] == [0, 1]
    assert s.violations(lambda v: v == 5) == [] and len(s.violations(lambda v: v < 5)) == 2


def test_sampler_stop_twice_and_cancel():
    s = Sampler(lambda: 1, every_ms=1000).start()
    first = list(s.stop())
    assert s.stop() == first and len(first) == 2          # no second final sample
    c = Sampler(lambda: 1, every_ms=1000).start()
    c.cancel()
    assert not c._thread.is_alive() and len(c.samples) == 1   # no final sample
    c.stop()
    assert len(c.samples) == 2


def test_sampler_stopped_before_start_takes_only_the_final_sample():
    s = Sampler(lambda: 1)
    assert s.stop() == [(s.samples[0][0], 1)]


def test_sampler_context_keeps_the_block_error():
    s = Sampler(lambda: 1, every_ms=1)
    with pytest.raises(KeyError):
        with s:
            raise KeyError("block")
    assert not s._thread.is_alive()


# -- CommandStats ----------------------------------------------------------------------------------------


def test_commandstats_reads_calls_and_usec(r):
    r.set("k", 1)
    stats = commandstats(r)
    assert stats["set"]["calls"] >= 1 and isinstance(stats["set"]["usec"], float)


def test_command_stats_counts_only_the_block(r):
    r.set("before", 1)
    with CommandStats(r) as cs:
        r.set("a", 1)
        r.get("a")
        r.get("a")
        r.lpush("n", 1)
    assert cs.calls == {"set": 1, "get": 2, "lpush": 1}            # no INFO, nothing from before
    assert cs.total == 4 and set(cs.usec) == {"set", "get", "lpush"}
    assert cs.usec_per_call("get") == cs.usec["get"] / 2 and cs.usec_per_call("rpop") == 0.0


def test_command_stats_ignore(r):
    with CommandStats(r, ignore=("info", "get")) as cs:
        r.get("a")
        r.set("a", 1)
    assert cs.calls == {"set": 1}
    with CommandStats(r, ignore=()) as cs:
        r.get("a")
    assert cs.calls["info"] == 1 and cs.calls["get"] == 1


# -- xread_entries --------------------------------------------------------------------------------------


def test_xread_entries_both_protocols_and_one_stream(redis_server, r):
    r.xadd("s", {"a": 1}, id="1-0")
    r.xadd("s", {"a": 2}, id="2-0")
    r.xadd("t", {"b": 3}, id="1-0")
    want = [("1-0", {"a": "1"}), ("2-0", {"a": "2"})]
    for proto in (2, 3):
        c = redis_server.client(protocol=proto)
        assert xread_entries(c.xread({"s": "0-0"})) == want
        both = c.xread({"s": "0-0", "t": "0-0"})
        assert xread_entries(both, "s") == want and xread_entries(both, "t") == [("1-0", {"b": "3"})]
        assert len(xread_entries(both)) == 3
        r.xgroup_create("s", f"g{proto}", id="0")
        assert xread_entries(c.xreadgroup(f"g{proto}", "c1", {"s": ">"}), "s") == want
        c.close()
    assert xread_entries(None) == [] and xread_entries({}) == [] and xread_entries([]) == []


# -- standby / takeover ---------------------------------------------------------------------------------


def test_standby_gate_lets_every_waiter_go(r):
    waiting = [run_in_thread(standby, r, "gate", timeout=10) for _ in range(2)]
    time.sleep(0.05)
    assert not any(f.done() for f in waiting)
    r.set("gate", 1)
    for f in waiting:
        f.result(timeout=10)
    assert r.exists("gate")                 # a gate stays open


def test_takeover_lets_exactly_one_standby_go(r):
    first = run_in_thread(standby, r, "takeover", consume=True, timeout=10)
    second = run_in_thread(standby, r, "takeover", consume=True, timeout=0.5)
    time.sleep(0.05)
    takeover(r, "takeover", timeout=10)
    first_or_second = [f for f in (first, second) if f.exception(timeout=10) is None]
    assert len(first_or_second) == 1 and not r.exists("takeover")


def test_standby_times_out(r):
    with pytest.raises(TimeoutError, match="the key nobody"):
        standby(r, "nobody", timeout=0.05)


def test_takeover_times_out_without_a_standby(r):
    with pytest.raises(TimeoutError):
        takeover(r, "no-standby", timeout=0.05)


def test_standby_worker_process_takes_over(redis_server, r):
    w = lab.Workers(_standby_worker, 1, nodes=[redis_server], args=("ts:takeover",)).start()
    try:
        w.wait_for("waiting", timeout=60)
        takeover(r, "ts:takeover")
        assert w.wait_for("went", timeout=30).actor == "w1"
    finally:
        w.stop()


def _standby_worker(ctx, key):
    ctx.record("waiting")
    standby(ctx.client(0), key, consume=True)
    ctx.record("went")


# -- kill_client, config -----------------------------------------------------------------------------------


def test_kill_client_closes_only_the_named_connections(redis_server, r):
    victims = [redis_server.client(client_name="victim") for _ in range(2)]
    bystander = redis_server.client(client_name="bystander")
    for c in (*victims, bystander):
        c.ping()
    assert kill_client(r, "victim") == 2
    assert [c["name"] for c in r.client_list()].count("victim") == 0
    assert bystander.ping() and kill_client(r, "nobody") == 0
    for c in (*victims, bystander):
        c.close()


def test_kill_client_cuts_a_subscriber(redis_server, r):
    p = redis_server.client(client_name="ticker").pubsub()
    p.subscribe("prices")
    p.get_message(timeout=1)
    assert kill_client(r, "ticker") == 1
    assert r.pubsub_numsub("prices")[0][1] == 0
    p.close()


def test_config_sets_for_the_block_and_restores(r):
    before = r.config_get("maxmemory-policy")["maxmemory-policy"]
    with config(r, {"maxmemory-policy": "allkeys-lru"}, hz=20) as old:
        assert r.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"
        assert r.config_get("hz")["hz"] == "20"
        assert old["maxmemory-policy"] == before
    assert r.config_get("maxmemory-policy")["maxmemory-policy"] == before
    assert r.config_get("hz")["hz"] == old["hz"]


def test_config_underscores_and_restore_after_an_error(r):
    before = r.config_get("maxmemory")["maxmemory"]
    with pytest.raises(RuntimeError):
        with config(r, maxmemory=12345678):
            assert r.config_get("maxmemory")["maxmemory"] == "12345678"
            raise RuntimeError("the block failed")
    assert r.config_get("maxmemory")["maxmemory"] == before


def test_config_refused_setting_restores_what_was_set(r):
    before = r.config_get("hz")["hz"]
    with pytest.raises(redis.ResponseError):
        with config(r, {"hz": 30, "maxmemory-policy": "no-such-policy"}):
            pass
    assert r.config_get("hz")["hz"] == before


def test_config_value_computed_when_it_is_set(r):
    seen = []

    def limit():
        seen.append(r.config_get("maxmemory-policy")["maxmemory-policy"])   # the earlier setting is in
        return 50_000_000

    with config(r, {"maxmemory-policy": "allkeys-lfu", "maxmemory": limit}):
        assert r.config_get("maxmemory")["maxmemory"] == "50000000"
    assert seen == ["allkeys-lfu"]
