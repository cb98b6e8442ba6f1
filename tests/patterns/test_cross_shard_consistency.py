"""Cross-shard consistency on two real, independent redis-servers (a lab Fleet) and SQLite."""

from __future__ import annotations

import random
import time

import pytest
import redis

from redistutor import lab
from redistutor.db import Database
from redistutor.events import EventLog
from redistutor.patterns.cross_shard_consistency import (
    MarkedSplit,
    NaiveSplit,
    Read,
    RollForward,
    SourceOfTruth,
    Stamp,
    Stamped,
    StampedSplit,
    decode,
    encode,
    verdict,
)
from redistutor.race import PausePoint, run_in_thread
from redistutor.scenarios.cross_shard_consistency import (
    InjectedFault,
    Trial,
    blind_repair,
    crash,
    late_writer_during_repair,
    pair_table,
    stalled_writer,
    tear_trial,
    tear_write,
    trial_table,
)

FREE = {"profile": {"plan": "free"}, "settings": {"plan": "free", "max_projects": 3}}
PRO = {"profile": {"plan": "pro"}, "settings": {"plan": "pro", "max_projects": 50}}
TEAM = {"profile": {"plan": "team"}, "settings": {"plan": "team", "max_projects": 200}}


def fail(entity, part):
    raise InjectedFault(entity)


def _fleet_shards(fleet):
    for node in fleet:
        if not node.running:
            node.restart()
        node.r.flushall()
    return {"profile": fleet["a"].r, "settings": fleet["b"].r}


@pytest.fixture(scope="module")
def fleet():
    """Two servers without persistence: what every test uses but the two kill -9 ones (an AOF
    write per command makes each SET several times slower on a busy machine, and the mutation
    run repeats these tests for every mutant)."""
    f = lab.Fleet(names=["a", "b"]).start()
    yield f
    f.stop()


@pytest.fixture
def shards(fleet):
    yield _fleet_shards(fleet)


@pytest.fixture(scope="module")
def aof_fleet():
    """With an AOF, so that a shard killed with kill -9 restarts with what it had acknowledged."""
    f = lab.Fleet(names=["a", "b"], persistence="aof-everysec").start()
    yield f
    f.stop()


@pytest.fixture
def aof_shards(aof_fleet):
    yield _fleet_shards(aof_fleet)


@pytest.fixture
def truth():
    with Database() as db:
        yield SourceOfTruth(db)


def test_encode_decode_round_trip_and_digit_only_tokens():
    assert decode(encode(Stamp("ab12"), {"x": "a|b"})) == (Stamp("ab12"), {"x": "a|b"})
    assert decode(encode(Stamp("1234567890123456"), {"x": 1})) == (Stamp("1234567890123456"), {"x": 1})
    assert decode(encode(Stamp("1234", 7), {"x": 1})) == (Stamp("1234", 7), {"x": 1})
    assert decode(None) == (None, None)


def test_verdict():
    s, t = Stamp("a"), Stamp("b")
    assert verdict({"p": s, "q": s}) == "ok"
    assert verdict({"p": s, "q": t}) == "torn"
    assert verdict({"p": s, "q": None}) == "torn"
    assert verdict({"p": None, "q": None}) == "missing"


def test_naive_split_serves_a_torn_pair(shards, truth):
    naive = NaiveSplit(shards, truth=truth)
    naive.write(1, FREE)
    naive.hooks = {"between_sets": fail}
    with pytest.raises(InjectedFault):
        naive.write(1, PRO)
    assert naive.read(1) == {"profile": PRO["profile"], "settings": FREE["settings"]}


def test_stamped_detects_a_kill_between_sets_and_repair_rolls_forward(aof_fleet, aof_shards, truth):
    shards = aof_shards
    s = StampedSplit(shards, truth=truth, hooks=None)
    first = s.write(1, FREE)
    assert shards["profile"].get("acct:1:profile").startswith(first.token + "|")
    s.hooks = {"between_sets": lambda e, p: crash(aof_fleet["b"])}
    with pytest.raises(redis.ConnectionError):
        s.write(1, PRO)
    aof_fleet["b"].restart()  # the AOF brings back the old settings
    s.hooks = None
    torn = s.read(1)
    assert torn.status == "torn" and torn.parts == {"profile": PRO["profile"], "settings": FREE["settings"]}
    s.repair(1)
    fixed = s.read(1)
    assert fixed.ok and fixed.parts == PRO == truth.load(1)[0]
    assert "torn" not in repr(pair_table([fixed])) and "✗ torn" in repr(pair_table([torn]))


def test_detection_is_exact_over_300_writes(shards, truth):
    """The notebook's run is 1000 accounts (``sc.detection_run``, executed with the notebook); 300
    with a seeded 10 % torn pin the same exactness here, over three audit batches of 128, at a
    third of the cost for every mutant whose tests include this one."""
    rng = random.Random(11)
    tear = set(rng.sample(range(1, 301), 30))
    phase = {"upgrade": False}

    def maybe(entity, part):
        if phase["upgrade"] and entity in tear:
            raise InjectedFault(entity)

    s = StampedSplit(shards, truth=truth, hooks={"between_sets": maybe})
    for e in range(1, 301):
        s.write(e, FREE)
    assert s.audit(range(1, 301)) == []
    phase["upgrade"] = True
    injected = set()
    for e in range(1, 301):
        try:
            s.write(e, PRO)
        except InjectedFault:
            injected.add(e)
    assert injected == tear
    assert s.audit(range(1, 301), batch=128) == sorted(injected)
    # single reads agree with the batched audit
    assert {e for e in range(1, 301) if s.read(e).status == "torn"} == injected
    for e in injected:
        s.repair(e)
    assert s.audit(range(1, 301)) == []
    assert all(s.read(e).parts == PRO for e in range(1, 301))


def test_tear_trials_detect_exactly_the_injected_tears(shards, truth):
    s = StampedSplit(shards, truth=truth)
    zero = tear_trial(s, range(1, 101), rate=0.0, seed=1, before=FREE, after=PRO)
    assert zero.injected == zero.detected == set() and zero.false_positives == set()
    t = tear_trial(s, range(1, 201), rate=0.25, seed=3, before=FREE, after=PRO)
    assert len(t.planned) == 50 and t.injected == t.planned == t.detected
    assert t.missed == set() and t.false_positives == set() and s.hooks is None
    table = trial_table([zero, t])
    assert table.rows[1] == ["exception", "25%", 3, 400, 50, 50, 0, 0]
    assert "50 of 50 torn writes flagged, 0 clean writes flagged" in repr(table)


def test_tear_trial_with_kill_9_of_shard_b_and_restart(aof_fleet, aof_shards, truth):
    s = StampedSplit(aof_shards, truth=truth)
    t = tear_trial(s, range(1, 41), rate=0.05, seed=2, before=FREE, after=PRO, label="kill -9",
                   fault=lambda e, part: crash(aof_fleet["b"]), recover=aof_fleet["b"].restart)
    assert len(t.injected) == 2 and t.injected == t.planned == t.detected and not t.false_positives
    assert all(s.read(e).parts["settings"] == FREE["settings"] for e in t.injected)  # B kept the old part


def test_detection_counts_a_missed_tear_and_a_false_positive():
    t = Trial("x", 0.5, 1, [1, 2, 3, 4], {1, 2}, {1, 2}, {2, 3})
    assert t.missed == {1} and t.false_positives == {3}
    assert trial_table([t]).rows[0][-2:] == [1, 1]


def test_stamped_core_writes_one_stamp_per_logical_write(shards):
    s = Stamped(shards)
    stamp = s.new_stamp()
    s.write(1, FREE, stamp)
    res = s.read(1)
    assert res.ok and res.parts == FREE and set(res.stamps.values()) == {stamp}
    assert res.raw["profile"] == shards["profile"].get("acct:1:profile") == encode(stamp, FREE["profile"])
    shards["settings"].set("acct:1:settings", encode(s.new_stamp(), FREE["settings"]))  # another write's part
    assert s.read(1).status == "torn"
    shards["settings"].delete("acct:1:settings")
    assert s.read(1).status == "torn" and s.read(2).status == "missing"


def test_repair_never_overwrites_a_writer_that_lands_after_its_read(shards, truth):
    """The repair's read (of the parts and of the truth) and its write are two steps; a writer whose
    SETs land in between must survive. The old repair (SET every part from the row it loaded)
    rolled the entity back to older data under stamps that agree, so no audit could ever see it."""
    s = StampedSplit(shards, truth=truth)
    safe = late_writer_during_repair(s, 1, (FREE, PRO, TEAM), repair_with=RollForward)
    assert safe["seen"].status == "torn"
    assert safe["written"] == {"profile": False, "settings": False}
    assert safe["after"].ok and safe["after"].parts == TEAM == safe["truth"]
    assert set(safe["after"].stamps.values()) == {safe["late_stamp"]}
    # The old, blind repair overwrites the late writer: this is what the test above rules out.
    blind = late_writer_during_repair(s, 2, (FREE, PRO, TEAM))
    assert blind["after"].ok and blind["after"].parts == PRO != blind["truth"] == TEAM
    assert blind["audit"] == []  # undetectable: the stamps agree


def test_stamped_split_repair_survives_a_late_writer(shards, truth):
    """The same race through StampedSplit.repair (what read_consistent and the audits call): a
    writer that saves and SETs TEAM right after the repair loaded the row keeps its write."""
    from redistutor.scenarios.cross_shard_consistency import _LateWriterTruth

    s = StampedSplit(shards, truth=truth)
    s.write(4, FREE)
    tear_write(s, 4, PRO)
    seen = s.read(4)
    late = StampedSplit(shards, truth=truth)
    s.truth = _LateWriterTruth(truth, lambda: late.write(4, TEAM))
    written = s.repair(4, seen=seen)
    s.truth = truth
    assert written == {"profile": False, "settings": False} and s.stats.repair_skips == 2
    assert s.read(4).ok and s.read(4).parts == TEAM == truth.load(4)[0]


def test_roll_forward_writes_only_parts_that_still_hold_what_was_seen(shards, truth):
    s = StampedSplit(shards, truth=truth)
    s.write(3, FREE)
    assert tear_write(s, 3, PRO) == "InjectedFault"
    seen = s.read(3)
    # a writer rewrites only the settings part after the read: the repair leaves it, fixes the profile
    shards["settings"].set("acct:3:settings", encode(Stamp("late"), PRO["settings"]))
    assert RollForward(s, truth).repair(seen) == {"profile": True, "settings": False}
    assert shards["settings"].get("acct:3:settings") == encode(Stamp("late"), PRO["settings"])
    # a missing part ("" in the script) is written only if it is still missing
    shards["settings"].delete("acct:3:settings")
    seen = s.read(3)
    assert RollForward(s, truth).repair(seen) == {"profile": True, "settings": True}
    assert s.read(3).ok and s.read(3).parts == PRO
    assert blind_repair(s, 3) == {"profile": True, "settings": True} and s.read(3).ok


@pytest.mark.parametrize("held_for, repairs, final", [(0, 0, "ok"), (3, 0, "ok"), (4, 1, "torn")])
def test_back_off_only_makes_a_false_repair_rarer(shards, truth, held_for, repairs, final):
    s = StampedSplit(shards, truth=truth)
    out = stalled_writer(s, 10 + held_for, FREE, PRO, held_for=held_for, retries=3, backoff=0.001)
    assert out["repairs"] == repairs and out["after"].status == final and out["after"].parts == PRO


def test_repair_at_once_during_an_in_flight_write_leaves_a_false_tear(shards, truth):
    s = StampedSplit(shards, truth=truth)
    s.write(7, FREE)
    pause = PausePoint("between_sets")
    s.hooks = {"between_sets": pause}
    w = run_in_thread(s.write, 7, PRO)
    pause.wait_reached()
    assert s.read_or_repair_at_once(7).status == "torn"
    pause.release()
    w.result(timeout=10)
    s.hooks = None
    after = s.read(7)
    assert after.status == "torn" and after.parts == PRO and s.stats.repairs == 1


def test_read_consistent_backs_off_instead_of_repairing_an_in_flight_write(shards, truth):
    s = StampedSplit(shards, truth=truth)
    s.write(8, FREE)
    wp, rp = PausePoint("between_sets"), PausePoint("before_retry")
    s.hooks = {"between_sets": wp, "before_retry": rp}
    w = run_in_thread(s.write, 8, PRO)
    wp.wait_reached()
    rd = run_in_thread(s.read_consistent, 8)
    _, attempt, first = rp.wait_reached()
    assert first.status == "torn" and attempt == 1 and s.stats.repairs == 0
    wp.release()
    stamp = w.result(timeout=10)
    rp.release()
    res = rd.result(timeout=10)
    assert res.ok and set(res.stamps.values()) == {stamp} and s.stats.repairs == 0


def test_read_consistent_repairs_a_real_tear_after_its_retries(shards, truth):
    s = StampedSplit(shards, truth=truth, hooks={"between_sets": fail})
    with pytest.raises(InjectedFault):
        s.write(9, PRO)  # a brand-new entity whose settings never arrive
    s.hooks = None
    res = s.read_consistent(9, retries=2, backoff=0.001)
    assert res.ok and res.parts == PRO and s.stats.retries == 2 and s.stats.repairs == 1


def test_timestamp_versions_lose_a_skewed_writers_update_and_counters_do_not(shards):
    for versions, expected in [("timestamp", FREE), ("counter", PRO)]:
        for c in shards.values():
            c.flushall()
        with Database() as db:
            truth = SourceOfTruth(db)
            on_time = StampedSplit(shards, truth=truth, versions=versions)
            skewed = StampedSplit(shards, truth=truth, versions=versions, clock=lambda: time.time() - 5)
            on_time.write(1, FREE)
            skewed.write(1, PRO)
            res = on_time.read(1)
            assert res.ok and res.parts == expected, versions
            assert skewed.stats.rejected == (2 if versions == "timestamp" else 0)
            assert truth.load(1)[0] == PRO


def test_counter_newest_side_of_a_tear_and_older_parts_refused(shards, truth):
    s = StampedSplit(shards, truth=truth, versions="counter")
    s.write(1, FREE)
    s.hooks = {"between_sets": fail}
    with pytest.raises(InjectedFault):
        s.write(1, PRO)
    torn = s.read(1)
    assert torn.newest() == "profile" and torn.stamps["profile"].version == 2
    # a stale part (version 1) is refused by the shard holding version 2
    s.hooks = None
    assert not s._set("profile", 1, Stamp("old", 1), FREE["profile"])
    assert s.read(1).parts["profile"] == PRO["profile"]
    s.repair(1)
    assert s.read(1).ok and s.read(1).parts == PRO


def test_counter_requires_truth(shards):
    with pytest.raises(ValueError, match="source of truth"):
        StampedSplit(shards, versions="counter")


def test_commit_marker_hides_a_crash_before_the_marker(shards, truth):
    m = MarkedSplit(shards, truth=truth, grace=30)
    tx1 = m.write(1, FREE)

    def crash(entity, txid):
        raise InjectedFault(txid)

    m.hooks = {"before_marker": crash}
    with pytest.raises(InjectedFault):
        m.write(1, PRO)
    res = m.read(1)
    assert res.ok and res.parts == FREE and shards["profile"].get("acct:1:committed") == tx1
    assert len(m.orphans(1)) == 2
    m.hooks = {"between_sets": fail}
    with pytest.raises(InjectedFault):
        m.write(1, PRO)
    assert m.read(1).parts == FREE
    m.hooks = None
    tx3 = m.write(1, PRO)
    assert m.read(1).parts == PRO
    # the superseded parts now expire; the committed ones do not
    assert 0 < shards["profile"].ttl(f"acct:1:profile:{tx1}") <= 30
    assert shards["profile"].ttl(f"acct:1:profile:{tx3}") == -1


def test_commit_marker_reader_retries_when_parts_were_collected(shards):
    m = MarkedSplit(shards)
    tx = m.write(1, FREE)
    shards["settings"].delete(f"acct:1:settings:{tx}")
    res = m.read(1, retries=2)
    assert res.status == "torn" and m.stats.retries == 3
    assert MarkedSplit(shards).read(2).status == "missing"


def test_versions_compare_as_numbers_not_strings(shards, truth):
    """Version 10 is newer than 9 (as strings "9" > "10"): the shard takes 10 over 9, refuses 9
    over 10, and the newer side of a 9/10 tear is the one holding 10."""
    s = StampedSplit(shards, truth=truth, versions="counter")
    part = s.parts[0]
    assert s._set(part, 1, Stamp("a", 9), FREE[part]) and s._set(part, 1, Stamp("b", 10), PRO[part])
    assert s._set(part, 1, Stamp("c", 9), FREE[part]) is False and s.stats.rejected == 1
    s._set(s.parts[1], 1, Stamp("a", 9), FREE[s.parts[1]])
    torn = s.read(1)
    assert torn.status == "torn" and torn.newest() == part and torn.stamps[part] == Stamp("b", 10)


def test_timestamp_repair_does_not_trust_the_repairers_clock(shards, truth):
    """A torn timestamped write is repaired by a client whose clock runs an hour ahead. The repair
    must not carry that clock: an on-time write right after it has to land on every shard."""
    on_time = StampedSplit(shards, truth=truth, versions="timestamp")
    ahead = StampedSplit(shards, truth=truth, versions="timestamp", clock=lambda: time.time() + 3600)
    on_time.write(1, FREE)
    on_time.hooks = {"between_sets": fail}
    with pytest.raises(InjectedFault):
        on_time.write(1, PRO)
    on_time.hooks = None
    torn = ahead.read(1)
    newest = max(s.version for s in torn.stamps.values())
    assert torn.status == "torn" and all(ahead.repair(1, seen=torn).values())
    repaired = on_time.read(1)
    assert repaired.ok and repaired.parts == PRO and repaired.stamps[on_time.parts[0]].version == newest
    on_time.write(1, FREE)
    after = on_time.read(1)
    assert after.ok and after.parts == FREE and on_time.stats.rejected == 0



# -- what the notebook shows around the pattern: timeline, hooks, keys, values, counters --------------


def test_timeline_records_each_write_set_mismatch_and_repair(shards, truth):
    """The notebook's timeline (``lab.timeline_table(log)``) is these events: who did what, in
    order, with the stamp (``v<version>/<token>`` when versioned) and the key it went to."""
    log = EventLog()
    s = StampedSplit(shards, truth=truth, versions="counter", log=log)
    first = s.write(1, FREE)
    assert tear_write(s, 1, PRO) == "InjectedFault"
    assert s.read_consistent(1, retries=1, backoff=0.001).ok
    s.write(2, FREE)
    tear_write(s, 2, PRO)
    s.read_or_repair_at_once(2)
    events = [(e.actor, e.kind, e.detail) for e in log.events]
    tear = events[3][2].removeprefix("1: ")  # the torn write's stamp as the log shows it
    assert str(first) == f"v1/{first.token}" and tear.startswith("v2/") and tear != str(first)
    assert events[:8] == [
        ("writer", "write", f"1: {first}"),
        ("writer", "set", f"acct:1:profile <- {first}"),
        ("writer", "set", f"acct:1:settings <- {first}"),
        ("writer", "write", f"1: {tear}"),
        ("writer", "set", f"acct:1:profile <- {tear}"),  # then the fault: no SET of the settings
        ("reader", "mismatch", "1: retry 1 after backing off"),
        ("reader", "repair", "1: still torn after 1 retries"),
        ("repair", "repair", "1: rolled forward ['profile', 'settings']"),
    ]
    assert [e for e in events[8:] if e[1] != "set"] == [
        ("writer", "write", events[8][2]), ("writer", "write", events[11][2]),
        ("reader", "repair", "2: repaired at once"), ("repair", "repair", "2: rolled forward ['profile', 'settings']")]
    marked_log = EventLog()
    tx = MarkedSplit(shards, log=marked_log).write(5, FREE)
    assert [(e.actor, e.kind, e.detail) for e in marked_log.events] == [
        ("writer", "set", f"acct:5:profile:{tx}"), ("writer", "set", f"acct:5:settings:{tx}"),
        ("writer", "commit", f"acct:5:committed -> {tx}")]


def test_fault_hooks_get_the_entity_and_what_comes_next(shards, truth):
    """The notebook's faults are hooks: ``between_sets(entity, next_part)``,
    ``before_marker(entity, txid)``, ``before_retry(entity, attempt, read)``, given to the
    constructor or set later."""
    calls = []

    def hooks(*names):
        return {n: (lambda *args, n=n: calls.append((n, *args))) for n in names}

    NaiveSplit(shards, truth=truth, hooks=hooks("between_sets")).write(1, FREE)
    StampedSplit(shards, truth=truth, hooks=hooks("between_sets")).write(2, FREE)
    tx = MarkedSplit(shards, truth=truth, hooks=hooks("between_sets", "before_marker")).write(3, FREE)
    assert calls == [("between_sets", 1, "settings"), ("between_sets", 2, "settings"),
                     ("between_sets", 3, "settings"), ("before_marker", 3, tx)]
    calls.clear()
    s = StampedSplit(shards, truth=truth, hooks={"between_sets": fail})
    tear_write(s, 4, PRO)
    s.hooks = hooks("before_retry")
    assert s.read_consistent(4, retries=2, backoff=0.001).ok
    assert [(n, e, a, r.status, r.entity) for n, e, a, r in calls] == [
        ("before_retry", 4, 1, "torn", 4), ("before_retry", 4, 2, "torn", 4)]


def test_naive_split_writes_the_truth_first_and_plain_json_under_acct_keys(shards, truth):
    naive = NaiveSplit(shards, truth=truth)
    naive.write(5, FREE)
    assert truth.load(5) == (FREE, 1)
    assert shards["profile"].get("acct:5:profile") == '{"plan":"free"}'
    assert shards["settings"].get("acct:5:settings") == '{"max_projects":3,"plan":"free"}'
    shards["settings"].delete("acct:5:settings")
    assert naive.read(5) == {"profile": FREE["profile"], "settings": None}
    NaiveSplit(shards).write(6, PRO)  # no truth: only the shards
    assert truth.load(6) is None and naive.read(6) == PRO


def test_values_are_the_stamp_then_one_compact_sorted_json(shards, truth):
    """The bytes the notebook measures and that plain readers parse (the exercise splits at the
    first "|"): ``<token>|<json>`` or ``v<version>|<token>|<json>``, the JSON compact with sorted
    keys, so one payload always encodes the same."""
    payload = {"plan": "free", "max_projects": 3}
    assert encode(Stamp("ab12"), payload) == 'ab12|{"max_projects":3,"plan":"free"}'
    assert encode(Stamp("ab12", 7), payload) == 'v7|ab12|{"max_projects":3,"plan":"free"}'
    assert str(Stamp("ab12")) == "ab12" and str(Stamp("ab12", 7)) == "v7/ab12"
    # a "|" inside the JSON of a versioned value stays in the JSON
    assert decode(encode(Stamp("t", 3), {"x": "a|b|c"})) == (Stamp("t", 3), {"x": "a|b|c"})
    s = StampedSplit(shards, truth=truth)
    stamp = s.write(1, FREE)
    assert shards["settings"].get("acct:1:settings") == f'{stamp.token}|{{"max_projects":3,"plan":"free"}}'


def test_tokens_are_8_random_bytes_and_versions_follow_the_rule(shards, truth):
    """16 hex characters in every value (the notebook's cost table: "16 + 1" bytes per stamp);
    the counter version is the truth's row version, the timestamp one the writer's clock in ms."""
    core = Stamped(shards)
    five = core.new_stamp(5)
    assert len(core.new_stamp().token) == 16 and len(five.token) == 16 and five.version == 5
    assert core.new_stamp().token != core.new_stamp().token
    plain = StampedSplit(shards).write(1, FREE)  # no truth, no versions
    assert len(plain.token) == 16 and plain.version is None and truth.load(1) is None
    counter = StampedSplit(shards, truth=truth, versions="counter")
    counter.write(2, FREE)
    second = counter.write(2, PRO)
    assert len(second.token) == 16 and second.version == 2 == truth.load(2)[1]
    assert shards["profile"].get("acct:2:profile").startswith(f"v2|{second.token}|")
    ts = StampedSplit(shards, truth=truth, versions="timestamp", clock=lambda: 1_700_000_000.25).write(3, FREE)
    assert len(ts.token) == 16 and ts.version == 1_700_000_000_250
    assert len(StampedSplit(shards, token_bytes=4).write(4, FREE).token) == 8
    tx = MarkedSplit(shards).write(5, FREE)
    assert len(tx) == 16 and shards["profile"].get("acct:5:committed") == tx


def test_repairs_carry_the_truths_version(shards, truth):
    """A roll-forward writes the source of truth's version (the counter), with the core
    ``Stamped`` as with ``StampedSplit``: a repair without it could be overwritten by any
    older part."""
    truth.save(1, PRO)
    core = Stamped(shards)
    core.write(1, FREE, core.new_stamp())
    shards["settings"].delete("acct:1:settings")
    assert RollForward(core, truth).repair(core.read(1)) == {"profile": True, "settings": True}
    fixed = core.read(1)
    assert fixed.ok and fixed.parts == PRO and {s.version for s in fixed.stamps.values()} == {1}
    s = StampedSplit(shards, truth=truth, versions="counter")
    s.write(2, FREE)
    tear_write(s, 2, PRO)
    s.repair(2)
    after = s.read(2)
    assert after.ok and after.parts == PRO and {st.version for st in after.stamps.values()} == {2}
    assert all(len(st.token) == 16 for st in after.stamps.values())


def test_a_half_written_new_entity_under_versions(shards, truth):
    """A brand-new entity whose second SET never happened: the newer side is the part that exists,
    and a timestamp repair takes that part's version (not the repairer's clock); the same
    entity with no versioned part at all is repaired at version 0, before any write."""
    for versions in ("counter", "timestamp"):
        for c in shards.values():
            c.flushall()
        truth.clear()
        s = StampedSplit(shards, truth=truth, versions=versions, hooks={"between_sets": fail})
        with pytest.raises(InjectedFault):
            s.write(1, PRO)
        s.hooks = None
        torn = s.read(1)
        assert torn.status == "torn" and torn.stamps["settings"] is None and torn.newest() == "profile"
        s.repair(1, seen=torn)
        fixed = s.read(1)
        assert fixed.ok and fixed.parts == PRO, versions
        assert {st.version for st in fixed.stamps.values()} == {torn.stamps["profile"].version}
        assert all(len(st.token) == 16 for st in fixed.stamps.values())
    ts = StampedSplit(shards, truth=truth, versions="timestamp", clock=lambda: time.time() + 3600)
    truth.save(2, FREE)
    shards["profile"].set("acct:2:profile", encode(Stamp("old"), FREE["profile"]))  # unversioned
    assert ts.repair(2) == {"profile": True, "settings": True}
    fixed = ts.read(2)
    assert fixed.ok and {st.version for st in fixed.stamps.values()} == {0}
    on_time = StampedSplit(shards, truth=truth, versions="timestamp")
    on_time.write(2, PRO)
    assert on_time.read(2).parts == PRO and on_time.stats.rejected == 0


def test_an_unversioned_tear_has_no_newest_side(shards, truth):
    s = StampedSplit(shards, truth=truth)
    s.write(1, FREE)
    tear_write(s, 1, PRO)
    torn = s.read(1)
    assert torn.status == "torn" and torn.newest() is None


@pytest.mark.parametrize("reader", ["read_consistent", "read_or_repair_at_once"])
def test_readers_repair_what_they_saw_not_what_is_there_later(shards, truth, reader):
    """A reader repairs the pair it judged torn: a writer that completes after that read (here,
    right as the repair starts) is left alone, not rewritten from the truth a second time."""
    from redistutor.scenarios.cross_shard_consistency import _LateWriterTruth

    s = StampedSplit(shards, truth=truth)
    s.write(1, FREE)
    tear_write(s, 1, PRO)
    late: list[Stamp] = []
    s.truth = _LateWriterTruth(truth, lambda: late.append(StampedSplit(shards, truth=truth).write(1, TEAM)))
    if reader == "read_consistent":
        s.read_consistent(1, retries=0)
    else:
        s.read_or_repair_at_once(1)
    s.truth = truth
    after = s.read(1)
    assert s.stats.repairs == 1 and s.stats.repair_skips == 2
    assert after.ok and after.parts == TEAM and set(after.stamps.values()) == {late[0]}


def test_reader_counters_and_defaults(shards, truth):
    """``read`` counts the torn reads only; ``read_consistent`` retries 3 times by default."""
    s = StampedSplit(shards, truth=truth)
    s.write(1, FREE)
    assert s._set("profile", 9, Stamp("t"), FREE["profile"]) is True  # unversioned: always stored
    assert s.read(1).ok and s.read(9).status == "torn" and s.read(3).status == "missing"
    assert s.stats.torn_reads == 1
    s.write(2, FREE)
    tear_write(s, 2, PRO)
    res = s.read_consistent(2)  # torn at the first look and after each of the 3 retries
    assert res.ok and res.parts == PRO
    assert s.stats.retries == 3 and s.stats.torn_reads == 5 and s.stats.repairs == 1


def test_audit_sends_one_mget_per_shard_per_500_entities(shards, truth):
    """"Two MGETs per 500 accounts, one per shard": 501 accounts take two batches."""
    s = StampedSplit(shards, truth=truth)
    s.write(501, FREE)
    tear_write(s, 501, PRO)
    for c in shards.values():
        c.config_resetstat()
    assert s.audit(range(1, 502)) == [501]
    for c in shards.values():
        assert c.info("commandstats")["cmdstat_mget"]["calls"] == 2


def test_source_of_truth_counts_its_setup_apart_from_reads_and_writes():
    """The table is ``accounts``; creating it (and the PRAGMA) and clearing it count as "schema",
    so ``db.counts`` shows the writer's saves and the repairs' loads and nothing else."""
    with Database() as db:
        truth = SourceOfTruth(db)
        assert dict(db.counts) == {"schema": 2}
        assert truth.save(5, FREE) == 1 and truth.save(5, PRO) == 2 and truth.load(5) == (PRO, 2)
        assert dict(db.counts) == {"schema": 2, "write": 2, "read": 1}
        truth.clear()
        assert truth.load(5) is None
        assert dict(db.counts) == {"schema": 3, "write": 2, "read": 2}
        truth.save(6, FREE)
        assert [(i, v) for i, _, v in db.execute("SELECT id, doc, version FROM accounts")] == [(6, 1)]
        assert db.execute("PRAGMA synchronous")[0][0] == 1  # NORMAL


def test_commit_marker_reads_and_orphans_in_detail(shards, truth):
    m = MarkedSplit(shards, truth=truth)
    assert m.read(2) == Read(2, "missing", {"profile": None, "settings": None},
                             {"profile": None, "settings": None})
    tx1 = m.write(5, FREE)
    assert truth.load(5) == (FREE, 1)
    assert m.read(5) == Read(5, "ok", FREE, {"profile": Stamp(tx1), "settings": Stamp(tx1)})
    crashed = []

    def crash(entity, txid):
        crashed.append(txid)
        raise InjectedFault(txid)

    m.hooks = {"before_marker": crash}
    with pytest.raises(InjectedFault):
        m.write(5, PRO)
    m.hooks = None
    assert m.orphans(5) == [f"acct:5:profile:{crashed[0]}", f"acct:5:settings:{crashed[0]}"]
    tx3 = m.write(5, PRO)  # the default grace: superseded parts live 60 s more
    assert 55 <= shards["profile"].ttl(f"acct:5:profile:{tx1}") <= 60
    shards["settings"].delete(f"acct:5:settings:{tx3}")
    assert m.read(5) == Read(5, "torn", {"profile": PRO["profile"], "settings": None},
                             {"profile": Stamp(tx3), "settings": None})
    assert m.stats.retries == 4  # the default: 3 retries after the first look
    quick = MarkedSplit(shards, grace=0)  # under a second still leaves a reader one second
    quick.write(6, FREE)
    old = shards["profile"].get("acct:6:committed")
    quick.write(6, PRO)
    assert 0 < shards["profile"].pttl(f"acct:6:profile:{old}") <= 1000
