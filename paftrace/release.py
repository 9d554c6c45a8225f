"""Let go of the probes without making the user wait for the kernel.

Closing a tracepoint's perf event waits for an RCU grace period
(kernel/trace/trace_event_perf.c: perf_trace_event_unreg calls
tracepoint_synchronize_unregister(), v4.19 to v6.18), and does so holding event_mutex,
so closing ~25 of them took 2.2-2.7 s after the summary, one after the other; closing
them from threads at once only halves that (measured on 6.18: 20 tracepoints, 1.3 s
one by one, 0.65 s from 20 threads).

So the user does not wait: a small helper process inherits the perf event fds, the
tracer closes its own copies (instant: the helper still holds each file) and exits, and
the helper closes them concurrently and exits in turn, about a second later. The
programs stay attached during that second, counting into maps nobody reads; if the
helper cannot start, the fds are closed here, concurrently, as a fallback.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from typing import Any

# perf_event_open() with the kprobe PMU (Linux 4.17+) leaves nothing in tracefs
# kprobe_events; older kernels' kprobes are tracefs events whose removal must follow
# the close, so only PMU kprobes are handed over.
KPROBE_PMU = "/sys/bus/event_source/devices/kprobe/type"

# Run by the helper: close every inherited fd, all at once, then exit.
_HELPER = ("import os,sys,threading\n"
           "ts=[threading.Thread(target=os.close,args=(int(a),)) for a in sys.argv[1:]]\n"
           "[t.start() for t in ts]\n[t.join() for t in ts]\n")


def close_concurrently(fds: list[int]) -> None:
    """Close `fds` from one thread each, so the kernel's waits overlap where they can."""
    threads = [threading.Thread(target=_close_quietly, args=(fd,)) for fd in fds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


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
    close_concurrently(fds)  # instant when the helper holds them, else the real release
    # bcc must not close them again (EBADF would be "Failed to detach BPF from tracepoint").
    bpf.tracepoint_fds.clear()
    for ev_name in kprobes:
        bcc.lib.bpf_detach_kprobe(ev_name)  # nothing to remove for a PMU kprobe
        bcc._num_open_probes -= len(bpf.kprobe_fds.pop(ev_name))  # noqa: SLF001
    bpf.cleanup()  # buffers, the rest of the probes, program and map fds
    return helper
