"""What the tracer needs from a tracing session: the seam between kernel and decoding.

`paftrace.loader.TraceSession` is the real one (a BPF program loaded into this
kernel); `paftrace.replay.ReplaySession` replays raw records captured from real
kernels, so decoding, aggregation, the JSON contract and every renderer run
without root. Both deliver records through `paftrace.delivery.GuardedHandler`,
so an exception raised while handling a record surfaces from `poll()`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from paftrace.gfp import GfpTable
from paftrace.planner import ProbePlan
from paftrace.reclaim import Stall
from paftrace.records import RawAllocKey, RawFailure

FailureHandler = Callable[[RawFailure], None]
StallHandler = Callable[[Stall], None]
Allocations = tuple[list[tuple[RawAllocKey, int]], list[tuple[RawAllocKey, int, int]]]


class Session(Protocol):
    plan: ProbePlan
    gfp_table: GfpTable
    kernel_release: str
    startup_s: float

    def start(self, on_failure: FailureHandler, on_stall: StallHandler) -> None:
        """Open the record transports; records are handed to these from `poll()`."""

    def poll(self, timeout_ms: int = 100) -> None:
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

    def sample_every(self) -> int: ...

    def allocations(self) -> Allocations:
        """--all: (exact counts by key, sampled stack counts by key and stack id)."""

    def stall_info(self, tid: int, ts_ns: int) -> dict | None:
        """What task `tid` went through before `ts_ns`; None without reclaim tracing."""

    def reclaim_summary(self) -> dict | None: ...

    def close(self) -> None: ...
