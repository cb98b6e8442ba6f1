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
* **What ran where.** The header names the Redis the run uses (and says so when it is older than
  the newest pinned release); the summary gives the wall time of each phase (runtime unit tests,
  pattern and exercise tests, notebooks, static checks, browser check).
* **Markers.** ``notebook`` (every nbval item), ``lab`` and ``cluster`` (tests that start lab
  fleets or clusters, marked from their fixtures and module source), ``slow``: ``-m "not slow"``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

# One reading of a notebook's requires= for the gate, the guide and preflight: a notebook that never calls
# start_server (a lab fleet of its own) reads as needing servers of its own, so a learner's run skips it.
from .capabilities import notebook_requirements as notebook_requirements

_requires_cache: dict[str, Any] = {}
_caps = None
_config: pytest.Config | None = None


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


MARKERS = {
    "notebook": "a notebook run under nbval (applied to every .ipynb item)",
    "lab": "starts several servers through redistutor.lab (fleet, replication, workers)",
    "cluster": "starts a real Redis Cluster through redistutor.lab.Cluster",
    "slow": "takes more than about 10 s on 2 cores; -m 'not slow' skips it",
}

# Phases of the run, by where the test lives (first match wins); the summary reports each one.
PHASES = (
    ("notebooks (nbval)", ("notebooks/",)),
    ("browser check", ("tests/browser/",)),
    ("static checks", ("tests/test_skeleton.py", "tests/test_packaging.py")),
    ("site (2 notebooks)", ("tests/test_site.py",)),
    ("pattern and exercise tests", ("tests/patterns/", "tests/exercises/")),
    ("runtime unit tests", ("",)),
)


def phase_of(nodeid: str) -> str:
    return next(name for name, prefixes in PHASES if nodeid.startswith(prefixes))


def pytest_report_header(config: pytest.Config) -> list[str]:
    from . import provision

    if os.environ.get("REDIS_URL"):
        return ["redistutor: REDIS_URL is set: notebooks attach to it; unit tests start local servers"]
    found = provision.find_binary().found
    if found is None:
        return ["redistutor: no Redis 8 found yet (python -m redistutor provision builds one)"]
    line = f"redistutor: Redis {found.version_str} ({found.origin}: {found.path})"
    older = provision.older_than_pinned(found.version)
    return [line + (f"; NOTE: {older}" if older else "")]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "redistutor_missing(reason): notebook needs a capability the server lacks"
    )
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    global _config
    _config = config
    config._redistutor_phases = {}  # type: ignore[attr-defined]
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
            item.add_marker(pytest.mark.notebook)
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


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect each test's start and stop (on the controller too, from xdist workers' reports)."""
    phases = getattr(_config, "_redistutor_phases", None)
    if phases is None or report.when not in ("setup", "call", "teardown"):
        return
    start, stop = getattr(report, "start", None), getattr(report, "stop", None)
    if start is None or stop is None:
        return
    entry = phases.setdefault(phase_of(report.nodeid), {"first": start, "last": stop, "busy": 0.0, "tests": set()})
    entry["first"], entry["last"] = min(entry["first"], start), max(entry["last"], stop)
    entry["busy"] += stop - start
    entry["tests"].add(report.nodeid)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    phases = getattr(config, "_redistutor_phases", None)
    if not phases or hasattr(config, "workerinput"):
        return
    terminalreporter.section("redistutor: time per phase")
    for name, _ in PHASES:
        if name in phases:
            e = phases[name]
            terminalreporter.write_line(
                f"{name:28} {len(e['tests']):5} tests  {e['last'] - e['first']:7.1f} s wall "
                f"(first start to last stop)  {e['busy']:7.1f} s in tests")
    for line in pytest_report_header(config):
        terminalreporter.write_line(line)


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
