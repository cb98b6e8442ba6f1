"""Shared fixtures: one real Redis 8 per test worker, a clean client per test."""

from __future__ import annotations

import inspect

import pytest

from redistutor.db import Database
from redistutor.server import start_server


@pytest.fixture(scope="session")
def redis_server():
    """A private local server for this test worker, stopped at the end.

    Always local, even when REDIS_URL is set: unit tests write plain key names and flush, which
    must never touch a shared server. Attach mode has its own tests (tests/test_server.py), and
    notebooks under nbval do follow REDIS_URL.
    """
    server = start_server("tests", backend="local", quiet=True)
    yield server
    server.stop()


@pytest.fixture
def r(redis_server):
    """A decode_responses client; the server's keys (or namespace) are removed after the test."""
    client = redis_server.client()
    redis_server.reset()
    yield client
    redis_server.reset()
    client.close()


@pytest.fixture
def db():
    """A fresh SQLite "database" with users 1..50 (no injected latency), removed afterwards."""
    with Database() as d:
        d.seed_users(50)
        yield d


# -- lab fixtures and markers -----------------------------------------------------------------------

# Fixtures (shared here or module-local) that hand a test several lab servers.
LAB_FIXTURES = {"cluster", "lab_factory", "fleet", "nodes", "shards", "masters"}

@pytest.fixture(scope="module")
def lab_factory():
    """Start lab objects for a test module: ``lab_factory(lab.Cluster(3, replicas=1))``.

    Everything started through it is stopped after the module, and the test fails if any of its
    processes outlives the stop (no orphans, whatever the tests did to the nodes).
    """
    from tests.helpers import wait_gone

    started = []

    def start(obj):
        started.append(obj.start())
        return obj

    yield start
    pids = set()
    for obj in reversed(started):
        pids |= {getattr(n, "pid", None) for n in getattr(obj, "nodes", [])} - {None}
        obj.stop()
    assert not wait_gone(pids), f"lab processes outlived their stop(): {sorted(wait_gone(pids))}"


@pytest.fixture(scope="module")
def cluster(lab_factory):
    """A real Redis Cluster, 3 masters with a replica each, shared by a test module."""
    from redistutor import lab

    return lab_factory(lab.Cluster(3, replicas=1))


def pytest_collection_modifyitems(config, items):
    """Markers from what a test starts: ``cluster`` and ``lab`` (and ``slow`` for clusters and
    notebooks), read from the fixtures it uses and its own source, so no test has to remember to
    mark itself."""
    for item in items:
        if str(item.path).endswith(".ipynb"):
            item.add_marker(pytest.mark.slow)
            continue
        try:
            src = inspect.getsource(item.obj)  # type: ignore[attr-defined]
        except (AttributeError, OSError, TypeError):
            src = ""
        fixtures = set(getattr(item, "fixturenames", ()))
        if "cluster" in fixtures or "Cluster(" in src:
            item.add_marker(pytest.mark.cluster)
            item.add_marker(pytest.mark.slow)
        if fixtures & LAB_FIXTURES or any(s in src for s in ("lab.", "Fleet(", "Cluster(", "Replicated(")):
            item.add_marker(pytest.mark.lab)
