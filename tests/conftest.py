"""Shared fixtures: one real Redis 8 per test worker, a clean client per test."""

from __future__ import annotations

import pytest

from redistutor.server import start_server


@pytest.fixture(scope="session")
def redis_server():
    """A server for this worker: local (or REDIS_URL in attach mode), stopped at the end."""
    server = start_server("tests", quiet=True)
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
