"""Helpers for tests: run the real tracer as a user would; test data paths."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from paftrace.commands.selftest import provoke_subprocess as provoke  # noqa: F401 - for tests
from paftrace.gfp import GfpTable, table_from_print_fmt
from paftrace.tracefs import parse_format
from paftrace.workloads.childproc import read_line
from paftrace.workloads.leftovers import STATE_DIR

DATA = Path(__file__).parent / "data"


def gfp_table_618() -> GfpTable:
    """The gfp flag table of this machine's 6.18 kernel, from its captured format file."""
    return table_from_print_fmt(parse_format(
        (DATA / "formats" / "mm_page_alloc-6.18.format").read_text()).print_fmt)
IS_ROOT = os.geteuid() == 0

# Root-only tests may skip only when not root; CI runs as root, so there they run.
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (BPF); CI runs as root")


@dataclass
class TraceRun:
    returncode: int
    lines: list[dict] = field(default_factory=list)
    stderr: str = ""
    workload_result: object = None

    def of_type(self, kind: str) -> list[dict]:
        return [obj for obj in self.lines if obj.get("type") == kind]

    @property
    def attached(self) -> dict:
        return self.of_type("attached")[0]

    @property
    def failures(self) -> list[dict]:
        return self.of_type("failure")

    @property
    def summary(self) -> dict:
        found = self.of_type("summary")
        assert found, f"no summary object; stderr: {self.stderr}"
        return found[-1]


def sysctl_hold(pid: int, name: str) -> dict | None:
    """The shared-sysctl record of `name` (/run/paftrace/NAME.json) while process `pid`
    is one of its holders, else None."""
    try:
        record = json.loads((STATE_DIR / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None
    return record if any(h.startswith(f"{pid}:") for h in record["holders"]) else None


def paftrace_cmd() -> list[str]:
    return [sys.executable, "-m", "paftrace"]


def run_tracer(args: list[str], workload: Callable[[], object] | None = None,
               stop_signal: int = signal.SIGINT, timeout: float = 60.0,
               command: tuple[str, ...] = ()) -> TraceRun:
    """Start `paftrace [COMMAND] --json ARGS`, wait for `attached`, run the workload,
    stop it with a signal (or let --duration end it), and parse every line."""
    proc = subprocess.Popen(paftrace_cmd() + [*command, "--json", *args],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # `attached` is the first line paftrace prints; nothing comes before it.
    attached = read_line(proc, timeout, '{"type":"attached"')
    lines = [attached] if attached else []
    try:
        result = workload() if workload and proc.poll() is None else None
    finally:  # a failing workload must not leave the tracer running
        if "--duration" not in args and "-d" not in args and proc.poll() is None:
            time.sleep(0.3)  # let the last records cross the ring buffer
            proc.send_signal(stop_signal)
    out, err = proc.communicate(timeout=timeout)
    lines += out.splitlines(keepends=True)
    return TraceRun(proc.returncode, [json.loads(x) for x in lines if x.strip()], err, result)


def interrupt_twice() -> None:
    """Two Ctrl-C in a row landing where this runs (e.g. inside a record callback)."""
    os.kill(os.getpid(), signal.SIGINT)  # first: a clean stop is requested
    os.kill(os.getpid(), signal.SIGINT)  # second: exit now
    time.sleep(1)  # the handler runs before this returns
