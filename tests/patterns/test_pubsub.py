"""Pub/Sub on a real Redis 8: sequence numbers, the gap detector, and the scenarios' claims."""

from __future__ import annotations

import pytest

from redistutor import lab
from redistutor.patterns.pubsub import GapDetector, SequencedChannel, parse, read_messages
from redistutor.scenarios import pubsub as sc


def test_gap_detector_reports_missing_and_duplicates():
    d = GapDetector()
    assert [d.feed(f"{s}:m{s}") for s in (1, 2, 5, 5, 6, 9)] == ["m1", "m2", "m5", "m5", "m6", "m9"]
    assert d.missed == [3, 4, 7, 8] and d.duplicates == 1 and d.last == 9


def test_gap_detector_resumes_from_last_seen_and_keeps_colons():
    d = GapDetector(last_seen=10)
    assert d.feed("10:old") == "old" and d.duplicates == 1 and d.missed == []
    assert d.feed("12:a:b") == "a:b" and d.missed == [11] and d.last == 12


def test_parse():
    assert parse("41:hello:x") == (41, "hello:x")


def test_sequenced_channel_numbers_in_order_and_reports_receivers(r):
    feed = SequencedChannel(r, "news")
    assert feed.publish("nobody") == (1, 0)              # no subscriber: delivered to nobody
    p = r.pubsub()
    p.subscribe("news")
    sc.wait_subscribed(r, "news", 1)
    assert feed.publish("one") == (2, 1)
    p.psubscribe("new*")
    sc.wait_until(lambda: r.pubsub_numpat() == 1)
    assert feed.publish("twice") == (3, 2)               # a channel and a pattern: two deliveries
    got = read_messages(p, wait=0.2)
    assert [(m["type"], m["data"]) for m in got] == [("message", "2:one"), ("message", "3:twice"),
                                                     ("pmessage", "3:twice")]
    d = GapDetector()
    for m in got:
        d.feed(m["data"])
    assert d.missed == [1] and d.duplicates == 1
    assert r.get("news:seq") == "3"
    p.close()


def test_silent_reconnect_loses_messages_the_detector_reports(redis_server, r):
    feed = SequencedChannel(r, "ticks")
    sub = redis_server.client(client_name="ticker").pubsub()
    sub.subscribe("ticks")
    sc.wait_subscribed(r, "ticks", 1)
    d = GapDetector()
    sent = [feed.publish("a") for _ in range(3)]
    for m in read_messages(sub):
        d.feed(m["data"])
    assert sc.kill_client(r, "ticker") == 1
    sc.wait_subscribed(r, "ticks", 0)
    sent += [feed.publish("b") for _ in range(3)]
    assert [rcv for _, rcv in sent] == [1, 1, 1, 0, 0, 0]
    assert read_messages(sub) == []                       # no error: redis-py reconnects quietly
    sc.wait_subscribed(r, "ticks", 1)
    feed.publish("c")
    for m in read_messages(sub):
        d.feed(m["data"])
    assert d.missed == [4, 5, 6] and d.last == 7
    sub.close()


def test_outage_pubsub_loses_exactly_the_outage(redis_server, r):
    sink = sc.Sink()
    run = sc.outage_run(redis_server, sink, "orders", total=20, down=(6, 12))
    assert run["lost"] == list(range(6, 13)) and run["duplicates"] == 0
    assert all(rcv == 0 for s, rcv in run["sent"] if 6 <= s <= 12)
    assert all(rcv == 1 for s, rcv in run["sent"] if not 6 <= s <= 12)
    assert [n for _, n in run["phases"]] == [1, 0, 1] and run["exit_codes"][0] == -9
    sink.close()


def test_outage_stream_loses_nothing(redis_server, r):
    sink = sc.Sink()
    run = sc.outage_run(redis_server, sink, "orders-log", mode="stream", total=20, down=(6, 12))
    assert run["lost"] == [] and run["duplicates"] == 0 and run["received"] == list(range(1, 21))
    assert run["exit_codes"][0] == -9 and r.xlen("orders-log") == 20
    sink.close()


def test_slow_subscriber_is_cut_and_the_fast_one_is_not(redis_server, r):
    old = r.config_get("client-output-buffer-limit")
    run = sc.slow_subscriber(redis_server, "feed", limit="pubsub 256kb 0 0", payload_bytes=8000)
    assert r.config_get("client-output-buffer-limit") == old      # restored
    assert run["disconnections"] == 1 and run["numsub_after_cut"] == 1
    assert run["fast_missed"] == [] and run["fast_last"] == run["total"]
    kept = run["slow_handled_before_cut"]
    assert kept == list(range(1, len(kept) + 1)) and len(kept) < run["cut_at"]
    assert run["slow_missed"] == list(range(len(kept) + 1, run["cut_at"] + 1))
    assert 0 < run["last_omem"] <= run["hard_limit"]
    assert "output buffer limits" in run["log_line"]


def test_hard_limit_parsing():
    assert sc._hard_limit_bytes("pubsub 1mb 0 0") == 1024 ** 2
    assert sc._hard_limit_bytes("pubsub 256kb 0 0") == 256 * 1024
    assert sc._hard_limit_bytes("pubsub 1000 0 0") == 1000


@pytest.fixture(scope="module")
def cluster():
    c = lab.Cluster(3, replicas=1).start()
    yield c
    c.stop()


def test_sharded_channel_stays_on_its_shard(cluster):
    tour = sc.sharded_tour(cluster, "orders:{eu}", messages=20)
    owner = tour["owner"]
    assert tour["spublished"] == 1 and tour["got"][0]["data"] == "1:hello shard"
    assert {n for n, v in tour["per_node"].items() if v["shardnumsub"]} == {owner}
    assert tour["per_node"][owner]["shardchannels"] == ["orders:{eu}"]
    assert str(tour["moved"]).startswith(f"{tour['slot']} ")
    assert set(tour["classic_returns"]) == {0} and tour["classic_got"] == 20
    assert tour["bus_classic_sent"] == 20 * 5 and set(tour["bus_classic"].values()) <= {0, 20}
    replica = "r" + owner[1:]
    assert tour["bus_shard"] == {n: (20 if n == replica else 0) for n in tour["per_node"]}
    assert tour["shard_got"] == 20 and set(tour["shard_returns"]) == {1}


def test_gap_detector_counts_every_duplicate():
    d = GapDetector()
    for data in ("1:a", "1:a", "1:a", "2:b"):
        d.feed(data)
    assert d.duplicates == 2 and d.last == 2 and d.missed == []


def test_read_messages_keeps_sharded_messages(redis_server, r):
    p = redis_server.client().pubsub()
    p.ssubscribe("orders")
    sc.wait_until(lambda: r.execute_command("PUBSUB", "SHARDNUMSUB", "orders")[1] == 1, 10)
    r.spublish("orders", "1:first")
    got = read_messages(p, wait=0.5)
    assert [(m["type"], m["data"]) for m in got] == [("smessage", "1:first")]
    p.close()
