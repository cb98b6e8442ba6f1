"""One named redis-server in a lab, and the fault vocabulary every lab shares.

Every fault is recorded on the lab's :class:`~redistutor.events.EventLog` as
``kind="fault"``, ``actor=<node name>``, so a timeline shows what the learner did next to what the
pattern saw. The vocabulary, and what each one looks like from a client:

=====================  ==========================================  ==============================
call                   what happens                                 a client sees
=====================  ==========================================  ==============================
``kill()``             SIGKILL (a crash; data files stay)           connection refused
``shutdown()``         SHUTDOWN (graceful: RDB saved if enabled)    connection refused
``restart()``          start again, same port/password/data dir     works again, with what
                                                                    was on disk
``restart(wipe=True)`` start again with an empty data dir           works again, empty
``pause()``            SIGSTOP: the process is frozen               timeouts (nothing answers)
``resume()``           SIGCONT                                      queued commands answered
``client_pause(ms)``   CLIENT PAUSE: server alive, clients wait     slow replies, then OK
``debug_sleep(s)``     DEBUG SLEEP: the event loop is blocked       timeouts while it sleeps
``latency(ms)``        a :class:`LatencyProxy` in front of it       every reply ``2*ms`` later
=====================  ==========================================  ==============================
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sys
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import redis

from ..events import EventLog
from ..exceptions import BuildError, NoServerError
from ..race import run_in_thread
from ..server import RedisServer, fail_fast_options
from ._base import LabObject, lab_dir, remove_dir
from .proxy import LatencyProxy


class Node(LabObject):
    """A named, fail-fast ``redis-server`` whose faults land on a shared timeline.

    Args:
        name: the actor name in events ("n1", "primary", "m2", ...).
        password: shared by every node of a lab, so replicas (``masterauth``) and cluster
            clients need one secret (random by default). It never appears on a command line.
        persistence: "none", "rdb", "aof-everysec" or "aof-always".
        data_dir: where data files live; kept across :meth:`kill`, :meth:`shutdown` and
            :meth:`restart` (the lab removes it at :meth:`stop`). Default: a private temp dir
            that this node removes at :meth:`stop`.
        config: extra redis-server settings (``{"cluster-enabled": "yes"}``).
        log: the lab's timeline.
    """

    def __init__(self, name: str = "node", *, password: str | None = None, data_dir: Path | None = None,
                 persistence: str = "none", config: dict[str, Any] | None = None,
                 log: EventLog | None = None) -> None:
        super().__init__(log)
        self.name = name
        self.password = password or secrets.token_urlsafe(18)
        self._own_dir = None
        if data_dir is None:  # a node on its own: it owns (and removes) its data dir
            self._own_dir = lab_dir("node")
            data_dir = self._own_dir / name
        self.server = RedisServer(
            name=f"lab-{name}", password=self.password, modules=(), persistence=persistence,
            data_dir=data_dir, config=config,
        )
        self._r: redis.Redis | None = None
        self._paused = False
        self._proxies: list[LatencyProxy] = []

    # -- facts --------------------------------------------------------------------------------
    host = "127.0.0.1"

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def pid(self) -> int | None:
        return self.server.pid

    @property
    def running(self) -> bool:
        return self.server.running

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def persistence(self) -> str:
        return self.server.persistence

    @property
    def data_dir(self) -> Path:
        return self.server.data_dir

    @property
    def r(self) -> redis.Redis:
        """This node's fail-fast client (no retries, 1 s timeouts), created once."""
        if self._r is None:
            self._r = self.client()
        return self._r

    def client(self, **kwargs: Any) -> redis.Redis:
        """A new fail-fast client: a call to a dead node fails at once, not after 3-5 s."""
        return redis.Redis(host=self.host, port=self.port, password=self.password, **fail_fast_options(**kwargs))

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> Node:
        if not self.running:
            _note_redis_url()
            try:
                if self.server.port:
                    self.server.restart()  # started before: keep the port (clients, cluster peers)
                else:
                    self.server.start()
            except NoServerError as exc:
                if isinstance(exc, BuildError):
                    raise
                # provision's sentence offers REDIS_URL, which cannot help a lab (issue #10, 1.8).
                raise NoServerError(LAB_NEEDS_LOCAL, details=exc.message) from None
            self._after_start()
        self._registered()
        return self

    def _after_start(self) -> None:
        self._paused = False
        # A replica authenticates to its primary with this; set at run time, not in argv (ps).
        self.r.config_set("masterauth", self.password)

    def stop(self) -> None:
        """End of the lab: stop the server for good and remove its data. Idempotent."""
        for proxy in self._proxies:
            proxy.stop()
        self._proxies.clear()
        if self._r is not None:
            self._r.close()
            self._r = None
        # The lab is over and its data goes with it, so no graceful SHUTDOWN: a master may wait
        # up to a second for its replicas on SHUTDOWN, and a paused one would not answer at all.
        self.server.kill()
        self._paused = False
        self.server.stop()
        remove_dir(self._own_dir)
        self._own_dir = None
        self._unregistered()

    # -- faults -------------------------------------------------------------------------------
    def fault(self, detail: str) -> None:
        """Record a fault on this node (used by every verb below)."""
        self.log.record(self.name, "fault", detail)

    def kill(self) -> None:
        """``kill -9``: the process dies mid-whatever; its data files stay for a restart."""
        self.fault("kill -9")
        self._paused = False
        self.server.kill()

    def shutdown(self) -> None:
        """Graceful stop (SHUTDOWN; saves an RDB first if persistence is "rdb")."""
        self.fault("shutdown (graceful)")
        if self._paused and self.pid:
            _signal(self.pid, signal.SIGCONT)
            self._paused = False
        # RedisServer.stop() keeps an explicit data_dir (only its temp dir goes), so a later
        # restart() finds the data.
        self.server.stop()

    def restart(self, *, wipe: bool = False) -> Node:
        """Start again on the same port and password: with its data, or empty if ``wipe``."""
        self.fault("restart (wiped)" if wipe else "restart")
        if self._paused and self.pid:
            _signal(self.pid, signal.SIGCONT)
        if wipe:
            self.server.stop()
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir.mkdir(parents=True, exist_ok=True)
        self.server.restart()
        self._after_start()
        return self

    def pause(self) -> None:
        """SIGSTOP: the process freezes; connections stay open, nothing answers."""
        self.fault("pause (SIGSTOP)")
        if self.pid:
            _signal(self.pid, signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        """SIGCONT: the process carries on as if no time had passed (it did)."""
        self.fault("resume (SIGCONT)")
        if self.pid:
            _signal(self.pid, signal.SIGCONT)
        self._paused = False

    def client_pause(self, ms: int, *, writes_only: bool = False) -> None:
        """CLIENT PAUSE: the server stays up but holds clients' commands for ``ms``."""
        self.fault(f"CLIENT PAUSE {ms} ms {'WRITE' if writes_only else 'ALL'}")
        self.r.client_pause(ms, all=not writes_only)

    def client_unpause(self) -> None:
        self.fault("CLIENT UNPAUSE")
        self.r.client_unpause()

    def debug_sleep(self, seconds: float) -> Future:
        """DEBUG SLEEP: block the server's event loop for ``seconds`` (returns when it wakes).

        Runs in a thread and returns its Future, so the notebook can act while the node sleeps.
        """
        self.fault(f"DEBUG SLEEP {seconds:g} s")
        c = self.client(socket_timeout=seconds + 5)

        def sleep() -> None:
            try:
                c.execute_command("DEBUG", "SLEEP", seconds)
            finally:
                c.close()

        return run_in_thread(sleep, thread_name=f"debug-sleep-{self.name}")

    def latency(self, delay_ms: float) -> LatencyProxy:
        """Put a :class:`LatencyProxy` in front of this node; connect through ``proxy.port``."""
        proxy = LatencyProxy(self.port, delay_ms=delay_ms, name=f"{self.name} proxy", log=self.log).start()
        self._proxies.append(proxy)
        self.fault(f"latency +{delay_ms:g} ms each way (proxy)")
        return proxy

    def __repr__(self) -> str:
        state = "paused" if self._paused else ("running" if self.running else "down")
        return f"Node({self.name!r}, {state}, persistence={self.persistence!r})"


LAB_NEEDS_LOCAL = (
    "Multi-node labs start their own local Redis 8 servers (REDIS_URL cannot stand in for them), "
    "and none is available here: install one (`conda install -c conda-forge 'redis-server>=8'`) "
    "or run `python -m redistutor provision` to build one."
)
_noted_redis_url = False


def _note_redis_url() -> None:
    """Once per process: with REDIS_URL set, say that a lab does not use it."""
    global _noted_redis_url
    if os.environ.get("REDIS_URL") and not _noted_redis_url:
        _noted_redis_url = True
        print("[redistutor] note: multi-node labs start their own local redis-servers; REDIS_URL "
              "is used by start_server() only.", file=sys.stderr, flush=True)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
