"""Stream consumer groups on a real Redis: two-phase start, XAUTOCLAIM takeover, dead letters,
trimming while pending, and a consumer process killed with SIGKILL before its XACK."""

from __future__ import annotations

import pytest

from redistutor.patterns.streams_consumer_patterns import consume, process, recover
from redistutor.scenarios import streams_consumer_patterns as sc

S, G, DLQ = "s", "g", "s:dead"


@pytest.fixture
def sink():
    s = sc.Sink()
    yield s
    s.close()


def recorder():
    seen = []
    return seen, (lambda entry_id, fields: seen.append(entry_id))


def test_consume_drains_in_order_and_acks_everything(r):
    ids = sc.fill(r, S, G, 35)
    seen, handle = recorder()
    consume(r, S, G, "c1", handle=handle, dlq=DLQ)
    assert seen == ids
    assert r.xpending(S, G)["pending"] == 0 and r.xack(S, G, *ids) == 0


def test_two_phase_start_handles_own_pending_entries_first(r):
    ids = sc.fill(r, S, G, 30)
    r.xreadgroup(G, "c1", {S: ">"}, count=12)            # a previous life of c1 read 12, acked none
    r.xreadgroup(G, "c2", {S: ">"}, count=3)             # another consumer's entries are not c1's
    seen, handle = recorder()
    consume(r, S, G, "c1", count=5, handle=handle, dlq=DLQ)   # pages through its PEL 5 at a time
    assert seen == ids[:12] + ids[15:]
    assert {p["message_id"] for p in r.xpending_range(S, G, "-", "+", 100)} == set(ids[12:15])


def test_reading_only_new_entries_leaves_the_zombie_pel(r):
    ids = sc.fill(r, S, G, 20)
    r.xreadgroup(G, "c1", {S: ">"}, count=5)
    seen, handle = recorder()
    sc.naive_consume(r, S, G, "c1", handle)
    assert seen == ids[5:]
    assert [p["message_id"] for p in r.xpending_range(S, G, "-", "+", 100)] == ids[:5]


def test_recover_claims_only_entries_idle_long_enough(r):
    ids = sc.fill(r, S, G, 10)
    r.xreadgroup(G, "dead", {S: ">"}, count=4)
    seen, handle = recorder()
    recover(r, S, G, "c2", 60_000, handle=handle, dlq=DLQ)
    assert seen == [] and r.xpending(S, G)["pending"] == 4
    sc.wait_idle(r, S, G, 20)
    recover(r, S, G, "c2", 20, handle=handle, dlq=DLQ)
    assert seen == ids[:4] and r.xpending(S, G)["pending"] == 0


def test_recover_pages_through_a_large_pel(r):
    ids = sc.fill(r, S, G, 250)
    r.xreadgroup(G, "dead", {S: ">"}, count=250)         # more than XAUTOCLAIM's default COUNT 100
    seen, handle = recorder()
    recover(r, S, G, "c2", 0, handle=handle, dlq=DLQ)
    assert seen == ids and r.xpending(S, G)["pending"] == 0


def test_poison_is_dead_lettered_after_max_deliveries(r, sink):
    run = sc.poison_rounds(r, S, G, DLQ, sink, consume, recover, n=20, poison=(4, 9), min_idle_ms=10)
    assert [row[1] for row in run["rows"]] == ["1, 1", "2, 2", "-, -"]
    assert [f for _, f in run["dead"]] == [{"id": "4-0", "n": "4", "poison": "1"},
                                           {"id": "9-0", "n": "9", "poison": "1"}]
    assert r.xpending(S, G)["pending"] == 0
    assert all(s["lost"] == 0 for s in run["samples"]) and run["samples"][-1]["done"] == 18


def test_process_leaves_a_failing_entry_pending_below_the_limit(r):
    sc.fill(r, S, G, 3)
    entries = r.xreadgroup(G, "c1", {S: ">"}, count=3)[S][0]

    def fail_on_2(entry_id, fields):
        if entry_id == "2-0":
            raise RuntimeError("boom")

    process(r, S, G, entries, fail_on_2, DLQ, max_deliveries=2)
    assert [p["message_id"] for p in r.xpending_range(S, G, "-", "+", 10)] == ["2-0"] and not r.exists(DLQ)


def test_trimmed_pending_entries(r):
    run = sc.trim_pending(r, S, G)
    assert run["removed"] == 5 and run["pending_after_trim"] == 10
    assert [f for _, f in run["own"]] == [{}] * 5 + [{"n": str(i)} for i in range(6, 11)]
    assert run["deleted"] == [f"{i}-0" for i in range(1, 6)] and run["claimed"] == [f"{i}-0" for i in range(6, 11)]
    assert run["pending_after_claim"] == 5


def test_consume_acks_trimmed_entries_without_handling_them(r):
    sc.fill(r, S, G, 6)
    r.xreadgroup(G, "c1", {S: ">"}, count=6)
    r.xtrim(S, maxlen=3, approximate=False)
    seen, handle = recorder()
    consume(r, S, G, "c1", handle=handle, dlq=DLQ)
    assert seen == ["4-0", "5-0", "6-0"] and r.xpending(S, G)["pending"] == 0


def test_trim_bounds(r):
    sweep = sc.trim_sweep(r, "t", bound=300, adds=900)
    steady = sweep["MAXLEN ~"][300:]
    assert min(steady) == 300 and max(steady) == 300 + sweep["node"] - 1
    assert set(sweep["MAXLEN ="][300:]) == {300}
    table = sc.minid_trial(r, "u", n=1000, minid=550)
    assert [list(row[1:]) for row in table.rows] == [[500, 500, "501-0"], [549, 451, "550-0"]]


def test_pel_memory_grows_with_pending_and_falls_after_ack(r):
    rows = sc.pel_memory(r, "m", G, n=600, step=200)
    grow = [x["key_bytes"] for x in rows[:-1]]
    assert grow == sorted(grow) and len(set(grow)) == len(grow)
    assert [x["lag"] for x in rows[:-1]] == [600, 400, 200, 0]
    assert rows[-1]["pending"] == 0 and rows[-1]["key_bytes"] < rows[0]["key_bytes"] + 1024


def test_killed_consumer_zombie_pel_then_two_phase_restart(redis_server, r, sink):
    run = sc.crash_and_restart(redis_server, r, S, G, sink, n=60, stall_at=21)
    killed, naive = run["samples"]
    assert run["exitcode"] == -9 and run["stalled"] == "21-0"
    assert killed["pending_ids"] == [f"{i}-0" for i in range(21, 31)] and killed["done"] == 20
    assert naive["pending_ids"] == killed["pending_ids"] and naive["done"] == 50
    consume(r, S, G, "c1", handle=sc.handler(sink, S, "c1"), dlq=DLQ)
    after = sc.sample(r, S, G, sink, run["produced"], "two-phase restart")
    assert after["pending"] == 0 and after["done"] == 60 and after["duplicates"] == 0
    assert all(s["lost"] == 0 for s in run["samples"] + [after])


def test_storm_loses_nothing_at_any_sample(redis_server, r, sink):
    run = sc.storm(redis_server, r, S, G, sink, n=300, consumers=3, victim="w2", stall_at=7, min_idle_ms=300)
    assert run["exitcodes"]["w2"] == -9 and run["stalled"]
    assert run["samples"] and all(s["lost"] == 0 for _, s in run["samples"])
    assert run["final"]["pending"] == 0 and run["final"]["done"] == 300
    assert run["by_consumer"]["w2"] == 6 and run["stalled"] == "7-0"


def poison_handler(seen):
    def handle(entry_id, fields):
        if fields.get("poison") == "1":
            raise ValueError(entry_id)
        seen.append(entry_id)
    return handle


def test_consume_reads_ten_at_a_time_by_default(r):
    from redistutor import trace

    sc.fill(r, S, G, 25)
    seen, handle = recorder()
    with trace(r) as t:
        consume(r, S, G, "c1", handle=handle, dlq=DLQ)
    reads = t.select("XREADGROUP")
    assert reads and all(c.args[c.args.index("COUNT") + 1] == "10" for c in reads)
    assert len(seen) == 25


def test_a_poison_entry_alone_in_my_pel_is_stepped_over(r):
    """Phase 1 moves past an entry that stays pending (walks from the last id of the batch)."""
    ids = sc.fill(r, S, G, 3, poison=(1,))
    r.xreadgroup(G, "c1", {S: ">"}, count=1)             # c1's previous life took the poison one
    seen = []
    consume(r, S, G, "c1", handle=poison_handler(seen), dlq=DLQ)
    assert seen == ids[1:]                                # phase 2 went on to the new entries
    [p] = r.xpending_range(S, G, "-", "+", 10)
    assert p["message_id"] == ids[0] and p["times_delivered"] == 2   # still pending, not yet dead


def test_default_max_deliveries_is_three(r):
    ids = sc.fill(r, S, G, 1, poison=(1,))
    seen = []
    for expected_dead in (0, 0, 1):                       # deliveries 1, 2, 3
        consume(r, S, G, "c1", handle=poison_handler(seen), dlq=DLQ)
        assert r.xlen(DLQ) == expected_dead
    assert r.xpending(S, G)["pending"] == 0 and r.xrange(DLQ)[0][1]["id"] == ids[0]


def test_one_recover_pass_claims_each_entry_once(r):
    """XAUTOCLAIM continues from its cursor: a poison entry near the start is not claimed again
    in the same pass (a scan restarted at 0-0 would deliver it twice and dead-letter it early)."""
    ids = sc.fill(r, S, G, 150, poison=(1,))
    r.xreadgroup(G, "dead", {S: ">"}, count=150)
    seen = []
    recover(r, S, G, "c2", 0, handle=poison_handler(seen), dlq=DLQ)
    assert seen == ids[1:] and r.xlen(DLQ) == 0
    [p] = r.xpending_range(S, G, "-", "+", 10)
    assert p["message_id"] == ids[0] and p["times_delivered"] == 2
