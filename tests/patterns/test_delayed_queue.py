"""The delayed queue on a real Redis: due times on the server's clock, atomic claims under real
threads, leases and the reaper, retries, the worker loops, and kill -9 of real worker processes."""

from __future__ import annotations

import json
import threading
import time

import pytest

from redistutor import trace
from redistutor.patterns.delayed_queue import DelayedQueue, RetryQueue, job_of, now_ms, poll_loop, reap, sleep_loop
from redistutor.scenarios import delayed_queue as sc
from redistutor.sink import Sink
from redistutor.timeline import run_threads

from ..helpers import RecordingStop


def test_schedule_keeps_identical_jobs_apart(r):
    q = DelayedQueue(r, "q")
    a, b = q.schedule("email:alice", 1000), q.schedule("email:alice", 2000)
    assert a != b and job_of(a) == job_of(b) == "email:alice"
    assert r.zrange(q.key, 0, -1, withscores=True) == [[a, 1000.0], [b, 2000.0]]


def test_a_task_is_not_claimed_before_it_is_due(r):
    q = DelayedQueue(r, "q")
    q.schedule("later", now_ms(r) + 60_000)
    assert q.claim() == [] and r.zcard(q.key) == 1 and r.zcard(q.processing) == 0


def test_a_due_task_moves_to_processing_under_a_lease(r):
    q = DelayedQueue(r, "q", lease_ms=7000)
    task = q.schedule("now", now_ms(r) - 1)
    before = now_ms(r)
    assert q.claim() == [task]
    after = now_ms(r)
    assert r.zcard(q.key) == 0
    deadline = r.zscore(q.processing, task)
    assert before + 7000 <= deadline <= after + 7000


def test_due_exactly_now_is_claimed(r):
    q = DelayedQueue(r, "q")
    due = now_ms(r)
    task = q.schedule("edge", due)
    sc.wait_until(lambda: now_ms(r) >= due)
    assert q.claim() == [task]


def test_boundary_on_the_server_clock(r):
    run = sc.due_boundary(DelayedQueue(r, "q"), ahead_ms=100)
    *empty, last = run["attempts"]
    assert empty and all(before < 0 and got == [] for before, _, got in empty)
    assert last[2] == [run["task"]] and last[1] >= 0


def test_claim_takes_at_most_n_in_due_order(r):
    q = DelayedQueue(r, "q")
    tasks = [q.schedule(f"j{i}", 100 - i) for i in range(5)]      # j4 is due first
    assert q.claim(n=2) == [tasks[4], tasks[3]]
    assert q.claim(n=10) == [tasks[2], tasks[1], tasks[0]]
    assert q.claim(n=10) == []


def test_claim_is_one_round_trip(r):
    q = DelayedQueue(r, "q")
    q.schedule("x", 0)
    with trace(r) as t:
        q.claim()
    assert t.round_trips == 1 and t.names() == ["EVAL"]


def test_ack_only_once(r):
    q = DelayedQueue(r, "q")
    task = q.schedule("x", 0)
    q.claim()
    assert q.ack(task) is True and q.ack(task) is False
    assert r.zcard(q.processing) == 0


def test_reap_returns_only_expired_leases_due_now(r):
    q = DelayedQueue(r, "q", lease_ms=60_000)
    live, dead = q.schedule("live", 0), q.schedule("dead", 0)
    q.claim(n=2)
    r.zadd(q.processing, {dead: now_ms(r) - 1})                  # its lease ran out
    assert reap(q) == [dead]
    assert r.zrange(q.processing, 0, -1) == [live]
    assert r.zscore(q.key, dead) <= now_ms(r)
    assert q.claim() == [dead] and q.ack(dead)


def test_a_reaped_task_cannot_be_acked_by_its_old_worker(r):
    q = DelayedQueue(r, "q", lease_ms=1)
    task = q.schedule("slow", 0)
    q.claim()
    sc.wait_until(lambda: reap(q) == [task])
    assert q.ack(task) is False and r.zcard(q.key) == 1


def test_racing_threads_run_every_task_exactly_once(r, redis_server):
    q = DelayedQueue(r, "race")
    tasks = {q.schedule(f"job-{i}", 0) for i in range(300)}
    ran, lock = [], threading.Lock()

    def worker(actor, log):
        wq = DelayedQueue(redis_server.client(), "race")
        while got := wq.claim():
            with lock:
                ran.extend(got)
            assert wq.ack(got[0])

    run_threads(worker, 8)
    assert sorted(ran) == sorted(tasks)


@pytest.mark.parametrize("kind, runs, rts", [("ZRANGEBYSCORE + ZREM", 4, 2),
                                             ("ZRANGEBYSCORE + checked ZREM", 1, 2), ("Lua pop-due", 1, 1)])
def test_race_one_task(r, kind, runs, rts):
    race = sc.race_one_task(r, "one", kind)
    assert race["runs"] == runs and all(row[2] == rts for row in race["rows"])


def test_racing_run_counts_from_the_sink(redis_server):
    with Sink() as sink:
        lua = sc.racing_run(redis_server, sink, "rr:lua", "Lua pop-due", tasks=100)
        zrem = sc.racing_run(redis_server, sink, "rr:zrem", "ZRANGEBYSCORE + checked ZREM", tasks=100)
    assert (lua["runs"], lua["duplicates"], lua["never_ran"]) == (100, 0, 0)
    assert lua["claim_round_trips"] == lua["claims"] + lua["empty"] == lua["calls"]["eval"]
    assert zrem["never_ran"] == 0 and zrem["claim_round_trips"] >= 2 * zrem["claims"]


def test_retry_moves_back_with_delay_and_only_if_ours(r):
    q = RetryQueue(r, "q", lease_ms=60_000)
    task = q.schedule("flaky", 0)
    q.claim()
    before = now_ms(r)
    due = q.retry(task, 250)
    assert due >= before + 250 and r.zscore(q.key, task) == due and r.zcard(q.processing) == 0
    assert q.retry(task, 250) is None and r.zcard(q.key) == 1


def test_retry_demo(r):
    demo = sc.retry_demo(r, "rd", fails=2, base_ms=20)
    assert [row[:3] for row in demo["rows"]] == [(1, "failed", 20), (2, "failed", 40), (3, "succeeded", None)]
    assert all(row[3] >= row[2] for row in demo["rows"][:2])
    assert demo["late_retry"] is None and demo["left"] == (0, 0)


@pytest.mark.parametrize("loop, kw", [(poll_loop, {"poll_ms": 5}), (sleep_loop, {"max_sleep_ms": 200})])
def test_worker_loops_run_due_tasks(r, loop, kw):
    q = DelayedQueue(r, "loop")
    for i in range(5):
        q.schedule(f"j{i}", int(time.time() * 1000) + 20 * i)
    ran, stop = [], threading.Event()

    def handle(task):
        ran.append(job_of(task))
        if len(ran) == 5:
            stop.set()

    th = threading.Thread(target=loop, args=(q, handle, stop), kwargs=kw, daemon=True)
    th.start()
    th.join(10)
    assert sorted(ran) == [f"j{i}" for i in range(5)] and r.zcard(q.key) == r.zcard(q.processing) == 0


def test_sleeping_worker_sends_far_fewer_commands_than_polling(redis_server):
    poll = sc.idle_trial(redis_server, "idle:p", "poll", seconds=1.0, due_in_ms=600)
    sleep = sc.idle_trial(redis_server, "idle:s", "sleep", seconds=1.0, due_in_ms=600)
    assert poll["ran"] == sleep["ran"] == 1
    assert sleep["claims"] <= 5 and poll["claims"] >= 10 * sleep["claims"]


def test_lateness_is_never_negative(r):
    trial = sc.lateness_trial(r, "late", (5, 50), tasks=8, spread_ms=100)
    assert all(len(v) == 8 and min(v) >= 0 for v in trial.values())


def test_kill_after_the_claim_loses_with_zrem_and_is_reaped_with_the_script(redis_server):
    with Sink() as sink:
        zrem, lua = sc.kill_runs(redis_server, sink, "kill", tasks=15, hang_job="job-5", lease_ms=800)
    assert zrem["exitcode"] == lua["exitcode"] == -9
    assert zrem["hung_where"] == "nowhere" and zrem["lost_jobs"] == ["job-5"]
    assert zrem["never_ran"] == 1 and zrem["final"]["missing"] == 1
    assert lua["hung_where"] == "processing" and lua["never_ran"] == 0 and lua["lost_jobs"] == []
    assert all(s["missing"] == 0 for _, s in lua["samples"])
    assert all(s["queued"] + s["in_flight"] + s["done"] == s["produced"] for _, s in lua["samples"])
    assert json.loads(lua["reaped"][0])["job"] == "job-5" and lua["duplicates"] == lua["late_acks"]


def test_a_fast_worker_clock_runs_tasks_early_only_without_time(r):
    rows = sc.skewed_claims(r, "skew", skew_ms=60_000, due_in_ms=30_000)
    assert [claimed for _, _, claimed in rows] == [True, False]


# -- defaults and the worker loops' waiting, pinned without timing (fakes record every wait) --------


def test_defaults_one_task_per_claim_100_per_reap_5_s_lease_8_hex_ids(r):
    q = DelayedQueue(r, "d")
    assert q.lease_ms == 5000 and len(json.loads(q.schedule("x", 0))["id"]) == 8
    q.schedule("y", 0)
    assert len(q.claim()) == 1
    r.zadd(q.processing, {json.dumps({"id": f"{i:08x}", "job": "z"}): 0 for i in range(101)})
    assert len(reap(q)) == 100


def test_now_ms_is_time_in_whole_ms():
    class FakeTime:
        def __init__(self, usec):
            self.usec = usec

        def time(self):
            return (1, self.usec)

    assert [now_ms(FakeTime(u)) for u in (0, 999, 1000, 999_999)] == [1000, 1000, 1001, 1999]


class FakeQueue:
    """Claims come from ``batches``; the schedule's head is ``head``; raises if a loop spins."""

    def __init__(self, batches, head=()):
        self.batches, self.head, self.key, self.r = list(batches), list(head), "k", self
        self.acked, self.zranges, self.claims = [], [], 0

    def claim(self):
        self.claims += 1
        if self.claims > 20:
            raise RuntimeError("the loop claims without waiting")
        return self.batches.pop(0) if self.batches else []

    def ack(self, task):
        self.acked.append(task)

    def zrange(self, *args, **kwargs):
        self.zranges.append((args, kwargs))
        return self.head


def test_poll_loop_waits_only_when_nothing_was_due():
    q, stop, ran = FakeQueue([["a"], [], ["b"], []]), RecordingStop(2), []
    poll_loop(q, ran.append, stop)
    assert ran == q.acked == ["a", "b"] and stop.waits == [0.01, 0.01] and q.claims == 4


def test_sleep_loop_sleeps_the_cap_on_an_empty_schedule():
    q, stop = FakeQueue([["a"], []]), RecordingStop(1)
    sleep_loop(q, lambda task: None, stop)
    assert stop.waits == [1.0] and q.zranges == [(("k", 0, 0), {"withscores": True})] and q.acked == ["a"]


def test_sleep_loop_does_not_sleep_for_an_overdue_head_and_caps_a_far_one():
    overdue = RecordingStop(1)
    sleep_loop(FakeQueue([], head=[("t", 0.0)]), lambda task: None, overdue)
    far = RecordingStop(1)
    sleep_loop(FakeQueue([], head=[("t", time.time() * 1000 + 1e9)]), lambda task: None, far, max_sleep_ms=250)
    soon = RecordingStop(1)
    sleep_loop(FakeQueue([], head=[("t", time.time() * 1000 + 600)]), lambda task: None, soon)
    assert overdue.waits == [0] and far.waits == [0.25] and 0 < soon.waits[0] <= 0.6


def test_a_reaped_task_is_due_exactly_when_it_was_reaped(r):
    """The reaper puts a task back due *now* on the server's clock (no lease added), so the next
    claim takes it. TIME, reap() and TIME again go in one MULTI/EXEC (reap given a queue whose
    client is that transaction); in a round where both TIMEs fall in the same millisecond, the
    script's clock read that millisecond too, and the task's new due time must be exactly it."""
    q = DelayedQueue(r, "q", lease_ms=60_000)
    task = q.schedule("dead", 0)
    q.claim()
    for _ in range(200):
        r.zrem(q.key, task)
        r.zadd(q.processing, {task: 0})                  # its lease ran out long ago
        with r.pipeline(transaction=True) as p:
            p.time()
            reap(DelayedQueue(p, "q"))
            p.time()
            (s0, us0), reaped, (s1, us1) = p.execute()
        now = s0 * 1000 + us0 // 1000
        if now == s1 * 1000 + us1 // 1000:
            break
    else:
        pytest.fail("no round had both TIMEs in one millisecond")
    assert reaped == [task] and r.zscore(q.key, task) == now and r.zcard(q.processing) == 0
    assert q.claim() == [task]
