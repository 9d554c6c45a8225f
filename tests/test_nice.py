"""--nice: once attached, the tracer yields the CPU to the workload it watches (in a
failure storm its per-record Python competed with the failing workload; see
paftrace/options.py DEFAULT_NICE)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import needs_root, paftrace_cmd, read_line

ROOT = Path(__file__).resolve().parent.parent


def own_nice() -> int:
    # Not 0 when an in-process trace earlier in the session lowered the test runner's.
    return os.getpriority(os.PRIO_PROCESS, 0)


def niceness_after(start_nice: int, nice: int) -> tuple[int, int]:
    """(niceness before, after yield_to_workload(nice)) of a process started `start_nice`
    nicer than this one."""
    code = ("import os; from paftrace.tracer import yield_to_workload; "
            "before = os.getpriority(os.PRIO_PROCESS, 0); "
            f"yield_to_workload({nice}); print(before, os.getpriority(os.PRIO_PROCESS, 0))")
    out = subprocess.run(["nice", "-n", str(start_nice), sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=60, cwd=ROOT, check=True)
    before, after = map(int, out.stdout.split())
    return before, after


@pytest.mark.parametrize("start,nice", [
    (0, 10),   # the default
    (0, 0),    # --nice 0: as started
    (15, 10),  # already nicer: never raised back
    (3, 19),
])
def test_niceness_is_lowered_never_raised(start, nice):
    before, after = niceness_after(start, nice)
    assert before == min(19, own_nice() + start)
    assert after == max(before, nice)


def process_nice(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])  # proc(5): field 19, nice (fields[0] is field 3)


@needs_root
@pytest.mark.parametrize("args,nice", [([], 10), (["--nice", "0"], 0), (["--nice", "19"], 19)])
def test_the_attached_tracer_runs_at_its_niceness(args, nice):
    proc = subprocess.Popen(paftrace_cmd() + ["-o", "4", "--json", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert read_line(proc, 60, '{"type":"attached"'), proc.stderr.read() if proc.stderr else ""
        assert process_nice(proc.pid) == max(own_nice(), nice)
    finally:
        proc.send_signal(2)
        proc.communicate(timeout=60)
    assert proc.returncode == 130
