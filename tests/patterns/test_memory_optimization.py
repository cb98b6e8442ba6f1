"""HashBuckets: objects packed into hashes that stay listpacks, at the limits the server reports."""

from __future__ import annotations

import pytest

from redistutor.patterns.memory_optimization import HashBuckets, bucket_count, load
from redistutor.trace import trace


@pytest.fixture
def lim(r):
    """The server's hash limits, put back after the test whatever it changed."""
    saved = r.config_get("hash-max-listpack-*")
    yield {k: int(v) for k, v in saved.items()}
    for k, v in saved.items():
        r.config_set(k, v)


def test_size_defaults_to_the_servers_limit(r, lim):
    b = HashBuckets(r, "u")
    assert b.size == b.max_fields == lim["hash-max-listpack-entries"]
    assert b.max_bytes == lim["hash-max-listpack-value"]
    assert (b.r, b.prefix) == (r, "u")


def test_limits_are_read_from_the_server_not_assumed(r, lim):
    r.config_set("hash-max-listpack-entries", 100)
    r.config_set("hash-max-listpack-value", 20)
    b = HashBuckets(r, "u")
    assert (b.size, b.max_fields, b.max_bytes) == (100, 100, 20)


def test_a_bucket_size_above_the_limit_is_refused(r, lim):
    top = lim["hash-max-listpack-entries"]
    assert HashBuckets(r, "u", top).size == top
    assert HashBuckets(r, "u", 1).size == 1
    for bad in (top + 1, 1000 if top < 1000 else top * 2, -5):
        with pytest.raises(ValueError, match="hash-max-listpack-entries") as err:
            HashBuckets(r, "u", bad)
        assert f"{bad} fields per bucket" in str(err.value) and str(top) in str(err.value)


def test_locate_splits_the_id_into_bucket_and_field(r, lim):
    b = HashBuckets(r, "users", 500)
    assert b.locate(0) == ("users:0", "0")
    assert b.locate(499) == ("users:0", "499")
    assert b.locate(500) == ("users:1", "0")
    assert b.locate(12345) == ("users:24", "345")


def test_set_and_get_round_trip(r, lim):
    b = HashBuckets(r, "u", 100)
    assert b.set(250, "ada") == 1          # a new field
    assert b.set(250, "grace") == 0        # an update
    assert b.get(250) == "grace"
    assert r.hget("u:2", "50") == "grace"
    assert b.get(251) is None
    assert b.set(7, 42) == 1 and b.get(7) == "42"


def test_a_value_over_the_limit_is_refused_and_the_bucket_stays_a_listpack(r, lim):
    top = lim["hash-max-listpack-value"]
    b = HashBuckets(r, "u", 10)
    b.set(1, "x" * top)                    # exactly at the limit: still a listpack
    assert r.object("encoding", "u:0") == "listpack"
    with pytest.raises(ValueError, match=f"{top + 1} bytes > hash-max-listpack-value {top}"):
        b.set(2, "x" * (top + 1))
    with pytest.raises(ValueError):
        b.set(2, b"x" * (top + 1))
    with pytest.raises(ValueError):        # bytes, not characters: 'é' is 2 bytes in UTF-8
        b.set(2, "é" * (top // 2 + 1))
    b.set(3, b"y" * top)
    assert r.object("encoding", "u:0") == "listpack" and r.hlen("u:0") == 2 and b.get(2) is None


def test_a_full_bucket_is_still_a_listpack_and_the_next_id_opens_a_new_one(r, lim):
    b = HashBuckets(r, "u")
    for i in range(b.size + 1):
        b.set(i, "v")
    assert r.hlen("u:0") == b.size and r.object("encoding", "u:0") == "listpack"
    assert r.hlen("u:1") == 1


def test_set_and_get_are_one_command_each(r, lim):
    b = HashBuckets(r, "u", 10)
    with trace(r) as t:
        b.set(3, "a")
        b.get(3)
    assert t.names() == ["HSET", "HGET"] and t.round_trips == 2


def test_bucket_count(r):
    assert bucket_count(0, 512) == 0
    assert bucket_count(1, 512) == 1
    assert bucket_count(512, 512) == 1
    assert bucket_count(513, 512) == 2
    assert bucket_count(20_000, 1000) == 20


def test_load_writes_one_hset_per_bucket_in_one_round_trip(r, lim):
    b = HashBuckets(r, "u", 100)
    values = {i: f"name-{i}" for i in range(250)}
    with trace(r) as t:
        load(b, values)
    assert t.round_trips == 1 and t.names() == ["HSET"] * 3
    assert all(b.get(i) == v for i, v in values.items())
    assert [r.hlen(f"u:{n}") for n in range(3)] == [100, 100, 50]
    assert {r.object("encoding", f"u:{n}") for n in range(3)} == {"listpack"}


def test_load_refuses_a_long_value_before_writing_anything(r, lim):
    b = HashBuckets(r, "u", 100)
    values = {i: "v" for i in range(50)} | {50: "x" * (b.max_bytes + 1)}
    with pytest.raises(ValueError, match=f"object 50: {b.max_bytes + 1} bytes"):
        load(b, values)
    assert not r.exists("u:0")
    load(b, {1: b"z" * b.max_bytes})       # bytes at the limit are fine
    assert r.hget("u:0", "1") == "z" * b.max_bytes


def test_load_counts_bytes_not_characters(r, lim):
    b = HashBuckets(r, "u", 100)
    with pytest.raises(ValueError, match=f"object 3: {2 * (b.max_bytes // 2 + 1)} bytes"):
        load(b, {3: "é" * (b.max_bytes // 2 + 1)})     # under the limit in characters, over it in bytes
    load(b, {4: 1234567})                               # a number is written as its digits
    assert b.get(4) == "1234567" and r.object("encoding", "u:0") == "listpack"
