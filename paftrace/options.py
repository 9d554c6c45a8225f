"""Tracing options as one value object, parsed once from the command line."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

# include/linux/sched.h: TASK_COMM_LEN is 16 bytes with the NUL; __set_task_comm
# (fs/exec.c) copies with strscpy_pad, cutting at 15 bytes even inside a character.
COMM_BYTES = 15
# The live view redraws and rates are computed once per interval: below this it only
# burns CPU (-i 0 spun at 99.7 %), above an hour it never refreshes.
MIN_INTERVAL_S, MAX_INTERVAL_S = 0.1, 3600.0

# Highest order any kernel accepts: MAX_PAGE_ORDER is 10 on x86 but up to 13+
# with 64K pages / large NUMA configs; the BPF per-order array has 32 slots.
MAX_ORDER_BOUND = 31


class OptionError(ValueError):
    pass


def parse_order_range(text: str) -> tuple[int, int]:
    """'4' -> (4, 4); '4+' -> (4, 31); '2-5' -> (2, 5)."""
    text = text.strip()
    m = re.fullmatch(r"(\d+)(?:(\+)|-(\d+))?", text)
    if not m:
        raise OptionError(f"bad order {text!r}: use N, N+ or N-M (e.g. 4, 4+, 2-5)")
    low = int(m.group(1))
    high = MAX_ORDER_BOUND if m.group(2) else int(m.group(3)) if m.group(3) else low
    if low > high or high > MAX_ORDER_BOUND:
        raise OptionError(f"bad order range {text!r}: need 0 <= N <= M <= {MAX_ORDER_BOUND}")
    return low, high


def finite_seconds(value: float, what: str) -> float:
    """`value` unless it is nan or +-inf (click.FloatRange lets nan through)."""
    if not math.isfinite(value):
        raise OptionError(f"{what} must be a finite number of seconds, not {value}")
    return value


def kernel_comm(comm: str) -> tuple[bytes, str | None]:
    """The bytes of `comm` the kernel compares (its first 15), and a warning when that
    is not all of it."""
    raw = comm.encode()
    if not raw:
        raise OptionError("the task name is empty")
    if len(raw) <= COMM_BYTES:
        return raw, None
    kept = raw[:COMM_BYTES]
    try:
        shown = repr(kept.decode())
        cut = ""
    except UnicodeDecodeError:
        shown = repr(kept.decode(errors="backslashreplace"))
        cut = " (cut inside a character, as the kernel cuts it)"
    return kept, (f"the kernel keeps 15 bytes of a task name: matching tasks named {shown}"
                  f"{cut}, the first 15 bytes of {comm!r}")


def pid_problem(pid: int, proc: Path = Path("/proc")) -> str | None:
    """Why `pid` cannot be traced as a process now, or None when it can."""
    try:
        status = (proc / str(pid) / "status").read_text()
    except FileNotFoundError:
        return f"no process {pid} (it may have exited)"
    except OSError as exc:
        return f"cannot read {proc / str(pid) / 'status'}: {exc.strerror}"
    tgid = next((line.split()[1] for line in status.splitlines()
                 if line.startswith("Tgid:")), str(pid))
    if tgid != str(pid):
        return (f"{pid} is a thread of process {tgid}: -p filters on the process id "
                f"(tgid), use -p {tgid}")
    return None


def comm_words(comm: str) -> tuple[int, int]:
    """A task name as the two little-endian u64 words BPF compares against."""
    raw = comm.encode()[:COMM_BYTES].ljust(16, b"\0")
    return int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")


# The tracer's niceness once its probes are attached. In a failure storm its Python
# (about 40 us per record) competed with the failing workload for the CPU: scripts/bench's
# workload (c) on 2 CPUs ran at 0.90-0.94 of its rate with paftrace at nice 0, 0.95-0.96
# at nice 10 or 19 (bpftrace, which prints nothing per event: 0.95-1.00; docs/PERFORMANCE.md,
# "Issue 19 on a quiet machine"). Nice 10 still gets about a tenth of a CPU from a busy
# nice-0 neighbour, 2,700 records/s; the ring buffer holds bursts and anything lost is
# counted.
DEFAULT_NICE = 10

# Failure records per call site and CPU at the start of a storm (failures less than a
# second apart) before its further failures are counted in the kernel and reported as
# one record with a count every 0.5 s (paftrace.h, "Storm coalescing"). The first records
# show who fails and how, each judged on its own; the reports show the storm as it goes
# on. At 2,300 failures/s every record cost the storm about 40 us of CPU in paftrace's
# Python, and a storm of hours made 20 records a second for all of it
# (docs/PERFORMANCE.md, "Storm coalescing" and "A storm's records").
DEFAULT_RECORDS_PER_SITE = 20
MAX_RECORDS_PER_SITE = 1_000_000


@dataclass(frozen=True)
class TraceOptions:
    order_min: int = 0
    order_max: int = MAX_ORDER_BOUND
    trace_all: bool = False
    pid: int | None = None
    comm: str | None = None
    atomic_only: bool = False
    warn_only: bool = False
    disabled: frozenset[str] = field(default_factory=frozenset)
    stack_storage: int = 16384
    ringbuf_pages: int = 64
    perfbuf_pages: int = 64
    agg_entries: int = 16384
    sample_every: int = 0  # --all: take a stack 1 in N events; 0 = adaptive
    cgroup: str | None = None  # --cgroup PATH: this cgroup and below
    # cgroup2 ids of that subtree when PATH is on the cgroup2 mount: filtered in the kernel
    cgroup_ids: frozenset[int] = field(default_factory=frozenset)
    nice: int = DEFAULT_NICE  # --nice: 0 keeps the priority paftrace was started with
    # --records-per-site: per call site, CPU and storm; 0 = a record for every failure
    records_per_site: int = DEFAULT_RECORDS_PER_SITE

    @property
    def order_label(self) -> str:
        if self.order_min == self.order_max:
            return str(self.order_min)
        if self.order_max == MAX_ORDER_BOUND:
            return f"{self.order_min}+"
        return f"{self.order_min}-{self.order_max}"
