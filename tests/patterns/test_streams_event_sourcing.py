"""The event-sourcing pattern on a real Redis: versioned appends, replay, snapshots, the
projector's checkpoint, consumer groups, and the log across a kill -9 restart."""

from __future__ import annotations

import pytest
import redis

from redistutor.patterns.streams_event_sourcing import (
    EventStore,
    NaiveEventStore,
    VersionConflict,
    apply_event,
    apply_event_naive,
    fold,
    project,
    take_snapshot,
    version_of,
    withdraw,
)
from redistutor.race import PausePoint, run_in_thread
from redistutor.scenarios import streams_event_sourcing as sc

KEY = "account:1:events"


def test_append_with_the_right_version_adds_one_entry(r):
    store = EventStore(r, KEY)
    first = store.append(0, type="deposited", amount=100)
    second = store.append(1, type="withdrawn", amount=30)
    assert r.xlen(KEY) == 2 and [i for i, _ in r.xrange(KEY)] == [first, second]
    assert r.xrange(KEY)[1][1] == {"type": "withdrawn", "amount": "30"}


@pytest.mark.parametrize("expected", [0, 2, 5])
def test_append_with_a_stale_version_is_rejected_and_adds_nothing(r, expected):
    store = EventStore(r, KEY)
    store.append(0, type="deposited", amount=100)
    with pytest.raises(redis.ResponseError, match="^VERSION 1$") as err:
        store.append(expected, type="withdrawn", amount=80)
    assert version_of(err.value) == 1 and r.xlen(KEY) == 1


def test_version_of_ignores_other_errors():
    assert version_of(redis.ResponseError("WRONGTYPE Operation")) is None


def test_naive_store_appends_whatever_the_version(r):
    store = NaiveEventStore(r, KEY)
    store.append(0, type="deposited", amount=1)
    store.append(0, type="deposited", amount=1)
    assert r.xlen(KEY) == 2


def test_fold_adds_deposits_and_subtracts_everything_else():
    assert fold(10, {"type": "deposited", "amount": "5"}) == 15
    assert fold(10, {"type": "withdrawn", "amount": "5"}) == 5


@pytest.mark.parametrize("batch", [1, 7, 20, 500])
def test_replay_equals_the_independent_sum_whatever_the_batch(r, batch):
    events = sc.generate_events(20, seed=3)
    ids = sc.append_all(r, KEY, events, batch=6)
    balance, last_id, read = EventStore(r, KEY).replay(fold, 0, batch=batch)
    assert balance == sc.expected_balance(events) and last_id == ids[-1] and read == 20


def test_replay_after_an_id_is_exclusive_and_starts_from_the_given_state(r):
    events = sc.generate_events(10, seed=4)
    ids = sc.append_all(r, KEY, events)
    head = sc.expected_balance(events[:4])
    balance, last_id, read = EventStore(r, KEY).replay(fold, head, after=ids[3])
    assert read == 6 and balance == sc.expected_balance(events) and last_id == ids[-1]
    assert EventStore(r, KEY).replay(fold, 7, after=ids[-1]) == (7, ids[-1], 0)


def test_replay_of_a_missing_stream_reads_nothing(r):
    assert EventStore(r, "nothing").replay(fold, 0) == (0, "0-0", 0)


def test_generated_events_never_overdraw():
    balance = 0
    for e in sc.generate_events(500):
        balance = fold(balance, {**e, "amount": str(e["amount"])})
        assert balance >= 0


def test_withdraw_refuses_without_funds_and_appends_with_them(r):
    store = EventStore(r, KEY)
    store.append(0, type="deposited", amount=50)
    assert withdraw(store, 80) is None and r.xlen(KEY) == 1
    assert withdraw(store, 30) is not None and store.replay(fold, 0)[0] == 20


def test_conflicting_writers_one_is_rejected_then_refused(r):
    race = sc.conflict_race(r, KEY, EventStore)
    assert race["b"] is not None and race["a"] is None and race["balance"] == 20 and race["version"] == 2
    assert any(res.startswith("rejected: VERSION 2") for _, _, res in race["steps"])


def test_conflicting_writers_naive_accepts_both(r):
    race = sc.conflict_race(r, KEY, NaiveEventStore)
    assert race["a"] is not None and race["b"] is not None and race["balance"] == -60


def test_withdraw_gives_up_after_its_retries(r):
    store = EventStore(r, KEY)
    store.append(0, type="deposited", amount=1000)

    def interloper(balance, version):   # another writer appends every time we decide
        r.xadd(KEY, {"type": "deposited", "amount": 1})

    with pytest.raises(VersionConflict):
        withdraw(store, 10, retries=2, hooks={"before_append": interloper})
    assert r.xlen(KEY) == 4   # 1 + 3 interlopers, none of ours


def test_apply_event_writes_balance_count_and_checkpoint_together(r):
    apply_event(r, "view", "5-0", {"type": "deposited", "amount": "40"})
    apply_event(r, "view", "6-0", {"type": "withdrawn", "amount": "15"})
    assert r.hgetall("view") == {"balance": "25", "events": "2", "last_id": "6-0"}


class Crash(Exception):
    pass


def _crash_at(r, n):
    """A client that raises Crash just before the n-th checkpoint is issued (a process dying there)."""
    seen = {"n": 0}

    def hook(entry_id):
        seen["n"] += 1
        if seen["n"] == n:
            raise Crash(entry_id)

    return sc.StopBeforeCheckpoint(r, hook)


@pytest.mark.parametrize("apply, twice", [(apply_event, 0), (apply_event_naive, 1)])
def test_projector_crash_between_projection_and_checkpoint(r, apply, twice):
    events = sc.generate_events(30, seed=5)
    ids = sc.append_all(r, KEY, events)
    with pytest.raises(Crash):
        project(_crash_at(r, 12), KEY, "view", apply=apply, batch=8)
    assert sc.view_state(r, "view")["last_id"] == ids[10]      # checkpoint: event 11
    assert sc.view_state(r, "view")["events"] == 11 + twice
    project(r, KEY, "view", apply=apply, batch=8)
    state = sc.view_state(r, "view")
    assert state["events"] - 30 == twice and state["last_id"] == ids[-1]
    double = fold(0, {**events[11], "amount": str(events[11]["amount"])})
    assert state["balance"] == sc.expected_balance(events) + twice * double


def test_project_resumes_from_the_checkpoint_only(r):
    events = sc.generate_events(10, seed=6)
    sc.append_all(r, KEY, events)
    assert project(r, KEY, "view") == 10 and project(r, KEY, "view") == 0
    sc.append_all(r, KEY, events[:3])
    assert project(r, KEY, "view") == 3
    assert sc.view_state(r, "view")["balance"] == sc.expected_balance(events + events[:3])


def test_stop_before_checkpoint_sees_only_checkpoint_writes(r):
    seen = []
    c = sc.StopBeforeCheckpoint(r, seen.append)
    c.hset("other", "field", "x")
    apply_event_naive(c, "view", "9-0", {"type": "deposited", "amount": "5"})
    apply_event(c, "view", "10-0", {"type": "deposited", "amount": "1"})
    assert seen == ["9-0", "10-0"] and r.hgetall("view") == {"balance": "6", "events": "2", "last_id": "10-0"}


def test_apply_event_naive_leaves_the_checkpoint_behind_when_it_stops(r):
    pause = PausePoint("before checkpoint")
    fut = run_in_thread(apply_event_naive, sc.StopBeforeCheckpoint(r, pause), "view", "9-0",
                        {"type": "deposited", "amount": "5"})
    pause.wait_reached()
    assert r.hgetall("view") == {"balance": "5", "events": "1"}
    pause.release()
    fut.result(5)
    assert r.hget("view", "last_id") == "9-0"


def test_apply_event_sends_nothing_before_exec(r):
    pause = PausePoint("before checkpoint")
    fut = run_in_thread(apply_event, sc.StopBeforeCheckpoint(r, pause), "view", "9-0",
                        {"type": "deposited", "amount": "5"})
    pause.wait_reached()
    assert r.exists("view") == 0
    pause.release()
    fut.result(5)
    assert r.hgetall("view") == {"balance": "5", "events": "1", "last_id": "9-0"}


def test_snapshot_plus_tail_equals_full_replay(r):
    events = sc.generate_events(100, seed=7)
    sc.append_all(r, KEY, events)
    trial = sc.snapshot_trial(EventStore(r, KEY), "snap", 60)
    assert trial["snapshot"]["version"] == 60 and trial["snapshot"]["balance"] == sc.expected_balance(events[:60])
    assert trial["full"][2] == 100 and trial["tail"][2] == 40
    assert trial["full"][0] == trial["tail"][0] == sc.expected_balance(events)
    assert r.hget("snap", "last_id") == trial["snapshot"]["last_id"]


def test_take_snapshot_of_everything(r):
    events = sc.generate_events(5, seed=8)
    ids = sc.append_all(r, KEY, events)
    assert take_snapshot(EventStore(r, KEY), "snap") == {
        "balance": sc.expected_balance(events), "last_id": ids[-1], "version": 5}


def test_groups_fan_out_and_split(redis_server, r):
    sc.append_all(r, KEY, sc.generate_events(200, seed=9))
    got = sc.groups_trial(redis_server, KEY, groups={"balance": 3, "audit": 1})
    everything = {i for i, _ in r.xrange(KEY)}
    parts = [set(ids) for ids in got["balance"].values()]
    assert sum(map(len, parts)) == 200 and set().union(*parts) == everything
    assert set(got["audit"]["a1"]) == everything
    assert all(g["pending"] == 0 and g["lag"] == 0 for g in r.xinfo_groups(KEY))


def test_projector_process_killed_resumes_exactly(redis_server, r):
    events = sc.generate_events(120, seed=10)
    sc.append_all(r, KEY, events)
    run = sc.projector_crash(redis_server, KEY, "view", atomic=True, stop_at=50)
    assert run["exitcode"] == -9 and run["at_kill"]["events"] == 49
    assert run["after"] == {"balance": sc.expected_balance(events), "events": 120,
                            "last_id": r.xrange(KEY)[-1][0]}


def test_durability_kill_restart():
    events = sc.generate_events(50, seed=11)
    trial = sc.durability_trial(events)
    b = sc.expected_balance(events)
    assert trial == {"none": (50, b, 0, 0), "aof-everysec": (50, b, 50, b)}


def test_replay_speed_counts_round_trips(r):
    sc.append_all(r, KEY, sc.generate_events(50, seed=12))
    speed = sc.replay_speed(r, KEY, batches=(1, 10, 100))
    # XRANGE calls: ceil(n / batch) + the empty read that ends it
    assert {b: v[:2] for b, v in speed.items()} == {1: (50, 51), 10: (50, 6), 100: (50, 2)}


def test_plot_balance_summarises_the_snapshot_and_the_tail(r, capsys):
    import matplotlib
    matplotlib.use("Agg")
    events = sc.generate_events(40, seed=13)
    sc.append_all(r, KEY, events)
    store = EventStore(r, KEY)
    sc.plot_balance(store, sc.snapshot_trial(store, "snap", 30))
    out = capsys.readouterr().out
    assert f"brings it to {sc.expected_balance(events)}" in out and "tail of 10 events" in out


def test_withdraw_allows_exactly_the_balance_and_not_one_more(r):
    store = EventStore(r, KEY)
    store.append(0, type="deposited", amount=80)
    assert withdraw(store, 81) is None
    assert withdraw(store, 80) is not None and store.replay(fold, 0)[0] == 0


def test_withdraw_lets_other_errors_through(r):
    r.xadd(KEY, {"type": "deposited", "amount": 100})
    store = EventStore(r, KEY)
    store.LUA_APPEND = "return redis.error_reply('WRONGTYPE not a version error')"
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        withdraw(store, 10)


def _counts_of(t, name):
    return [c.args[c.args.index("COUNT") + 1] for c in t.select(name)]


def test_apply_event_is_one_multi_exec(r):
    from redistutor import trace

    with trace(r) as t:
        apply_event(r, "view", "5-0", {"type": "deposited", "amount": "40"})
    assert t.names() == ["MULTI", "HINCRBY", "HINCRBY", "HSET", "EXEC"] and t.round_trips == 1


def test_replay_and_project_read_in_their_default_batches(r):
    from redistutor import trace

    sc.append_all(r, KEY, sc.generate_events(120, seed=3))
    with trace(r) as t:
        EventStore(r, KEY).replay(fold, 0)
        project(r, KEY, "view")
    assert _counts_of(t, "XRANGE") == ["500", "500", "100", "100", "100"]   # replay: 1 + empty; project: 2 + empty


def test_take_snapshot_of_an_empty_stream(r):
    assert take_snapshot(EventStore(r, KEY), "snap") == {"balance": 0, "last_id": "0-0", "version": 0}
    assert r.hgetall("snap") == {"balance": "0", "last_id": "0-0", "version": "0"}


def test_withdraw_defaults_hook_arguments_event_and_conflict(r):
    store = EventStore(r, KEY)
    store.append(0, type="deposited", amount=1000)
    seen = []

    def interloper(balance, version):   # another writer appends every time we decide
        seen.append((balance, version))
        r.xadd(KEY, {"type": "deposited", "amount": 1})

    with pytest.raises(VersionConflict, match="now holds 5 events") as err:
        withdraw(store, 10, hooks={"before_append": interloper})
    assert seen == [(1000, 1), (1001, 2), (1002, 3), (1003, 4)]   # the default: 3 retries after the first try
    assert err.value.actual == 5
    assert withdraw(store, 10) and r.xrange(KEY)[-1][1] == {"type": "withdrawn", "amount": "10"}
