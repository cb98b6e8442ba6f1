"""Hash-tag co-location on a real 3-master Redis Cluster from the lab."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import redis

from redistutor import lab
from redistutor.patterns.hash_tag_colocation import (
    EntityKeys,
    UserStore,
    crc16,
    hashed_part,
    key_slot,
    parse_ranges,
    retry_redirects,
    update_user,
)
from redistutor.scenarios.hash_tag_colocation import (
    answer,
    keys_in_slots,
    keys_per_node,
    kill_and_fail_over,
    load_keys,
    ops_per_node,
    predicted_keys_per_node,
    spread,
    wait_demo,
)


@pytest.fixture(scope="module")
def cluster():
    c = lab.Cluster(3).start()
    yield c
    c.stop()


@pytest.fixture
def masters(cluster):
    nodes = {name: cluster[name].r for name in ("m1", "m2", "m3")}
    for c in nodes.values():
        c.flushall()
    return nodes


def test_crc16_known_vectors():
    assert crc16(b"123456789") == 0x31C3  # the XMODEM check value from the cluster spec
    assert crc16(b"") == 0


@pytest.mark.parametrize("key,part", [
    ("user:{123}:profile", b"123"), ("{user}{x}", b"user"), ("{}", b"{}"), ("a{}b{c}", b"a{}b{c}"),
    ("{a", b"{a"), ("a}b{c}", b"c"), ("{{x}}", b"{x"), ("plain", b"plain"),
])
def test_hashed_part(key, part):
    assert hashed_part(key) == part


def test_key_slot_matches_the_server(cluster):
    rng = random.Random(3)
    keys = ["".join(rng.choice("ab{}:1ü") for _ in range(rng.randint(0, 9))) for _ in range(300)]
    node = cluster["m1"].r
    assert [key_slot(k) for k in keys] == [int(node.execute_command("CLUSTER", "KEYSLOT", k)) for k in keys]


def test_untagged_multi_key_operations_are_refused(cluster, masters):
    store = UserStore(cluster.rc, tagged=False)
    with pytest.raises(redis.exceptions.CrossSlotTransactionError):
        store.update(1, {"a": 1}, {"b": 2})
    with pytest.raises(redis.exceptions.RedisClusterException):
        store.merge(1)
    with pytest.raises(redis.exceptions.RedisClusterException):
        store.activate_session(1)
    # the server itself: two keys in different slots on one node
    k1, k2 = "user:123:profile", "user:123:settings"
    assert cluster.owner(k1) is cluster.owner(k2) and cluster.keyslot(k1) != cluster.keyslot(k2)
    with pytest.raises(redis.exceptions.ClusterCrossSlotError):
        cluster.owner(k1).r.mset({k1: "a", k2: "b"})
    assert sum(c.dbsize() for c in masters.values()) == 0


def test_tagged_operations_work_in_one_slot(cluster, masters):
    rc = cluster.rc
    store = UserStore(rc)
    rc.rpush(store.key(7, "sessions:pending"), "s1", "s2")
    assert store.update(7, {"plan": "pro"}, {"max_projects": 50}) == [1, 1, 1]
    assert store.merge(7) == 2
    assert rc.hgetall(store.key(7, "cache")) == {"plan": "pro", "max_projects": "50"}
    assert store.activate_session(7) == "s1"
    slots = {cluster.keyslot(k) for k in EntityKeys("user").keys(7, "profile", "settings", "cache",
                                                                  "stats:updates", "sessions:active")}
    assert len(slots) == 1
    assert [n for n, c in masters.items() if c.dbsize()] == [cluster.owner(slot=slots.pop()).name]


def test_coarse_tags_skew_and_fine_tags_balance(cluster, masters):
    ranges = parse_ranges({n: cluster.slots_of(n) for n in masters})
    rng = random.Random(6)
    countries = rng.choices(["US", "IN", "BR", "DE", "FR"], weights=[50, 20, 15, 10, 5], k=3000)
    coarse = [f"u:{{{cc}}}:{i}" for i, cc in enumerate(countries)]
    fine = [f"u:{{{i}}}:p" for i in range(3000)]
    results = {}
    for name, keys in [("coarse", coarse), ("fine", fine)]:
        for c in masters.values():
            c.flushall()
        load_keys(cluster.rc, keys, batch=500)
        results[name] = keys_per_node(masters)
        assert results[name] == predicted_keys_per_node(keys, ranges)
    assert spread(results["coarse"])["busiest_share"] > 0.5
    assert spread(results["fine"])["max_deviation"] < 0.1


def test_migration_moves_the_tag_together_and_transactions_survive(cluster, masters):
    rc = cluster.rc
    store = UserStore(rc)
    store.update(42, {"plan": "free"}, {"max_projects": 3})
    keys = store.names.keys(42, "profile", "settings", "stats:updates")
    slot = cluster.keyslot(keys[0])
    source = cluster.owner(slot=slot)
    target = next(n for n in masters if n != source.name)
    stale = cluster.client()
    moved = cluster.migrate_slot(slot, target)
    assert moved == 3 and cluster[target].r.exists(*keys) == 3
    with pytest.raises(redis.exceptions.MovedError):
        UserStore(stale, attempts=1).update(42, {"plan": "pro"}, {"max_projects": 50})
    stale2 = cluster.client()  # created after the move: fresh map
    assert UserStore(stale2).update(42, {"plan": "pro"}, {"max_projects": 50})[2] == 2
    assert store.read(42)["profile"]["plan"] == "pro"
    cluster.migrate_slot(slot, source.name)  # leave the layout as found


def test_half_moved_slot_answers_ask_for_moved_keys_and_tryagain_for_split_multi_key(cluster, masters):
    store = UserStore(cluster.rc)
    store.update(7, {"plan": "free"}, {"max_projects": 3})
    k0, k1, k2 = store.names.keys(7, "profile", "settings", "stats:updates")
    slot = cluster.keyslot(k0)
    source = cluster.owner(slot=slot)
    target = cluster[next(n for n in masters if n != source.name)]
    target.r.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", cluster.ids[source.name])
    source.r.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", cluster.ids[target.name])
    source.r.execute_command("MIGRATE", target.host, target.port, "", 0, 5000,
                             "AUTH", cluster.password, "KEYS", k0)
    try:
        assert answer(lambda: source.r.hget(k0, "plan")) == ("ASK", (slot, (target.host, target.port)))
        assert answer(lambda: source.r.hget(k1, "max_projects")) == ("OK", "3")
        assert answer(lambda: source.r.exists(k0, k1)) == ("TRYAGAIN", None)
        assert answer(lambda: source.r.exists(k1, k2)) == ("OK", 2)
        assert answer(lambda: target.r.hget(k0, "plan"))[0] == "MOVED"   # no ASKING
        assert answer(lambda: source.r.exists(k0, "other")) == ("CROSSSLOT", None)
    finally:
        cluster.migrate_slot(slot, target.name)
        cluster.migrate_slot(slot, source.name)  # leave the layout as found


def test_keys_per_slot_and_ops_per_node_are_measured_from_the_nodes(cluster, masters):
    ranges = parse_ranges({n: cluster.slots_of(n) for n in masters})
    keys = [f"u:{{{i % 5}}}:{i}" for i in range(100)] + ["solo"]
    load_keys(cluster.rc, keys)
    per_slot = Counter(key_slot(k) for k in keys)
    assert keys_in_slots(masters, ranges, per_slot) == per_slot
    for c in masters.values():
        c.config_resetstat()
    for k in keys[:30]:
        cluster.rc.get(k)
    assert ops_per_node(masters, "get") == predicted_keys_per_node(keys[:30], ranges)
    assert +ops_per_node(masters, "hget") == Counter()


def test_update_user_is_one_transaction_in_the_users_slot(cluster, masters):
    names = EntityKeys("user")
    assert update_user(cluster.rc, names, 9, {"plan": "pro"}, {"max_projects": 50}) == [1, 1, 1]
    assert update_user(cluster.rc, names, 9, {"plan": "team"}, {"max_projects": 200}) == [0, 0, 2]
    with pytest.raises(redis.exceptions.CrossSlotTransactionError):
        update_user(cluster.rc, EntityKeys("user", tagged=False), 9, {"plan": "x"}, {"max_projects": 1})
    assert cluster.rc.hget("user:9:profile", "plan") is None  # nothing half-written


def test_wait_counts_only_the_writing_connections_writes():
    """WAIT sent from a connection that never wrote answers at once, even with the replica frozen;
    the write and the WAIT on one connection (a pipeline) answer 0 while the replica is frozen and 1
    once it runs: the assertion on WAIT can fail, so it proves something."""
    with lab.Cluster(1, replicas=1) as c:
        master, replica = c["m1"], c["r1"]
        w = wait_demo(master, replica, "user:{1}:last_write", timeout_ms=300)
        assert w == {"fresh_conn": 1, "same_conn_frozen": 0, "same_conn": 1}


def test_reserve_watches_both_tagged_keys_and_retries_after_a_concurrent_write(cluster, masters):
    from redistutor.race import PausePoint, run_in_thread
    rc = cluster.rc
    rc.set("user:{5}:balance", 100)
    paused = PausePoint("after_watch")
    slow = UserStore(cluster.client(), hooks={"after_watch": paused})
    fut = run_in_thread(slow.reserve, 5, 60)
    paused.wait_reached()
    assert UserStore(rc).reserve(5, 70) == (30, 70)
    paused.release()
    assert fut.result(timeout=10) is None and slow.conflicts == 1
    assert rc.mget("user:{5}:balance", "user:{5}:pending") == ["30", "70"]
    assert UserStore(rc).reserve(5, 30) == (0, 100)
    with pytest.raises(redis.exceptions.RedisClusterException, match="same key slot"):
        UserStore(rc, tagged=False).reserve(5, 1)


def test_explain_slot_and_the_calculator_widget():
    from redistutor.scenarios.hash_tag_colocation import explain_slot, slot_calculator
    ranges = [(0, 5460, "m1"), (5461, 10922, "m2"), (10923, 16383, "m3")]
    line = explain_slot("user:{123}:profile", ranges)
    assert "hashes '123'" in line and f"slot {key_slot('123')}" in line and line.endswith("on m2")
    assert "0x31c3" in explain_slot("123456789", ranges)     # the CRC16/XMODEM check value
    widget = slot_calculator(ranges)
    box, label = widget.children
    box.value = "{}x"
    assert label.value == explain_slot("{}x", ranges) and "hashes '{}x'" in label.value


def test_retry_redirects_gives_up_after_attempts():
    calls = []

    def always_moved():
        calls.append(1)
        raise redis.exceptions.MovedError("5970 127.0.0.1:1")

    with pytest.raises(redis.exceptions.MovedError):
        retry_redirects(always_moved, attempts=3, backoff=0)
    assert len(calls) == 3

    def cross_slot():
        calls.append(2)
        raise redis.exceptions.RedisClusterException("all keys must map to the same key slot")

    with pytest.raises(redis.exceptions.RedisClusterException):
        retry_redirects(cross_slot, attempts=3, backoff=0)
    assert calls.count(2) == 1  # a CROSSSLOT refusal is not retried


def test_a_cluster_that_lost_a_master_is_down_not_read_only_and_the_replica_brings_the_entity():
    """While a failed master's replica has not yet won, every node answers CLUSTERDOWN to reads
    and writes alike (the old claim, "read-only for ~2 s", would let the GET through)."""
    with lab.Cluster(3, replicas=1) as c:
        store = UserStore(c.rc)
        store.update(5, {"plan": "free"}, {"max_projects": 3})
        keys = store.names.keys(5, "profile", "settings", "stats:updates")
        owner = c.owner(keys[0])
        replica = c["r" + owner.name[1:]]
        fo = kill_and_fail_over(c, owner, replica, "user", 5, keys)
        assert fo["state_seen"] == "fail" and fo["other"] != owner.name
        assert fo["down_read"] == fo["down_write"] == ("CLUSTERDOWN", None)
        assert fo["promoted"] is replica and fo["keys_on_replica"] == 3 and fo["read_after"] == fo["before"]
        assert fo["tx"] == [0, 0, 2] and fo["owner_after_failback"] is owner


@pytest.mark.parametrize("error", [redis.exceptions.TryAgainError("TRYAGAIN"),
                                   redis.exceptions.AskError("5970 127.0.0.1:1"),
                                   redis.exceptions.MovedError("5970 127.0.0.1:1"),
                                   redis.exceptions.ClusterDownError("CLUSTERDOWN")])
def test_retry_redirects_retries_each_redirect_until_it_works(error):
    """A half-moved slot answers a split multi-key command TRYAGAIN (and moved keys ASK); once the
    slot has moved the same command works: each of those is retried, and the retries counted."""
    calls, seen = [], []

    def moving_then_moved():
        calls.append(1)
        if len(calls) < 3:
            raise error
        return "done"

    assert retry_redirects(moving_then_moved, attempts=3, backoff=0,
                           on_retry=lambda n, exc: seen.append((n, type(exc)))) == "done"
    assert seen == [(1, type(error)), (2, type(error))]


# -- names, the slot map, the retry defaults, and the optimistic reserve's contract --------------


def test_entity_keys_defaults_and_bytes_keys():
    """``EntityKeys()`` is the ``user`` prefix, tagged: the lesson's ``user:{123}:profile``.
    ``hashed_part`` takes bytes as the server does, and a ``}`` with no ``{`` before it is no tag."""
    assert EntityKeys().keys(123, "profile", "settings") == ["user:{123}:profile", "user:{123}:settings"]
    assert EntityKeys(tagged=False).key(123, "profile") == "user:123:profile"
    assert UserStore(None).key(123, "profile") == "user:{123}:profile"
    assert UserStore(None, prefix="acct", tagged=False).key(7, "balance") == "acct:7:balance"
    assert hashed_part(b"x{y}z") == b"y" and hashed_part("a}b") == b"a}b" and hashed_part("a}b{}") == b"a}b{}"
    assert key_slot(b"user:{123}:profile") == key_slot("123") == crc16(b"123") % 16384


def test_parse_ranges_and_owner_of_at_the_range_edges():
    """A range "a-b" or a single slot "a", sorted by start whatever the node order; the owner of
    each first and last slot of a range, and KeyError for a slot nobody serves."""
    from redistutor.patterns.hash_tag_colocation import owner_of
    ranges = parse_ranges({"m3": ["10923-16381", "16383"], "m1": ["0-5460"], "m2": ["5461-10922"]})
    assert ranges == [(0, 5460, "m1"), (5461, 10922, "m2"), (10923, 16381, "m3"), (16383, 16383, "m3")]
    owners = [owner_of(s, ranges) for s in (0, 5460, 5461, 10922, 10923, 16381, 16383)]
    assert owners == ["m1", "m1", "m2", "m2", "m3", "m3", "m3"]
    with pytest.raises(KeyError):
        owner_of(16382, ranges)


def test_retry_defaults_five_tries_and_the_store_three_counted():
    """``retry_redirects`` tries 5 times by default; a ``UserStore`` 3 times (``attempts``),
    counting each retry (not the first try) in ``retries``."""
    calls = []

    def always_moved():
        calls.append(1)
        raise redis.exceptions.MovedError("5970 127.0.0.1:1")

    with pytest.raises(redis.exceptions.MovedError):
        retry_redirects(always_moved, backoff=0)
    assert len(calls) == 5
    calls.clear()
    store = UserStore(None)
    with pytest.raises(redis.exceptions.MovedError):
        store._retry(always_moved)
    assert len(calls) == 3 and store.retries == 2
    calls.clear()

    def moved_once():
        if not calls:
            always_moved()
        return len(calls)

    once = UserStore(None, attempts=4)
    assert once._retry(moved_once) == 1 and once.retries == 1
    calls.clear()
    with pytest.raises(ValueError, match="pass 1 or more"):  # not a silent "unreachable" without a try
        retry_redirects(moved_once, attempts=0)
    assert calls == []


def test_read_returns_every_part_and_sessions_move_in_order(cluster, masters):
    rc = cluster.rc
    store = UserStore(rc)
    store.update(3, {"plan": "pro"}, {"max_projects": 50})
    assert store.read(3) == {"profile": {"plan": "pro"}, "settings": {"max_projects": "50"}, "updates": "1"}
    rc.rpush(store.key(3, "sessions:pending"), "s1", "s2")
    assert [store.activate_session(3), store.activate_session(3), store.activate_session(3)] == ["s1", "s2", None]
    assert rc.lrange(store.key(3, "sessions:active"), 0, -1) == ["s1", "s2"]


def test_reserve_of_a_missing_balance_and_a_write_to_either_watched_key(cluster, masters):
    """No balance key is a balance of 0: nothing is reserved. A concurrent write to ``pending``
    alone (or to ``balance`` alone) between WATCH and EXEC aborts the EXEC: both keys are watched;
    the retry re-reads and moves the amount on top of that write."""
    rc = cluster.rc
    assert UserStore(rc).reserve(8, 1) is None and rc.exists("user:{8}:balance", "user:{8}:pending") == 0
    for key, after in [("user:{8}:pending", (70, 55)), ("user:{8}:balance", (120, 5))]:
        rc.set("user:{8}:balance", 100)
        rc.set("user:{8}:pending", 0)
        seen: list[tuple] = []

        def write_once(user_id, balance, key=key, seen=seen):
            seen.append((user_id, balance))
            if len(seen) == 1:
                rc.incrby(key, 25)

        store = UserStore(cluster.client(), hooks={"after_watch": write_once})
        assert store.reserve(8, 5 if key.endswith("balance") else 30) == after
        assert store.conflicts == 1
        assert seen == [(8, 100), (8, 125 if key.endswith("balance") else 100)]  # the hook sees each read


def test_reserve_gives_up_after_max_tries_of_lost_races(cluster, masters):
    """A writer that changes the balance after every WATCH: each EXEC aborts, counted in
    ``conflicts``; after ``max_tries`` (10 by default) reserve raises WatchError, nothing moved."""
    rc = cluster.rc
    rc.set("user:{9}:balance", 100)
    for kwargs, tries in [({}, 10), ({"max_tries": 2}, 2)]:
        store = UserStore(cluster.client(), hooks={"after_watch": lambda uid, bal: rc.incr("user:{9}:balance")})
        with pytest.raises(redis.exceptions.WatchError):
            store.reserve(9, 1, **kwargs)
        assert store.conflicts == tries
    assert rc.get("user:{9}:pending") is None and rc.get("user:{9}:balance") == str(100 + 12)
