"""Let go of the probes without making the user wait for the kernel.

Closing a tracepoint's perf event waits for an RCU grace period
(kernel/trace/trace_event_perf.c: perf_trace_event_unreg calls
tracepoint_synchronize_unregister(), v4.19 to v6.18), and does so holding event_mutex,
so closing ~25 of them took 2.2-2.7 s after the summary, one after the other; closing
them from threads at once only halves that (measured on 6.18: 20 tracepoints, 1.3 s
one by one, 0.65 s from 20 threads).

So the user does not wait: a small helper process inherits the perf event fds, the
tracer closes its own copies (instant: the helper still holds each file) and exits, and
the helper closes them one after the other and exits in turn, a few seconds later. The
programs stay attached meanwhile, counting into maps nobody reads; if the helper cannot
start, the fds are closed here as a fallback.

One after the other, never concurrently: concurrent closes (each releases a perf event
and patches its tracepoint's static branch with int3, arch/x86/kernel/alternative.c)
panicked Debian's 6.12 kernels under QEMU's TCG in the kernel matrix ("Oops: int3" in
handle_softirqs, from perf_event_release_kernel, 6.12.95+deb12 and 6.12.118+deb13);
one at a time they have always been fine there.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from typing import Any

# perf_event_open() with the kprobe PMU (Linux 4.17+) leaves nothing in tracefs
# kprobe_events; older kernels' kprobes are tracefs events whose removal must follow
# the close, so only PMU kprobes are handed over.
KPROBE_PMU = "/sys/bus/event_source/devices/kprobe/type"

# Run by the helper: close every inherited fd, one after the other, then exit.
_HELPER = "import os,sys\nfor a in sys.argv[1:]: os.close(int(a))\n"


def close_all(fds: list[int]) -> None:
    """Close `fds` one after the other (see the module's docstring for why not at once)."""
    for fd in fds:
        _close_quietly(fd)


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):  # already closed: the probe is gone either way
        os.close(fd)


def hand_over(fds: list[int]) -> subprocess.Popen[bytes] | None:
    """Start the helper that closes `fds` after we are gone; None if it cannot start."""
    if not fds:
        return None
    try:
        return subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _HELPER, *map(str, fds)], pass_fds=fds,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)  # a second Ctrl-C on the terminal is not for it
    except OSError:
        return None


def perf_event_fds(bpf: Any) -> tuple[list[int], list[bytes]]:
    """The tracepoint and (PMU) kprobe perf event fds bcc holds, and those kprobes' names."""
    fds = list(bpf.tracepoint_fds.values())
    kprobes: list[bytes] = []
    if os.path.exists(KPROBE_PMU):
        for ev_name, by_fn in bpf.kprobe_fds.items():
            fds += list(by_fn.values())
            kprobes.append(ev_name)
    return fds, kprobes


def release(bpf: Any, bcc: Any) -> subprocess.Popen[bytes] | None:
    """Detach and free everything of a bcc.BPF object without waiting for the kernel's
    grace periods; returns the helper process that finishes the job, if one started."""
    fds, kprobes = perf_event_fds(bpf)
    helper = hand_over(fds)
    close_all(fds)  # instant when the helper holds them, else the real release
    # bcc must not close them again (EBADF would be "Failed to detach BPF from tracepoint").
    bpf.tracepoint_fds.clear()
    for ev_name in kprobes:
        bcc.lib.bpf_detach_kprobe(ev_name)  # nothing to remove for a PMU kprobe
        bcc._num_open_probes -= len(bpf.kprobe_fds.pop(ev_name))  # noqa: SLF001
    bpf.cleanup()  # buffers, the rest of the probes, program and map fds
    return helper
