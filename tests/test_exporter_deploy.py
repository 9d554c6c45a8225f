"""What ships in deploy/: the alert rules (promtool) and the systemd unit (systemd-analyze,
and its capability set tried for real)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from paftrace.procfs.capabilities import effective, missing_for_tracing, own_capabilities
from tests.exporter_helpers import (
    ROOT,
    parse_exposition,
    provoke_as,
    require_prometheus_client,
    require_tool,
    running_exporter,
    wait_for,
)
from tests.helpers import needs_root, paftrace_cmd

DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "paftrace-alerts.yml"
RULE_TESTS = DEPLOY / "paftrace-alerts.test.yml"
UNIT = DEPLOY / "paftrace-exporter.service"


def unit_setting(name: str) -> str:
    values = [line.split("=", 1)[1] for line in UNIT.read_text().splitlines()
              if line.startswith(f"{name}=")]
    assert len(values) == 1, (name, values)
    return values[0]


def test_promtool_checks_the_rules():
    out = subprocess.run([require_tool("promtool"), "check", "rules", str(RULES)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 5 rules found" in out.stdout


def test_promtool_unit_tests_pass_and_cover_every_alert():
    out = subprocess.run([require_tool("promtool"), "test", "rules", str(RULE_TESTS)],
                         capture_output=True, text=True, cwd=DEPLOY)
    assert out.returncode == 0, out.stdout + out.stderr
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"]
              for r in g["rules"]}
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing = {case["alertname"] for t in tests for case in t["alert_rule_test"]
              if case.get("exp_alerts")}
    quiet = {case["alertname"] for t in tests for case in t["alert_rule_test"]
             if not case.get("exp_alerts")}
    assert alerts == firing == quiet  # each rule is shown to fire and to stay quiet


def test_promtool_rule_tests_can_fail(tmp_path: Path):
    """The same tests against a rule that lost its 'new series' branch must fail."""
    broken = RULES.read_text().replace(
        'unless paftrace_page_alloc_failures_total{severity="harmful"} offset 5m',
        'unless paftrace_page_alloc_failures_total{severity="harmful"}')
    assert broken != RULES.read_text()
    (tmp_path / RULES.name).write_text(broken)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    out = subprocess.run([require_tool("promtool"), "test", "rules", RULE_TESTS.name],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode != 0 and "PaftraceHarmfulAllocationFailures" in out.stdout + out.stderr


def test_systemd_analyze_verifies_the_unit(tmp_path: Path):
    analyze = require_tool("systemd-analyze")
    command = unit_setting("ExecStart").split()
    assert command[1:3] == ["exporter", "--listen"] and command[3].startswith("127.0.0.1:")
    unit = tmp_path / UNIT.name
    # verify checks that ExecStart's program exists: point it at this checkout's Python.
    unit.write_text(UNIT.read_text().replace(
        command[0], f"{sys.executable} -m paftrace", 1))
    out = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
    assert unit_setting("Restart") == "on-failure"
    # ... and it does catch a broken unit.
    unit.write_text(unit.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    out = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert "Failed to parse service restart specifier" in out.stderr


def test_capability_names_from_status():
    status = "Name:\tx\nCapInh:\t0\nCapEff:\t000000c400000000\n"
    assert effective(status) == {"CAP_BPF", "CAP_PERFMON", "CAP_SYSLOG"}
    assert missing_for_tracing({"CAP_BPF"}) == ["CAP_PERFMON"]
    assert missing_for_tracing({"CAP_SYS_ADMIN"}) == []
    assert effective("CapEff:\t000001fffeffffff\n") >= {"CAP_SYS_ADMIN", "CAP_BPF"}


def test_a_busy_port_is_one_line_and_exit_1():
    require_prometheus_client()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run([*paftrace_cmd(), "exporter", "--listen", f"127.0.0.1:{port}"],
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    if os.geteuid() == 0:
        assert out.stderr.splitlines() == [
            f"paftrace: exporter cannot listen on 127.0.0.1:{port}: Address already in use"]
    else:  # the capability check comes first
        assert len(out.stderr.splitlines()) == 1 and "cannot attach" in out.stderr


@needs_root
def test_without_bpf_capabilities_it_is_one_line_and_exit_1():
    require_prometheus_client()
    out = subprocess.run(["setpriv", "--bounding-set=-all", "--inh-caps=-all",
                          *paftrace_cmd(), "exporter", "--listen", "127.0.0.1:0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        "paftrace: exporter cannot attach: missing CAP_BPF, CAP_PERFMON (run as root, or "
        "see docs/EXPORTER.md for the service's capabilities)"]


@needs_root
def test_the_units_capabilities_are_enough_to_trace_and_symbolize():
    """uid 0 with only the unit's CapabilityBoundingSet, as systemd would start it."""
    require_prometheus_client()
    wanted = unit_setting("CapabilityBoundingSet").split()
    # This sandbox's own bounding set lacks CAP_SYS_RESOURCE (only needed before 5.11):
    # the test then proves the exporter does without it on this kernel.
    usable = [c for c in wanted if c in own_capabilities()]
    caps = ",".join(["-all", *(f"+{c.removeprefix('CAP_').lower()}" for c in usable)])
    prefix = ("setpriv", f"--bounding-set={caps}", "--inh-caps=-all", "--no-new-privs")
    comm = f"pafcap{os.getpid() % 100000}"
    with running_exporter("--order", "4", "--comm", comm, prefix=prefix) as exporter:
        status = Path(f"/proc/{exporter.proc.pid}/status").read_text()
        assert effective(status) == set(usable)
        assert provoke_as(comm, 3)["failures"] == 3

        def three_failures() -> dict:
            found = parse_exposition(exporter.scrape())["paftrace_page_alloc_failure_sites_total"]
            return found if sum(found.values()) >= 3 else {}

        sites = wait_for("3 failures in the metrics", three_failures, 30)
        code, seconds, err = exporter.stop()
    # CAP_SYSLOG at work: the call site has its symbol, not requester="unknown".
    assert sites == {(("context", "process"), ("order", "4"),
                      ("requester", "pipe_resize_ring")): 3.0}
    assert code == 0 and seconds < 5, err
