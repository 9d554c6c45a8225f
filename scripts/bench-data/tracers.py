"""The tracers the bench compares, and one running tracer as a child process."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
BPFTRACE_ONE_LINER = "tracepoint:kmem:mm_page_alloc { @[args->order, kstack] = count(); }"
PERF_SETTLE_S = 0.5  # perf prints nothing once attached: wait for its fds, then this
EXPORTER_READY = "paftrace exporter: serving "
CPUCLOCK_SCHED = 2  # the process CPU clock that counts every thread's run time


@dataclass(frozen=True)
class Tracer:
    name: str
    argv: tuple[str, ...]  # "{dir}" is replaced by a scratch directory
    ready: str             # a line starting with this means attached; "" = perf fds
    paftrace: bool = False
    exporter: bool = False  # serves /metrics (its port is in the ready line)
    pythonpath: str | None = None  # another paftrace tree (--before), first on the path

    def command(self, scratch: Path) -> list[str]:
        return [a.replace("{dir}", str(scratch)) for a in self.argv]

    def environment(self) -> dict[str, str] | None:
        if self.pythonpath is None:
            return None
        return {**os.environ, "PYTHONPATH": self.pythonpath}


def before_tracers(python: str, tree: str) -> list[Tracer]:
    """paftrace as another source tree has it (say, the commit before a change),
    measured in the same rounds as the current one."""
    return [Tracer(f"before: paftrace {args[1]}{' --all' if '--all' in args else ''}",
                   (python, "-m", "paftrace", *args, "--json"), '{"type":"attached"',
                   paftrace=True, pythonpath=tree)
            for args in (("--order", "4"), ("--order", "0+", "--all"))]


def all_tracers(python: str, paftrace: list[str]) -> list[Tracer]:
    """Baseline first; the order of the issue."""
    return [
        Tracer("baseline", (), ""),
        Tracer("empty-bpf", (python, str(HERE / "empty_tracer.py")), "attached"),
        Tracer("empty-raw-bpf", (python, str(HERE / "empty_tracer.py"), "empty_raw.c"),
               "attached"),
        Tracer("paftrace -o 4", (*paftrace, "--order", "4", "--json"), '{"type":"attached"',
               paftrace=True),
        Tracer("paftrace -o 0+ --all", (*paftrace, "--order", "0+", "--all", "--json"),
               '{"type":"attached"', paftrace=True),
        Tracer("paftrace exporter -o 4", (*paftrace, "exporter", "--order", "4", "--listen",
                                          "127.0.0.1:0"), EXPORTER_READY, paftrace=True,
               exporter=True),
        Tracer("bpftrace", ("bpftrace", "-e", BPFTRACE_ONE_LINER), "Attaching"),
        Tracer("perf record -g", ("perf", "record", "-q", "-e", "kmem:mm_page_alloc", "-g", "-a",
                                  "-o", "{dir}/perf.data"), ""),
        Tracer("trace-cmd -T", ("trace-cmd", "record", "-e", "kmem:mm_page_alloc", "-T",
                                "-o", "{dir}/trace.dat"), "Hit Ctrl^C"),
    ]


def _default_sigint() -> None:
    # A shell's background job inherits SIGINT ignored; bpftrace then would not stop.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class TracerError(RuntimeError):
    pass

# The record's own `count` is the last of its own fields, before the call site's, which
# begin with "order" (paftrace/render/jsonl.py); the `stall` object has counts of its own.
COUNT_KEY = re.compile(r'"count":(\d+),"order":')


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time process `pid` (all its threads) has used so far, to the
    nanosecond; 0 once it is gone. /proc/PID/stat counts in clock ticks (10 ms here),
    too coarse for a tracer that uses 20-40 ms in a storm. The clock id is the kernel's
    MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED) (include/linux/posix-timers*.h, 2.6 to
    6.18), what clock_getcpuclockid(3) returns."""
    try:
        return time.clock_gettime(((~pid) << 3) | CPUCLOCK_SCHED)
    except OSError:  # EINVAL: no such process (any more)
        return 0.0


def failures_in_line(line: str) -> int:
    """The `count` of a failure record's JSON text (1 from a paftrace without it). A regular
    expression, not json.loads: this runs beside the workload, for every record of an old
    tree's storm. A task name cannot fake the key: JSON escapes its quotes."""
    found = COUNT_KEY.search(line)
    return int(found.group(1)) if found else 1


class Running:
    """A started tracer: its output drained by threads so it never blocks."""

    def __init__(self, tracer: Tracer, scratch: Path):
        self.tracer = tracer
        self.t0 = time.monotonic()
        self.ready_s: float | None = None
        self.ready_event = threading.Event()
        self.stdout_tail: deque[str] = deque(maxlen=3)
        self.stderr_tail: deque[str] = deque(maxlen=5)
        self.failure_lines = 0
        self.failures = 0  # failures those lines stand for (their `count`s)
        self.stop_s: float | None = None  # SIGINT to exit, when SIGINT alone ended it
        # In the scratch directory: `python -m` puts the working directory first on
        # sys.path, so run from a checkout, --before's tree (PYTHONPATH) lost to the
        # checkout's own paftrace, and old and new measured the same code.
        self.proc = subprocess.Popen(tracer.command(scratch), env=tracer.environment(),
                                     cwd=scratch, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, errors="replace",
                                     start_new_session=True, preexec_fn=_default_sigint)
        self._threads = [threading.Thread(target=self._drain, args=(s, t), daemon=True)
                         for s, t in ((self.proc.stdout, self.stdout_tail),
                                      (self.proc.stderr, self.stderr_tail))]
        for thread in self._threads:
            thread.start()

    def _drain(self, stream, tail: deque[str]) -> None:
        ready = self.tracer.ready
        for line in stream:
            if ready and self.ready_s is None and line.startswith(ready):
                self.ready_s = time.monotonic() - self.t0
                self.ready_event.set()
            if line.startswith('{"type":"failure"'):
                self.failure_lines += 1
                self.failures += failures_in_line(line)
            elif line.strip():
                tail.append(line.rstrip())

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds from process start to probes attached."""
        deadline = self.t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the drain threads read the error
                raise TracerError(self.why())
            if self.tracer.ready:
                if self.ready_event.wait(0.02):
                    return self.ready_s or 0.0
            elif self._perf_fds() >= os.cpu_count():
                seen = time.monotonic() - self.t0
                time.sleep(PERF_SETTLE_S)
                return seen
            else:
                time.sleep(0.02)
        self.stop()
        raise TracerError(f"not attached after {timeout:.0f} s")

    def why(self) -> str:
        return (" / ".join(self.stderr_tail) or f"exit status {self.proc.returncode}")[:300]

    def _perf_fds(self) -> int:
        fd_dir = Path(f"/proc/{self.proc.pid}/fd")
        count = 0
        with contextlib.suppress(OSError):
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    count += os.readlink(fd) == "anon_inode:[perf_event]"
        return count

    def metrics_url(self) -> str:
        """The exporter's /metrics URL, from its 'serving http://...' line."""
        for line in self.stderr_tail:
            if line.startswith(EXPORTER_READY):
                return line[len(EXPORTER_READY):].split()[0]
        raise TracerError(f"{self.tracer.name}: no serving line in {list(self.stderr_tail)}")

    def rss_kib(self) -> int:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def cpu_seconds(self) -> float:
        """User + system CPU time the tracer process has used so far."""
        return process_cpu_seconds(self.proc.pid)

    def bpf_prog_ids(self) -> list[int]:
        """Ids of the BPF programs this process holds (from /proc/PID/fdinfo)."""
        ids = []
        for info in Path(f"/proc/{self.proc.pid}/fdinfo").iterdir():
            try:
                text = info.read_text()
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith("prog_id:"):
                    ids.append(int(line.split()[1]))
        return ids

    def stop(self, timeout: float = 60.0) -> int:
        """Ctrl-C, then harder; times Ctrl-C to exit (what the user waits for the prompt)."""
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 10.0),
                          (signal.SIGKILL, None)):
            if self.proc.poll() is not None:
                break
            sent = time.monotonic()
            self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait)
                if sig == signal.SIGINT:
                    self.stop_s = time.monotonic() - sent
        for thread in self._threads:
            thread.join(5)
        return self.proc.returncode
