"""Talking to the helper processes paftrace starts (provoke worker, scenario children)."""

from __future__ import annotations

import os
import resource
import select
import subprocess
import time
from pathlib import Path

# The directory holding the paftrace package, wherever the checkout or install is.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def python_env() -> dict[str, str]:
    """Environment for a child `python -m paftrace...` that finds this paftrace."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{PACKAGE_ROOT}{os.pathsep + path if path else ''}"}


def read_line(proc: subprocess.Popen[str], timeout: float, prefix: str = "") -> str | None:
    """The child's next stdout line starting with `prefix` (others are skipped), or None
    when it exits or stays silent for `timeout` seconds. Never blocks past the timeout."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if not line:
                return None
            if line.startswith(prefix):
                return line.strip()
    return None


def raise_open_files(wanted: int) -> int:
    """Raise RLIMIT_NOFILE to `wanted`, the hard limit too where we may (root, up to
    fs.nr_open), else as far as the hard limit; the soft limit reached."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        for limits in ((wanted, max(hard, wanted)), (hard, hard)):
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, limits)
                break
            except (ValueError, OSError):
                continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
