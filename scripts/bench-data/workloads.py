"""The bench's workloads: storm.c built once with gcc, run for a fixed time.

Throughput is operations per second as storm.c counts them: pages faulted in
(fault), order-4 pipe-ring grow/shrink cycles (pipe), failed grows (fail).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from paftrace.workloads.leftovers import remove_stale_cgroups
from paftrace.workloads.provoke import (
    LOCK_FILE,
    PIPE_MAX,
    MemoryCgroup,
    cgroup_roots,
    pipe_size_for_order,
)

BENCH_CGROUP = "paftrace-bench-"

HERE = Path(__file__).resolve().parent
FAIL_ORDER = 4
PIPE_STORM_BYTES = 4 << 20  # storm.c PIPE_BIG

WORKLOADS = {
    "fault": "(a) order-0 page-fault storm: mmap, touch, munmap (pages/s)",
    "pipe": "(b) order-4 storm without failures: pipe ring 4 MiB grow/shrink (cycles/s)",
    "fail": "(c) order-4 failure storm: provoke's memory-cgroup method in a loop (failures/s)",
}


class WorkloadError(RuntimeError):
    pass


@dataclass
class Result:
    workload: str
    ops: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0


def build(workdir: Path) -> Path:
    exe = workdir / "storm"
    cmd = ["gcc", "-O2", "-Wall", "-o", str(exe), str(HERE / "storm.c")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise WorkloadError(f"gcc failed to build storm.c: {done.stderr.strip()[:300]}")
    return exe


def parse_output(text: str) -> tuple[int, float]:
    """storm.c's last line: '<operations> <seconds>'."""
    fields = text.strip().splitlines()[-1].split() if text.strip() else []
    if len(fields) != 2:
        raise WorkloadError(f"unexpected storm output: {text.strip()[-200:]!r}")
    return int(fields[0]), float(fields[1])


class PipeMaxSize:
    """Raise fs.pipe-max-size for the bench (root here lacks CAP_SYS_RESOURCE), restore it;
    shared with provoke runs meanwhile, and restored after a killed bench by the next
    user (paftrace/workloads/leftovers.py)."""

    def __init__(self, needed: int):
        self.needed = needed

    def __enter__(self) -> PipeMaxSize:
        for line in remove_stale_cgroups(cgroup_roots(), BENCH_CGROUP) + PIPE_MAX.hold(
                self.needed):
            print(f"bench: {line}", file=sys.stderr, flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        PIPE_MAX.leave()


@contextlib.contextmanager
def pipe_sizes() -> Iterator[None]:
    """fs.pipe-max-size high enough for this run, under scripts/provoke's lock: a provoke
    that started before the bench would otherwise restore its older, lower value under
    it (seen on a shared machine: F_SETPIPE_SZ failed with EPERM in the middle of a soak)."""
    with open(LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with PipeMaxSize(max(PIPE_STORM_BYTES, pipe_size_for_order(FAIL_ORDER))):
            yield


def run(exe: Path, workload: str, seconds: float, cpu: int | None = None,
        pause: float = 0.0) -> Result:
    """`pause` (fail only): a second storm of the same worker after that many quiet
    seconds; `seconds` is then each storm's length."""
    if workload == "fail":
        with pipe_sizes():
            return _run_fail(exe, seconds, cpu, pause)
    with pipe_sizes() if workload == "pipe" else contextlib.nullcontext():
        done = subprocess.run([str(exe), workload, str(seconds)], capture_output=True,
                              text=True, preexec_fn=_pin(cpu))
    if done.returncode:
        raise WorkloadError(f"storm {workload}: {done.stderr.strip()[:300]}")
    return Result(workload, *parse_output(done.stdout))


def _pin(cpu: int | None):
    return None if cpu is None else lambda: os.sched_setaffinity(0, {cpu})


def _run_fail(exe: Path, seconds: float, cpu: int | None, pause: float = 0.0) -> Result:
    """A worker in a memory cgroup set just below one more order-4 block."""
    pipe_size = pipe_size_for_order(FAIL_ORDER)
    block = (1 << FAIL_ORDER) * os.sysconf("SC_PAGE_SIZE")
    cgroup = MemoryCgroup(f"{BENCH_CGROUP}{os.getpid()}")
    worker = None
    try:
        cgroup.no_swap()
        cgroup.set_limit(64 << 20)
        # One CPU: one per-CPU charge stock to use up (paftrace/workloads/provoke.py).
        worker = subprocess.Popen([str(exe), "fail", str(seconds), str(pipe_size), str(pause)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  preexec_fn=_pin(0 if cpu is None else cpu))
        assert worker.stdin and worker.stdout
        cgroup.add(worker.pid)
        if worker.stdout.readline().strip() != "ready":
            raise WorkloadError("storm fail: worker did not start")
        cgroup.set_limit(cgroup.usage() + block // 2)
        worker.stdin.write("go\n")
        worker.stdin.flush()
        out, _ = worker.communicate(timeout=2 * seconds + pause + 60)
        return Result("fail", *parse_output(out))
    finally:
        if worker and worker.poll() is None:
            worker.kill()
            worker.wait()
        cgroup.remove()
