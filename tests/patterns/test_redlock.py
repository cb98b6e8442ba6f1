"""Redlock on 5 real, independent redis-servers (lab.Fleet): majority, validity, nodes killed,
a node restarted empty while a lock is held, persistence, and a client whose clock runs slow."""

from __future__ import annotations

import time

import pytest

from redistutor import lab
from redistutor.clocks import SkewedClock
from redistutor.events import EventLog
from redistutor.patterns.redlock import Redlock, drift_ms, validity_ms
from redistutor.timeline import max_concurrent, run_threads


@pytest.fixture(scope="module")
def fleet():
    with lab.Fleet(5) as f:
        yield f


@pytest.fixture
def nodes(fleet):
    for node in fleet:
        if not node.running:
            node.restart()
        node.r.flushall()
    yield fleet
    for node in fleet:
        if not node.running:
            node.restart()


def clients(fleet, timeout=0.2):
    return [n.client(socket_timeout=timeout) for n in fleet]


def wait_until(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_validity_arithmetic():
    assert drift_ms(10_000) == 102 and drift_ms(1000) == 12 and drift_ms(100) == 3
    assert validity_ms(10_000, 5) == 10_000 - 5 - 102


def test_acquire_on_all_and_validity_matches_formula(nodes):
    dlm = Redlock(clients(nodes), "job", ttl_ms=10_000, parallel=False)
    lease = dlm.acquire()
    att = lease.attempt
    assert lease.nodes == ["n1", "n2", "n3", "n4", "n5"] and dlm.quorum == 3
    assert att.validity_ms == pytest.approx(10_000 - att.elapsed_ms - 102)
    assert len(lease.token) == 40
    assert all(n.r.get(dlm.key) == lease.token for n in nodes)
    other = Redlock(clients(nodes), "job", ttl_ms=10_000, retries=1, parallel=False)
    assert other.acquire() is None
    assert dlm.release(lease) == 5 and not any(n.r.exists(dlm.key) for n in nodes)


def test_two_nodes_down_still_safe(nodes):
    nodes["n4"].kill(), nodes["n5"].kill()
    dlm = Redlock(clients(nodes), "job", ttl_ms=5000, parallel=False)
    lease = dlm.acquire()
    assert lease is not None and lease.nodes == ["n1", "n2", "n3"]
    assert set(lease.attempt.failed) == {"n4", "n5"}
    second, att = Redlock(clients(nodes), "job", ttl_ms=5000, parallel=False).try_acquire()
    assert second is None and att.refused == ["n1", "n2", "n3"]
    assert all(nodes[n].r.get(dlm.key) == lease.token for n in ("n1", "n2", "n3"))  # untouched
    assert att.failed == {"n4": "ConnectionError", "n5": "ConnectionError"}
    assert dlm.holders() == {"n1": lease.token, "n2": lease.token, "n3": lease.token, "n4": "down", "n5": "down"}
    assert dlm.release(lease) == 3  # the nodes that are down released nothing


def test_three_nodes_down_unavailable_and_no_key_left(nodes):
    for n in ("n3", "n4", "n5"):
        nodes[n].kill()
    dlm = Redlock(clients(nodes), "job", ttl_ms=5000, retries=2, retry_delay=(0.01, 0.02), parallel=False)
    lease, att = dlm.try_acquire()
    assert lease is None and att.ok == ["n1", "n2"]
    assert not nodes["n1"].r.exists(dlm.key) and not nodes["n2"].r.exists(dlm.key)  # released
    assert dlm.acquire() is None


def test_failed_round_does_not_release_someone_elses_keys(nodes):
    for n in ("n1", "n2", "n3"):
        nodes[n].r.set("redlock:job", "other", px=5000)
    lease, att = Redlock(clients(nodes), "job", ttl_ms=5000, parallel=False).try_acquire()
    assert lease is None and att.ok == ["n4", "n5"]
    assert [nodes[n].r.get("redlock:job") for n in ("n1", "n2", "n3")] == ["other"] * 3
    assert not nodes["n4"].r.exists("redlock:job")


def test_node_restarted_empty_grants_a_second_holder(nodes):
    nodes["n4"].kill(), nodes["n5"].kill()
    first = Redlock(clients(nodes), "job", ttl_ms=10_000, parallel=False).acquire()
    assert first.nodes == ["n1", "n2", "n3"]
    nodes["n4"].restart(), nodes["n5"].restart()
    nodes["n3"].kill()
    nodes["n3"].restart()  # no persistence: comes back empty
    second = Redlock(clients(nodes), "job", ttl_ms=10_000, parallel=False).acquire()
    assert second is not None and second.nodes == ["n3", "n4", "n5"]
    client1 = Redlock(clients(nodes), "job", ttl_ms=10_000, parallel=False)
    assert client1.remaining_ms(first) > 0  # both believe they hold it


def test_delayed_restart_prevents_the_second_holder(nodes):
    nodes["n4"].kill(), nodes["n5"].kill()
    # 3 s: the restarts below must finish well inside the TTL even on a loaded machine
    dlm = Redlock(clients(nodes), "job", ttl_ms=3000, parallel=False)
    first = dlm.acquire()
    nodes["n4"].restart(), nodes["n5"].restart()
    nodes["n3"].kill()
    rival = Redlock(clients(nodes), "job", ttl_ms=3000, retries=1, parallel=False)
    assert rival.acquire() is None  # A, B hold it, C is down: 2 of 5 at most
    wait_until(lambda: dlm.remaining_ms(first) <= 0 and not nodes["n1"].r.exists(dlm.key))
    nodes["n3"].restart()  # only after the TTL
    second = rival.acquire()
    assert second is not None and dlm.remaining_ms(first) <= 0


def test_aof_always_node_keeps_the_lock_across_kill(nodes):
    with lab.Node("c-aof", persistence="aof-always") as c:
        cs = [nodes["n1"].client(), nodes["n2"].client(), c.client(socket_timeout=0.2),
              nodes["n4"].client(socket_timeout=0.2), nodes["n5"].client(socket_timeout=0.2)]
        names = ["n1", "n2", "c", "n4", "n5"]
        nodes["n4"].kill(), nodes["n5"].kill()
        first = Redlock(cs, "job", names=names, ttl_ms=10_000, parallel=False).acquire()
        assert first.nodes == ["n1", "n2", "c"]
        nodes["n4"].restart(), nodes["n5"].restart()
        c.kill()
        c.restart()
        assert c.r.get("redlock:job") == first.token and c.r.pttl("redlock:job") > 0
        second, att = Redlock(cs, "job", names=names, ttl_ms=10_000, parallel=False).try_acquire()
        assert second is None and att.ok == ["n4", "n5"]


def test_slow_clock_believes_in_a_lock_whose_keys_expired(nodes):
    slow = Redlock(clients(nodes), "job", ttl_ms=500, clock=SkewedClock(0.5), parallel=False)
    honest = Redlock(clients(nodes), "job", ttl_ms=500, parallel=False)
    slow_lease = slow.acquire()
    t_real = time.monotonic()
    wait_until(lambda: not any(n.r.exists(slow.key) for n in nodes))
    real_elapsed_ms = (time.monotonic() - t_real) * 1000
    assert slow.remaining_ms(slow_lease) > 0  # still "valid" by its own clock
    assert slow_lease.validity_ms - real_elapsed_ms < 0  # by real time, long over
    other = honest.acquire()
    assert other is not None


def test_parallel_round_ends_at_the_majority_and_releases_everywhere(nodes):
    par = Redlock(clients(nodes), "p", ttl_ms=5000, parallel=True)
    lease = par.acquire()
    att = lease.attempt
    assert len(lease.nodes) >= 3 and not att.refused and not att.failed
    assert sorted(att.ok + att.pending) == ["n1", "n2", "n3", "n4", "n5"]  # the rest had not answered yet
    assert 3 <= par.release(lease) <= 5
    wait_until(lambda: not any(c.exists(par.key) for c in par.clients))  # the pending nodes too
    assert par._pools is not None and len(par._pools) == 5  # a thread per node
    par.close()
    assert par._pools is None
    par.close()  # idempotent
    Redlock(clients(nodes), "p", parallel=False).close()  # nothing to close for a sequential one


def test_short_node_timeouts_by_default(nodes):
    """The lab's clients wait 1 s for a node; a Redlock reaches each node with at most 50 ms
    (a copy of the client: the caller's keeps its settings); None keeps the clients as given."""
    given = [n.r for n in nodes]
    dlm = Redlock(given, "job", parallel=False)     # every node's answer waited for
    assert dlm.node_timeout == 0.05
    for mine, theirs in zip(dlm.clients, given):
        kw = mine.connection_pool.connection_kwargs
        assert (kw["socket_timeout"], kw["socket_connect_timeout"]) == (0.05, 0.05)
        assert theirs.connection_pool.connection_kwargs["socket_timeout"] == 1.0 and mine is not theirs
        assert mine.connection_pool.connection_kwargs["port"] == theirs.connection_pool.connection_kwargs["port"]
    lease = dlm.acquire()
    assert lease.nodes == ["n1", "n2", "n3", "n4", "n5"] and dlm.release(lease) == 5
    assert Redlock(given, "job", node_timeout=None).clients == given
    fast = [n.client(socket_timeout=0.02, socket_connect_timeout=0.02) for n in nodes]
    assert Redlock(fast, "job").clients == fast       # already shorter: used as they are
    assert Redlock(given, "job", node_timeout=2.0).clients == given
    assert Redlock(given, "job", node_timeout=1.0).clients == given  # equal: nothing to shorten


def test_frozen_nodes_cost_their_timeout_sequentially_and_nothing_in_parallel(nodes):
    """Two of five nodes frozen (SIGSTOP). A sequential round waits for each frozen node's
    timeout (at least 2 x 50 ms, a socket timeout never fires early) and says TimeoutError for
    both; a parallel round ends at the majority, even with the lab's 1 s timeouts (the frozen two
    pending), and the next round skips them while their earlier request waits."""
    given = [n.r for n in nodes]
    for c in given:
        c.ping()
    nodes[3].pause()
    nodes[4].pause()
    try:
        seq = Redlock(given, "seq", ttl_ms=10_000, parallel=False)
        for c in seq.clients[:3]:
            c.ping()
        lease, att = seq.try_acquire()
        assert att.ok == ["n1", "n2", "n3"] and set(att.failed) == {"n4", "n5"} and not att.pending
        assert att.elapsed_ms >= 2 * 50 and att.validity_ms == validity_ms(10_000, att.elapsed_ms)
        par = Redlock(given, "par", ttl_ms=10_000, parallel=True, node_timeout=1.0)  # even with 1 s
        first, att1 = par.try_acquire()
        assert first is not None and att1.ok == ["n1", "n2", "n3"]
        assert att1.pending == ["n4", "n5"] and att1.failed == {}  # it did not wait for them
        par.release(first)
        second, att2 = par.try_acquire()                 # n4, n5 still stuck: skipped at once
        assert second is not None and att2.failed == {"n4": "TimeoutError", "n5": "TimeoutError"}
        assert not att2.pending and par.release(second) == 3
        seq.release(lease)
        default = Redlock(given, "default", ttl_ms=10_000, node_timeout=1.0)   # parallel unless told
        for c in default.clients[:3]:
            c.ping()
        third, att3 = default.try_acquire()
        assert third is not None and att3.ok == ["n1", "n2", "n3"] and att3.pending == ["n4", "n5"]
        assert att3.failed == {}
        default.release(third)
        default.close()
    finally:
        nodes[3].resume()
        nodes[4].resume()
    par.close()
    wait_until(lambda: not any(n.r.exists("redlock:par") or n.r.exists("redlock:seq") for n in nodes))


def test_contending_clients_never_overlap(nodes):
    log = EventLog()
    cs = clients(nodes, timeout=1.0)

    def worker(actor, log):
        dlm = Redlock(cs, "busy", ttl_ms=5000, retries=200, retry_delay=(0.001, 0.01), parallel=False)
        for _ in range(5):
            lease = dlm.acquire()
            assert lease is not None
            log.record(actor, "acquire")
            time.sleep(0.002)
            log.record(actor, "release")
            dlm.release(lease)

    run_threads(worker, 4, log=log)
    assert max_concurrent(log) == 1 and len(log.of_kind("acquire")) == 20


# -- the pattern as shown in the notebook: redlock_acquire / redlock_release ------------------------


def test_shown_acquire_passes_the_exercise_checker_on_real_nodes(nodes):
    from redistutor.check import CORRECT
    from redistutor.exercises.redlock import acquire_on_majority
    from redistutor.patterns.redlock import redlock_acquire

    assert acquire_on_majority(clients(nodes, timeout=0.5)).evaluate(redlock_acquire).outcome == CORRECT


def test_shown_acquire_and_release_agree_with_the_class(nodes):
    from redistutor.patterns.redlock import redlock_acquire, redlock_release

    cs = clients(nodes, timeout=0.5)
    validity = redlock_acquire(cs, "redlock:job", "tok-1", 10_000)
    assert validity is not None and 0 < validity <= 10_000 - 102
    assert all(n.r.get("redlock:job") == "tok-1" for n in nodes)
    assert all(0 < n.r.pttl("redlock:job") <= 10_000 for n in nodes)  # SET ... PX: the keys expire
    rival, att = Redlock(cs, "job", ttl_ms=10_000, parallel=False).try_acquire()   # the class, same key
    assert rival is None and att.refused == ["n1", "n2", "n3", "n4", "n5"]
    assert redlock_acquire(cs, "redlock:job", "tok-2", 10_000) is None
    assert redlock_release(cs, "redlock:job", "tok-2") == 0          # not ours: nothing deleted
    assert redlock_release(cs, "redlock:job", "tok-1") == 5


def test_aof_records_set_px_as_absolute_pxat_and_everysec_survives_kill_9(nodes):
    from redistutor.scenarios.redlock import persistence_scenario

    out = persistence_scenario(nodes, EventLog(), lab.Node, persistence="aof-everysec")
    assert out["lease1"].nodes == ["n1", "n2", "n3-aof"] and out["lease2"] is None
    assert out["kept"][0] == out["lease1"].token and out["kept"][1] > 0
    (cmd,) = out["aof_sets"]
    assert cmd[3] == "PXAT" and int(cmd[4]) > time.time() * 1000 and "PEXPIREAT" not in cmd


def test_restart_scenarios_two_holders_then_none(nodes):
    from redistutor.scenarios.redlock import restart_scenario

    log = EventLog()
    now = restart_scenario(nodes, log, delay_restart=False)
    assert now["lease2"].nodes == ["n3", "n4", "n5"] and now["one_still"]
    assert now["cols"][-1] == ["client-1", "client-1", "client-2", "client-2", "client-2"]
    later = restart_scenario(nodes, log, delay_restart=True)
    assert later["lease2"] is not None and not later["one_still"] and later["cols"][1] == ["-"] * 5


# -- bug families a reviewer looks for (issue 11): each test fails on the broken variant ----------

def stepping_clock(*times):
    """An injected clock (seconds) that reads the given times in turn: exact elapsed times."""
    it = iter(times)
    return lambda: next(it)


def test_elapsed_and_validity_are_in_milliseconds(nodes):
    """A round measured as 0.25 s is 250 ms: validity 10,000 - 250 - 102. Seconds mistaken for
    milliseconds (or the reverse) give 9,897.75 or a negative validity."""
    from redistutor.patterns.redlock import redlock_acquire, redlock_release

    dlm = Redlock(clients(nodes), "job", ttl_ms=10_000, clock=stepping_clock(100.0, 100.25, 101.0), parallel=False)
    lease, att = dlm.try_acquire()
    assert att.elapsed_ms == pytest.approx(250) and att.validity_ms == pytest.approx(9648)
    assert lease.valid_until() == pytest.approx(100.25 + 9.648)
    assert dlm.remaining_ms(lease) == pytest.approx(8898)  # read at 101.0 s
    assert (lease.key, att.started_at, att.ended_at) == ("redlock:job", 100.0, 100.25)
    assert dlm.release(lease) == 5
    cs = clients(nodes)
    assert redlock_acquire(cs, "redlock:job", "t", 10_000, clock=stepping_clock(7.0, 7.25)) == pytest.approx(9648)
    assert redlock_release(cs, "redlock:job", "t") == 5
    wide = Redlock(clients(nodes), "job", ttl_ms=10_000, drift_factor=0.05, clock=stepping_clock(0.0, 0.25),
                   parallel=False)
    assert wide.attempt().validity_ms == pytest.approx(10_000 - 250 - 502)


def test_drift_factor_and_skewed_clock():
    assert validity_ms(10_000, 5, factor=0.02) == 10_000 - 5 - 202
    slow = SkewedClock(0.5, base=stepping_clock(10.0, 12.0))
    assert slow() == 11.0  # 2 s passed, the slow clock saw 1 s
    behind = SkewedClock(offset=-300, base=lambda: 5_000)     # the rate limiters' kind: ms, an offset
    assert behind() == 4_700 and isinstance(behind(), int) and repr(behind) == "SkewedClock(rate=1, offset=-300)"
    both = SkewedClock(2.0, offset=1.0, base=stepping_clock(10.0, 11.0))
    assert both() == 13.0  # 1 s passed, seen as 2, plus the offset


@pytest.mark.parametrize("shown", [False, True])
@pytest.mark.parametrize("ttl, granted", [(254, False), (255, True)])
def test_validity_boundary(nodes, shown, ttl, granted):
    """A 250 ms round: a 254 ms TTL leaves 254 - 250 - 4 = 0 ms (no lock), 255 leaves 1 ms."""
    from redistutor.patterns.redlock import redlock_acquire

    if shown:
        got = redlock_acquire(clients(nodes), "redlock:job", "t", ttl, clock=stepping_clock(0.0, 0.25))
    else:
        one_by_one = Redlock(clients(nodes), "job", ttl_ms=ttl, clock=stepping_clock(0.0, 0.25), parallel=False)
        got, _ = one_by_one.try_acquire()
    assert (got is not None) is granted


@pytest.mark.parametrize("shown", [False, True])
def test_a_majority_whose_validity_is_used_up_is_no_lock(nodes, shown):
    """Every node said OK, but the round took 10.5 s of a 10 s TTL: the first keys are already
    gone, so the lock must not be taken, and the keys still standing are released."""
    from redistutor.patterns.redlock import redlock_acquire

    if shown:
        assert redlock_acquire(clients(nodes), "redlock:job", "t", 10_000,
                               clock=stepping_clock(0.0, 10.5)) is None
    else:
        dlm = Redlock(clients(nodes), "job", ttl_ms=10_000, clock=stepping_clock(0.0, 10.5), parallel=False)
        lease, att = dlm.try_acquire()
        assert lease is None and len(att.ok) == 5 and att.validity_ms < 0
    assert not any(n.r.exists("redlock:job") for n in nodes)


@pytest.mark.parametrize("shown", [False, True])
def test_a_failed_round_releases_the_nodes_that_timed_out_too(nodes, shown):
    """n1, n2 are held by someone else and n5 is frozen: our round gets OK from n3, n4 only.
    n5's SET timed out on our side, but it sits in n5's socket and runs when n5 thaws. The
    client reads its clock once after the last SET, before releasing: the test thaws n5 there.
    The release must go to n5 too (it runs after the SET); releasing only the nodes that said
    OK leaves our key on n5 for the whole TTL."""
    from redistutor.patterns.redlock import redlock_acquire

    for n in ("n1", "n2"):
        nodes[n].r.set("redlock:job", "other", px=30_000)
    cs = clients(nodes, timeout=0.1)
    for c in cs:
        c.ping()  # connections open before the freeze: n5's SET is queued on one

    reads = []

    def clock():
        reads.append(time.monotonic())
        if len(reads) == 2:  # the round is over (n5 timed out): thaw n5 before the release
            nodes["n5"].resume()
        return reads[-1]

    nodes["n5"].pause()
    try:
        if shown:
            assert redlock_acquire(cs, "redlock:job", "mine", 30_000, clock=clock) is None
        else:
            dlm = Redlock(cs, "job", ttl_ms=30_000, clock=clock, parallel=False)
            dlm.new_token = lambda: "mine"
            lease, att = dlm.try_acquire()
            assert lease is None and att.ok == ["n3", "n4"] and list(att.failed) == ["n5"]
    finally:
        nodes["n5"].resume()
    assert len(reads) == 2
    assert [n.r.get("redlock:job") for n in nodes] == ["other", "other", None, None, None]


def test_release_sends_the_script_once_per_node_then_only_its_sha(nodes):
    from redistutor import trace

    cs = clients(nodes)
    dlm = Redlock(cs, "job", ttl_ms=10_000, parallel=False)
    dlm.release(dlm.acquire())
    lease = dlm.acquire()
    with trace(dlm.clients[0]) as t:
        assert dlm.release(lease) == 5
    assert t.names() == ["EVALSHA"]
    nodes["n1"].r.script_flush()  # as after a restart: redis-py loads the script again
    lease = dlm.acquire()
    assert dlm.release(lease) == 5 and not any(n.r.exists(dlm.key) for n in nodes)


def test_defaults_ten_second_ttl_and_three_rounds(nodes):
    cs = clients(nodes)
    lease = Redlock(cs, "job", parallel=False).acquire()
    assert all(9_000 < n.r.pttl("redlock:job") <= 10_000 for n in nodes)
    assert lease.validity_ms == pytest.approx(10_000 - lease.attempt.elapsed_ms - 102)
    for n in nodes:
        n.r.config_resetstat()
    assert Redlock(cs, "job", retry_delay=(0, 0.001), parallel=False).acquire() is None
    assert all(n.r.info("commandstats")["cmdstat_set"]["calls"] == 3 for n in nodes)  # 3 rounds
