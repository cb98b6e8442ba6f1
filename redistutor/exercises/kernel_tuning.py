"""Exercises for notebooks/28-kernel-tuning.ipynb.

Try it. ``cow_prediction``: predict how many KB a fork copies when the parent writes one byte every
   ``stride_kb`` of 64 MB backed by huge pages; the check runs it.
1. ``measure_fork``: ``fork_cost(r) -> {"fork_ms": ..., "cow_bytes": ...}``: a new case: measure one
   BGSAVE of your own, from INFO, once it has finished.
2. ``warning_rules``: ``predict(host) -> set``: which startup warnings Redis prints on a host
   described by its raw settings (Redis's rules, not the checklist's).
"""

from __future__ import annotations

import inspect
import time
from typing import Any

import redis

from ..check import Exercise, expect
from ..race import wait_until

# -- reference solutions (self-tested in tests/exercises/test_kernel_tuning.py) -----------------


def fork_cost(r: redis.Redis) -> dict[str, float]:
    forks = r.info("stats")["total_forks"]
    r.bgsave()
    while r.info("persistence")["rdb_bgsave_in_progress"] or r.info("stats")["total_forks"] == forks:
        time.sleep(0.01)
    return {"fork_ms": r.info("stats")["latest_fork_usec"] / 1000,
            "cow_bytes": r.info("persistence")["rdb_last_cow_size"]}


def predict(host: dict[str, Any]) -> set[str]:
    out = set()
    if int(host["overcommit_memory"]) != 1:
        out.add("overcommit")
    if "[always]" in host["thp"] and host["disable_thp"] != "yes":
        out.add("thp")
    if int(host["somaxconn"]) < int(host["tcp_backlog"]):
        out.add("somaxconn")
    return out


# -- Try it ---------------------------------------------------------------------------------------


def cow_prediction(stride_kb: int, size_mb: int = 64) -> Exercise:
    """Try it: the answer is the KB copied (the child's Private_Dirty) after the parent writes one
    byte every ``stride_kb`` KB of ``size_mb`` MB of huge-page memory."""
    from ..scenarios.kernel_tuning import cow_pages

    def checker(answer) -> None:
        got = cow_pages(size_mb, stride_kb, huge=True)
        kb = got["cow_kb"]
        close = abs(float(answer) - kb) <= max(0.1 * kb, 64)
        expect(close, f"{got['writes']} writes after the fork copied {kb} KB here "
               f"({got['huge_kb'] // 1024} MB of the {size_mb} MB were huge pages); within 10 % counts",
               expected=kb, actual=answer)

    return Exercise(
        f"copy-on-write at a {stride_kb} KB stride", checker,
        hints=["Count the writes: one every stride_kb KB of size_mb MB. Then ask what one write copies "
               "on this kernel: the table above measured it.",
               "Since Linux 5.8 a write to a shared huge page copies one 4 KB page, and two writes in "
               "the same 4 KB page copy it once: min(writes, pages) * 4 KB."],
        solution="pages = 64 * 1024 // 4\nwrites = 64 * 1024 // stride_kb\nprediction = min(writes, pages) * 4   # KB",
        reference=None,
    )


# -- exercises ------------------------------------------------------------------------------------


def _fill(r: redis.Redis, prefix: str, keys: int, value_bytes: int) -> None:
    r.execute_command("DEBUG", "POPULATE", keys, f"{prefix}:v", value_bytes)


def measure_fork(r: redis.Redis, prefix: str = "ex1") -> Exercise:
    """Exercise 1: ``fork_cost(r) -> {"fork_ms": float, "cow_bytes": int}`` for one BGSAVE."""

    def checker(answer) -> None:
        _fill(r, prefix, 512, 16384)
        r.config_set("rdb-key-save-delay", 600)   # the save's child lives about 0.3 s
        try:
            forks = r.info("stats")["total_forks"]
            got = answer(r)
            running = r.info("persistence")["rdb_bgsave_in_progress"]
            expect(r.info("stats")["total_forks"] == forks + 1, "fork_cost starts exactly one BGSAVE",
                   expected=forks + 1, actual=r.info("stats")["total_forks"])
            expect(running == 0, "fork_cost returns once the save has finished: the COW size is only "
                   "reported when the child exits", expected="rdb_bgsave_in_progress 0", actual=running)
        finally:
            r.config_set("rdb-key-save-delay", 0)
            wait_until(lambda: r.info("persistence")["rdb_bgsave_in_progress"] == 0, 30, "the save to end")
        expect(isinstance(got, dict) and {"fork_ms", "cow_bytes"} <= set(got),
               "return a dict with fork_ms and cow_bytes", expected="{'fork_ms': ..., 'cow_bytes': ...}",
               actual=got)
        fork_ms = r.info("stats")["latest_fork_usec"] / 1000
        cow = r.info("persistence")["rdb_last_cow_size"]
        expect(abs(float(got["fork_ms"]) - fork_ms) < 1e-6, "fork_ms is INFO stats latest_fork_usec in "
               "milliseconds (it is reported in microseconds)", expected=fork_ms, actual=got["fork_ms"])
        expect(int(got["cow_bytes"]) == cow, "cow_bytes is INFO persistence rdb_last_cow_size of this save "
               "(current_cow_peak is 0 again once the child has exited)", expected=cow, actual=got["cow_bytes"])
        r.delete(*[f"{prefix}:v:{i}" for i in range(512)])

    return Exercise(
        "measure one fork", checker,
        hints=["BGSAVE returns at once; the fork happened before the reply, but the child reports its "
               "copy-on-write only when it exits. Wait until INFO persistence says no save is running.",
               "Remember total_forks before BGSAVE and poll until rdb_bgsave_in_progress is 0 and "
               "total_forks has grown; then latest_fork_usec / 1000 and rdb_last_cow_size."],
        solution=inspect.getsource(fork_cost), reference=fork_cost,
    )


# Hosts to predict, as /sys, /proc and CONFIG GET show them; the last one is this machine's shape.
HOSTS = [
    {"thp": "[always] madvise never", "disable_thp": "yes", "overcommit_memory": "1", "somaxconn": "4096",
     "tcp_backlog": "511"},
    {"thp": "[always] madvise never", "disable_thp": "no", "overcommit_memory": "1", "somaxconn": "4096",
     "tcp_backlog": "511"},
    {"thp": "always [madvise] never", "disable_thp": "no", "overcommit_memory": "0", "somaxconn": "4096",
     "tcp_backlog": "511"},
    {"thp": "always madvise [never]", "disable_thp": "yes", "overcommit_memory": "2", "somaxconn": "1024",
     "tcp_backlog": "2048"},
    {"thp": "always [madvise] never", "disable_thp": "yes", "overcommit_memory": "1", "somaxconn": "128",
     "tcp_backlog": "100"},
]


def warning_rules(r: redis.Redis) -> Exercise:
    """Exercise 2: ``predict(host) -> set`` of "overcommit", "thp", "somaxconn"; checked on five
    described hosts and on this machine, against the log of a server started for the check."""

    def checker(answer) -> None:
        for host in HOSTS:
            want, got = predict(host), set(answer(dict(host)))
            expect(got == want, f"the warnings Redis prints on a host with {host}", expected=sorted(want),
                   actual=sorted(got))
        from ..patterns.kernel_tuning import kernel_report, startup_warnings
        from ..server import RedisServer

        somaxconn = int(open("/proc/sys/net/core/somaxconn").read())
        s = RedisServer(modules=(), config={"tcp-backlog": somaxconn + 1}, name="kt-ex2").start()
        try:
            c = s.client()
            v = {x.name: x.value for x in kernel_report(c)}
            found = startup_warnings(s.log_tail(10_000))
            c.close()
        finally:
            s.stop()
        here = {"thp": open("/sys/kernel/mm/transparent_hugepage/enabled").read().strip(),
                "disable_thp": v["disable-thp"], "overcommit_memory": v["vm.overcommit_memory"],
                "somaxconn": v["net.core.somaxconn"], "tcp_backlog": v["tcp-backlog"]}
        got = set(answer(here))
        expect(got == found, f"a server started here with tcp-backlog {somaxconn + 1} logged these warnings",
               expected=sorted(found), actual=sorted(got))

    return Exercise(
        "predict the startup warnings", checker,
        hints=["Three checks, each as Redis makes it at startup: overcommit_memory must be exactly 1; "
               "THP is only a problem in the bracketed mode [always]; the backlog is compared with the "
               "server's own tcp-backlog.",
               "With disable-thp yes (the default) Redis opts its own process out of THP and prints "
               "nothing about THP, even under [always]."],
        solution=inspect.getsource(predict), reference=predict,
    )
