"""scripts/vagrant-check's verdict (scripts/vagrant/report.py): the last JSON line and when
it passes. The VM itself runs in scripts/vagrant-check (CI stage), not here."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("vagrant_report",
                                               ROOT / "scripts" / "vagrant" / "report.py")
assert _spec and _spec.loader
report_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report_module)

GUEST = {"guest_kernel": "6.1.0-50-amd64", "doctor": "pass", "selftest": "pass",
         "failures_provoked": 5, "failures_seen": 5, "netrx_failures": 12,
         "kprobes": ["kprobe:warn_alloc", "kprobe:__alloc_pages"],
         "trace": {"provoked": 5, "seen": 5, "warn_marked": 5, "latency_us": [3.0] * 5}}


def run_state(tmp_path: Path, guest: dict | None = None, leftovers: str = "",
              status: int = 0, facts: str = "") -> dict:
    state = tmp_path / "state"
    state.mkdir(parents=True)
    (state / "facts").write_text("up 75\nmode offline\nprovision 140\n" + facts)
    (state / "stages").write_text("host 4\nbox 11\nup 75\n")
    (state / "leftovers").write_text(leftovers)
    if guest is not None:
        (state / "guest.json").write_text(json.dumps(guest))
    box = tmp_path / "box.json"
    box.write_text(json.dumps({"name": "paftrace/debian12-6.1", "version": "20261201.1"}))
    return report_module.report(state, box, 300, status)


def test_a_complete_run_passes_with_the_issues_fields(tmp_path: Path) -> None:
    out = run_state(tmp_path, GUEST)
    assert out["passed"] is True
    assert list(out)[:11] == ["box", "guest_kernel", "provision_s", "up_s", "doctor",
                              "selftest", "failures_provoked", "failures_seen", "kprobes",
                              "netrx_failures", "leftovers"]
    assert (out["box"], out["up_s"], out["provision_s"]) == (
        "paftrace/debian12-6.1 20261201.1", 75, 140)
    assert out["stages_s"] == {"host": 4, "box": 11, "up": 75}


def test_each_missing_proof_fails_the_run(tmp_path: Path) -> None:
    broken = [
        {"failures_seen": 4},                        # a provoked failure not seen
        {"netrx_failures": 0},                       # the seed's case not reached
        {"selftest": "fail"},
        {"kprobes": ["kprobe:__alloc_pages"]},       # no warn_alloc marking
        {"trace": {**GUEST["trace"], "latency_us": [3.0, None, 3.0, 3.0, 3.0]}},
        {"trace": {**GUEST["trace"], "warn_marked": 0}},
    ]
    for i, change in enumerate(broken):
        out = run_state(tmp_path / str(i), {**GUEST, **change})
        assert out["passed"] is False, change


def test_leftovers_a_shell_failure_or_no_guest_fail(tmp_path: Path) -> None:
    left = run_state(tmp_path / "a", GUEST, leftovers="domain paftrace-check-default\n")
    assert left["leftovers"] == ["domain paftrace-check-default"] and not left["passed"]
    assert not run_state(tmp_path / "b", GUEST, status=1)["passed"]
    nothing = run_state(tmp_path / "c", None, status=1)
    assert (nothing["doctor"], nothing["failures_seen"], nothing["passed"]) == ("fail", 0, False)


def test_the_booted_box_and_whether_it_was_provisioned_afresh(tmp_path: Path) -> None:
    """A fresh provisioning saves its disk; a later run boots that box (setup runs again)."""
    fresh = run_state(tmp_path / "fresh", GUEST, facts=(
        "box paftrace/debian12-6.1 20261201.1\nfresh 1\nsaved yes\n"))
    assert (fresh["box"], fresh["fresh_provision"], fresh["provisioned_box_saved"]) == (
        "paftrace/debian12-6.1 20261201.1", True, True)
    cached = run_state(tmp_path / "cached", GUEST, facts=(
        "box paftrace/debian12-6.1-provisioned 20261202.2\nfresh 0\n"))
    assert (cached["box"], cached["fresh_provision"], cached["provisioned_box_saved"]) == (
        "paftrace/debian12-6.1-provisioned 20261202.2", False, False)
    assert cached["passed"] and fresh["passed"]
