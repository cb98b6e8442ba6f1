"""Shared fixtures: one real Redis 8 per test worker, a clean client per test."""

from __future__ import annotations

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
