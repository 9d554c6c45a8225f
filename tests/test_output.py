"""Standard output survives a signal that cuts a write short (paftrace/render/output.py).

A child writes JSON lines into a pipe nobody reads until it is full, gets SIGINT while
blocked (a handler that only notes it, like the tracer's first Ctrl-C), then finishes;
every line must arrive whole. An unbuffered sys.stdout (PYTHONUNBUFFERED=1) lost the
rest of the interrupted write in most runs of this child (timing decides whether the
blocked write had already written part of its buffer)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from paftrace.render.output import FLUSH_AT, FdWriter
from tests.helpers import DATA

LINES = 40  # 40 x 4.6 kB: about three times a pipe's 64 KiB
CHILD = """
import json, signal, sys
seen = []
signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
{setup}
for i in range({lines}):  # as the tracer writes: a record at a time, flushed per batch
    out.write(json.dumps({{"i": i, "pad": "x" * 4560}}) + "\\n")
out.flush()
print(len(seen), file=sys.stderr)
"""
WRITER = "from paftrace.render.output import FdWriter\nout = FdWriter(1)"


def wait_blocked_in_pipe_write(pid: int, timeout: float = 30.0) -> None:
    wchan = f"/proc/{pid}/wchan"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(wchan) as f:
            if f.read().endswith("pipe_write"):  # anon_pipe_write on 6.18
                return
        time.sleep(0.01)
    pytest.fail(f"process {pid} never blocked on its full pipe")


def interrupted_output() -> tuple[list[str], str]:
    """The child's lines, after a SIGINT while its pipe is full."""
    code = CHILD.format(setup=WRITER, lines=LINES)
    env = {**os.environ, "PYTHONPATH": str(DATA.parent.parent)}
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env)
    wait_blocked_in_pipe_write(child.pid)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)
    return out.decode().splitlines(), err.decode().strip()


def test_a_write_cut_short_by_a_signal_is_finished() -> None:
    lines, err = interrupted_output()
    assert err == "1"  # the signal arrived, and its handler ran
    assert [json.loads(line)["i"] for line in lines] == list(range(LINES))


def test_small_writes_wait_for_flush_and_large_ones_do_not(tmp_path) -> None:
    path = tmp_path / "out"
    with path.open("wb") as raw:
        out = FdWriter(raw.fileno())
        out.write("a\n")
        assert path.read_bytes() == b""
        out.flush()
        assert path.read_bytes() == b"a\n"
        out.write("b" * FLUSH_AT)
        assert path.stat().st_size == 2 + FLUSH_AT
        out.write("é\n")
        out.flush()
    assert path.read_bytes().endswith("é\n".encode())
