"""Atomic updates on a real Redis with real threads: lost updates, WATCH, Lua, RENAME, idempotency."""

from __future__ import annotations

import threading

import pytest
import redis

from redistutor import run_threads
from redistutor.db import Database
from redistutor.patterns.atomic_updates import (
    Accounts,
    CompareAndSet,
    Counter,
    Idempotency,
    InProgress,
    InsufficientFunds,
    LeaseExpired,
    OneTimeToken,
    Outcome,
    RetriesExhausted,
    ShadowHash,
    watch_update,
)
from redistutor.race import PausePoint, run_in_thread
from redistutor.scenarios.atomic_updates import LongScript, everyone_reads_first, overlapping_transfers


def threads(n, fn):
    """Run fn(i) in n real threads released together (the toolkit's run_threads); re-raise errors."""
    return run_threads(lambda actor, log: fn(int(actor.rsplit("-", 1)[1]) - 1), n)


def test_naive_incr_loses_updates_deterministically(r):
    barrier = threading.Barrier(10, timeout=10)
    c = Counter(r, hooks={"after_get": lambda *_: barrier.wait()})
    threads(10, lambda i: [c.naive_incr("n") for _ in range(20)])
    # every round all 10 threads read the same value, so each round adds 1, not 10
    assert c.value("n") == 20


def test_watch_incr_is_exact_and_aborts_when_raced(r):
    c = Counter(r, hooks={"after_get": everyone_reads_first(8)})
    threads(8, lambda i: [c.watch_incr("n") for _ in range(10)])
    assert c.value("n") == 80
    assert c.stats.commits == 80
    assert c.stats.aborts >= 7  # the first round: one EXEC wins, the other 7 abort
    assert c.stats.attempts == c.stats.commits + c.stats.aborts


def test_watch_update_retries_until_no_one_wrote_in_between(r, redis_server):
    other = redis_server.client()
    r.set("k", 1)
    calls = []

    def compute(raw):
        calls.append(raw)
        if len(calls) <= 2:
            other.incr("k")  # another client writes in the gap, twice
        return int(raw) * 10

    assert watch_update(r, "k", compute) == 30 and r.get("k") == "30"
    assert calls == ["1", "2", "3"]


def test_watch_update_gives_up_after_max_retries(r, redis_server):
    other = redis_server.client()
    r.set("k", 1)
    aborts = []

    def always_raced(raw):
        other.incr("k")
        return 0

    with pytest.raises(RetriesExhausted):
        watch_update(r, "k", always_raced, max_retries=3, on_abort=lambda: aborts.append(1))
    assert len(aborts) == 3 and r.get("k") == "4"


def test_exec_aborts_when_the_watched_key_expires(r, redis_server):
    """WATCH fires on expiry (6.0.9+), not only on another client's write."""
    other = redis_server.client()
    r.set("k", "old", px=20)
    with r.pipeline() as pipe:
        pipe.watch("k")
        assert pipe.get("k") == "old"
        while other.exists("k"):  # until the key has expired (EXISTS removes it)
            pass
        pipe.multi()
        pipe.set("k", "new")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert r.exists("k") == 0


def test_exec_aborts_when_the_watching_connection_writes_the_key_itself(r):
    r.set("k", "old")
    with r.pipeline() as pipe:
        pipe.watch("k")
        pipe.set("k", "mine")  # immediate mode: the watching connection writes the key
        pipe.multi()
        pipe.set("k", "new")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert r.get("k") == "mine"


def test_compare_and_set(r):
    cas = CompareAndSet(r)
    assert cas("k", None, "a") and not cas("k", None, "b") and not cas("k", "x", "b")
    assert r.get("k") == "a" and cas("k", "a", "b") and r.get("k") == "b"


def test_watch_incr_without_contention_never_aborts(r):
    c = Counter(r)
    for _ in range(50):
        c.watch_incr("n")
    assert c.value("n") == 50 and c.stats.aborts == 0


def test_lua_and_cas_incr_are_exact_under_threads(r):
    c = Counter(r, hooks={"after_get": everyone_reads_first(6)})
    threads(6, lambda i: [c.lua_incr("lua") for _ in range(50)])
    threads(6, lambda i: [c.cas_incr("cas") for _ in range(50)])
    assert c.value("lua") == 300 and c.value("cas") == 300
    assert c.stats.aborts >= 5  # CAS: first round, one wins, five fail and retry


def test_cas_refuses_wrong_expected_value(r):
    c = Counter(r)
    assert c.cas("k", None, "a")  # absent -> "a"
    assert not c.cas("k", None, "b")  # no longer absent
    assert not c.cas("k", "x", "b")
    assert r.get("counter:k") == "a"
    assert c.cas("k", "a", "b") and r.get("counter:k") == "b"


def test_naive_transfer_pays_out_twice(r):
    got = overlapping_transfers(r, "bank", "naive_transfer")
    assert got["T1"].startswith("sent")
    assert (got["a"], got["b"], got["c"]) == (20, 80, 80)
    assert got["total"] == 180  # 80 created out of nothing


def test_watch_transfer_aborts_then_refuses(r):
    got = overlapping_transfers(r, "bank", "watch_transfer")
    assert got["T1"].startswith("refused")  # InsufficientFunds after the abort and re-read
    assert (got["a"], got["b"], got["c"]) == (20, 0, 80)
    assert got["aborts"] == 1 and got["commits"] == 1


def test_lua_transfer_keeps_total_under_concurrency(r):
    acc = Accounts(r)
    acc.open(a=500, b=500, c=500)
    names = "abc"
    refused = []
    barrier = threading.Barrier(8, timeout=10)

    def worker(i):
        barrier.wait()
        for j in range(25):
            src, dst = names[(i + j) % 3], names[(i + 2 * j + 1) % 3]
            if src == dst:
                continue
            try:
                acc.transfer(src, dst, 37 + i)
            except InsufficientFunds:
                refused.append(1)

    threads(8, worker)
    bal = acc.balances(*names)
    assert sum(bal.values()) == 1500 and min(bal.values()) >= 0


def test_lua_transfer_refuses_without_writing(r):
    acc = Accounts(r)
    acc.open(a=10, b=0)
    with pytest.raises(InsufficientFunds, match="a has 10"):
        acc.transfer("a", "b", 11)
    assert acc.balances("a", "b") == {"a": 10, "b": 0}
    assert acc.transfer("a", "b", 10) == 0 and acc.balance("b") == 10


def test_multi_has_no_rollback(r):
    r.set("bal", 100)
    r.set("name", "alice")
    with r.pipeline(transaction=True) as p:
        p.decrby("bal", 30)
        p.incr("name")  # fails at EXEC time
        p.set("log", "x")
        res = p.execute(raise_on_error=False)
    assert res[0] == 70 and isinstance(res[1], redis.ResponseError) and res[2] is True
    assert r.mget("bal", "name", "log") == ["70", "alice", "x"]


def _versioned(version, n=500):
    return {f"f{i}": f"v{version}" for i in range(n)}


@pytest.mark.parametrize("method, partial_seen", [("naive_rebuild", True), ("rebuild", False)])
def test_rebuild_visibility_at_each_chunk(r, redis_server, method, partial_seen):
    reader = redis_server.client()
    snapshots = []
    sh = ShadowHash(r, chunk=100, hooks={"after_chunk": lambda i, n: snapshots.append(reader.hgetall("profile:p"))})
    sh.hooks, hooks = None, sh.hooks
    sh.rebuild("p", _versioned(1))
    sh.hooks = hooks
    getattr(sh, method)("p", _versioned(2))
    assert len(snapshots) == 5
    complete = [len(s) == 500 and len(set(s.values())) == 1 for s in snapshots]
    assert (not all(complete)) is partial_seen
    assert r.hgetall("profile:p") == _versioned(2)
    if not partial_seen:
        assert all(s == _versioned(1) for s in snapshots)


def test_rebuild_sets_ttl_and_leaves_no_temp_key(r):
    sh = ShadowHash(r)
    r.hset("profile:p", "x", "1")
    r.expire("profile:p", 1000)
    sh.rebuild("p", {"a": "1"})
    assert r.ttl("profile:p") == -1  # ttl=None: the new hash has no TTL (RENAME takes tmp's)
    sh.rebuild("p", {"a": "2"}, ttl=60)
    assert 0 < r.ttl("profile:p") <= 60
    assert [k for k in r.scan_iter("*building*")] == []


def test_temporary_name_is_in_the_live_keys_cluster_slot():
    from redis.crc import key_slot

    for live in ("profile:p1", "profile:{user42}:p1"):
        tmp = ShadowHash.temp_name(live)
        assert key_slot(tmp.encode()) == key_slot(live.encode()) and tmp != live
    with pytest.raises(ValueError, match="hash tag"):
        ShadowHash.temp_name("a}b{")
    # the naive name (live key + suffix, no hash tag) lands in another slot: RENAME would fail
    assert key_slot(b"profile:p1:building:x") != key_slot(b"profile:p1")


def test_shadow_rebuild_free_running_reader_never_sees_partial(r, redis_server):
    sh = ShadowHash(r, chunk=50)
    sh.rebuild("p", _versioned(0, 300))
    reader = redis_server.client()
    stop = threading.Event()
    bad, samples = [], [0]

    def read():
        while not stop.is_set():
            h = reader.hgetall("profile:p")
            samples[0] += 1
            if len(h) != 300 or len(set(h.values())) != 1:
                bad.append(len(h))

    t = threading.Thread(target=read)
    t.start()
    for v in range(1, 8):
        sh.rebuild("p", _versioned(v, 300))
    stop.set()
    t.join(10)
    assert samples[0] > 0 and bad == []


@pytest.fixture
def db():
    with Database() as d:
        d.execute("CREATE TABLE payments (request_id TEXT, amount INTEGER)")
        yield d


def test_naive_idempotency_charges_twice_when_retries_overlap(r, db):
    barrier = threading.Barrier(2, timeout=10)
    idem = Idempotency(r, hooks={"after_check": lambda *_: barrier.wait()})

    def charge():
        db.execute("INSERT INTO payments VALUES ('req-1', 50)")
        return {"charged": 50}

    threads(2, lambda i: idem.naive_run("req-1", charge))
    assert db.execute("SELECT COUNT(*) FROM payments")[0][0] == 2


def test_idempotency_runs_once_under_concurrent_retries(r, db):
    idem = Idempotency(r)
    barrier = threading.Barrier(10, timeout=10)
    outcomes = []

    def charge():
        db.execute("INSERT INTO payments VALUES ('req-2', 50)")
        return {"charged": 50, "payment": 1}

    def retry(i):
        barrier.wait()
        outcomes.append(idem.run("req-2", charge))

    threads(10, retry)
    assert db.execute("SELECT COUNT(*) FROM payments")[0][0] == 1
    assert sum(o.executed for o in outcomes) == 1
    assert all(o.result == {"charged": 50, "payment": 1} for o in outcomes)
    assert 0 < r.ttl("idem:req-2") <= 86400


def test_idempotency_failure_releases_the_claim(r):
    idem = Idempotency(r)

    def boom():
        raise RuntimeError("card declined")

    with pytest.raises(RuntimeError):
        idem.run("req-3", boom)
    assert r.exists("idem:req-3") == 0
    first, again = idem.run("req-3", lambda: "ok"), idem.run("req-3", lambda: "other")
    assert (first.result, first.executed) == ("ok", True)
    assert (again.result, again.executed) == ("ok", False)


def test_expired_lease_does_not_overwrite_a_newer_claim_or_result(r):
    """A's side effect outlives its lease, B claims the request and finishes: A must not store
    its result over B's (the old code's plain SET XX did)."""
    idem = Idempotency(r, lease=0.05)
    started, finish = threading.Event(), threading.Event()

    def slow():
        started.set()
        finish.wait(10)
        return "A"

    a = run_in_thread(idem.run, "req-9", slow)
    assert started.wait(10)
    while r.exists("idem:req-9"):  # A's claim expires
        pass
    b = idem.run("req-9", lambda: "B")
    assert (b.result, b.executed) == ("B", True)
    finish.set()
    with pytest.raises(LeaseExpired):
        a.result(timeout=10)
    assert r.get("idem:req-9") == '"B"' and 0 < r.ttl("idem:req-9") <= 86400
    assert idem.run("req-9", lambda: "D").result == "B"


def test_expired_lease_does_not_overwrite_a_claim_still_pending(r):
    idem = Idempotency(r, lease=0.05)
    started, finish = threading.Event(), threading.Event()
    a = run_in_thread(idem.run, "req-10", lambda: (started.set(), finish.wait(10), "A")[2])
    assert started.wait(10)
    while r.exists("idem:req-10"):
        pass
    r.set("idem:req-10", Idempotency.PENDING + "b-claim", px=60000)  # B claimed; still running
    finish.set()
    with pytest.raises(LeaseExpired):
        a.result(timeout=10)
    assert r.get("idem:req-10") == Idempotency.PENDING + "b-claim"


# -- a long script blocks everyone ------------------------------------------------------------

@pytest.fixture
def busy_server():
    """A throwaway server that answers BUSY after 100 ms of script (it may be shut down)."""
    from redistutor.server import RedisServer

    with RedisServer(modules=(), config={"busy-reply-threshold": 100}, name="test-busy") as s:
        yield s


def test_long_script_gets_busy_and_script_kill_ends_it(busy_server):

    probe = busy_server.client(fail_fast=True)
    long = LongScript(busy_server.client(fail_fast=True))
    fut, _ = long.start()
    error, _ = long.wait_busy(probe)
    assert error.startswith("BUSY")
    # Writes are refused too: the key the script waits for cannot be set by anyone.
    with pytest.raises(redis.ResponseError, match="^BUSY"):
        probe.set(long.key("go"), 1)
    # Not only SCRIPT KILL and SHUTDOWN NOSAVE: connection commands (allow-busy) are served.
    assert probe.execute_command("HELLO")
    assert probe.script_kill() is True
    long.wait_available(probe)
    with pytest.raises(redis.ResponseError, match="killed by user"):
        fut.result(timeout=10)
    assert probe.exists(long.key("go")) == 0


def test_outage_is_measured_from_send_to_first_pong(busy_server):

    probe = busy_server.client(fail_fast=True)
    out = LongScript(busy_server.client(fail_fast=True)).outage(probe, stop=probe.script_kill)
    assert out.first_error.startswith("BUSY") and out.busy_replies >= 1
    assert out.unavailable_s >= out.first_wait_s > 0
    assert probe.ping() is True


def test_a_script_that_wrote_is_unkillable_and_only_shutdown_nosave_ends_it(busy_server):

    probe = busy_server.client(fail_fast=True)
    long = LongScript(busy_server.client(fail_fast=True))
    fut, _ = long.start(writes=True)
    long.wait_busy(probe)
    with pytest.raises(redis.ResponseError, match="^UNKILLABLE"):
        probe.script_kill()
    probe.shutdown(nosave=True)
    with pytest.raises(redis.ConnectionError):
        fut.result(timeout=10)
    busy_server.proc.wait(timeout=10)
    assert busy_server.proc.returncode == 0


def test_shutdown_nosave_keeps_the_aof_but_not_the_unfinished_scripts_write():
    from redistutor.server import RedisServer

    with RedisServer(modules=(), persistence="aof-always", name="test-busy-aof",
                     config={"busy-reply-threshold": 100}) as s:
        probe = s.client(fail_fast=True)
        long = LongScript(s.client(fail_fast=True))
        probe.set("before", "kept")
        fut, _ = long.start(writes=True)
        long.wait_busy(probe)
        probe.shutdown(nosave=True)
        with pytest.raises(redis.ConnectionError):
            fut.result(timeout=10)
        s.proc.wait(timeout=10)
        s.restart()
        c = s.client()
        # A script's writes reach the AOF only when it finishes: this one never did.
        assert c.get("before") == "kept" and c.exists(long.key("written")) == 0


def test_one_time_token_naive_redeem_is_shared_getdel_is_not(r):
    from redistutor.patterns.atomic_updates import OneTimeToken

    both_read = threading.Barrier(10, timeout=10)
    naive = OneTimeToken(r, prefix="t:tok", hooks={"after_get": lambda *_: both_read.wait()})
    naive.issue("abc", "user42")
    got = []
    threads(10, lambda i: got.append(naive.naive_redeem("abc")))
    assert got == ["user42"] * 10

    tok = OneTimeToken(r, prefix="t:tok")
    tok.issue("def", "user43")
    go, got = threading.Barrier(10, timeout=10), []
    threads(10, lambda i: (go.wait(), got.append(tok.redeem("def"))))
    assert got.count("user43") == 1 and r.exists(tok.key("def")) == 0


# -- bug families a reviewer looks for (issue 11): each test fails on the broken variant ----------

def test_watch_transfer_watches_the_destination_too(r):
    """T1 (a->b 30) reads b, then T2 (c->b 50) pays into b before T1's EXEC. Watching only the
    source lets T1 write b = 0 + 30 over T2's 50 (money destroyed); watching both aborts T1,
    which re-reads b and writes 80."""
    acc = Accounts(r)
    acc.open(a=100, b=0, c=100)
    pause = PausePoint("after_read")
    acc.hooks = {"after_read": pause}
    t1 = run_in_thread(acc.watch_transfer, "a", "b", 30)
    pause.wait_reached()
    acc.hooks = None
    acc.watch_transfer("c", "b", 50)
    pause.release()
    assert t1.result(timeout=10) == 70
    assert acc.balances("a", "b", "c") == {"a": 70, "b": 80, "c": 50}
    assert acc.stats.aborts == 1 and acc.stats.commits == 2


def test_concurrent_rebuilds_never_share_a_temporary_key(r):
    """A rebuild pauses after its first chunk while another rebuild of the same key runs to the
    end. With one shared temporary name B's RENAME carries A's half-written fields away and A
    finishes a hash without its first chunk; with a name per rebuild each swap is whole."""
    sh = ShadowHash(r, chunk=100)
    sh.rebuild("p", _versioned(0))
    pause = PausePoint("after_chunk")
    sh.hooks = {"after_chunk": pause}
    a = run_in_thread(sh.rebuild, "p", _versioned(1))
    pause.wait_reached()
    sh.hooks = None
    tmp_b = sh.rebuild("p", _versioned(2))
    assert r.hgetall("profile:p") == _versioned(2)
    pause.release()
    tmp_a = a.result(timeout=10)
    assert tmp_a != tmp_b
    assert r.hgetall("profile:p") == _versioned(1)  # A's whole hash, swapped in last
    assert [k for k in r.scan_iter("*building*")] == []


def test_a_failed_side_effect_never_deletes_a_newer_claim(r):
    """A's lease expires while its side effect runs; B claims the request and is still running
    when A's side effect fails. A must give back only its own claim: a plain DEL would delete
    B's, and a third retry would run the side effect while B still runs."""
    idem = Idempotency(r, lease=30)
    started, fail = threading.Event(), threading.Event()

    def flaky():
        started.set()
        fail.wait(10)
        raise RuntimeError("provider timeout")

    a = run_in_thread(idem.run, "req-11", flaky)
    assert started.wait(10)
    r.delete("idem:req-11")  # A's lease ran out (deleted here rather than waited for)
    b_started, b_finish = threading.Event(), threading.Event()
    b = run_in_thread(idem.run, "req-11", lambda: (b_started.set(), b_finish.wait(10), "B")[2])
    assert b_started.wait(10)
    b_claim = r.get("idem:req-11")
    assert b_claim.startswith(Idempotency.PENDING)
    fail.set()
    with pytest.raises(RuntimeError, match="provider timeout"):
        a.result(timeout=10)
    assert r.get("idem:req-11") == b_claim  # B's claim survives A's failure
    with pytest.raises(InProgress):
        idem.run("req-11", lambda: "C", wait=0)
    b_finish.set()
    assert b.result(timeout=10) == Outcome("B", True)


# -- contracts the mutation run (./run mutate atomic_updates) showed unpinned ------------------

def test_counter_contract_return_values_hook_arguments_and_stats(r):
    seen = []
    c = Counter(r, hooks={"after_get": lambda *a: seen.append(a)})
    assert c.value("n") == 0 and r.get("counter:n") is None  # absent counts as 0
    assert c.naive_incr("n", 2) == 2 and c.watch_incr("n", 3) == 5 and c.cas_incr("n", 4) == 9
    assert c.lua_incr("n", 1) == 10 and c.value("n") == 10
    assert seen == [("n", 0), ("n", 2), ("n", 5)]
    assert (c.stats.attempts, c.stats.commits, c.stats.aborts) == (3, 3, 0)
    c.stats.reset()
    assert (c.stats.attempts, c.stats.commits, c.stats.aborts) == (0, 0, 0)


def test_accounts_contract_amounts_hooks_and_exact_balance(r):
    seen = []
    acc = Accounts(r, hooks={"after_read": lambda *a: seen.append(a)})
    acc.open(a=30, b=5)
    assert r.get("acct:a") == "30" and acc.balance("z") == 0 and acc.balances("z") == {"z": 0}
    for bad in (0, -1):
        with pytest.raises(ValueError):
            acc.transfer("a", "b", bad)
    assert acc.naive_transfer("a", "b", 1) == 29              # an amount of 1 is fine
    assert acc.watch_transfer("a", "b", 9) == 20
    assert acc.watch_transfer("a", "z", 20) == 0             # the whole balance, to a new account
    assert acc.naive_transfer("b", "a", 15) == 0
    assert seen == [(30, 5), (29, 6), (20, 0), (15, 0)]
    assert acc.balances("a", "b", "z") == {"a": 15, "b": 0, "z": 20}
    with pytest.raises(InsufficientFunds, match="b has 0, needs 1"):
        acc.watch_transfer("b", "a", 1)
    with pytest.raises(InsufficientFunds, match="b has 0, needs 1"):
        acc.naive_transfer("b", "a", 1)


def test_shadow_hash_contract_hooks_and_ttls(r):
    seen = []

    def hook(i, written):
        (tmp,) = r.scan_iter("*profile:p*:building:*")
        seen.append((i, written, 0 < r.pttl(tmp) <= 60_000))

    sh = ShadowHash(r, hooks={"after_chunk": hook})
    sh.rebuild("p", _versioned(1, 250), ttl=30)
    assert seen == [(0, 100, True), (1, 200, True), (2, 250, True)]
    assert 0 < r.pttl("profile:p") <= 30_000
    seen.clear()
    sh.hooks = {"after_chunk": lambda i, n: seen.append((i, n))}
    sh.naive_rebuild("p", _versioned(2, 150))
    assert seen == [(0, 100), (1, 150)] and r.ttl("profile:p") == -1


def test_idempotency_contract_ttls_hooks_and_bytes_clients(r, redis_server):
    seen = []
    idem = Idempotency(r, hooks={"after_check": lambda *a: seen.append(a)})
    assert idem.naive_run("n1", lambda: {"x": 1}) == Outcome({"x": 1}, True)
    assert idem.naive_run("n1", lambda: {"x": 2}) == Outcome({"x": 1}, False)
    assert seen == [("n1",)] and 86_000_000 < r.pttl("idem:n1") <= 86_400_000

    def inside():
        assert r.get("idem:r1").startswith(Idempotency.PENDING)
        assert 29_000 < r.pttl("idem:r1") <= 30_000  # the claim is a 30 s lease
        return "done"

    assert idem.run("r1", inside) == Outcome("done", True)
    assert 86_000_000 < r.pttl("idem:r1") <= 86_400_000
    raw = Idempotency(redis_server.client(decode_responses=False))
    assert raw.run("r2", lambda: [1]) == Outcome([1], True)
    assert raw.run("r2", lambda: [2]) == Outcome([1], False)
    r.set("idem:r3", Idempotency.PENDING + "other", px=60_000)
    with pytest.raises(InProgress, match="r3"):
        idem.run("r3", lambda: 1, wait=0)


def test_one_time_token_contract(r):
    seen = []
    t = OneTimeToken(r, hooks={"after_get": lambda *a: seen.append(a)})
    t.issue("abc", "user 42")
    assert r.get("token:abc") == "user 42" and 890_000 < r.pttl("token:abc") <= 900_000
    assert t.naive_redeem("abc") == "user 42" and seen == [("abc", "user 42")] and not r.exists("token:abc")
    assert t.naive_redeem("nope") is None and t.redeem("nope") is None
    r.set("token:nope", "x")
    assert t.naive_redeem("missing") is None and r.get("token:nope") == "x"
