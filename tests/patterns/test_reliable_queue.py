"""The reliable queue on a real Redis: BLMOVE + lease, the checked ack, the reaper and dead letters."""

from __future__ import annotations

import threading
import time

from redistutor import trace
from redistutor.patterns.reliable_queue import ReliableQueue, reap


def proc(q, w):
    return f"{q.name}:processing:{w}"


def test_fifo_take_moves_into_the_workers_list_and_leases_it(r):
    q = ReliableQueue(r, "q", lease_ms=5000)
    q.push("m1", "m2", "m3")
    before = int(time.time() * 1000)
    assert q.take("w1") == "m1" and q.take("w2") == "m2"
    assert r.lrange(q.queue, 0, -1) == ["m3"]
    assert r.lrange(proc(q, "w1"), 0, -1) == ["m1"] and r.lrange(proc(q, "w2"), 0, -1) == ["m2"]
    deadline = r.zscore(q.leases, "m1")
    assert before + 5000 <= deadline <= int(time.time() * 1000) + 5000


def test_take_times_out_on_an_empty_queue(r):
    q = ReliableQueue(r, "q")
    assert q.take("w1", timeout=0.05) is None
    assert not r.exists(proc(q, "w1"), q.leases)


def test_take_blocks_until_a_message_arrives(r, redis_server):
    q = ReliableQueue(r, "q")
    got = []
    t = threading.Thread(target=lambda: got.append(ReliableQueue(redis_server.client(), "q").take("w1", timeout=5)))
    t.start()
    time.sleep(0.05)
    q.push("late")
    t.join(5)
    assert got == ["late"]


def test_take_is_two_round_trips_and_ack_one(r):
    q = ReliableQueue(r, "q")
    q.push("m1")
    with trace(r) as t:
        msg = q.take("w1")
    assert t.round_trips == 2 and t.names() == ["BLMOVE", "ZADD"]
    with trace(r) as t:
        assert q.ack("w1", msg) is True
    assert t.round_trips == 1


def test_ack_deletes_the_id_its_lease_and_retries_and_counts_done(r):
    q = ReliableQueue(r, "q")
    q.push("m1", "m2")
    m = q.take("w1")
    r.hset(q.retries, m, 2)
    assert q.ack("w1", m) is True
    assert not r.exists(proc(q, "w1")) and r.zscore(q.leases, m) is None and not r.hexists(q.retries, m)
    assert r.get(q.done) == "1"
    assert q.ack("w1", q.take("w1")) is True and r.get(q.done) == "2"


def test_late_ack_after_the_reaper_took_it_back_changes_nothing(r):
    q = ReliableQueue(r, "q", lease_ms=100)
    q.push("m1")
    assert q.take("A") == "m1"
    assert reap(q, ["A", "B"], now_ms=int(time.time() * 1000) + 1000) == ["m1"]
    assert q.take("B") == "m1"
    b_lease = r.zscore(q.leases, "m1")
    assert q.ack("A", "m1") is False                     # A was slow: not its message any more
    assert r.zscore(q.leases, "m1") == b_lease and r.get(q.done) is None
    assert r.lrange(proc(q, "B"), 0, -1) == ["m1"]
    assert q.ack("B", "m1") is True and r.get(q.done) == "1"


def test_reaper_leaves_live_leases_alone(r):
    q = ReliableQueue(r, "q", lease_ms=10_000)
    q.push("m1")
    q.take("w1")
    assert reap(q, ["w1"]) == []
    assert r.lrange(proc(q, "w1"), 0, -1) == ["m1"]


def test_reaper_returns_an_expired_id_to_the_head_of_the_queue(r):
    q = ReliableQueue(r, "q", lease_ms=100)
    q.push("m1", "m2", "m3")
    assert q.take("w1") == "m1"
    assert reap(q, ["w1"], now_ms=int(time.time() * 1000) + 500) == ["m1"]
    assert not r.exists(proc(q, "w1")) and r.zscore(q.leases, "m1") is None
    assert r.hget(q.retries, "m1") == "1"
    assert q.take("w2") == "m1"                           # next in line, before m2


def test_reaper_leases_an_id_whose_worker_died_before_its_zadd(r):
    q = ReliableQueue(r, "q", lease_ms=1000)
    q.push("m1")
    r.blmove(q.queue, proc(q, "w1"), 1, "RIGHT", "LEFT")   # took it, died before the lease
    now = int(time.time() * 1000)
    assert reap(q, ["w1"], now_ms=now) == []
    assert r.zscore(q.leases, "m1") == now + 1000
    assert reap(q, ["w1"], now_ms=now + 999) == []
    assert reap(q, ["w1"], now_ms=now + 1000) == []        # the deadline itself is still inside the lease
    assert reap(q, ["w1"], now_ms=now + 1001) == ["m1"] and r.lrange(q.queue, 0, -1) == ["m1"]


def test_poison_goes_to_the_dead_letters_after_max_retries(r):
    q = ReliableQueue(r, "q", lease_ms=10, max_retries=2)
    q.push("poison", "ok")
    deliveries = 0
    now = int(time.time() * 1000)
    while r.llen(q.dead) == 0 and deliveries < 10:
        assert q.take("w1", timeout=0.1) == "poison"
        deliveries += 1
        now += 1000
        reap(q, ["w1"], now_ms=now)
    assert deliveries == 3                                # the first delivery + max_retries
    assert r.lrange(q.dead, 0, -1) == ["poison"] and r.lrange(q.queue, 0, -1) == ["ok"]
    assert r.hget(q.retries, "poison") == "3" and r.zscore(q.leases, "poison") is None
    assert not r.exists(proc(q, "w1"))


def test_reaper_scans_every_listed_worker_and_only_those(r):
    q = ReliableQueue(r, "q", lease_ms=10)
    q.push("a", "b", "c")
    for w in ("w1", "w2", "w3"):
        q.take(w)
    moved = reap(q, ["w1", "w2"], now_ms=int(time.time() * 1000) + 1000)
    assert sorted(moved) == ["a", "b"] and r.lrange(proc(q, "w3"), 0, -1) == ["c"]


def test_nothing_is_lost_or_doubled_under_concurrent_workers(redis_server, r):
    q = ReliableQueue(r, "q", lease_ms=60_000)
    ids = [f"m{i:04d}" for i in range(400)]
    q.push(*ids)
    seen, lock = [], threading.Lock()

    def work(name):
        wq = ReliableQueue(redis_server.client(), "q", lease_ms=60_000)
        while (m := wq.take(name, timeout=0.1)) is not None:
            with lock:
                seen.append(m)
            assert wq.ack(name, m)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(seen) == ids and r.get(q.done) == "400"
    assert not r.exists(q.queue, q.leases) and r.keys("q:processing:*") == []



def test_key_names_and_defaults(r):
    """The keys a learner sees in the views, and the defaults the notebook's prose relies on."""
    q = ReliableQueue(r, "rq:demo")
    assert (q.queue, q.leases, q.retries, q.done, q.dead) == (
        "rq:demo:queue", "rq:demo:leases", "rq:demo:retries", "rq:demo:done", "rq:demo:dead")
    assert (q.lease_ms, q.max_retries) == (30_000, 3)
    q.push("m1")
    before = int(time.time() * 1000)
    with trace(r) as t:
        q.take("w1")
    src, dst, wherefrom, whereto, timeout = t.commands[0].args
    assert (src, dst) == ("rq:demo:queue", "rq:demo:processing:w1") and timeout == "1.0"   # waits 1 s
    assert (wherefrom.upper(), whereto.upper()) == ("RIGHT", "LEFT")   # oldest out; case is not significant
    assert before + 30_000 <= r.zscore(q.leases, "m1") <= int(time.time() * 1000) + 30_000


def test_reaper_reads_the_clock_when_not_given_one(r):
    q = ReliableQueue(r, "q", lease_ms=1)
    q.push("m1")
    q.take("w1")
    deadline = r.zscore(q.leases, "m1")
    while time.time() * 1000 <= deadline + 1:             # the lease has run out on this clock
        time.sleep(0.001)
    assert reap(q, ["w1"]) == ["m1"] and r.lrange(q.queue, 0, -1) == ["m1"]


def test_default_max_retries_dead_letters_at_the_fourth_return(r):
    q = ReliableQueue(r, "q", lease_ms=10)
    q.push("poison")
    now = int(time.time() * 1000)
    for _ in range(4):
        q.take("w1", timeout=0.1)
        now += 1000
        reap(q, ["w1"], now_ms=now)
    assert r.lrange(q.dead, 0, -1) == ["poison"] and r.hget(q.retries, "poison") == "4"
