"""JupyterHub for workshops: a loopback hub for tests, simulated learners, and the pre-workshop check.

* :func:`proxy_command` installs JupyterHub's proxy, ``configurable-http-proxy``, from the npm
  registry (a pinned version) into the per-user cache, once.
* :class:`LoopbackHub` runs a real ``jupyterhub`` on 127.0.0.1: a shared-password login, the local
  process spawner (every learner is this OS user, with a home of their own under the hub's dir),
  and the runtime pointed at the one Redis build already on the machine (``$REDISTUTOR_REDIS_SERVER``,
  ``$REDISTUTOR_CACHE``, ``$REDISTUTOR_NO_BUILD=1``: never a build per learner).
* :func:`run_learner` is one simulated learner, in the spirit of hubtraf: log in through the login
  form, spawn a server through the hub's REST API, start a kernel through the proxy and run a real
  notebook's cells over the kernel's websocket, timing the spawn and the first cell.
* :func:`loadtest` runs N of them at once against any hub with a password login form
  (``python -m redistutor workshop loadtest``) and prints a go/no-go line.
* :func:`nbgitpuller_link` builds the link that gives learners the notebooks, pinned to a tag.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _guard, provision
from .exceptions import ConfigError, NoServerError

CHP_PACKAGE = "configurable-http-proxy"
CHP_VERSION = "5.3.0"  # pinned: the npm registry's release JupyterHub 5 and 6 are tested with here
NPM_MISSING = ("JupyterHub's proxy (configurable-http-proxy) comes from the npm registry and npm is not "
               "installed: install Node.js 18 or newer with npm (e.g. apt-get install nodejs npm), then rerun.")


def proxy_command() -> Path:
    """The pinned ``configurable-http-proxy``, installed on first use into ``cache_dir()/node/``."""
    root = provision.cache_dir() / "node" / f"{CHP_PACKAGE}-{CHP_VERSION}"
    exe = root / "node_modules" / ".bin" / CHP_PACKAGE
    if exe.exists():
        return exe
    npm = shutil.which("npm")
    if npm is None:
        raise NoServerError(NPM_MISSING)
    with provision._lock(root.parent / f".{CHP_PACKAGE}.lock"):
        if not exe.exists():
            done = subprocess.run([npm, "install", "--prefix", str(root), "--no-audit", "--no-fund",
                                   "--no-save", f"{CHP_PACKAGE}@{CHP_VERSION}"],
                                  capture_output=True, text=True)
            if done.returncode != 0 or not exe.exists():
                raise NoServerError(
                    f"npm could not install {CHP_PACKAGE}@{CHP_VERSION} (exit {done.returncode}): check that "
                    "the npm registry is reachable (npm ping), then rerun.",
                    details=(done.stdout + done.stderr)[-2000:])
    return exe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def learner_environment(*, maxmemory: str | None = "256mb", unixsocket: bool = True) -> dict[str, str]:
    """What a hub sets for every learner: the machine's one Redis build, no build per learner, the
    private server's memory cap and its private Unix socket (redistutor.server reads them)."""
    found = provision.find_binary()
    if not found.found:
        raise NoServerError("No Redis 8 on this machine for the learners: run `python -m redistutor provision` "
                            "once (it builds one into the shared cache), then start the hub.")
    env = {"REDISTUTOR_REDIS_SERVER": str(found.found.path), "REDISTUTOR_CACHE": str(provision.cache_dir()),
           "REDISTUTOR_NO_BUILD": "1"}
    if maxmemory:
        env["REDISTUTOR_MAXMEMORY"] = maxmemory
    if unixsocket:
        env["REDISTUTOR_UNIXSOCKET"] = "1"
    return env


class LoopbackHub:
    """A real JupyterHub on 127.0.0.1 for tests and the local load test (``with LoopbackHub(dir) as hub``).

    Everything it starts dies with it: the hub stops every learner's server on SIGTERM (each server
    its kernels, each kernel its Redis), and if this process is killed the runtime's guardian kills
    every process whose command line names the hub's dir or its kernels' runtime dir (the hub; the
    servers, whose root dir is the learner's home below it; the kernels, whose connection files are in
    the runtime dir; the Redis servers, whose temp dirs are below the hub's dir) and removes both.
    """

    def __init__(self, root: Path, *, password: str | None = None, env: Mapping[str, str] | None = None,
                 start_timeout: int = 240, kernel_transport: str = "ipc",
                 extra_config: Mapping[str, Any] | None = None) -> None:
        self.root = Path(root)
        self.password = password or secrets.token_urlsafe(12)
        self.marker = uuid.uuid4().hex  # in every learner process's environment: how they are found
        self.env = {**learner_environment(), **(env or {})}
        self.start_timeout = start_timeout
        # "ipc": kernels talk to their server over Unix sockets in a short private runtime dir. With
        # "tcp" (Jupyter's default) every kernel takes 5 loopback ports that its server probed free a
        # moment before; 20 kernels starting at once on one host lost that race here (ZMQError:
        # Address already in use) and the kernel hung. A socket path must fit in 107 bytes, hence a
        # runtime dir of its own instead of the one below the learner's home.
        self.kernel_transport = kernel_transport
        self.runtime_dir: str | None = None
        self.extra_config = dict(extra_config or {})  # more "Class.trait": value settings (services, roles)
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.left_behind: dict[int, str] = {}  # learner processes stop() had to kill (should be none)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def home(self, name: str) -> Path:
        return self.root / "home" / name

    def seed(self, name: str, files: Iterable[Path]) -> Path:
        """Put files in a learner's home before their server starts (what an nbgitpuller link does)."""
        home = self.home(name)
        home.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy2(f, home / Path(f).name)
        return home

    def config_text(self) -> str:
        bin_dir = Path(sys.executable).parent
        env = {**self.env, "TMPDIR": str(self.root / "tmp"), "REDISTUTOR_HUB_MARKER": self.marker}
        args = ["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []
        if self.kernel_transport == "ipc":
            assert self.runtime_dir is not None
            args += ["--KernelManager.transport=ipc"]
            env["JUPYTER_RUNTIME_DIR"] = self.runtime_dir
        settings = {
            "JupyterHub.ip": "127.0.0.1", "JupyterHub.port": self.port,
            "JupyterHub.hub_ip": "127.0.0.1", "JupyterHub.hub_port": free_port(),
            "ConfigurableHTTPProxy.api_url": f"http://127.0.0.1:{free_port()}",
            "ConfigurableHTTPProxy.command": [str(proxy_command())],
            "JupyterHub.db_url": f"sqlite:///{self.root / 'jupyterhub.sqlite'}",
            "JupyterHub.cookie_secret_file": str(self.root / "jupyterhub_cookie_secret"),
            "JupyterHub.authenticator_class": "shared-password",
            "SharedPasswordAuthenticator.user_password": self.password,
            "Authenticator.allow_all": True,
            "JupyterHub.spawner_class": "simple",
            "SimpleLocalProcessSpawner.home_dir_template": str(self.root / "home" / "{username}"),
            "Spawner.notebook_dir": str(self.root / "home" / "{username}"),
            "Spawner.cmd": [str(bin_dir / "jupyterhub-singleuser")],
            "Spawner.args": args,
            "Spawner.environment": env,
            "Spawner.start_timeout": self.start_timeout,
            "Spawner.http_timeout": self.start_timeout,
            "JupyterHub.cleanup_servers": True,
            **self.extra_config,
        }
        return "c = get_config()  # noqa\n" + "".join(f"c.{k} = {v!r}\n" for k, v in settings.items())

    def start(self) -> LoopbackHub:
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        (self.root / "home").mkdir(exist_ok=True)
        _guard.watch_dir(str(self.root))
        if self.kernel_transport == "ipc" and self.runtime_dir is None:
            self.runtime_dir = _guard.private_dir("rhub-")  # kernels' argv names it: the guardian's too
        # The hub's three ports are probed free, then bound by the hub and its proxy a moment later: on
        # a busy machine another process can take one in between, so a start that lost that race is
        # retried on fresh ports.
        for _ in range(3):
            if self._start_once():
                return self
            self.stop()
        raise NoServerError("jupyterhub could not bind its ports three times (another process took them "
                            "each time, see its log below): free some ports or retry.", details=self.log_tail())

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _start_once(self) -> bool:
        """Start the hub; True once it answers, False if it lost a port race (its log says so)."""
        import urllib.request

        self.port = free_port()
        config = self.root / "jupyterhub_config.py"
        config.write_text(self.config_text())
        log = open(self.root / "jupyterhub.log", "wb")
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        env.pop("REDIS_URL", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(config)], cwd=self.root,
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                     start_new_session=True)
        log.close()
        _guard.watch_pid(self.proc.pid)
        deadline = time.monotonic() + 120
        while True:
            if "EADDRINUSE" in self.log_tail() or "Address already in use" in self.log_tail():
                return False
            if self.proc.poll() is not None:
                raise NoServerError(f"jupyterhub exited during start-up (exit {self.proc.returncode}): see its "
                                    "log below.", details=self.log_tail())
            try:
                with urllib.request.urlopen(f"{self.url}/hub/api", timeout=2) as r:
                    if r.status == 200 and b"version" in r.read():
                        return True
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise NoServerError("jupyterhub did not answer within 120 s: see its log below.",
                                    details=self.log_tail())
            time.sleep(0.2)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join((self.root / "jupyterhub.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 90, grace: float = 30) -> None:
        """SIGTERM: the hub stops every learner's server and its proxy, then exits. Learner processes
        still alive ``grace`` seconds later (a kernel that hung while starting is one the hub never
        knew of) are killed, and listed in :attr:`left_behind`: nothing outlives the hub."""
        proc = self.proc
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            _guard.release_pid(proc.pid)
            self.proc = None
            deadline = time.monotonic() + grace
            while marked_processes(self.marker) and time.monotonic() < deadline:
                time.sleep(0.5)
            self.left_behind = marked_processes(self.marker)
            for pid in self.left_behind:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> LoopbackHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        _guard.release_dir(str(self.root))
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            _guard.release_dir(self.runtime_dir)
            self.runtime_dir = None


def marked_processes(marker: str) -> dict[int, str]:
    """Live processes whose environment carries ``REDISTUTOR_HUB_MARKER=marker``, by kind
    (``singleuser``, ``kernel``, ``redis-server``, ``guardian``, ``other``): a hub's learner processes,
    found even after they were re-parented."""
    found: dict[int, str] = {}
    needle = f"REDISTUTOR_HUB_MARKER={marker}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except OSError:
            continue
        kind = ("redis-server" if "redis-server" in cmd else "kernel" if "ipykernel" in cmd
                else "singleuser" if "jupyterhub-singleuser" in cmd else "guardian" if "kill_by_dir" in cmd
                else "other")
        found[int(entry)] = kind
    return found


# ---------------------------------------------------------------------------------------------
# Simulated learners


@dataclass
class Cell:
    status: str  # "ok" or "error"
    text: str = ""  # stream output and plain-text results
    error: str = ""  # "Ename: evalue" when status is "error"


@dataclass
class LearnerRun:
    name: str
    spawn_s: float | None = None
    kernel_s: float | None = None  # from the server being ready to its kernel answering
    first_cell_s: float | None = None
    cells: list[Cell] = field(default_factory=list)
    failure: str | None = None  # the first thing that went wrong, in one sentence
    reconnects: int = 0  # kernel websockets that closed before the kernel answered, and were reopened

    @property
    def ok(self) -> bool:
        return self.failure is None


def notebook_cells(path: Path) -> list[tuple[str, list[str]]]:
    """(source, tags) of each code cell of a notebook."""
    nb = json.loads(Path(path).read_text())
    return [("".join(c["source"]), list(c.get("metadata", {}).get("tags", [])))
            for c in nb["cells"] if c["cell_type"] == "code"]


class KernelChannel:
    """Execute code on a remote kernel over the Jupyter server's websocket (the v5 message protocol)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.session = uuid.uuid4().hex

    def _message(self, msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
        return {"header": {"msg_id": uuid.uuid4().hex, "username": "learner", "session": self.session,
                           "msg_type": msg_type, "version": "5.3",
                           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                "parent_header": {}, "metadata": {}, "content": content, "channel": "shell", "buffers": []}

    async def _request(self, msg_type: str, content: dict[str, Any], timeout: float) -> Cell:
        msg = self._message(msg_type, content)
        msg_id = msg["header"]["msg_id"]
        await self.ws.send_str(json.dumps(msg))
        reply: dict[str, Any] | None = None
        idle = msg_type == "kernel_info_request"  # no iopub idle is owed for it
        text: list[str] = []
        error = ""
        async with asyncio.timeout(timeout):
            while reply is None or not idle:
                raw = await self.ws.receive()
                if raw.type.name not in ("TEXT", "BINARY"):
                    why = f": {raw.data!r}" if raw.data is not None else ""
                    raise ConnectionError(f"the kernel's websocket closed ({raw.type.name}{why})")
                if raw.type.name == "BINARY":
                    continue
                m = json.loads(raw.data)
                if m.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, c = m["msg_type"], m.get("content", {})
                if m.get("channel") == "shell":
                    reply = c
                elif kind == "status" and c.get("execution_state") == "idle":
                    idle = True
                elif kind == "stream":
                    text.append(c.get("text", ""))
                elif kind in ("execute_result", "display_data"):
                    text.append(str(c.get("data", {}).get("text/plain", "")) + "\n")
                elif kind == "error":
                    error = f"{c.get('ename')}: {c.get('evalue')}"
        status = str(reply.get("status", "error"))
        if status != "ok" and not error:
            error = f"{reply.get('ename')}: {reply.get('evalue')}"
        return Cell(status, "".join(text), error)

    async def ready(self, timeout: float = 120) -> None:
        await self._request("kernel_info_request", {}, timeout)

    async def run(self, code: str, timeout: float = 300) -> Cell:
        return await self._request("execute_request", {
            "code": code, "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True}, timeout)


class HubLearner:
    """One learner's browser, without the browser: a cookie session, then an API token of their own."""

    def __init__(self, hub_url: str, name: str, password: str) -> None:
        import aiohttp

        self.hub = hub_url.rstrip("/")
        self.name = name
        self.password = password
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.token = ""
        self.reconnects = 0

    def _xsrf(self) -> str:
        import yarl

        cookie = self.http.cookie_jar.filter_cookies(yarl.URL(f"{self.hub}/hub/")).get("_xsrf")
        return cookie.value if cookie is not None else ""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    async def login(self) -> None:
        """The login form, as a browser posts it, then a token for the REST API (the user's own)."""
        async with self.http.get(f"{self.hub}/hub/login") as r:
            await r.read()
        form = {"username": self.name, "password": self.password, "_xsrf": self._xsrf()}
        async with self.http.post(f"{self.hub}/hub/login", data=form, allow_redirects=False) as r:
            if r.status != 302:
                raise PermissionError(f"login as {self.name} answered {r.status}: check the hub's URL and the "
                                      "shared password")
        async with self.http.get(f"{self.hub}/hub/home") as r:  # a page view: a fresh xsrf cookie
            await r.read()
        async with self.http.post(f"{self.hub}/hub/api/users/{self.name}/tokens",
                                  json={"note": "redistutor workshop check", "expires_in": 3600},
                                  headers={"X-XSRFToken": self._xsrf(), "Sec-Fetch-Mode": "cors"}) as r:
            if r.status != 201:
                raise PermissionError(f"the hub refused {self.name} a token ({r.status}: {await r.text()})")
            self.token = (await r.json())["token"]

    async def spawn(self, timeout: float) -> None:
        """Start the learner's server and wait until it is ready. A server still stopping (culled or
        stopped a moment ago) is waited for first, as the hub's spawn page does."""
        async with asyncio.timeout(timeout):
            while True:
                async with self.http.post(f"{self.hub}/hub/api/users/{self.name}/server", headers=self.auth) as r:
                    body = await r.text()
                if r.status in (201, 202) or (r.status == 400 and "already running" in body):
                    break
                if not (r.status == 400 and "pending stop" in body):
                    raise RuntimeError(f"starting {self.name}'s server answered {r.status}: {body}")
                await asyncio.sleep(0.5)
            while True:
                async with self.http.get(f"{self.hub}/hub/api/users/{self.name}", headers=self.auth) as r:
                    model = await r.json()
                server = model.get("servers", {}).get("")
                if server and server.get("ready"):
                    return
                if not server and not model.get("pending"):
                    raise RuntimeError(f"{self.name}'s server stopped while starting: see the hub's log")
                await asyncio.sleep(0.5)

    async def stop_server(self) -> None:
        async with self.http.delete(f"{self.hub}/hub/api/users/{self.name}/server", headers=self.auth) as r:
            await r.read()

    async def open_kernel(self, notebook: str) -> tuple[str, KernelChannel]:
        """A session for ``notebook`` in the learner's home (its kernel runs there) and its channel."""
        base = f"{self.hub}/user/{self.name}/api"
        body = {"path": notebook, "type": "notebook", "name": notebook, "kernel": {"name": "python3"}}
        async with self.http.post(f"{base}/sessions", json=body, headers=self.auth) as r:
            if r.status != 201:
                raise RuntimeError(f"{self.name}'s server refused a kernel ({r.status}: {await r.text()})")
            kernel_id = (await r.json())["kernel"]["id"]
        return kernel_id, await self.channel(kernel_id)

    async def channel(self, kernel_id: str) -> KernelChannel:
        """A websocket to the kernel (through the hub's proxy, with the learner's token), once it answers.
        A websocket closed before the kernel answered is opened once more, as JupyterLab does (and
        counted in ``reconnects``: a sign of an overloaded host)."""
        ws_url = f"{self.hub}/user/{self.name}/api/kernels/{kernel_id}/channels".replace("http", "ws", 1)
        for attempt in range(2):
            ws = await self.http.ws_connect(ws_url, headers=self.auth, max_msg_size=0)
            channel = KernelChannel(ws)
            try:
                await channel.ready()
                return channel
            except ConnectionError:
                await ws.close()
                if attempt == 1:
                    raise
                self.reconnects += 1
        raise AssertionError("unreachable")

    async def restart_kernel(self, kernel_id: str) -> None:
        url = f"{self.hub}/user/{self.name}/api/kernels/{kernel_id}/restart"
        async with self.http.post(url, headers=self.auth) as r:
            if r.status != 200:
                raise RuntimeError(f"restarting {self.name}'s kernel answered {r.status}")

    async def close(self) -> None:
        await self.http.close()


async def run_learner(learner: HubLearner, notebook: Path, *, cells: int | None = None,
                      spawn_timeout: float = 300, after: Callable[[HubLearner, str, KernelChannel], Any] | None = None,
                      ) -> LearnerRun:
    """Log in, spawn, open a kernel on ``notebook`` (already in the learner's home) and run its first
    ``cells`` code cells (all when None): a cell tagged ``raises-exception`` may raise, no other may.
    ``after(learner, kernel_id, channel)`` (a coroutine function) runs last, with the kernel still up."""
    run = LearnerRun(learner.name)
    step = "log in"
    try:
        await learner.login()
        step = "spawn a server"
        started = time.monotonic()
        await learner.spawn(spawn_timeout)
        run.spawn_s = time.monotonic() - started
        step = "start a kernel"
        started = time.monotonic()
        kernel_id, channel = await learner.open_kernel(Path(notebook).name)
        run.kernel_s = time.monotonic() - started
        for i, (source, tags) in enumerate(notebook_cells(notebook)[:cells]):
            step = f"run cell {i + 1}"
            started = time.monotonic()
            result = await channel.run(source)
            if i == 0:
                run.first_cell_s = time.monotonic() - started
            run.cells.append(result)
            if result.status != "ok" and "raises-exception" not in tags:
                run.failure = f"cell {i + 1} of {Path(notebook).name} raised {result.error}"
                return run
        if after is not None:
            step = "run the test's own checks"
            await after(learner, kernel_id, channel)
    except Exception as exc:
        run.failure = f"could not {step}: {type(exc).__name__}: {exc}"
    finally:
        run.reconnects = learner.reconnects
    return run


async def run_learners(hub_url: str, names: Sequence[str], password: str, notebook: Path, **kw: Any,
                       ) -> list[LearnerRun]:
    """Every learner at the same time; each one's result, in the order of ``names``."""
    learners = [HubLearner(hub_url, n, password) for n in names]
    try:
        return list(await asyncio.gather(*(run_learner(lr, notebook, **kw) for lr in learners)))
    finally:
        await asyncio.gather(*(lr.close() for lr in learners))


# ---------------------------------------------------------------------------------------------
# The pre-workshop load test

LIGHT_NOTEBOOK = "01-cache-aside.ipynb"


def report(runs: Sequence[LearnerRun], *, max_spawn_s: float = 120, max_first_cell_s: float = 60) -> tuple[str, bool]:
    """The table of per-learner times and failures, and the go/no-go line."""
    def seconds(value: float | None) -> str:
        return f"{value:.1f}" if value is not None else "-"

    lines = [f"{'learner':<14} {'spawn s':>8} {'kernel s':>9} {'first cell s':>13}  result"]
    for r in runs:
        note = f" (kernel websocket reopened {r.reconnects}x)" if r.reconnects else ""
        lines.append(f"{r.name:<14} {seconds(r.spawn_s):>8} {seconds(r.kernel_s):>9} {seconds(r.first_cell_s):>13}  "
                     f"{'ok' if r.ok else r.failure}{note}")
    failed = [r for r in runs if not r.ok]
    spawns = sorted(r.spawn_s for r in runs if r.spawn_s is not None)
    firsts = sorted(r.first_cell_s for r in runs if r.first_cell_s is not None)
    slow = (spawns and spawns[-1] > max_spawn_s) or (firsts and firsts[-1] > max_first_cell_s)
    go = not failed and not slow
    if spawns:
        lines.append(f"spawn: median {spawns[len(spawns) // 2]:.1f} s, slowest {spawns[-1]:.1f} s; "
                     + (f"first cell: median {firsts[len(firsts) // 2]:.1f} s, slowest {firsts[-1]:.1f} s"
                        if firsts else "no first cell ran"))
    why = (f"{len(failed)} of {len(runs)} learners failed" if failed else
           f"slowest spawn over {max_spawn_s:.0f} s or first cell over {max_first_cell_s:.0f} s" if slow else
           f"all {len(runs)} learners spawned and ran the setup cell")
    reopened = sum(1 for r in runs if r.reconnects)
    if reopened:
        lines.append(f"note: {reopened} learner(s)' kernel websocket closed before the kernel answered, reopened "
                     "(JupyterLab reopens it too): a sign the host is near its limit")
    lines.append(f"{'GO' if go else 'NO-GO'}: {why}")
    return "\n".join(lines), bool(go)


LOADTEST_USAGE = """usage: python -m redistutor workshop loadtest (--hub URL --password PASSWORD | --local) [--users N]
       [--notebook PATH] [--cells K] [--prefix NAME] [--keep]

N simulated learners log in (the login form), start their servers, start a kernel on the notebook
and run its first K code cells (default: the setup cell) at the same time; per-learner spawn and
first-cell times, failures, and a go/no-go line. --local starts a loopback hub here first (it needs
npm for the hub's proxy). The learners are PREFIX-1..N: the hub must let them log in with PASSWORD
(a shared-password or dummy authenticator, or TLJH's first-use one with user creation on). The cells
are sent from this machine; their kernel starts in the learner's home. Their servers are stopped at
the end unless --keep."""


def loadtest_main(args: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m redistutor workshop loadtest", usage=LOADTEST_USAGE)
    p.add_argument("--hub")
    p.add_argument("--password")
    p.add_argument("--local", action="store_true")
    p.add_argument("--users", type=int, default=5)
    p.add_argument("--notebook", default=str(Path("notebooks") / LIGHT_NOTEBOOK))
    p.add_argument("--cells", type=int, default=1)
    p.add_argument("--prefix", default="loadtest")
    p.add_argument("--keep", action="store_true", help="leave the learners' servers running")
    p.add_argument("--kernel-transport", choices=("ipc", "tcp"), default="ipc",
                   help="--local only: how kernels talk to their server (tcp is Jupyter's default)")
    o = p.parse_args(args)
    if not o.local and not (o.hub and o.password):
        print("redistutor: the load test needs --hub URL --password PASSWORD (the hub's shared password), or "
              "--local to start a loopback hub here.", file=sys.stderr)
        return 2
    if o.users < 1:
        print("redistutor: --users must be 1 or more.", file=sys.stderr)
        return 2
    notebook = Path(o.notebook)
    if not notebook.is_file():
        print(f"redistutor: no notebook at {notebook}: pass --notebook PATH of one of the notebooks.", file=sys.stderr)
        return 2
    names = [f"{o.prefix}-{i + 1}" for i in range(o.users)]
    try:
        if o.local:
            import tempfile

            root = Path(tempfile.mkdtemp(prefix="redistutor-hub-"))
            try:
                with LoopbackHub(root, kernel_transport=o.kernel_transport) as hub:
                    for n in names:
                        hub.seed(n, [notebook])
                    print(f"[redistutor] loopback hub at {hub.url}; {o.users} learners", file=sys.stderr)
                    runs, memory = _timed_runs(hub.url, names, hub.password, notebook, o.cells, hub.marker)
                    # the hub's errors and the exceptions its learners' servers and kernels printed
                    errors = [ln for ln in hub.log_tail(100_000).splitlines()
                              if ln.startswith("[E ") or re.match(r"[\w.]+(Error|Exception): ", ln)]
                    if errors and not all(r.ok for r in runs):
                        print("the hub's last errors (its log, with every learner server's):", *errors[-10:],
                              sep="\n  ", file=sys.stderr)
            finally:
                shutil.rmtree(root, ignore_errors=True)
        else:
            runs, memory = _timed_runs(o.hub, names, o.password, notebook, o.cells, None, keep=o.keep)
    except (NoServerError, ConfigError) as exc:
        print(f"redistutor: {exc.message}", file=sys.stderr)
        return 1
    text, go = report(runs)
    print(text)
    if memory:
        print(memory)
    return 0 if go else 1


def _timed_runs(hub_url: str, names: Sequence[str], password: str, notebook: Path, cells: int,
                marker: str | None, *, keep: bool = True) -> tuple[list[LearnerRun], str]:
    memory = ""

    async def main() -> list[LearnerRun]:
        nonlocal memory
        learners = [HubLearner(hub_url, n, password) for n in names]
        try:
            runs = list(await asyncio.gather(*(run_learner(lr, notebook, cells=cells) for lr in learners)))
            if marker is not None:
                memory = memory_line(marker, len(names))
            if not keep:
                await asyncio.gather(*(lr.stop_server() for lr in learners if lr.token))
            return runs
        finally:
            await asyncio.gather(*(lr.close() for lr in learners))

    return asyncio.run(main()), memory


def memory_line(marker: str, learners: int) -> str:
    """Resident memory of a local hub's learner processes, by kind and per learner (psutil's RSS: pages
    shared between processes, e.g. the Redis binary's, count once per process, so it errs high)."""
    import psutil

    by_kind: dict[str, int] = {}
    for pid, kind in marked_processes(marker).items():
        try:
            by_kind[kind] = by_kind.get(kind, 0) + psutil.Process(pid).memory_info().rss
        except psutil.Error:
            continue
    total = sum(by_kind.values())
    parts = ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in sorted(by_kind.items()))
    mib = total / 2**20
    return f"memory (RSS): {mib:.0f} MiB for {learners} learners ({parts}); {mib / learners:.0f} MiB each"


# ---------------------------------------------------------------------------------------------
# nbgitpuller links


def nbgitpuller_link(hub: str, tag: str, *, repo: str, path: str = "notebooks/00-guide.ipynb",
                     app: str = "lab") -> str:
    """The link that clones (or updates) the notebooks into each learner's home at ``tag`` and opens
    ``path``: ``{hub}/hub/user-redirect/git-pull?repo=...&branch=TAG&urlpath=lab/tree/redistutor/PATH``.
    A tag, never a branch: a link to main changes under a class."""
    parsed = urllib.parse.urlparse(hub)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"--hub {hub!r} is not a hub URL: pass it as https://hub.example.org.")
    if urllib.parse.urlparse(repo).scheme not in ("http", "https"):
        raise ConfigError(f"--repo {repo!r} is not a repository URL: pass it as https://github.com/OWNER/NAME.")
    if not tag or tag in ("main", "master", "HEAD"):
        raise ConfigError(f"--tag {tag!r} is not a release tag: pass a tag such as v1.0 (a link to a branch "
                          "changes under a class).")
    folder = repo.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    query = urllib.parse.urlencode({"repo": repo, "branch": tag,
                                    "urlpath": f"{app}/tree/{folder}/{path}"}, quote_via=urllib.parse.quote)
    return f"{hub.rstrip('/')}/hub/user-redirect/git-pull?{query}"


def link_main(args: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m redistutor workshop link")
    p.add_argument("--hub", required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--repo", required=True, help="the repository learners pull from, https://github.com/OWNER/NAME")
    p.add_argument("--path", default="notebooks/00-guide.ipynb")
    o = p.parse_args(args)
    try:
        print(nbgitpuller_link(o.hub, o.tag, repo=o.repo, path=o.path))
    except ConfigError as exc:
        print(f"redistutor: {exc.message}", file=sys.stderr)
        return 2
    return 0
