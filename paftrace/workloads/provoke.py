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

Everything is undone at the end, also on SIGINT/SIGTERM: worker killed, cgroup
removed, fs.pipe-max-size restored.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from paftrace.workloads.childproc import python_env, read_line

F_SETPIPE_SZ = 1031
PIPE_BUFFER_SIZE = 40  # sizeof(struct pipe_buffer) on 64-bit
PIPE_MAX_SIZE = Path("/proc/sys/fs/pipe-max-size")
LOCK_FILE = "/run/paftrace-provoke.lock"
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
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)  # tasks still exiting
        raise ProvokeError(f"could not remove {self.path}")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def provoke(count: int = 10, order: int = 4, fill_mib: int = 16, timeout: float = 60.0,
            comm: str | None = None) -> ProvokeResult:
    """Produce `count` failed allocations of `order`; returns what happened."""
    if os.geteuid() != 0:
        raise ProvokeError("provoking failures needs root (memory cgroup, fs.pipe-max-size)")
    pipe_size = pipe_size_for_order(order)
    block = (1 << order) * os.sysconf("SC_PAGE_SIZE")
    t0 = time.monotonic()
    # Concurrent runs would restore each other's fs.pipe-max-size: one at a time.
    lock = open(LOCK_FILE, "w")  # noqa: SIM115 - held until the end of this function
    fcntl.flock(lock, fcntl.LOCK_EX)
    old_handler = signal.signal(signal.SIGTERM, _terminate)
    old_max = PIPE_MAX_SIZE.read_text().strip()
    cgroup = MemoryCgroup(f"paftrace-provoke-{os.getpid()}")
    worker: subprocess.Popen[str] | None = None
    try:
        if int(old_max) < pipe_size:
            PIPE_MAX_SIZE.write_text(str(pipe_size))
        cgroup.no_swap()
        cgroup.set_limit((fill_mib + 32) << 20)
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
        cgroup.set_limit((fill_mib + 32) << 20)
        _, failures, grown = line.split()
        return ProvokeResult(order=order, requested=count, failures=int(failures),
                             grown=int(grown), pipe_size=pipe_size, cgroup=str(cgroup.path),
                             worker_pid=worker.pid, seconds=round(time.monotonic() - t0, 3))
    finally:
        if worker:
            worker.kill()
            worker.wait()
        cgroup.remove()
        PIPE_MAX_SIZE.write_text(old_max)
        signal.signal(signal.SIGTERM, old_handler)
        lock.close()


def _send(worker: subprocess.Popen[str], word: str) -> None:
    assert worker.stdin
    worker.stdin.write(word + "\n")
    worker.stdin.flush()


def _expect(worker: subprocess.Popen[str], word: str, timeout: float) -> str:
    line = read_line(worker, timeout, word)
    if line is None:
        raise ProvokeError(f"provoke worker did not say {word!r} (exit status "
                           f"{worker.poll()}); was it killed by the memory cgroup?")
    return line


def _worker(pipe_size: int, count: int, fill_mib: int, comm: str) -> None:
    """Runs inside the cgroup. Prints nothing while at the limit."""
    if comm:  # the task name the failures are reported under
        Path("/proc/self/comm").write_bytes(comm.encode()[:15])
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one CPU: one charge stock
    assert sys.stdin.readline().strip() == "fill"
    filler = bytearray(fill_mib << 20)
    for i in range(0, len(filler), 4096):
        filler[i] = 1
    pipes = [os.pipe() for _ in range(count * 4 + 64)]
    results = [0, 0]
    print("ready", flush=True)
    assert sys.stdin.readline().strip() == "go"
    for read_end, _ in pipes:
        if results[0] >= count:
            break
        try:
            fcntl.fcntl(read_end, F_SETPIPE_SZ, pipe_size)
            results[1] += 1
        except OSError as exc:
            if exc.errno != errno.ENOMEM:
                raise
            results[0] += 1
    print(f"done {results[0]} {results[1]}", flush=True)
    sys.stdin.readline()  # keep pipes (and charges) until the parent is done


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--worker":
        _worker(int(argv[1]), int(argv[2]), int(argv[3]), argv[4] if len(argv) > 4 else "")
        return 0
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="provoke", description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--count", type=int, default=10, help="failures to produce")
    parser.add_argument("-o", "--order", type=int, default=4,
                        help=f"allocation order ({MIN_ORDER}-{MAX_ORDER})")
    parser.add_argument("--fill-mib", type=int, default=16, help="memory the worker touches")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--comm", help="task name of the failing worker (tests use it)")
    args = parser.parse_args(argv)
    try:
        result = provoke(args.count, args.order, args.fill_mib, args.timeout, args.comm)
    except (ProvokeError, OSError) as exc:
        print(f"provoke: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("provoke: interrupted; cleaned up", file=sys.stderr)
        return 130
    print(json.dumps(asdict(result)))
    return 0 if result.failures == result.requested else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
