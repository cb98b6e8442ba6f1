"""A live view of keys that updates from keyspace notifications while other cells or threads run.

``w = watch(server, "user:*")`` subscribes (on its own connection, in its own thread) to
``__keyspace@<db>__:<pattern>`` and re-reads the keys after each burst of events. In JupyterLab it
is an ipywidgets HTML widget that redraws itself; where widgets cannot render (nbval, a terminal,
``set_options(display="text")``) it shows as text, re-read each time it is displayed.

Notifications: on a private server the watcher turns them on (``CONFIG SET
notify-keyspace-events KA``, merged with what is set) and restores the old setting when the last
watcher of that server stops. In attach mode it tries the same; if the server refuses CONFIG SET
(managed services, ACLs), or the user may not subscribe to ``__keyspace@<db>__:*`` (a workshop
learner, whose channels are ``u:<name>:*``), the watcher says so in one sentence and updates only
when you call ``w.refresh()``.

``w.stop()`` ends the thread and closes both connections; watchers still running at interpreter
exit are stopped by an ``atexit`` hook, and the thread is a daemon, so a dying kernel never waits.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections import deque
from typing import Any

import redis

from . import _html as H
from .keys import resolve, snapshot, strip
from .options import text_mode

THREAD_NAME = "redistutor-watch"
CLIENT_NAME = "redistutor-watch"
_live: weakref.WeakSet[Watcher] = weakref.WeakSet()
_config_lock = threading.Lock()
_config_users: dict[tuple, list] = {}  # (host, port) -> [count, old setting or None]


class Watcher(H.Renderable):
    """A live key table. Create it with :func:`watch`; stop it with :meth:`stop`.

    Attributes:
        events: the most recent ``(key, event)`` pairs, oldest first (e.g. ``("user:1", "hset")``).
        notifications: True if keyspace notifications are on for this watcher.
    """

    def __init__(self, target: Any, pattern: str = "*", *, namespace: str | None = None,
                 max_events: int = 20, min_interval: float = 0.1) -> None:
        base, self.namespace = resolve(target, namespace)
        self.pattern = pattern
        self.events: deque[tuple[str, str]] = deque(maxlen=max_events)
        self.event_count = 0
        self.min_interval = min_interval
        self.notifications = False
        self.note = ""
        pool = base.connection_pool
        kwargs = {**pool.connection_kwargs, "client_name": CLIENT_NAME}
        self._pool = redis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
        self._r = redis.Redis(connection_pool=self._pool)
        self._addr = (kwargs.get("host"), kwargs.get("port"))
        self._db = kwargs.get("db", 0)
        self._pubsub: redis.client.PubSub | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._table = None
        self._widget = None
        self._config_taken = False
        self._thread_ended = False

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> Watcher:
        if self._thread is not None:
            return self
        try:
            self.notifications = self._enable_notifications()
            self._pubsub = pubsub = self._r.pubsub(ignore_subscribe_messages=True)
            pubsub.psubscribe(f"__keyspace@{self._db}__:{self.namespace}{self.pattern}")
            try:
                pubsub.get_message(timeout=1.0)  # the subscription's reply, or the ACL's refusal
            except redis.exceptions.NoPermissionError:
                self._without_events()
            self.refresh()
            self._stop.clear()
            self._thread_ended = False
            self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
            self._thread.start()
        except BaseException:
            self.stop()
            raise
        _live.add(self)
        return self

    def stop(self) -> None:
        """End the thread, close the connections, restore the notification setting. Idempotent."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        self._thread = None
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:
                pass
            self._pubsub = None
        self._release_notifications()
        self._pool.disconnect()
        _live.discard(self)
        self._redraw()  # the widget on the page says "stopped" now, not "running"

    def _redraw(self) -> None:
        if self._widget is not None:
            try:
                self._widget.value = self._inner_html()
            except Exception:  # a closed comm (kernel shutting down): nothing left to redraw
                pass

    @property
    def running(self) -> bool:
        return (self._thread is not None and self._thread.is_alive() and not self._stop.is_set()
                and not self._thread_ended)

    def __enter__(self) -> Watcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- notifications -------------------------------------------------------------------------
    def _enable_notifications(self) -> bool:
        with _config_lock:
            try:
                current = self._r.config_get("notify-keyspace-events").get("notify-keyspace-events", "")
            except redis.exceptions.RedisError:
                self.note = "CONFIG GET is not allowed here: cannot tell whether notifications are on"
                return False
            current = (current.decode() if isinstance(current, bytes) else current) or ""
            if "K" in current and ("A" in current or set("g$lshzxet") <= set(current)):
                entry = _config_users.get(self._addr)
                if entry is not None:  # another watcher turned them on: share its restore duty
                    entry[0] += 1
                    self._config_taken = True
                return True
            wanted = "".join(sorted(set(current) | set("KA")))
            try:
                self._r.config_set("notify-keyspace-events", wanted)
            except redis.exceptions.RedisError:
                self.note = ("this server refuses CONFIG SET notify-keyspace-events: the view "
                             "updates only when you call refresh()")
                return False
            entry = _config_users.setdefault(self._addr, [0, current])
            entry[0] += 1
            self._config_taken = True
            return True

    def _without_events(self) -> None:
        """The user may not subscribe to keyspace channels: no events, the view updates on refresh()."""
        self.notifications = False
        self.note = ("this user may not receive keyspace notifications on this server (its ACL channels "
                     "exclude __keyspace@*): the view updates only when you call refresh()")
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception:
                pass

    def _release_notifications(self) -> None:
        if not self._config_taken:
            return
        self._config_taken = False
        with _config_lock:
            entry = _config_users.get(self._addr)
            if entry is None:
                return
            entry[0] -= 1
            if entry[0] <= 0:
                del _config_users[self._addr]
                try:
                    self._r.config_set("notify-keyspace-events", entry[1])
                except redis.exceptions.RedisError:
                    pass  # the server is gone or refuses: nothing to restore

    # -- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        dirty, last = False, 0.0
        while not self._stop.is_set():
            try:
                pubsub = self._pubsub
                if pubsub is None:  # no events for this user: nothing to do until stop()
                    self._stop.wait(0.1)
                    continue
                msg = pubsub.get_message(timeout=0.1)
            except redis.exceptions.NoPermissionError:  # the refusal arrived after start() stopped waiting
                self._without_events()
                self._redraw()
                continue
            except (redis.exceptions.ConnectionError, ValueError, AttributeError):
                break  # closed under us by stop(), or the server died
            if msg and msg.get("type") == "pmessage":
                channel = msg["channel"].decode() if isinstance(msg["channel"], bytes) else msg["channel"]
                data = msg["data"].decode() if isinstance(msg["data"], bytes) else msg["data"]
                key = strip(channel.split(":", 1)[1], self.namespace)
                with self._changed:
                    self.events.append((key, data))
                    self.event_count += 1
                    self._changed.notify_all()
                dirty = True
            if dirty and time.monotonic() - last >= self.min_interval:
                try:
                    self.refresh()
                except redis.exceptions.ConnectionError:
                    break  # the server is gone: stop quietly
                except Exception as exc:  # keep watching; say what went wrong in the view
                    self.note = f"last refresh failed: {type(exc).__name__}: {exc}"
                dirty, last = False, time.monotonic()
        self._thread_ended = True
        self._redraw()  # ended by stop() or a dead server: the status line says so

    def refresh(self):
        """Re-read the keys now (and redraw the widget, if shown)."""
        from .viz import KeyTable

        self._table = KeyTable.from_snapshot(snapshot(self._r, self.pattern, namespace=self.namespace))
        self._redraw()
        return self._table

    def wait(self, events: int, timeout: float = 5.0) -> bool:
        """Block until at least ``events`` notifications have arrived (for tests and demos)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.event_count < events:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        self.refresh()
        return True

    # -- rendering -----------------------------------------------------------------------------
    def _status(self) -> str:
        state = "running" if self.running else "stopped"
        notif = "on" if self.notifications else "off"
        return f"watching {self.pattern!r} ({state}, keyspace notifications {notif})"

    def _event_rows(self) -> list[tuple[int, str, str]]:
        first = self.event_count - len(self.events) + 1
        return [(first + i, k, e) for i, (k, e) in enumerate(self.events)]

    def _text(self) -> str:
        parts = [self._status()]
        if self.note:
            parts.append(f"note: {self.note}")
        if self._table is not None:
            parts.append(repr(self._table))
        if self.events:
            parts += ["recent events:", H.text_table(("#", "key", "event"), self._event_rows(), right=(0,))]
        return "\n".join(parts)

    def _inner_html(self) -> str:
        parts = [H.title(self._status())]
        if self.note:
            parts.append(H.note(f"note: {self.note}"))
        if self._table is not None:
            parts.append(self._table._html())
        if self.events:
            parts += [H.note("recent events"), H.html_table(("#", "key", "event"), self._event_rows(), right=(0,))]
        return H.page(*parts)

    def _html(self) -> str:
        return self._inner_html()

    @property
    def widget(self):
        """The ipywidgets.HTML that redraws itself (None if ipywidgets is missing)."""
        if self._widget is None:
            try:
                import ipywidgets
            except ImportError:
                return None
            self._widget = ipywidgets.HTML(value=self._inner_html())
        return self._widget

    def _repr_mimebundle_(self, include=None, exclude=None):
        if not text_mode():
            w = self.widget
            if w is not None:
                bundle = w._repr_mimebundle_(include=include, exclude=exclude)
                if bundle:
                    bundle = dict(bundle)
                    bundle["text/plain"] = repr(self)  # what plain frontends (and nbval) see
                    return bundle
        return {"text/plain": repr(self), "text/html": H.pre(repr(self))}


def watch(target: Any, pattern: str = "*", *, namespace: str | None = None, **kwargs: Any) -> Watcher:
    """Start a live view of ``pattern``; display it in a cell, stop it with ``w.stop()``."""
    return Watcher(target, pattern, namespace=namespace, **kwargs).start()


@atexit.register
def _stop_all() -> None:
    for w in list(_live):
        try:
            w.stop()
        except Exception:
            pass
