"""Kernel tuning for Redis: read the settings that matter from the live sources, and match them
against the warnings the server itself printed at startup.

Why a report and not a checklist: the checklist says "THP on -> Redis warns" and "disable-thp
turns THP off". Redis 8 warns about THP only when the host mode is ``always`` *and* it could not opt
its own process out (``disable-thp no``), and it calls ``prctl(PR_SET_THP_DISABLE)`` only in that
mode. The somaxconn warning compares against the server's own ``tcp-backlog``, not a fixed 511.
The rules below are Redis's own (``linuxMemoryWarnings`` and ``checkTcpBacklogSettings`` in
src/server.c, ``checkOvercommit``/``checkTHPEnabled`` in src/syscheck.c).

Notebook: notebooks/28-kernel-tuning.ipynb
Redis: https://redis.io/docs/latest/operate/oss_and_stack/management/admin/
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import redis

__all__ = ["STARTUP_WARNINGS", "Setting", "expected_warnings", "kernel_report", "startup_warnings"]


class Setting(NamedTuple):
    """One row of the report: where the value was read, and whether it meets the recommendation."""

    name: str
    source: str
    value: str
    recommended: str
    ok: bool


def kernel_report(r: redis.Redis, root: str = "/") -> list[Setting]:
    """The settings that matter, read now from /sys, /proc and CONFIG GET, each against its
    recommended value (the first three as Redis itself checks them at startup)."""
    def read(path: str) -> str:
        return Path(root, path).read_text().strip()

    thp = read("sys/kernel/mm/transparent_hugepage/enabled").split("[")[1].split("]")[0]
    overcommit = int(read("proc/sys/vm/overcommit_memory"))
    swappiness = int(read("proc/sys/vm/swappiness"))
    somaxconn = int(read("proc/sys/net/core/somaxconn"))
    conf = r.config_get("disable-thp") | r.config_get("tcp-backlog")
    backlog = int(conf["tcp-backlog"])
    return [
        Setting("transparent_hugepage", "/sys", thp, "madvise or never", thp != "always"),
        Setting("disable-thp", "CONFIG GET", conf["disable-thp"], "yes", conf["disable-thp"] == "yes"),
        Setting("vm.overcommit_memory", "/proc", str(overcommit), "1", overcommit == 1),
        Setting("vm.swappiness", "/proc", str(swappiness), "1 to 10", swappiness <= 10),
        Setting("net.core.somaxconn", "/proc", str(somaxconn), ">= tcp-backlog", somaxconn >= backlog),
        Setting("tcp-backlog", "CONFIG GET", str(backlog), "<= somaxconn", somaxconn >= backlog),
    ]


# What each startup warning says (Redis 8.0 src/syscheck.c and src/server.c).
STARTUP_WARNINGS = {
    "overcommit": "Memory overcommit must be enabled",
    "thp": "Transparent Huge Pages (THP) support enabled",
    "somaxconn": "TCP backlog setting of",
}


def startup_warnings(log: str) -> set[str]:
    """The startup warnings a server's log contains, by name."""
    return {name for name, text in STARTUP_WARNINGS.items() if text in log}


def expected_warnings(report: list[Setting]) -> set[str]:
    """The warnings Redis prints at startup for this report, by its own rules."""
    v = {s.name: s.value for s in report}
    out = set()
    if v["vm.overcommit_memory"] != "1":
        out.add("overcommit")
    if v["transparent_hugepage"] == "always" and v["disable-thp"] != "yes":
        out.add("thp")      # disable-thp yes: Redis opts its own process out (prctl) and stays quiet
    if int(v["net.core.somaxconn"]) < int(v["tcp-backlog"]):
        out.add("somaxconn")
    return out
