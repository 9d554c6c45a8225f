"""Produce real page allocation failures of a chosen order, safely.

Method (memory cgroup, works on cgroup v1 and v2):
1. A fresh cgroup of our own, swap off for it, a bounded memory limit.
2. A worker joins it, touches some anonymous memory and opens pipes.
3. The limit is set just above the group's usage (less than one block of the
   target order above it).
4. The worker grows each pipe with fcntl(F_SETPIPE_SZ). The pipe ring is a
   kcalloc of nr_slots * sizeof(struct pipe_buffer) (40 bytes on 64-bit) with
   GFP_KERNEL_ACCOUNT | __GFP_NOWARN; above 2 pages kmalloc takes it straight
   from the page allocator, at order ceil(log2(40 * slots / PAGE_SIZE)). The
   page is found but its memcg charge fails, so the allocator frees it and
   kmem:mm_page_alloc reports pfn == -1 (mm/page_alloc.c), stack through
   pipe_resize_ring. Above order 3 (PAGE_ALLOC_COSTLY_ORDER) the memcg does not
   invoke the OOM killer, so nothing is killed; fcntl returns ENOMEM.
   Pipes that did grow are kept open, so the per-CPU charge stock is used up
   instead of hiding the limit.

Everything is undone at the end, also on SIGINT/SIGTERM/SIGHUP: worker killed, cgroup
removed, fs.pipe-max-size restored. After a SIGKILL, the next run (or `--cleanup`) does
it: the cgroup is named after its creator's pid, and the original fs.pipe-max-size is
kept in /run/paftrace/pipe-max-size.json with who raised it
(paftrace/workloads/leftovers.py), so a leaked value is never taken for the original.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from paftrace.workloads.childproc import python_env, raise_open_files, read_line
from paftrace.workloads.leftovers import (
    SharedSysctl,
    remove_cgroup,
    remove_stale_cgroups,
    signals_interrupt,
)

F_SETPIPE_SZ = 1031
PIPE_BUFFER_SIZE = 40  # sizeof(struct pipe_buffer) on 64-bit
PIPE_MAX_SIZE = Path("/proc/sys/fs/pipe-max-size")
LOCK_FILE = "/run/paftrace-provoke.lock"
CGROUP_PREFIX = "paftrace-provoke-"
# Shared with the bench (scripts/bench-data/workloads.py), which raises it too.
PIPE_MAX = SharedSysctl(PIPE_MAX_SIZE, "pipe-max-size")
CGROUP_V1_MEMORY = Path("/sys/fs/cgroup/memory")
CGROUP_V2_ROOTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))
# Below order 4 (PAGE_ALLOC_COSTLY_ORDER is 3) a failed memcg charge is retried
# and ends in the memcg OOM killer instead of failing (seen on 6.18: order 3 hangs).
MIN_ORDER = 4
MAX_ORDER = 10


class ProvokeError(RuntimeError):
    pass


@dataclass
class ProvokeResult:
    order: int
    requested: int
    failures: int        # fcntl calls that failed with ENOMEM (one failed allocation each)
    grown: int           # fcntl calls that succeeded (charged from the stock or reclaim)
    pipe_size: int
    cgroup: str
    worker_pid: int
    seconds: float


def pipe_size_for_order(order: int, page_size: int | None = None) -> int:
    """Pipe size in bytes whose ring allocation has exactly this order."""
    if not MIN_ORDER <= order <= MAX_ORDER:
        raise ProvokeError(f"order {order} cannot be provoked with pipe rings: "
                           f"use {MIN_ORDER}..{MAX_ORDER}")
    page = page_size or os.sysconf("SC_PAGE_SIZE")
    slots = 1
    while True:
        ring = slots * PIPE_BUFFER_SIZE
        if ring > 2 * page and (ring - 1).bit_length() - (page - 1).bit_length() == order:
            return slots * page
        slots *= 2
        if slots > 1 << 24:
            raise ProvokeError(f"no pipe size gives order {order}")


class MemoryCgroup:
    """A cgroup we created and will remove; v1 or v2 file names."""

    def __init__(self, name: str):
        if (CGROUP_V1_MEMORY / "memory.limit_in_bytes").exists():
            self.version = 1
            self.path = CGROUP_V1_MEMORY / name
        else:
            root = next((r for r in CGROUP_V2_ROOTS
                         if "memory" in _read(r / "cgroup.subtree_control").split()), None)
            if root is None:
                raise ProvokeError("no memory cgroup controller: need cgroup v1 "
                                   "/sys/fs/cgroup/memory or cgroup v2 with memory enabled")
            self.version = 2
            self.path = root / name
        self.path.mkdir()

    def _write(self, v1: str, v2: str, value: str) -> None:
        (self.path / (v1 if self.version == 1 else v2)).write_text(value)

    def set_limit(self, limit: int) -> None:
        self._write("memory.limit_in_bytes", "memory.max", str(limit))

    def no_swap(self) -> None:
        # No swap accounting: without swap there is nothing to swap anyway.
        with contextlib.suppress(OSError):
            self._write("memory.swappiness", "memory.swap.max", "0")

    def usage(self) -> int:
        return int(_read(self.path / ("memory.usage_in_bytes" if self.version == 1
                                      else "memory.current")))

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def remove(self) -> None:
        if not remove_cgroup(self.path):
            raise ProvokeError(f"could not remove {self.path}")


def cgroup_roots() -> list[Path]:
    return [CGROUP_V1_MEMORY, *CGROUP_V2_ROOTS]


def clean_up_after_killed_runs() -> list[str]:
    """Cgroups whose provoke is gone; fs.pipe-max-size if no live run holds it."""
    return remove_stale_cgroups(cgroup_roots(), CGROUP_PREFIX) + PIPE_MAX.recover()


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def provoke(count: int = 10, order: int = 4, fill_mib: int = 16, timeout: float = 60.0,
            comm: str | None = None, hold: float = 0.5,
            name: str | None = None) -> ProvokeResult:
    """Produce `count` failed allocations of `order`; returns what happened.

    `hold`: seconds to keep the worker and its cgroup at the limit afterwards, so an
    observer reading the cgroup's state from user space (paftrace's cause) still finds it.
    `name`: the cgroup's name (default paftrace-provoke-PID), e.g. for a --cgroup filter."""
    if os.geteuid() != 0:
        raise ProvokeError("provoking failures needs root (memory cgroup, fs.pipe-max-size)")
    pipe_size = pipe_size_for_order(order)
    raise_fd_limit(count)
    block = (1 << order) * os.sysconf("SC_PAGE_SIZE")
    t0 = time.monotonic()
    # Concurrent runs would restore each other's fs.pipe-max-size: one at a time.
    with signals_interrupt(), open(LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for line in remove_stale_cgroups(cgroup_roots(), CGROUP_PREFIX):
            print(f"provoke: {line}", file=sys.stderr, flush=True)
        with PIPE_MAX.held(pipe_size) as said:
            for line in said:
                print(f"provoke: {line}", file=sys.stderr, flush=True)
            return _provoke(count, order, fill_mib, timeout, comm, pipe_size, block, t0,
                            hold, name)


def _provoke(count: int, order: int, fill_mib: int, timeout: float, comm: str | None,
             pipe_size: int, block: int, t0: float, hold: float,
             name: str | None) -> ProvokeResult:
    cgroup = MemoryCgroup(name or f"{CGROUP_PREFIX}{os.getpid()}")
    worker: subprocess.Popen[str] | None = None
    try:
        cgroup.no_swap()
        cgroup.set_limit(headroom(fill_mib, count))
        worker = subprocess.Popen(
            [sys.executable, "-m", "paftrace.workloads.provoke", "--worker", str(pipe_size),
             str(count), str(fill_mib), comm or ""],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=python_env(),
        )
        assert worker.stdin and worker.stdout
        cgroup.add(worker.pid)
        _send(worker, "fill")
        _expect(worker, "ready", timeout)
        # Less than one block of this order above usage: the next charge of
        # that size cannot fit, smaller ones (the worker's own bookkeeping) can.
        cgroup.set_limit(cgroup.usage() + block // 2)
        _send(worker, "go")
        line = _expect(worker, "done", timeout)
        time.sleep(hold)
        cgroup.set_limit(headroom(fill_mib, count))
        _, failures, grown = line.split()
        return ProvokeResult(order=order, requested=count, failures=int(failures),
                             grown=int(grown), pipe_size=pipe_size, cgroup=str(cgroup.path),
                             worker_pid=worker.pid, seconds=round(time.monotonic() - t0, 3))
    finally:
        if worker:
            worker.kill()
            worker.wait()
        cgroup.remove()


def _send(worker: subprocess.Popen[str], word: str) -> None:
    assert worker.stdin
    worker.stdin.write(word + "\n")
    worker.stdin.flush()


def _expect(worker: subprocess.Popen[str], word: str, timeout: float) -> str:
    line = read_line(worker, timeout)
    if line is not None and line.startswith("error "):
        raise ProvokeError(line[len("error "):])  # the worker's own words
    if line is None or not line.startswith(word):
        raise ProvokeError(f"provoke worker did not say {word!r} (exit status "
                           f"{worker.poll()}); was it killed by the memory cgroup?")
    return line


MAX_PIPES = 256


def pipes_for(count: int) -> int:
    """Pipes the worker opens (before the limit is set, so their own memory is charged
    then): one per grow that succeeds from the per-CPU charge stock before the failures
    begin (3-4 on 6.18), and plenty of margin; failures reuse their pipe."""
    return min(count * 4 + 64, MAX_PIPES)


def fds_needed(count: int) -> int:
    return 2 * pipes_for(count) + 64  # two ends per pipe; stdio, the interpreter's own


def headroom(fill_mib: int, count: int) -> int:
    """The cgroup's limit while the worker sets up: its memory, and each pipe's
    accounted inode, files and ring (about 2.5 KiB; 4 KiB counted)."""
    return ((fill_mib + 32) << 20) + pipes_for(count) * 4096


def raise_fd_limit(count: int) -> None:
    """The worker inherits our RLIMIT_NOFILE: raise it to what -n needs, as far as the
    kernel lets root (fs.nr_open); say so plainly when that is not enough."""
    needed = fds_needed(count)
    if raise_open_files(needed) < needed:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        raise ProvokeError(f"-n {count} needs {needed:,} open files ({pipes_for(count):,} "
                           f"pipes), but the open-file limit is {soft:,} (hard {hard:,}) and "
                           "cannot be raised: raise it (ulimit -n) and run again")


def _worker(pipe_size: int, count: int, fill_mib: int, comm: str) -> None:
    """Runs inside the cgroup. Prints nothing while at the limit."""
    if comm:  # the task name the failures are reported under
        Path("/proc/self/comm").write_bytes(comm.encode()[:15])
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one CPU: one charge stock
    _await("fill")
    filler = bytearray(fill_mib << 20)
    for i in range(0, len(filler), 4096):
        filler[i] = 1
    try:
        pipes = [os.pipe() for _ in range(pipes_for(count))]
    except OSError as exc:  # EMFILE/ENFILE: say it, so the parent does not guess
        print(f"error cannot open {pipes_for(count):,} pipes for -n {count}: {exc.strerror} "
              f"(open-file limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]:,})",
              flush=True)
        return
    results = [0, 0]
    print("ready", flush=True)
    _await("go")
    # A pipe whose grow failed is still small: growing it again is another allocation
    # that fails the same way, so it is tried again; a pipe that grew is kept open (its
    # charge holds the limit) and the next one is tried. So -n 5000 needs a few pipes
    # more than there are grows (3-4 here), not 4 per failure (EMFILE at 1024 fds).
    pending = iter(pipes)
    read_end = next(pending, (None, None))[0]
    while read_end is not None and results[0] < count:
        try:
            fcntl.fcntl(read_end, F_SETPIPE_SZ, pipe_size)
            results[1] += 1
            read_end = next(pending, (None, None))[0]
        except OSError as exc:
            if exc.errno != errno.ENOMEM:
                raise
            results[0] += 1
    print(f"done {results[0]} {results[1]}", flush=True)
    sys.stdin.readline()  # keep pipes (and charges) until the parent is done


def _await(word: str) -> None:
    """The parent's next word; if it is gone (stdin closed), end quietly: it was
    interrupted, and its cleanup (or the next run's) removes our cgroup."""
    line = sys.stdin.readline()
    if line.strip() != word:
        raise SystemExit(0 if not line else f"provoke worker: expected {word!r}, got {line!r}")


def _cgroup_name(value: str | None) -> str | None:
    if value is not None and (value.startswith("/") or any(
            part in ("", ".", "..") for part in value.split("/"))):
        raise click.BadParameter("a relative path without '.', '..' or empty parts")
    return value


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-n", "--count", type=click.IntRange(min=1), default=10, show_default=True,
              help="Failures to produce.")
@click.option("-o", "--order", type=int, default=4, show_default=True,
              help=f"Allocation order ({MIN_ORDER}-{MAX_ORDER}; lower orders would OOM-kill).")
@click.option("--fill-mib", type=click.IntRange(min=1), default=16, show_default=True,
              help="Memory the worker touches (MiB).")
@click.option("--timeout", type=float, default=60.0, show_default=True,
              help="Seconds to wait for the worker at each step.")
@click.option("--comm", help="Task name of the failing worker (tests use it).")
@click.option("--cleanup", is_flag=True,
              help="Only undo what killed runs left (their cgroups, fs.pipe-max-size).")
@click.option("--hold", type=click.FloatRange(min=0), default=0.5, show_default=True,
              metavar="SECONDS",
              help="Keep the worker and its cgroup at the limit this long after the failures, "
                   "so observers reading its state from user space (paftrace names the cause "
                   "and the cgroup) still find it.")
@click.option("--name", callback=lambda ctx, param, value: _cgroup_name(value),
              help="Cgroup to create, relative to the memory hierarchy (default "
                   "paftrace-provoke-PID); its parent must exist, itself not.")
def cli(count: int, order: int, fill_mib: int, timeout: float, comm: str | None,
        cleanup: bool, hold: float, name: str | None) -> None:
    """Produce real page allocation failures of a chosen order, safely (root).

    Prints one JSON object: the failures produced, the worker's pid, the cgroup.
    Exit status 1 when fewer failures than asked for were produced.
    """
    if cleanup:
        sys.exit(clean_up())
    try:
        result = provoke(count, order, fill_mib, timeout, comm, hold, name)
    except (ProvokeError, OSError) as exc:
        print(f"provoke: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("provoke: interrupted; cleaned up", file=sys.stderr)
        sys.exit(130)
    print(json.dumps(asdict(result)))
    sys.exit(0 if result.failures == result.requested else 1)


def main(argv: list[str]) -> int:
    """`--worker` is the cgroup side of provoke() (an internal protocol, not a CLI)."""
    if argv and argv[0] == "--worker":
        _worker(int(argv[1]), int(argv[2]), int(argv[3]), argv[4] if len(argv) > 4 else "")
        return 0
    cli.main(args=argv, prog_name="provoke")
    return 0


def clean_up() -> int:
    """--cleanup: what killed runs left, undone."""
    if os.geteuid() != 0:
        print("provoke: --cleanup needs root", file=sys.stderr)
        return 1
    done = clean_up_after_killed_runs()
    for line in done:
        print(f"provoke: {line}", file=sys.stderr)
    print(json.dumps({"cleaned": done}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
