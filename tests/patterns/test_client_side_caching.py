"""Client-side caching on a real Redis 8: tracking, invalidation pushes, the read/invalidate race."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from redis.cache import CacheConfig

from redistutor.patterns.client_side_caching import (
    InvalidationListener,
    Resp2Invalidations,
    TrackedCache,
)
from redistutor.race import PausePoint, run_in_thread, wait_until
from redistutor.scenarios.client_side_caching import command_calls, read_and_sample, tracking_info
from redistutor.server import RedisServer


@pytest.fixture
def listener(r):
    lis = InvalidationListener(r)
    yield lis
    lis.close()


@pytest.fixture
def tracked(redis_server, listener):
    made = []

    def make(**kwargs):
        c = TrackedCache(redis_server.client(single_connection_client=True), listener, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def test_redis_py_client_cache_reads_locally_and_sees_writes(redis_server, r):
    c = redis_server.client(cache_config=CacheConfig())
    r.set("hot", "1")
    before = command_calls(r, "get")
    assert {c.get("hot") for _ in range(500)} == {"1"}
    assert command_calls(r, "get") - before == 1
    r.set("hot", "2")  # another client writes: the server pushes an invalidation
    # The push can still be on its way when SET returns; until it lands c serves its copy
    # (without a GET), then drops it and reads once.
    wait_until(lambda: c.get("hot") == "2", 10, "the invalidation to reach the client's cache")
    assert command_calls(r, "get") - before == 2
    c.close()


def test_listener_needs_resp3(redis_server):
    with pytest.raises(ValueError, match="RESP3"):
        InvalidationListener(redis_server.client(protocol=2))


def test_tracked_cache_hits_locally(r, tracked):
    cache = tracked()
    r.set("k", "v1")
    before = command_calls(r, "get")
    assert [cache.get("k") for _ in range(100)] == ["v1"] * 100
    assert command_calls(r, "get") - before == 1
    assert (cache.stats.hits, cache.stats.misses) == (99, 1)


def test_write_invalidates_through_redirect(r, tracked, listener):
    cache = tracked()
    r.set("k", "v1")
    cache.get("k")
    n = len(listener.messages)
    r.set("k", "v2")
    assert listener.wait_for(n + 1)
    assert listener.messages[-1] == ["k"] and cache.cached("k") is None
    assert cache.get("k") == "v2"


@pytest.mark.parametrize("placeholder, stale", [(False, True), (True, False)])
def test_read_invalidate_race(r, tracked, listener, placeholder, stale):
    pause = PausePoint("after_reply")
    cache = tracked(placeholder=placeholder, hooks={"after_reply": pause})
    r.set("user:1", "v1")
    reader = run_in_thread(cache.get, "user:1")
    assert pause.wait_reached() == ("user:1", "v1")
    n = len(listener.messages)
    r.set("user:1", "v2")
    assert listener.wait_for(n + 1) and listener.messages[-1] == ["user:1"]
    pause.release()
    assert reader.result(timeout=5) == "v1"  # the reader may return what it read: that is fine
    cache.hooks = None
    assert (cache.cached("user:1") == "v1") is stale
    assert cache.get("user:1") == ("v1" if stale else "v2")
    assert cache.stats.discarded == (0 if stale else 1)


def test_default_vs_bcast(r, redis_server):
    default = InvalidationListener(r)
    bcast = InvalidationListener(r)
    try:
        assert default.tracking("ON") == "OK"
        assert bcast.tracking("ON", "BCAST", "PREFIX", "user:") == "OK"
        default.command("GET", "user:1")  # default mode tracks what this connection reads
        info = tracking_info(r)
        assert info["tracking_total_keys"] == 1 and info["tracking_total_prefixes"] == 1
        r.set("user:999", "x")  # never read by anyone
        r.set("other:1", "y")
        r.set("user:1", "z")
        assert bcast.wait_for(2) and bcast.messages == [["user:999"], ["user:1"]]
        assert default.wait_for(1) and default.messages == [["user:1"]]
        default.read_pending(timeout=0.2)
        assert default.messages == [["user:1"]]  # nothing for user:999
    finally:
        default.close()
        bcast.close()


def test_tracking_table_grows_in_default_mode_only(r):
    default = InvalidationListener(r)
    try:
        default.tracking("ON")
        for i in range(50):
            default.command("GET", f"k:{i}")
        assert tracking_info(r)["tracking_total_keys"] == 50
    finally:
        default.close()


def test_reconnect_flushes_and_tracks_again(r, tracked, listener):
    cache = tracked()
    r.set("a", "1")
    cache.get("a")
    r.client_kill_filter(_id=cache.r.client_id())
    assert cache.get("a") == "1"  # noticed the closed socket: flushed, read again, tracked again
    assert cache.stats.flushes >= 1 and cache.stats.misses == 2
    n = len(listener.messages)
    r.set("a", "2")
    assert listener.wait_for(n + 1)
    assert cache.get("a") == "2"


def test_lost_listener_flushes_and_refuses(r, tracked, listener):
    cache = tracked()
    r.set("a", "1")
    cache.get("a")
    r.client_kill_filter(_id=listener.client_id)
    for _ in range(200):
        if listener.broken:
            break
        time.sleep(0.01)
    assert listener.broken and cache.cached("a") is None
    misses = cache.stats.misses
    for _ in range(2):
        with pytest.raises(redis.exceptions.ConnectionError, match="lost its connection"):
            cache.get("a")
    # a refused read never went to Redis: no miss counted, no in-flight mark left behind
    assert cache.local == {} and cache.cached("a") is None and cache.stats.misses == misses


def test_flushall_sends_a_null_invalidation(r, redis_server, tracked, listener):
    if redis_server.namespace:
        pytest.skip("FLUSHALL would remove other users' keys on an attached server")
    cache = tracked()
    r.set("a", "1")
    cache.get("a")
    n = len(listener.messages)
    r.flushall()
    assert listener.wait_for(n + 1) and listener.messages[-1] is None
    assert cache.cached("a") is None and cache.stats.flushes == 1


def _own_write_then_foreign(r, *options):
    """Track k, write it on the same connection, then have another client write it."""
    lis = InvalidationListener(r)
    try:
        lis.tracking("ON", *options)
        lis.command("GET", "k")
        lis.command("SET", "k", "mine")
        lis.read_pending(timeout=0.2)
        own = list(lis.messages)
        r.set("k", "theirs")
        lis.read_pending(timeout=0.2)
        return own, lis.messages[len(own):], lis.trackinginfo()["flags"]
    finally:
        lis.close()


def test_noloop_silences_own_writes_and_untracks_the_key(r):
    assert _own_write_then_foreign(r) == ([["k"]], [], ["on"])
    # NOLOOP: no push for our own write, and the server has dropped k from its table, so the
    # next foreign write is silent too: a cache that kept its own value would stay stale.
    own, foreign, flags = _own_write_then_foreign(r, "NOLOOP")
    assert own == [] and foreign == [] and "noloop" in flags


@pytest.mark.parametrize("mode, announce, expected", [("OPTIN", "yes", ["b"]), ("OPTOUT", "no", ["a"])])
def test_optin_optout_track_only_the_chosen_reads(r, mode, announce, expected):
    lis = InvalidationListener(r)
    try:
        lis.tracking("ON", mode)
        lis.command("GET", "a")
        lis.command("CLIENT", "CACHING", announce)  # applies to the next command only
        lis.command("GET", "b")
        r.mset({"a": "1", "b": "1"})
        lis.read_pending(timeout=0.2)
        assert lis.messages == [expected] and mode.lower() in lis.trackinginfo()["flags"]
    finally:
        lis.close()


def test_full_tracking_table_invalidates_without_writes():
    with RedisServer(config={"tracking-table-max-keys": 20}, modules=()) as small:
        probe = small.client()
        lis = InvalidationListener(probe)
        try:
            lis.tracking("ON")
            sets = command_calls(probe, "set")
            rows = read_and_sample(lis, probe, [f"k:{i}" for i in range(200)], every=50)
            assert rows[0] == (0, 0, 0) and rows[-1][0] == 200
            assert all(tracked <= 20 for _, tracked, _ in rows)
            assert rows[-1][2] >= 180 and command_calls(probe, "set") == sets  # no writes
        finally:
            lis.close()


def test_resp2_redirect_to_pubsub(redis_server, r):
    r2 = redis_server.client(protocol=2, client_name="test-inval")
    inv = Resp2Invalidations(r2)
    data = redis_server.client(protocol=2, single_connection_client=True)
    try:
        assert inv.track(data) in ("OK", b"OK", True)
        data.get("u:1")
        r.set("u:1", "x")
        assert inv.wait_for(1) and inv.messages == [["u:1"]]
        r.flushdb()
        assert inv.wait_for(2) and inv.messages[1] is None
    finally:
        inv.close()
        data.close()
    with pytest.raises(ValueError):
        Resp2Invalidations(r)  # RESP3 and unnamed


def test_local_cache_is_the_pattern(redis_server, r):
    """The notebook's LocalCache: local hits, invalidation by push, FLUSHALL-style None, in-flight mark."""
    from redistutor.patterns.client_side_caching import InFlight, LocalCache

    r.set("lc:1", "v1")
    listener = InvalidationListener(r)
    data = redis_server.client(single_connection_client=True)
    cache = LocalCache(data, listener)
    try:
        before = command_calls(r, "get")
        assert {cache.get("lc:1") for _ in range(100)} == {"v1"}
        assert command_calls(r, "get") - before == 1
        r.set("lc:1", "v2")
        assert listener.wait_for(1) and listener.messages == [["lc:1"]]
        assert "lc:1" not in cache.local and cache.get("lc:1") == "v2"
        cache.on_invalidate(None)
        assert cache.local == {}
        # the in-flight mark: an invalidation between the reply and the store keeps the reply out
        cache.local["lc:1"] = mark = InFlight()
        cache.on_invalidate(["lc:1"])
        assert cache.local.get("lc:1") is not mark
    finally:
        listener.close()
        data.close()


def test_local_cache_discards_a_reply_invalidated_in_flight(redis_server, r):
    from redistutor.patterns.client_side_caching import LocalCache

    r.set("lc:2", "v1")
    listener = InvalidationListener(r)
    data = redis_server.client(single_connection_client=True)
    cache = LocalCache(data, listener)
    pause = PausePoint("after_reply")

    class Paused:  # the real tracked client, paused once between a GET's reply and the caller
        def get(self, key):
            value = data.get(key)
            pause(key, value)
            return value

    try:
        cache.r = Paused()
        reader = run_in_thread(cache.get, "lc:2")
        pause.wait_reached()
        r.set("lc:2", "v2")
        assert listener.wait_for(1)
        pause.release()
        assert reader.result(timeout=5) == "v1"   # the caller gets what it read ...
        assert "lc:2" not in cache.local          # ... but it is not cached
        cache.r = data
        assert cache.get("lc:2") == "v2"
    finally:
        listener.close()
        data.close()


def test_scenarios_default_vs_bcast_and_try_it(r, redis_server):
    from redistutor.scenarios import client_side_caching as sc

    writer = redis_server.client()
    modes = sc.default_vs_bcast(r, writer, "user")
    assert modes["default"] == [[["user:3"]], [], [], []]
    assert modes["bcast"] == [[["user:3"]], [["user:3"]], [["user:5000"]], []]
    assert sc.invalidated_keys(r, writer, "try", bcast=False) == 50
    assert sc.invalidated_keys(r, writer, "try", bcast=True) == 100
    from redistutor.check import CORRECT, INCORRECT
    assert sc.predict_invalidations(r, writer, "try", True).evaluate(100).outcome == CORRECT
    assert sc.predict_invalidations(r, writer, "try", False).evaluate(100).outcome == INCORRECT


def test_bcast_cache_tracks_its_prefixes_only(r, tracked, listener):
    """BCAST with PREFIX user: drops a local entry on any write under user: (read or not) and
    hears nothing about other keys; BCAST without a prefix (every write in the database) is refused."""
    cache = tracked(bcast=True, prefixes=("user:",))
    info = cache.r.execute_command("CLIENT", "TRACKINGINFO")
    assert "bcast" in info["flags"] and info["prefixes"] == ["user:"]
    assert info["redirect"] == listener.client_id
    r.set("user:1", "a")
    assert listener.wait_for(1) and listener.messages == [["user:1"]]  # BCAST: told before any read
    assert cache.get("user:1") == "a" and cache.get("user:1") == "a" and cache.stats.hits == 1
    n = len(listener.messages)
    r.set("other:1", "x")
    r.set("user:2", "never read")
    assert listener.wait_for(n + 1)
    listener.read_pending(timeout=0.2)
    assert listener.messages[n:] == [["user:2"]]  # nothing for other:1
    r.set("user:1", "b")
    assert listener.wait_for(n + 2) and cache.get("user:1") == "b"
    with pytest.raises(ValueError):
        TrackedCache(cache.r, listener, bcast=True)


def test_any_reconnect_drops_cached_values_and_tracks_again(r, tracked, listener):
    """redis-py reconnects on its own (a retry after a dropped socket): the new connection is not
    tracked for what the old one read, so the values go and tracking is switched on again."""
    cache = tracked()
    r.set("a", "1")
    cache.get("a")
    cache.r.connection.disconnect()
    cache.r.connection.connect()  # what a retry does before resending the command
    assert cache.cached("a") is None and cache.stats.flushes == 1
    info = cache.r.execute_command("CLIENT", "TRACKINGINFO")
    assert "on" in info["flags"] and info["redirect"] == listener.client_id


# -- the contract, pinned (survivors of the mutation run: docs/mutation-testing.md) ------------


def test_listener_sync_counts_pushes_and_the_thread_owns_the_connection(r):
    """sync() answers "how many pushes since" without a timeout; once the thread runs, the
    connection is the thread's: a command on it is refused instead of racing the reader."""
    lis = InvalidationListener(r)
    try:
        assert repr(lis) == "InvalidationListener(messages=0)"
        lis.tracking("ON")
        lis.command("GET", "a")
        lis.command("GET", "b")
        assert lis.sync() == 0  # nothing written yet
        r.set("a", "1")
        r.set("a", "2")  # a was not read again: default mode is silent the second time
        assert lis.sync() == 1 and lis.messages == [["a"]]
        r.set("b", "1")
        r.flushdb()  # a null invalidation ("drop everything") names no key
        assert lis.sync() == 2 and lis.messages == [["a"], ["b"], None]
        assert lis.invalidated_keys() == 2
        assert len(lis.received_at) == 3 and lis.received_at == sorted(lis.received_at)
        assert all(isinstance(t, float) for t in lis.received_at)
        lis.start()
        with pytest.raises(RuntimeError, match="listener thread"):
            lis.command("PING")
    finally:
        lis.close()


def test_listener_and_cache_on_a_bytes_client(redis_server, r):
    """Without decode_responses the server's replies are bytes: keys are still delivered as str,
    and CLIENT TRACKING's b"OK" is accepted."""
    raw = redis_server.client(decode_responses=False)
    lis = InvalidationListener(raw)
    assert lis.trackinginfo() == {"flags": [b"off"], "redirect": -1, "prefixes": []}  # str names
    cache = TrackedCache(redis_server.client(single_connection_client=True, decode_responses=False), lis)
    try:
        r.set("k", "v1")
        assert cache.get("k") == b"v1" and cache.cached("k") == b"v1"
        r.set("k", "v2")
        assert lis.wait_for(1) and lis.messages == [["k"]] and cache.cached("k") is None
    finally:
        cache.close()
        lis.close()


def test_resp2_invalidations_need_a_named_resp2_client(redis_server):
    with pytest.raises(ValueError, match="client_name"):
        Resp2Invalidations(redis_server.client(protocol=2))  # unnamed
    with pytest.raises(ValueError, match="client_name"):
        Resp2Invalidations(redis_server.client(protocol=3, client_name="named-but-resp3"))


def test_tracked_cache_needs_one_connection(redis_server, listener):
    with pytest.raises(ValueError, match="single-connection"):
        TrackedCache(redis_server.client(), listener)  # a pooled client: reads on any connection


def test_default_mode_tracks_what_was_read_and_nothing_else(r, tracked, listener):
    """The default cache is default-mode tracking (no BCAST, no prefix): a write to a key it never
    read sends nothing; a write to one it holds drops exactly that entry (counted once)."""
    cache = tracked()
    info = cache.r.execute_command("CLIENT", "TRACKINGINFO")
    assert info["flags"] == ["on"] and info["prefixes"] == []
    r.set("held", "1")
    assert cache.get("held") == "1" and cache.stats.invalidated == 0
    n = len(listener.messages)
    r.set("never-read", "x")
    r.set("held", "2")
    assert listener.wait_for(n + 1)
    listener_messages = listener.messages[n:]
    assert listener_messages == [["held"]]  # pushes arrive in order: none came before held's
    assert cache.stats.invalidated == 1 and cache.cached("held") is None


def test_a_missing_key_is_not_cached(r, tracked, listener):
    """GET of a key that does not exist returns None and leaves nothing in the dict (not even the
    in-flight mark): the next read asks again, and sees the key once someone creates it."""
    cache = tracked()
    assert cache.get("nope") is None and cache.local == {}
    assert cache.get("nope") is None and cache.stats.misses == 2 and cache.stats.hits == 0
    r.set("nope", "now")  # a read of a missing key is tracked too: the server says it changed
    assert listener.wait_for(1) and listener.messages == [["nope"]]
    assert cache.get("nope") == "now" and cache.local == {"nope": "now"}
    assert repr(cache) == "TrackedCache(placeholder, 1 local entries)"
    assert repr(tracked(placeholder=False)) == "TrackedCache(naive, 0 local entries)"


def test_every_invalidation_during_a_read_discards_its_reply(r, redis_server, tracked, listener):
    """The default cache (placeholder on): a write to the key and a FLUSHALL that land between a
    GET's reply and its storage both remove the in-flight mark, so neither stale reply is kept."""
    if redis_server.namespace:
        pytest.skip("FLUSHALL would remove other users' keys on an attached server")
    pause = PausePoint("after_reply")
    cache = tracked(hooks={"after_reply": pause})
    for step, (invalidate, count) in enumerate([(lambda: r.set("k", "v2"), ["k"]),
                                                (r.flushall, None)]):
        r.set("k", "v1")
        reader = run_in_thread(cache.get, "k")
        assert pause.wait_reached() == ("k", "v1")
        n = len(listener.messages)
        invalidate()
        assert listener.wait_for(n + 1) and listener.messages[-1] == count
        pause.release()
        assert reader.result(timeout=5) == "v1"
        assert cache.cached("k") is None and cache.stats.discarded == step + 1
        pause = PausePoint("after_reply")
        cache.hooks = {"after_reply": pause}
    assert cache.stats.invalidated == 0  # marks were dropped, never a value


def test_reconnect_keeps_the_read_that_caused_it(r, tracked, listener):
    """An empty cache whose connection was killed: its next read reconnects (redis-py retries),
    the reconnect flush keeps that read's in-flight mark, so the reply is stored and tracked."""
    cache = tracked()
    r.set("a", "1")
    r.client_kill_filter(_id=cache.r.client_id())
    assert cache.get("a") == "1" and cache.cached("a") == "1"
    assert (cache.stats.flushes, cache.stats.discarded) == (1, 0)  # one flush: the reconnect's
    r.set("a", "2")
    assert listener.wait_for(1) and listener.messages == [["a"]] and cache.get("a") == "2"


def test_a_disconnected_cache_does_not_serve_its_copies(r, tracked, listener):
    """After the client drops its own connection (no socket at all), the server has forgotten the
    reads: the next get flushes and reads again instead of serving a copy nobody will invalidate."""
    cache = tracked()
    r.set("a", "1")
    cache.get("a")
    gone = cache.r.client_id()
    cache.r.connection.disconnect()
    wait_until(lambda: str(gone) not in {c["id"] for c in r.client_list()}, 10, "the server to drop it")
    r.set("a", "2")  # no invalidation: the server forgot the connection and what it read
    assert cache.get("a") == "2" and cache.stats.flushes == 2  # get's flush, then the reconnect's


def test_in_flight_mark_shows_as_such():
    from redistutor.patterns.client_side_caching import InFlight

    assert repr(InFlight()) == "<in flight>"


def test_local_cache_ignores_invalidations_of_keys_it_does_not_hold(redis_server, r):
    from redistutor.patterns.client_side_caching import LocalCache

    listener = InvalidationListener(r)
    data = redis_server.client(single_connection_client=True)
    cache = LocalCache(data, listener)
    try:
        cache.on_invalidate(["never-read"])  # e.g. a BCAST prefix or an evicted table entry
        r.set("lc:3", "v1")
        assert cache.get("lc:3") == "v1" and cache.local == {"lc:3": "v1"}
    finally:
        listener.close()
        data.close()


def test_wait_for_returns_false_at_its_deadline_and_stops_at_its_count(redis_server, r):
    """wait_for gives up (False) when the pushes never come, and reads no further than asked:
    RESP3 pushes read on the listener itself, RESP2 messages from the Pub/Sub connection."""
    lis = InvalidationListener(r)
    raw2 = redis_server.client(protocol=2, client_name="test-inval-bytes", decode_responses=False)
    inv = Resp2Invalidations(raw2)
    data = redis_server.client(protocol=2, single_connection_client=True)
    try:
        lis.tracking("ON")
        assert lis.wait_for(1, timeout=0.1) is False and lis.messages == []
        lis.command("GET", "a")
        lis.command("GET", "b")
        r.set("a", "1")
        assert lis.read_pending(timeout=5) == 1 and lis.messages == [["a"]]
        r.set("b", "1")
        assert lis.read_pending(timeout=5) == 1 and lis.messages == [["a"], ["b"]]  # counts new ones
        lis.start()
        assert lis.wait_for(3, timeout=0.1) is False

        assert inv.wait_for(1, timeout=0.1) is False and inv.messages == []
        inv.track(data)
        data.get("u:1")
        data.get("u:2")
        r.set("u:1", "x")
        r.set("u:2", "x")
        assert inv.wait_for(1) and inv.messages == [["u:1"]]  # str keys from a bytes client
        assert inv.wait_for(2) and inv.messages == [["u:1"], ["u:2"]]
    finally:
        lis.close()
        inv.close()
        data.close()


def test_one_bcast_message_for_several_keys_drops_each_held_one(r, tracked, listener):
    """BCAST batches the keys a command changed under a prefix into one message, held or not:
    the cache drops those it holds and passes over the others (it never read user:1)."""
    cache = tracked(bcast=True, prefixes=("user:",))
    r.set("user:2", "old")
    assert listener.wait_for(1)
    assert cache.get("user:2") == "old" and cache.cached("user:2") == "old"
    r.mset({"user:1": "x", "user:2": "new"})
    assert listener.wait_for(2) and sorted(listener.messages[1]) == ["user:1", "user:2"]
    assert cache.cached("user:2") is None and cache.stats.invalidated == 1
    assert cache.get("user:2") == "new"


def test_local_cache_drops_only_the_named_keys(redis_server, r):
    from redistutor.patterns.client_side_caching import LocalCache

    listener = InvalidationListener(r)
    data = redis_server.client(single_connection_client=True)
    cache = LocalCache(data, listener)
    try:
        r.mset({"lc:a": "1", "lc:b": "2"})
        assert (cache.get("lc:a"), cache.get("lc:b")) == ("1", "2")
        r.set("lc:a", "changed")
        assert listener.wait_for(1) and listener.messages == [["lc:a"]]
        assert cache.local == {"lc:b": "2"}
    finally:
        listener.close()
        data.close()


def test_close_detaches_the_cache_from_its_client(r, tracked):
    """After close(), reusing the client reconnects without the cache: no flush is counted and
    tracking is not switched back on behind the caller's back."""
    cache = tracked()
    r.set("a", "1")
    cache.get("a")
    cache.close()
    flushes = cache.stats.flushes
    assert cache.r.execute_command("CLIENT", "TRACKINGINFO")["flags"] == ["off"]
    assert cache.stats.flushes == flushes


LEFT_OPEN = """
import os, redis
from redistutor.patterns.client_side_caching import InvalidationListener
lis = InvalidationListener(redis.Redis.from_url(os.environ["CSC_TEST_URL"], protocol=3)).start()
print("started", lis.client_id > 0, flush=True)
"""


def test_a_listener_left_open_does_not_keep_the_program_alive(redis_server):
    """The listener's thread is a daemon: a program that forgets close() still exits."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import redistutor

    env = {**os.environ, "CSC_TEST_URL": redis_server.url,
           "PYTHONPATH": str(Path(redistutor.__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", LEFT_OPEN], env=env, capture_output=True, text=True,
                          timeout=30)
    assert (done.returncode, done.stdout) == (0, "started True\n"), done.stderr


def test_resp2_track_passes_its_options(redis_server, r):
    """track(data, "BCAST", "PREFIX", "b:") tracks by prefix: a write to a key nobody read is published."""
    inv = Resp2Invalidations(redis_server.client(protocol=2, client_name="test-inval-bcast"))
    data = redis_server.client(protocol=2, single_connection_client=True)
    try:
        inv.track(data, "BCAST", "PREFIX", "b:")
        r.set("b:never-read", "x")
        assert inv.wait_for(1) and inv.messages == [["b:never-read"]]
    finally:
        inv.close()
        data.close()


def test_listener_survives_idle_periods_longer_than_the_socket_timeout(redis_server, r):
    """A listener built from a client with socket_timeout (common in production) reads each push as
    a push: it never sits in a blocking read between pushes that the timeout would break."""
    lis = InvalidationListener(redis_server.client(socket_timeout=0.2))
    cache = TrackedCache(redis_server.client(single_connection_client=True), lis)
    try:
        r.mset({"a": "1", "b": "1"})
        cache.get("a")
        cache.get("b")
        r.set("a", "2")
        assert lis.wait_for(1) and lis.messages == [["a"]]
        time.sleep(0.5)  # idle for longer than the socket timeout (the condition, not an assertion)
        r.set("b", "2")
        assert lis.wait_for(2) and lis.messages == [["a"], ["b"]] and cache.cached("b") is None
        assert not lis.broken
    finally:
        cache.close()
        lis.close()


def test_listener_state_before_and_while_it_runs(r):
    """A fresh listener is not broken (a bool, as printed in the notebook), and its thread is named
    for what it is (what a thread dump or threading.enumerate() shows)."""
    lis = InvalidationListener(r)
    try:
        assert lis.broken is False and lis.messages == [] and lis.client_id > 0
        lis.start()
        threads = {t.name: t for t in threading.enumerate()}
        assert threads["invalidation-listener"].daemon  # a forgotten close() cannot block exit
    finally:
        lis.close()


def test_a_socket_closed_under_the_client_counts_as_lost(r, tracked, listener):
    """A data socket closed under redis-py's feet (its file descriptor gone, so select fails) is
    a lost connection: the cache flushes and reads again rather than serve its copy."""
    cache = tracked()
    r.set("a", "1")
    cache.get("a")
    cache.r.connection._sock.close()
    assert cache.get("a") == "1" and cache.stats.misses == 2 and cache.stats.hits == 0


def test_listener_from_a_caching_client_is_a_plain_connection(redis_server, r):
    """Built from a client with redis-py's own cache: only the connection settings are taken (no
    cache on the listener's connection), and it receives pushes like any other."""
    lis = InvalidationListener(redis_server.client(cache_config=CacheConfig()))
    try:
        lis.tracking("ON")
        lis.command("GET", "a")
        r.set("a", "1")
        assert lis.sync() == 1 and lis.messages == [["a"]]
    finally:
        lis.close()
