"""The kernel report and Redis's startup-warning rules, on a real Redis (and a fake /proc, /sys tree
for the host side, so every verdict's edge is tested whatever this machine's tuning is)."""

from __future__ import annotations

from pathlib import Path

import pytest

from redistutor.patterns.kernel_tuning import (
    STARTUP_WARNINGS,
    Setting,
    expected_warnings,
    kernel_report,
    startup_warnings,
)
from redistutor.server import RedisServer


def fake_host(root: Path, *, thp="always madvise [never]", overcommit="1", swappiness="1", somaxconn="4096") -> str:
    files = {"sys/kernel/mm/transparent_hugepage/enabled": thp, "proc/sys/vm/overcommit_memory": overcommit,
             "proc/sys/vm/swappiness": swappiness, "proc/sys/net/core/somaxconn": somaxconn}
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text + "\n")
    return str(root)


def by_name(report: list[Setting]) -> dict[str, Setting]:
    return {s.name: s for s in report}


def test_a_well_tuned_host_reads_as_six_exact_rows(r, tmp_path):
    report = kernel_report(r, fake_host(tmp_path))
    backlog = r.config_get("tcp-backlog")["tcp-backlog"]
    assert report == [
        Setting("transparent_hugepage", "/sys", "never", "madvise or never", True),
        Setting("disable-thp", "CONFIG GET", "yes", "yes", True),
        Setting("vm.overcommit_memory", "/proc", "1", "1", True),
        Setting("vm.swappiness", "/proc", "1", "1 to 10", True),
        Setting("net.core.somaxconn", "/proc", "4096", ">= tcp-backlog", True),
        Setting("tcp-backlog", "CONFIG GET", backlog, "<= somaxconn", True),
    ]
    assert expected_warnings(report) == set()


@pytest.mark.parametrize("thp, ok", [("[always] madvise never", False), ("always [madvise] never", True),
                                     ("always madvise [never]", True)])
def test_thp_mode_is_the_bracketed_one(r, tmp_path, thp, ok):
    row = by_name(kernel_report(r, fake_host(tmp_path, thp=thp)))["transparent_hugepage"]
    assert row.value == thp.split("[")[1].split("]")[0] and row.ok is ok


@pytest.mark.parametrize("value, ok", [("0", False), ("1", True), ("2", False)])
def test_overcommit_must_be_exactly_one(r, tmp_path, value, ok):
    row = by_name(kernel_report(r, fake_host(tmp_path, overcommit=value)))["vm.overcommit_memory"]
    assert row.value == value and row.ok is ok


@pytest.mark.parametrize("value, ok", [("0", True), ("10", True), ("11", False), ("60", False)])
def test_swappiness_at_most_ten(r, tmp_path, value, ok):
    row = by_name(kernel_report(r, fake_host(tmp_path, swappiness=value)))["vm.swappiness"]
    assert row.value == value and row.ok is ok


def test_somaxconn_is_compared_with_this_servers_backlog_not_511(r, tmp_path):
    backlog = int(r.config_get("tcp-backlog")["tcp-backlog"])
    equal = by_name(kernel_report(r, fake_host(tmp_path, somaxconn=str(backlog))))
    below = by_name(kernel_report(r, fake_host(tmp_path, somaxconn=str(backlog - 1))))
    assert equal["net.core.somaxconn"].ok and equal["tcp-backlog"].ok
    assert not below["net.core.somaxconn"].ok and not below["tcp-backlog"].ok
    assert "somaxconn" not in expected_warnings(list(equal.values()))
    assert "somaxconn" in expected_warnings(list(below.values()))


def report_of(thp="never", disable="yes", overcommit="1", somaxconn="4096", backlog="511") -> list[Setting]:
    return [Setting("transparent_hugepage", "/sys", thp, "", True), Setting("disable-thp", "", disable, "", True),
            Setting("vm.overcommit_memory", "", overcommit, "", True), Setting("vm.swappiness", "", "1", "", True),
            Setting("net.core.somaxconn", "", somaxconn, "", True), Setting("tcp-backlog", "", backlog, "", True)]


@pytest.mark.parametrize("kwargs, warnings", [
    ({}, set()),
    ({"overcommit": "0"}, {"overcommit"}),
    ({"overcommit": "2"}, {"overcommit"}),
    ({"thp": "always"}, set()),                       # disable-thp yes: Redis opts out, no warning
    ({"thp": "always", "disable": "no"}, {"thp"}),
    ({"thp": "madvise", "disable": "no"}, set()),
    ({"somaxconn": "511", "backlog": "511"}, set()),
    ({"somaxconn": "510", "backlog": "511"}, {"somaxconn"}),
    ({"somaxconn": "128", "backlog": "100"}, set()),   # below 511 but above this backlog: no warning
    ({"thp": "always", "disable": "no", "overcommit": "0", "somaxconn": "1", "backlog": "2"},
     {"thp", "overcommit", "somaxconn"}),
])
def test_expected_warnings_follow_redis_rules(kwargs, warnings):
    assert expected_warnings(report_of(**kwargs)) == warnings


def test_startup_warnings_match_redis_own_sentences():
    log = (
        "1:C # WARNING Memory overcommit must be enabled! Without it, a background save ...\n"
        "1:M # WARNING You have Transparent Huge Pages (THP) support enabled in your kernel. ...\n"
        "1:M # WARNING: The TCP backlog setting of 4097 cannot be enforced because "
        "/proc/sys/net/core/somaxconn is set to the lower value of 4096.\n")
    assert startup_warnings(log) == {"overcommit", "thp", "somaxconn"}
    assert startup_warnings(log.splitlines()[2]) == {"somaxconn"}
    assert startup_warnings("Ready to accept connections") == set()
    assert set(STARTUP_WARNINGS) == {"overcommit", "thp", "somaxconn"}


def test_a_live_server_logs_exactly_the_predicted_warnings():
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    for config in ({}, {"tcp-backlog": somaxconn + 1, "disable-thp": "no"}):
        s = RedisServer(modules=(), config=config, name="kt-test").start()
        try:
            c = s.client()
            report = kernel_report(c)
            found = startup_warnings(s.log_tail(10_000))
            c.close()
        finally:
            s.stop()
        assert found == expected_warnings(report)
        assert ("somaxconn" in found) == bool(config)


def test_host_lab_changes_nothing_without_the_opt_in(tmp_path, monkeypatch):
    from redistutor.scenarios import kernel_tuning as sc

    switch = tmp_path / "enabled"
    switch.write_text("always [madvise] never\n")
    monkeypatch.delenv(sc.OPT_IN, raising=False)
    assert sc.host_lab([16], path=str(switch)) is None
    monkeypatch.setenv(sc.OPT_IN, "0")
    assert sc.host_lab([16], path=str(switch)) is None
    assert switch.read_text() == "always [madvise] never\n"
    assert sc.OPT_IN in sc.explain_host_lab()


def test_set_thp_mode_returns_the_mode_to_restore(tmp_path):
    from redistutor.scenarios import kernel_tuning as sc

    switch = tmp_path / "enabled"
    switch.write_text("always [madvise] never\n")
    assert sc.set_thp_mode("never", path=str(switch)) == "madvise"
    assert switch.read_text() == "never"
