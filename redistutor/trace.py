"""Record the commands a block of code sends to Redis, with round trips counted honestly.

How: while a trace is active, redistutor wraps three redis-py methods (class-wide, refcounted,
restored when the last trace ends): ``Redis.execute_command`` (one command = one round trip),
``Pipeline.execute`` (the whole buffered stack = one round trip; a transaction is shown as
MULTI, the commands, EXEC, all in that one round trip) and ``Pipeline.immediate_execute_command``
(WATCH and the reads between WATCH and MULTI, one round trip each). Each command is recorded
with the thread that sent it (its thread name) and the client (named by you, or client-1, -2...).

Why not MONITOR: it is server-wide (other notebooks' traffic in attach mode), has no thread
names, and shows client ids and ports, which change every run.

What this does not show: the connection handshake redis-py sends by itself (HELLO, AUTH,
CLIENT SETINFO), and it counts a client-side-cache hit (RESP3 ``cache_config``) as a round trip
although the reply came from the local cache. Commands are listed in the order they completed.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import redis
from redis.client import Pipeline

from . import _html as H
from .keys import is_server, strip

ARG_WIDTH = 24  # characters per argument shown
MAX_ARGS = 8  # arguments shown per command


@dataclasses.dataclass(frozen=True)
class Command:
    """One command as sent. ``args`` are full strings (namespace stripped)."""

    name: str  # upper case: "SET", "JSON.SET", "SCRIPT LOAD"
    args: tuple[str, ...]
    client: str
    thread: str
    round_trip: int  # 1-based, within the trace
    pipelined: bool = False
    error: str = ""  # "ExceptionClass: message" if the command failed (the whole message)

    def has(self, *options: str) -> bool:
        """True if every option (e.g. "NX", "PX") appears among the arguments (any case)."""
        upper = {a.upper() for a in self.args}
        return all(o.upper() in upper for o in options)

    def line(self) -> str:
        shown = [_short(a) for a in self.args[:MAX_ARGS]]
        if len(self.args) > MAX_ARGS:
            shown.append(f"…(+{len(self.args) - MAX_ARGS})")
        return " ".join([self.name, *shown])


def _short(a: str) -> str:
    s = a if a and " " not in a else repr(a)
    return s if len(s) <= ARG_WIDTH else s[: ARG_WIDTH - 1] + "…"


def _s(x: Any) -> str:
    if isinstance(x, bytes):
        return x.decode("utf-8", "backslashreplace")
    return str(x)


class Trace(H.Renderable):
    """Commands recorded by ``with trace(...) as t``; render it, or query it in assertions."""

    def __init__(self, *targets: Any, namespace: str | None = None, **named: Any) -> None:
        self._pools: dict[int, str] = {}  # id(connection pool) -> client label
        self._servers: list[tuple[str, int, int]] = []
        self._all = not targets and not named
        ns = namespace
        for i, t in enumerate(targets, 1):
            if is_server(t):
                self._servers.append((t.host, t.port, getattr(t, "db", 0)))
                ns = t.namespace if namespace is None else namespace
            else:
                self._pools[id(t.connection_pool)] = f"client-{i}" if len(targets) > 1 else "client"
        for label, t in named.items():
            if is_server(t):
                raise TypeError("name clients, not servers: trace(alice=r1, bob=r2)")
            self._pools[id(t.connection_pool)] = label
        self.namespace = ns or ""
        self.commands: list[Command] = []
        self._lock = threading.Lock()
        self._round_trips = 0
        self._auto = 0
        self.active = False

    # -- matching and recording ----------------------------------------------------------------
    def _label(self, client: Any) -> str | None:
        pool = getattr(client, "connection_pool", None)
        if pool is None:
            return None
        label = self._pools.get(id(pool))
        if label is not None:
            return label
        kw = pool.connection_kwargs
        if self._all or (kw.get("host"), kw.get("port"), kw.get("db", 0)) in self._servers:
            with self._lock:
                self._auto += 1
                label = self._pools.setdefault(id(pool), f"client-{self._auto}")
            return label
        return None

    def _record(self, client: Any, batch: list[tuple[Any, ...]], pipelined: bool, error: str) -> None:
        label = self._label(client)
        if label is None:
            return
        thread = threading.current_thread().name
        with self._lock:
            self._round_trips += 1
            for args in batch:
                name = _s(args[0]).upper()
                rest = tuple(strip(_s(a), self.namespace) for a in args[1:])
                self.commands.append(Command(name, rest, label, thread, self._round_trips, pipelined, error))

    # -- context manager -----------------------------------------------------------------------
    def __enter__(self) -> Trace:
        _install(self)
        self.active = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.active = False
        _uninstall(self)

    # -- queries -------------------------------------------------------------------------------
    @property
    def round_trips(self) -> int:
        return len({c.round_trip for c in self.commands})

    def names(self, *, thread: str | None = None, client: str | None = None) -> list[str]:
        return [c.name for c in self.select(thread=thread, client=client)]

    def select(self, name: str | None = None, *, thread: str | None = None,
               client: str | None = None) -> list[Command]:
        """Commands filtered by name (any case), thread name and client label."""
        return [c for c in self.commands
                if (name is None or c.name == name.upper())
                and (thread is None or c.thread == thread) and (client is None or c.client == client)]

    def count(self, name: str) -> int:
        return len(self.select(name))

    def __len__(self) -> int:
        return len(self.commands)

    # -- rendering -----------------------------------------------------------------------------
    def _columns(self) -> tuple[list[str], list[tuple[Any, ...]]]:
        many_clients = len({c.client for c in self.commands}) > 1
        many_threads = len({c.thread for c in self.commands}) > 1
        cols = (["#", "round trip"] + (["client"] if many_clients else []) + (["thread"] if many_threads else [])
                + ["command"])
        rows = []
        for i, c in enumerate(self.commands, 1):
            row: list[Any] = [i, c.round_trip]
            if many_clients:
                row.append(c.client)
            if many_threads:
                row.append(c.thread)
            row.append(c.line() + (f"  ✗ {c.error}" if c.error else ""))
            rows.append(tuple(row))
        return cols, rows

    def summary(self) -> str:
        n, rt = len(self.commands), self.round_trips
        return f"{n} command{'s' * (n != 1)} in {rt} round trip{'s' * (rt != 1)}"

    def _text(self) -> str:
        if not self.commands:
            return "no commands"
        cols, rows = self._columns()
        return self.summary() + "\n" + H.text_table(cols, rows, right=(0, 1))

    def _html(self) -> str:
        cols, rows = self._columns()
        return H.title(self.summary()) + (H.html_table(cols, rows, right=(0, 1)) if rows else "")

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([dataclasses.asdict(c) for c in self.commands],
                            columns=[f.name for f in dataclasses.fields(Command)])


def trace(*targets: Any, namespace: str | None = None, **named: Any) -> Trace:
    """Record commands sent by the given clients (or any client of the given server).

    Example:
        ``with trace(r) as t: lock.acquire()`` then ``t`` shows the table and
        ``t.names() == ["SET"]`` asserts it. ``trace(alice=r1, bob=r2)`` names two clients;
        ``trace(server)`` records every client of that server and strips its namespace;
        ``trace()`` records every client in this process.
    """
    return Trace(*targets, namespace=namespace, **named)


# -- the hooks ----------------------------------------------------------------------------------

_active: list[Trace] = []
_hook_lock = threading.Lock()
_orig: dict[str, Any] = {}


def _dispatch(client: Any, batch: list[tuple[Any, ...]], pipelined: bool, error: str) -> None:
    for t in list(_active):
        t._record(client, batch, pipelined, error)


def _wrap_execute_command(orig):
    def execute_command(self, *args, **options):
        try:
            result = orig(self, *args, **options)
        except Exception as exc:
            _dispatch(self, [args], False, _describe(exc))
            raise
        _dispatch(self, [args], False, "")
        return result
    return execute_command


def _describe(exc: BaseException) -> str:
    """The exception's class and its whole message: the server's error text is the lesson."""
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _wrap_pipeline_execute(orig):
    def execute(self, raise_on_error: bool = True):
        stack = [args for args, _options in self.command_stack]
        if self.transaction or self.explicit_transaction:
            batch = [("MULTI",), *stack, ("EXEC",)] if stack else []
        else:
            batch = stack
        try:
            result = orig(self, raise_on_error)
        except Exception as exc:
            if batch:
                _dispatch(self, batch, True, _describe(exc))
            raise
        if batch:
            _dispatch(self, batch, True, "")
        return result
    return execute


def _install(t: Trace) -> None:
    with _hook_lock:
        if not _active:
            _orig["redis"] = redis.Redis.execute_command
            _orig["immediate"] = Pipeline.immediate_execute_command
            _orig["execute"] = Pipeline.execute
            redis.Redis.execute_command = _wrap_execute_command(_orig["redis"])  # type: ignore[method-assign]
            Pipeline.immediate_execute_command = _wrap_execute_command(_orig["immediate"])  # type: ignore[method-assign]
            Pipeline.execute = _wrap_pipeline_execute(_orig["execute"])  # type: ignore[method-assign]
        _active.append(t)


def _uninstall(t: Trace) -> None:
    with _hook_lock:
        if t in _active:
            _active.remove(t)
        if not _active and _orig:
            redis.Redis.execute_command = _orig.pop("redis")  # type: ignore[method-assign]
            Pipeline.immediate_execute_command = _orig.pop("immediate")  # type: ignore[method-assign]
            Pipeline.execute = _orig.pop("execute")  # type: ignore[method-assign]
