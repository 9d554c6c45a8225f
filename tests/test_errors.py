"""Conditions a user can meet give one clear line and a non-zero exit (real, as root)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from tests.helpers import needs_root, paftrace_cmd

pytestmark = needs_root


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(paftrace_cmd() + list(args), capture_output=True, text=True,
                          timeout=120)


def test_missing_headers_say_what_to_install():
    build = Path("/lib/modules", platform.release(), "build")
    hidden = build.with_name("build.paftrace-test")
    assert build.exists(), "scripts/setup links the headers"
    build.rename(hidden)
    try:
        proc = run("--order", "4", "--duration", "1")
    finally:
        hidden.rename(build)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"apt-get install linux-headers-{platform.release()}" in proc.stderr
    assert "scripts/setup" in proc.stderr


def test_tracefs_is_mounted_when_missing():
    tracing = "/sys/kernel/tracing"
    via_debugfs = os.path.isdir("/sys/kernel/debug/tracing/events")
    subprocess.run(["umount", tracing], check=True)
    try:
        assert not os.path.isdir(f"{tracing}/events")
        proc = run("--order", "4", "--dry-run")
        assert proc.returncode == 0, proc.stderr
        # paftrace mounts it itself, unless debugfs already exposes it.
        assert via_debugfs or os.path.isdir(f"{tracing}/events")
    finally:
        if not os.path.isdir(f"{tracing}/events"):
            subprocess.run(["mount", "-t", "tracefs", "nodev", tracing], check=True)


def test_selftest_order_out_of_range_is_a_usage_error():
    proc = run("selftest", "--order", "2")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
