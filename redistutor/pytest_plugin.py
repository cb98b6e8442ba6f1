"""pytest plugin (enabled in pyproject.toml) for running the notebooks under nbval.

* **Requirements gate.** Each notebook's setup cell calls ``start_server(..., requires={...})``.
  The literal is read here without running the notebook; if the test server lacks something,
  every cell of that notebook is skipped with one sentence saying what is missing. With
  ``REDISTUTOR_STRICT_CAPABILITIES=1`` (``./run test``, CI) such a notebook fails instead: the CI
  server must satisfy every notebook.
* **Text display.** Kernels inherit ``REDISTUTOR_DISPLAY=text`` so that output comparison sees
  stable plain text.
* **No orphans.** At the end of the run, any ``redis-server`` started by this run that is still
  alive is reported, killed, and fails the run.
"""

from __future__ import annotations

import ast
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

_requires_cache: dict[str, Any] = {}
_caps = None


def notebook_requirements(path: str | os.PathLike) -> dict | None:
    """The ``requires=`` literal of the notebook's ``start_server`` call, if any."""
    nb = json.loads(Path(path).read_text())
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        src = "".join(cell.get("source", []))
        if "start_server(" not in src:
            continue
        # Drop IPython magics and shell escapes, which are not Python.
        lines = [ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!"))]
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.Call):
                continue
            if getattr(node.func, "id", getattr(node.func, "attr", None)) == "start_server":
                for kw in node.keywords:
                    if kw.arg == "requires":
                        return ast.literal_eval(kw.value)
                return None
    return None


def _capabilities():
    """Capabilities of the server the notebooks will get (started once, then stopped)."""
    global _caps
    if _caps is None:
        from .server import start_server

        server = start_server("capability-probe", quiet=True)
        try:
            _caps = server.capabilities
        finally:
            server.stop()
    return _caps


def _strict() -> bool:
    return os.environ.get("REDISTUTOR_STRICT_CAPABILITIES", "") in ("1", "true", "yes")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "redistutor_missing(reason): notebook needs a capability the server lacks"
    )
    os.environ.setdefault("REDISTUTOR_DISPLAY", "text")
    # Only the controlling process (not xdist workers) watches for orphans.
    if not hasattr(config, "workerinput"):
        config._redistutor_started = time.time()  # type: ignore[attr-defined]
        config._redistutor_before = set(_redis_pids())  # type: ignore[attr-defined]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    by_file: dict[str, list[pytest.Item]] = {}
    for item in items:
        path = str(getattr(item, "path", item.fspath))
        if path.endswith(".ipynb"):
            by_file.setdefault(path, []).append(item)
    if not by_file:
        return
    from .exceptions import MissingCapability

    for path, nb_items in by_file.items():
        requires = notebook_requirements(path)
        if not requires:
            continue
        try:
            _capabilities().require(requires, where="the test server")
        except MissingCapability as exc:
            reason = f"{Path(path).name}: {exc.message}"
            marker = (
                pytest.mark.redistutor_missing(reason=reason)
                if _strict() else pytest.mark.skip(reason=reason)
            )
            for item in nb_items:
                item.add_marker(marker)


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("redistutor_missing")
    if marker is not None:
        pytest.fail(
            f"{marker.kwargs['reason']} (REDISTUTOR_STRICT_CAPABILITIES=1: the CI server must "
            "satisfy every notebook)", pytrace=False,
        )


def _redis_pids() -> dict[int, float]:
    """redis-server processes started by redistutor (their argv names a redistutor- temp dir)."""
    import psutil

    out = {}
    for p in psutil.process_iter(["name", "cmdline", "create_time"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if "redis-server" in cmd and "redistutor-" in cmd:
                out[p.pid] = p.info["create_time"]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def _ours_or_orphaned(pid: int) -> bool:
    """True if ``pid`` descends from this run, or lost its parent (reparented to init).

    A server whose parent is another live process (someone's JupyterLab kernel running beside
    the tests) is not this run's leftover.
    """
    import psutil

    me = os.getpid()
    try:
        proc = psutil.Process(pid)
        if proc.ppid() == 1:
            return True
        return any(parent.pid == me for parent in proc.parents())
    except psutil.NoSuchProcess:
        return False


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if hasattr(config, "workerinput") or not hasattr(config, "_redistutor_started"):
        return
    import psutil

    started = config._redistutor_started
    before = config._redistutor_before  # type: ignore[attr-defined]
    deadline = time.time() + 5  # guardians of killed kernels need a moment
    orphans: dict[int, float] = {}
    while time.time() < deadline:
        orphans = {p: t for p, t in _redis_pids().items()
                   if p not in before and t >= started - 1 and _ours_or_orphaned(p)}
        if not orphans:
            return
        time.sleep(0.2)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    lines = []
    for pid in orphans:
        try:
            proc = psutil.Process(pid)
            lines.append(f"  pid {pid}: {' '.join(proc.cmdline()[:3])}")
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    if reporter is not None:
        reporter.write_line(
            f"redistutor: {len(orphans)} redis-server process(es) outlived the test run and were "
            "killed; a test or notebook did not stop its server:", red=True,
        )
        for line in lines:
            reporter.write_line(line)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
