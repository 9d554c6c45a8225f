"""What the tracer needs from a tracing session: the seam between kernel and decoding.

`TraceSession` below is the real one (a BPF program loaded into this
kernel); `paftrace.replay.ReplaySession` replays raw records captured from real
kernels, so decoding, aggregation, the JSON contract and every renderer run
without root. Both deliver records through `paftrace.delivery.GuardedHandler`,
so an exception raised while handling a record surfaces from `poll()`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from paftrace.delivery import GuardedHandler, Tap, raise_all_pending
from paftrace.fragmenters import Fragmentation, print_symbolic
from paftrace.gfp import GfpTable
from paftrace.options import TraceOptions
from paftrace.pacing import POLL_MS
from paftrace.planner import ProbePlan
from paftrace.reclaim import Stall
from paftrace.records import RawAllocKey, RawFailure, SiteKey
from paftrace.stacks import without_tracing_frames

FailureHandler = Callable[[RawFailure], None]
StallHandler = Callable[[Stall], None]
Allocations = tuple[list[tuple[RawAllocKey, int]], list[tuple[RawAllocKey, int, int]]]


class Session(Protocol):
    plan: ProbePlan
    gfp_table: GfpTable
    kernel_release: str
    startup_s: float
    refused: list[str]           # planned probes the kernel refused
    printed_kprobe: str | None   # the printed-warning marker that attached
    memcg_kprobe: str | None     # the memcg charge kretprobe that attached

    def attached(self) -> list[str]:
        """Probes attached now, in ProbePlan.probes() format."""

    def start(self, on_failure: FailureHandler, on_stall: StallHandler) -> None:
        """Open the record transports; records are handed to these from `poll()`."""

    def poll(self, timeout_ms: int = POLL_MS) -> None:
        """Deliver records; re-raises an exception a handler raised."""

    def drain(self) -> None:
        """Deliver what is already buffered (at exit)."""

    def order_counts(self) -> dict[int, tuple[int, int]]:
        """{order: (attempts, failures)} counted in the kernel."""

    def stats(self) -> dict[str, int]:
        """In-kernel STAT_* counters by name, plus `perf_lost` and `unhandled`."""

    def failures_by_context(self) -> list[int]: ...

    def stack(self, stack_id: int) -> list[str]:
        """Symbolized kernel frames of a stack id, innermost first; [] if unknown."""

    def coalesced_sites(self) -> list[tuple[SiteKey, int, RawFailure]]:
        """Call sites whose failures the kernel counted instead of sending: (site, count
        so far, the latest of those failures)."""

    def sample_every(self) -> int: ...

    def allocations(self) -> Allocations:
        """--all: (exact counts by key, sampled stack counts by key and stack id)."""

    def stall_info(self, tid: int, ts_ns: int) -> dict | None:
        """What task `tid` went through before `ts_ns`; None without reclaim tracing."""

    def reclaim_summary(self) -> dict | None: ...

    def fragmentation(self) -> Fragmentation | None:
        """Fragmenting fallbacks and compaction verdicts; None without reclaim tracing."""
    def filter_cgroups(self, ids: set[int]) -> None:
        """--cgroup: let these cgroup2 ids through the kernel's filter too (new
        descendants); nothing when the filter runs in user space only."""

    def close(self) -> None: ...


class TraceSession:
    """The real session: a program loaded into this kernel (paftrace.loader), its
    maps (paftrace.maps), kernel symbols (paftrace.symbols) and record transports."""

    def __init__(self, options: TraceOptions, tap: Tap | None = None):
        from paftrace.loader import kernel_cgroup_filter, load  # noqa: PLC0415 - bcc stays out
        from paftrace.maps import MapReader, ReclaimTracker  # noqa: PLC0415
        from paftrace.reclaim import statuses_for  # noqa: PLC0415
        from paftrace.symbols import BccKernelSymbols, KernelSymbols  # noqa: PLC0415

        self.options = options
        prepared, self.program, self.startup_s = load(options)
        self.plan = prepared.plan
        self.gfp_table = prepared.gfp_table
        self.kernel_release = prepared.kernel.release
        bpf = self.program.bpf
        self.maps = MapReader(bpf)
        self.symbols = KernelSymbols(lambda: BccKernelSymbols(self.program.bcc))
        self.reclaim = (ReclaimTracker(bpf, self.plan.reclaim, statuses_for(prepared.kernel),
                                       tap) if self.plan.reclaim is not None else None)
        self.statuses = self.reclaim.statuses if self.reclaim else {}
        suitable = prepared.kernel.read_format("compaction", "mm_compaction_suitable")
        self.zone_names = print_symbolic(suitable.print_fmt, "idx") if suitable else {}
        self.tap = tap
        self.failure_handler: GuardedHandler | None = None
        self.perf_lost = 0
        if options.trace_all:
            self.maps.set_sample_every(options.sample_every)
        self.kernel_cgroup_filter = kernel_cgroup_filter(options, self.plan)
        self.filter_cgroups(set(options.cgroup_ids))

    @property
    def refused(self) -> list[str]:
        return self.program.refused

    def attached(self) -> list[str]:
        return self.program.attached()

    @property
    def printed_kprobe(self) -> str | None:
        return self.program.printed_kprobe

    @property
    def memcg_kprobe(self) -> str | None:
        return self.program.memcg_kprobe

    def start(self, on_failure: FailureHandler, on_stall: StallHandler) -> None:
        # Off the first failure's path, beside the polling loop (see warm_up).
        threading.Thread(target=self.symbols.warm_up, name="paftrace-symbols",
                         daemon=True).start()
        table = self.program.bpf["failures"]
        self.failure_handler = GuardedHandler(on_failure, RawFailure, self.tap)
        if self.reclaim is not None:
            self.reclaim.start(on_stall)
        if self.plan.ringbuf:
            table.open_ring_buffer(self.failure_handler.callback)
        else:
            table.open_perf_buffer(self.failure_handler.callback,
                                   page_cnt=self.options.perfbuf_pages,
                                   lost_cb=self._count_perf_lost)

    def _count_perf_lost(self, lost: int) -> None:
        # Without a callback libbcc prints "Possibly lost N samples" over the view.
        self.perf_lost += lost

    def _handlers(self) -> list[GuardedHandler]:
        handlers = [self.failure_handler, self.reclaim.handler if self.reclaim else None]
        return [h for h in handlers if h is not None]

    def poll(self, timeout_ms: int = POLL_MS) -> None:
        """Wait up to `timeout_ms`, then take every record there is. The program
        wakes us only for a CPU's first record after a quiet spell and when the ring
        buffer fills up (pagealloc.c, ringbuf_wakeup_flag), so most records are
        taken here after the wait, in one batch, not one wakeup each."""
        bpf = self.program.bpf
        try:
            if self.plan.ringbuf:
                bpf.ring_buffer_poll(timeout=timeout_ms)
                # A handler's error ends the poll at once (delivery.py), before the
                # consume below would count the next record as not shown.
                raise_all_pending(self._handlers())
                # Stalls first: a failure's own stall was written before it.
                self._poll_stalls()
                bpf.ring_buffer_consume()
            else:
                # perf_buffer_poll serves every perf buffer of the object (reclaim's too).
                bpf.perf_buffer_poll(timeout=timeout_ms)
        finally:
            raise_all_pending(self._handlers())

    def _poll_stalls(self) -> None:
        if self.reclaim is not None:
            self.reclaim.poll(0)

    def drain(self) -> None:
        bpf = self.program.bpf
        try:
            if self.plan.ringbuf:
                self._poll_stalls()
                bpf.ring_buffer_consume()
            else:
                bpf.perf_buffer_poll(timeout=0)
        finally:
            raise_all_pending(self._handlers())

    def order_counts(self) -> dict[int, tuple[int, int]]:
        return self.maps.order_counts()

    def stats(self) -> dict[str, int]:
        out = self.maps.stats()
        out["perf_lost"] = self.perf_lost
        # Handling raised (a renderer bug, a closed pipe): the record was not shown.
        out["unhandled"] = self.failure_handler.failed if self.failure_handler else 0
        return out

    def failures_by_context(self) -> list[int]:
        return self.maps.failures_by_context()

    def stack(self, stack_id: int) -> list[str]:
        return without_tracing_frames(self.symbols.frames(self.maps.stack_addresses(stack_id)))

    def coalesced_sites(self) -> list[tuple[SiteKey, int, RawFailure]]:
        return self.maps.coalesced_sites()

    def sample_every(self) -> int:
        return self.maps.sample_every()

    def allocations(self) -> Allocations:
        return self.maps.allocations()

    def stall_info(self, tid: int, ts_ns: int) -> dict | None:
        return self.reclaim.stall_info(tid, ts_ns) if self.reclaim is not None else None

    def reclaim_summary(self) -> dict | None:
        return self.reclaim.summary() if self.reclaim is not None else None

    def fragmentation(self) -> Fragmentation | None:
        if self.reclaim is None:
            return None
        return Fragmentation(extfrag=self.reclaim.extfrag(self.symbols.frames),
                             compaction=self.reclaim.compaction_zones(),
                             zone_names=self.zone_names, statuses=self.statuses)
    def filter_cgroups(self, ids: set[int]) -> None:
        if self.kernel_cgroup_filter and ids:
            self.maps.set_cgroup_filter(ids)

    def close(self) -> None:
        self.program.close()
