"""A real SQL database to put behind the caching patterns: SQLite, slowed down on demand.

Caching only makes sense next to something slow, and its bugs only show next to something that
changes. :class:`Database` is SQLite (a real database file in a temp dir) with:

* an injectable latency per query (``latency=0.02`` adds 20 ms, like a network hop to a DB);
* a query counter by kind (``db.counts["read"]``), which is what caching is meant to reduce;
* failure injection (``db.fail_next("write")``) to show what a cache does when the DB refuses;
* a ``users`` table with a ``version`` column that every update increments.

Threads may share one ``Database``: SQLite work is serialised by a lock, but the injected latency
is slept outside it, so N concurrent queries overlap the way they would on a real server.
"""

from __future__ import annotations

import collections
import contextlib
import shutil
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import _guard


def _remove_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    _guard.release_dir(path)


class DatabaseError(Exception):
    """An (injected) database failure."""


class Database:
    """SQLite with latency, failure injection and a query counter.

    Args:
        latency: seconds added to every query (reads and writes).
        write_latency: seconds added to writes instead of ``latency``, if given.
        path: database file; default a fresh file in a private temp dir (removed by close()).
    """

    def __init__(self, *, latency: float = 0.0, write_latency: float | None = None,
                 path: str | Path | None = None) -> None:
        self.latency = latency
        self.write_latency = write_latency
        # Removed by close(), at interpreter exit (no Cleanup cell), and by the guardian if this
        # process is killed (kill -9 of a kernel), like a server's temp dir.
        self._tmp = None if path else _guard.private_dir("redistutor-db-")
        if self._tmp:
            self._finalizer = weakref.finalize(self, _remove_dir, self._tmp)
        self.path = Path(path) if path else Path(str(self._tmp)) / "app.db"
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self._failures: collections.Counter[str] = collections.Counter()
        self._in_flight = 0
        self.peak_in_flight = 0  # most queries in progress at once (a stampede shows here)
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " email TEXT NOT NULL, version INTEGER NOT NULL DEFAULT 1)"
        )

    # -- generic SQL -----------------------------------------------------------------------
    def execute(self, sql: str, params: tuple | dict = (), *, kind: str | None = None) -> list[tuple]:
        """Run one statement (counted as ``kind``: "read" for SELECT, else "write")."""
        kind = kind or ("read" if sql.lstrip().upper().startswith("SELECT") else "write")
        delay = self.write_latency if (kind == "write" and self.write_latency is not None) else self.latency
        with self._lock:
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        try:
            if delay:
                time.sleep(delay)
            return self._run(sql, params, kind)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _run(self, sql: str, params: tuple | dict, kind: str) -> list[tuple]:
        with self._lock:
            self.counts[kind] += 1
            if self._failures[kind] > 0:
                self._failures[kind] -= 1
                raise DatabaseError(f"injected {kind} failure")
            return self._conn.execute(sql, params).fetchall()

    def fail_next(self, kind: str = "write", times: int = 1) -> None:
        """Make the next ``times`` queries of ``kind`` ("read" or "write") raise DatabaseError."""
        with self._lock:
            self._failures[kind] += times

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()
            self.peak_in_flight = self._in_flight

    @contextlib.contextmanager
    def slow(self, latency: float) -> Iterator[Database]:
        """Temporarily use another latency: ``with db.slow(0.2): ...``."""
        old = self.latency
        self.latency = latency
        try:
            yield self
        finally:
            self.latency = old

    # -- the users table ---------------------------------------------------------------------
    def seed_users(self, n: int) -> None:
        """Create users 1..n (name "user-<id>", version 1), without counting the queries."""
        with self._lock:
            self._conn.execute("DELETE FROM users")
            self._conn.executemany(
                "INSERT INTO users (id, name, email, version) VALUES (?, ?, ?, 1)",
                [(i, f"user-{i}", f"user{i}@example.com") for i in range(1, n + 1)],
            )

    def get_user(self, user_id: int) -> dict[str, Any] | None:
        rows = self.execute(
            "SELECT id, name, email, version FROM users WHERE id = ?", (user_id,)
        )
        if not rows:
            return None
        uid, name, email, version = rows[0]
        return {"id": uid, "name": name, "email": email, "version": version}

    def update_user(self, user_id: int, **fields: Any) -> int:
        """Change fields of a user; returns the new version. Raises KeyError if absent."""
        allowed = {"name", "email"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"update_user takes {sorted(allowed)}, got {sorted(fields)}")
        sets = ", ".join(f"{k} = ?" for k in sorted(fields))
        rows = self.execute(
            f"UPDATE users SET {sets}, version = version + 1 WHERE id = ? RETURNING version",
            (*[fields[k] for k in sorted(fields)], user_id),
        )
        if not rows:
            raise KeyError(user_id)
        return rows[0][0]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()
        if self._tmp:
            self._finalizer()  # removes the dir once, and releases it from the guardian

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())) or "no queries"
        return f"Database(sqlite, latency={self.latency * 1000:g} ms, {counts})"
