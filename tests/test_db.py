"""The SQLite stand-in: counting, latency, failure injection, versions."""

from __future__ import annotations

import threading

import pytest

from redistutor.db import Database, DatabaseError


def test_counts_reads_and_writes_and_bumps_version():
    with Database() as db:
        db.seed_users(3)
        assert db.get_user(1)["version"] == 1
        assert db.update_user(1, name="x") == 2
        assert db.counts == {"read": 1, "write": 1}
        with pytest.raises(KeyError):
            db.update_user(99, name="x")


def test_injected_failure_is_one_shot():
    with Database() as db:
        db.seed_users(1)
        db.fail_next("write")
        with pytest.raises(DatabaseError):
            db.update_user(1, name="x")
        assert db.get_user(1)["name"] == "user-1"
        assert db.update_user(1, name="y") == 2


def test_latency_is_slept_outside_the_lock_so_queries_overlap():
    with Database(latency=0.05) as db:
        db.seed_users(4)
        barrier = threading.Barrier(4)

        def query(i):
            barrier.wait()
            db.get_user(i)

        threads = [threading.Thread(target=query, args=(i,)) for i in range(1, 5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert db.peak_in_flight >= 2 and db.counts["read"] == 4

