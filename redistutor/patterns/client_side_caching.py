"""Server-assisted client-side caching: keep hot values in the application, let Redis say when to drop them.

With ``CLIENT TRACKING ON`` the server remembers which keys a connection read; when any client
changes one of them, the server pushes ``invalidate [key]`` to that connection (RESP3), or to the
connection named by ``REDIRECT <id>``. In broadcast mode (``BCAST PREFIX p``) the server remembers
nothing per key and pushes an invalidation for every write to a key under the prefixes, read or not.

The race between a read and its invalidation, with invalidations on a separate connection
(REDIRECT), the way most client-side caches are built::

    time 0  reader:  GET user:1            (data connection)   server now tracks user:1
    time 1  server:  reply "v1"            the reply is on its way / not yet stored locally
    time 2  writer:  SET user:1 v2         server pushes invalidate [user:1] (listener connection)
    time 3  listener: drops user:1 from the local cache; there is nothing to drop yet
    time 4  reader:  stores user:1 = "v1"  <- stale, and no further invalidation will come:
                                              the server stopped tracking user:1 at time 2

The fix (also what redis-py does internally): put a *placeholder* in the local cache before
sending the GET. The invalidation at time 3 removes the placeholder; at time 4 the reader stores
its value only if its own placeholder is still there, so the stale value is discarded.

When the connection that carries tracking is lost, the server forgets its tracking state: the
local cache must be flushed, or it serves stale values forever. :class:`TrackedCache` flushes
on every (re)connect of its data connection and when its listener loses its connection.

Two ways to get an invalidation without a write to your keys being the cause you expect:

* ``NOLOOP``: your own write sends you nothing, but still removes the key from the server's
  table, so the next write by someone else is silent as well: drop keys you wrote yourself.
* ``tracking-table-max-keys``: past the cap the server evicts keys from its table and sends
  their readers invalidations that no write caused (``scenarios.client_side_caching.read_and_sample``
  counts them).

:class:`LocalCache` is the pattern in about 25 lines, as the notebook shows it: tracking with
REDIRECT, a local dict, the invalidation handler and the in-flight mark. :class:`TrackedCache` is the
same design with the production extras: stats, race hooks, BCAST/prefixes, a naive mode kept to show
the race, and flushing on a lost connection or a reconnect. The probes and drivers the notebook uses
(``command_calls``, ``tracking_info``, ``read_and_sample``) live in ``redistutor/scenarios``.

Notebook: notebooks/05-client-side-caching.ipynb
Redis: https://redis.io/docs/latest/develop/reference/client-side-caching/
       https://redis.io/commands/client-tracking/
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from ..race import call_hook
from ..stats import Stats

# An invalidation message's payload: a list of keys, or None ("drop everything": FLUSHALL/FLUSHDB).
Keys = list[str] | None


class InvalidationListener:
    """A dedicated RESP3 connection that receives ``invalidate`` push messages.

    Built from a client's connection settings (the client must use ``protocol=3``); it is
    not taken from the client's pool, so nothing else ever sends commands on it.

    Two uses:

    * as the REDIRECT target of other connections: :meth:`start` a thread that reads pushes and
      calls the subscribed callbacks;
    * as a tracking connection itself (``listener.tracking("ON", "BCAST", "PREFIX", "user:")``),
      read synchronously with :meth:`command` and :meth:`read_pending`.

    Attributes:
        client_id: ``CLIENT ID`` of this connection (what REDIRECT needs).
        messages: every payload received, in order (a list of keys, or None for "flush all").
    """

    def __init__(self, r: redis.Redis) -> None:
        kwargs = dict(r.connection_pool.connection_kwargs)
        if str(kwargs.get("protocol")) != "3":
            raise ValueError("InvalidationListener needs a RESP3 client: server.client(protocol=3)")
        # Only plain connection settings: a client's cache or cache_config must not come along.
        self.conn = redis.Connection(**{k: v for k, v in kwargs.items()
                                        if k in _CONNECTION_KWARGS})
        self.conn.connect()
        self.conn._parser.set_invalidation_push_handler(self._on_push)
        self._thread: threading.Thread | None = None
        self.messages: list[Keys] = []
        self.received_at: list[float] = []  # time.perf_counter() of each message
        self._callbacks: list[Callable[[Keys], None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.broken = False
        self.client_id = int(self.command("CLIENT", "ID"))

    # -- synchronous use ----------------------------------------------------------------------
    def command(self, *args: Any) -> Any:
        """Send one command on this connection (only while no listener thread runs)."""
        if self._thread is not None:
            raise RuntimeError("the listener thread owns this connection")
        self.conn.send_command(*args)
        return self.conn.read_response()

    def tracking(self, *options: str) -> Any:
        """``CLIENT TRACKING <options>`` on this connection itself, e.g. ("ON", "BCAST", "PREFIX", "u:")."""
        return self.command("CLIENT", "TRACKING", *options)

    def sync(self) -> int:
        """PING on this connection; returns how many pushes arrived meanwhile.

        The server queues a push on a connection ahead of any later reply, so once PING's reply
        is read, every invalidation caused by a command that already returned (e.g. another
        client's SET) has been recorded: "no push" can be checked without waiting for a timeout.
        """
        before = len(self.messages)
        self.command("PING")
        return len(self.messages) - before

    def trackinginfo(self) -> dict[str, Any]:
        """``CLIENT TRACKINGINFO`` of this connection: flags, redirect, prefixes (Redis 6.2+)."""
        info = self.command("CLIENT", "TRACKINGINFO")  # a map: this connection is RESP3
        return {(k.decode() if isinstance(k, bytes) else k): v for k, v in info.items()}

    def invalidated_keys(self) -> int:
        """How many keys the invalidations received so far named (a flush-all counts 0)."""
        return sum(len(m) for m in self.messages if m)

    def read_pending(self, timeout: float = 0.0) -> int:
        """Read every push already received (waiting up to ``timeout`` for the first one)."""
        before = len(self.messages)
        wait = timeout
        while self.conn.can_read(timeout=wait):
            self.conn.read_response(push_request=True, timeout=1.0)
            wait = 0
        return len(self.messages) - before

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Until ``len(messages) >= count`` or the deadline (reads itself if no thread runs)."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            if self._thread is None:
                self.read_pending(timeout=0.05)
            else:
                time.sleep(0.005)
        return len(self.messages) >= count

    # -- background use ---------------------------------------------------------------------
    def subscribe(self, callback: Callable[[Keys], None]) -> None:
        """Call ``callback(keys)`` for every invalidation (keys None = flush everything)."""
        with self._lock:
            self._callbacks.append(callback)

    def start(self) -> InvalidationListener:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="invalidation-listener", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.conn.can_read(timeout=0.05):
                    self.conn.read_response(push_request=True, timeout=1.0)
            except (redis.exceptions.ConnectionError, OSError, ValueError):
                if self._stop.is_set():
                    return
                # Lost the connection: the server dropped its redirect. Nobody will tell us about
                # writes any more, so every cached value is suspect: flush them all.
                self.broken = True
                self._on_push(["invalidate", None])
                return

    def _on_push(self, msg: list) -> list:
        keys = msg[1]
        if keys is not None:
            keys = [k.decode() if isinstance(k, bytes) else k for k in keys]
        with self._lock:
            self.messages.append(keys)
            self.received_at.append(time.perf_counter())
            callbacks = list(self._callbacks)
        for cb in callbacks:
            cb(keys)
        return msg

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.conn.disconnect()

    def __repr__(self) -> str:
        return f"InvalidationListener(messages={len(self.messages)})"


class Resp2Invalidations:
    """Invalidations for RESP2 clients: a Pub/Sub connection subscribed to ``__redis__:invalidate``.

    RESP2 has no push messages, so a RESP2 connection cannot receive invalidations on itself. It
    turns tracking on with ``REDIRECT <id>`` naming a connection that is SUBSCRIBEd to
    ``__redis__:invalidate``; the server publishes each invalidation there as a message whose
    data is the list of keys (or nil for "flush everything").

    Args:
        r2: a RESP2 client created with a ``client_name`` (used to find the Pub/Sub connection's
            id in CLIENT LIST: a subscribed RESP2 connection cannot run CLIENT ID itself).
    """

    CHANNEL = "__redis__:invalidate"

    def __init__(self, r2: redis.Redis) -> None:
        name = r2.connection_pool.connection_kwargs.get("client_name")
        if not name or str(r2.connection_pool.connection_kwargs.get("protocol", 2)) == "3":
            raise ValueError("Resp2Invalidations needs a RESP2 client with a client_name")
        self.pubsub = r2.pubsub()
        self.pubsub.subscribe(self.CHANNEL)
        first = self.pubsub.get_message(timeout=5)
        if not first or first["type"] != "subscribe":
            raise redis.exceptions.ConnectionError(f"no SUBSCRIBE confirmation, got {first!r}")
        mine = [c for c in r2.client_list() if c.get("name") == name and c.get("sub") == "1"]
        if len(mine) != 1:
            raise RuntimeError(f"expected one subscribed connection named {name!r}, found {len(mine)}")
        self.client_id = int(mine[0]["id"])
        self.messages: list[Keys] = []

    def track(self, conn_client: redis.Redis, *options: str) -> Any:
        """``CLIENT TRACKING ON REDIRECT <our id> <options>`` on ``conn_client``'s connection
        (a single-connection client: tracking belongs to one connection)."""
        return conn_client.execute_command("CLIENT", "TRACKING", "ON", "REDIRECT", self.client_id,
                                           *options)

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Read messages until ``len(messages) >= count`` or the deadline."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            msg = self.pubsub.get_message(timeout=0.05)
            if msg and msg["type"] == "message":
                data = msg["data"]
                self.messages.append(None if data is None else
                                     [k.decode() if isinstance(k, bytes) else k for k in data])
        return len(self.messages) >= count

    def close(self) -> None:
        self.pubsub.close()


_CONNECTION_KWARGS = {
    "host", "port", "db", "username", "password", "socket_timeout", "socket_connect_timeout",
    "socket_keepalive", "socket_keepalive_options", "retry_on_timeout", "retry", "encoding",
    "encoding_errors", "decode_responses", "client_name", "lib_name", "lib_version",
    "health_check_interval", "protocol", "credential_provider",
}


@dataclass
class LocalStats(Stats):
    hits: int = 0  # served from the local dict: no network
    misses: int = 0  # went to Redis
    invalidated: int = 0  # local entries dropped by invalidation messages
    discarded: int = 0  # replies not stored because the key was invalidated while in flight
    flushes: int = 0  # whole-cache flushes (flush-all message, reconnect, lost listener)


class InFlight:  # marks a key whose GET is in flight; an invalidation removes the mark
    def __repr__(self):
        return "<in flight>"


class LocalCache:
    """A local dict in front of Redis; the server says when to drop an entry (RESP3 tracking)."""

    def __init__(self, r, listener):
        self.r, self.local, self.lock = r, {}, threading.Lock()  # r: ONE connection
        listener.subscribe(self.on_invalidate)                    # pushes: invalidate [keys]
        listener.start()
        r.execute_command("CLIENT", "TRACKING", "ON", "REDIRECT", listener.client_id)

    def on_invalidate(self, keys):            # keys None: FLUSHALL / FLUSHDB, drop everything
        with self.lock:
            for key in list(self.local) if keys is None else keys:
                self.local.pop(key, None)     # drops a value, or an in-flight mark

    def get(self, key):
        with self.lock:
            value = self.local.get(key)
            if value is not None and not isinstance(value, InFlight):
                return value                  # local hit: no network at all
            mark = self.local[key] = InFlight()
        value = self.r.get(key)               # a tracked read: the server now watches key
        with self.lock:
            if self.local.get(key) is mark:   # no invalidation while the reply was in flight
                self.local[key] = value
        return value


class TrackedCache:
    """A local dict in front of Redis, invalidated by the server (CLIENT TRACKING ... REDIRECT).

    Args:
        r: a client with exactly one connection (``server.client(single_connection_client=True)``):
            tracking belongs to a connection, so every read must go through the tracked one.
        listener: an :class:`InvalidationListener`; its thread is started here.
        placeholder: True (correct) marks a key "in flight" before reading it and stores the
            reply only if no invalidation removed the mark meanwhile; False is the naive cache
            that stores whatever the reply was (kept to show the race).
        prefixes / bcast: passed to CLIENT TRACKING (``bcast=True`` needs ``prefixes``).
        hooks: ``after_reply(key, value)``: the reply arrived and is not stored yet.
    """

    def __init__(self, r: redis.Redis, listener: InvalidationListener, *, placeholder: bool = True,
                 bcast: bool = False, prefixes: tuple[str, ...] = (),
                 hooks: dict[str, Callable[..., Any]] | None = None) -> None:
        if getattr(r, "connection", None) is None:
            raise ValueError("TrackedCache needs a single-connection client: "
                             "server.client(single_connection_client=True)")
        if bcast and not prefixes:
            # BCAST without PREFIX announces every write to every key in the database.
            raise ValueError("bcast=True needs prefixes, e.g. prefixes=('user:',)")
        self.r = r
        self.listener = listener
        self.placeholder = placeholder
        self.bcast = bcast
        self.prefixes = tuple(prefixes)
        self.hooks = hooks
        self.local: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.stats = LocalStats()
        listener.subscribe(self._on_invalidate)
        listener.start()
        self._enable_tracking(r.connection)
        # Tracking is per connection: after a reconnect it is off and we missed invalidations.
        r.connection.register_connect_callback(self._on_reconnect)

    def _tracking_args(self) -> list[Any]:
        args: list[Any] = ["CLIENT", "TRACKING", "ON", "REDIRECT", self.listener.client_id]
        if self.bcast:
            args.append("BCAST")
        for p in self.prefixes:
            args += ["PREFIX", p]
        return args

    def _enable_tracking(self, conn: Any) -> None:
        conn.send_command(*self._tracking_args())
        if conn.read_response() not in ("OK", b"OK"):
            raise redis.exceptions.ResponseError("CLIENT TRACKING was refused")

    def _on_reconnect(self, conn: Any) -> None:
        # Runs before the command that caused the reconnect is sent, so reads in flight (their
        # placeholders) will be tracked on the new connection: keep them, drop the values.
        self.flush(keep_in_flight=True)
        self._enable_tracking(conn)

    def flush(self, keep_in_flight: bool = False) -> None:
        with self.lock:
            if keep_in_flight:
                self.local = {k: v for k, v in self.local.items() if isinstance(v, InFlight)}
            else:
                self.local.clear()
        self.stats.add("flushes")

    def _on_invalidate(self, keys: Keys) -> None:
        if keys is None:
            self.flush()
            return
        with self.lock:
            dropped = sum(v is not None and not isinstance(v, InFlight)
                          for v in (self.local.pop(k, None) for k in keys))
        self.stats.add("invalidated", dropped)

    def get(self, key: str) -> Any:
        """The value of ``key``: from the local dict if present, else from Redis (then kept)."""
        if self.local and self._connection_lost():
            # The tracked connection died: the server forgot what we read and will not tell us
            # about writes. Flush; the read below reconnects and _on_reconnect re-enables tracking.
            self.flush()
        with self.lock:
            cur = self.local.get(key)
            if cur is not None and not isinstance(cur, InFlight):
                self.stats.hits += 1
                return cur
            # Refuse before marking: a refused read leaves no in-flight mark and counts no miss.
            if self.listener.broken:
                raise redis.exceptions.ConnectionError("the invalidation listener lost its connection")
            mark = InFlight()
            if self.placeholder:
                self.local[key] = mark
        self.stats.add("misses")
        value = self.r.get(key)
        call_hook(self.hooks, "after_reply", key, value)
        with self.lock:
            if self.placeholder:
                if self.local.get(key) is mark and value is not None:
                    self.local[key] = value
                elif self.local.get(key) is mark:
                    del self.local[key]  # do not cache "no such key"
                else:
                    self.stats.discarded += 1  # invalidated while in flight: do not store
            elif value is not None:
                self.local[key] = value
        return value

    def _connection_lost(self) -> bool:
        """Has the server closed our data connection? (a local check, no round trip)

        Nothing arrives unsolicited on the data connection (invalidations go to the listener),
        so if its socket is readable between commands, the server has closed it.
        """
        sock = getattr(self.r.connection, "_sock", None)
        if sock is None:
            return True
        try:
            ready, _, _ = select.select([sock], [], [], 0)
            return bool(ready) and sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def cached(self, key: str) -> Any:
        """What the local dict holds for ``key`` (None if nothing), without any network."""
        with self.lock:
            v = self.local.get(key)
        return v

    def close(self) -> None:
        try:
            self.r.connection.deregister_connect_callback(self._on_reconnect)
        except Exception:
            pass
        self.r.close()

    def __repr__(self) -> str:
        mode = "placeholder" if self.placeholder else "naive"
        return f"TrackedCache({mode}, {len(self.local)} local entries)"
