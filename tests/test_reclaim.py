"""Reclaim/compaction tracking: planning, stall bookkeeping, and the real BPF program."""

from __future__ import annotations

import time
from pathlib import Path

from paftrace.planner import plan_reclaim
from paftrace.reclaim import (
    COMPACT_RESULTS,
    RawStall,
    Stall,
    StallLog,
    decode_stall,
    status_names,
)
from paftrace.tracefs import TraceFs, TracepointFormat, parse_format
from tests.helpers import needs_root

LIVE = TraceFs()


class FakeKernel:
    """Only the tracepoints given, with the formats given (KernelInfo subset)."""

    def __init__(self, formats: dict[str, TracepointFormat]):
        self.formats = formats

    def has_event(self, category: str, event: str) -> bool:
        return f"{category}:{event}" in self.formats

    def read_format(self, category: str, event: str) -> TracepointFormat | None:
        return self.formats.get(f"{category}:{event}")


def fmt(*fields: str) -> TracepointFormat:
    text = "".join(f"\tfield:{f};\toffset:{8 + 8 * i};\tsize:8;\tsigned:0;\n"
                   for i, f in enumerate(fields))
    return parse_format(f"name: x\nformat:\n{text}\nprint fmt: \"\"")


def test_plan_for_a_4_4_like_kernel() -> None:
    kernel = FakeKernel({
        "vmscan:mm_vmscan_direct_reclaim_begin": fmt("int order", "gfp_t gfp_flags"),
        "compaction:mm_compaction_try_to_compact_pages": fmt("int order", "gfp_t gfp_mask",
                                                             "enum migrate_mode mode"),
        "kmem:mm_page_alloc": fmt("unsigned long pfn", "unsigned int order"),
        "kmem:mm_page_alloc_extfrag": fmt("unsigned long pfn", "int fallback_order"),
    })
    plan = plan_reclaim(kernel, pageblock_order=10)
    assert "-DPAGEBLOCK_ORDER=10" in plan.cflags
    assert {"-DHAVE_DIRECT_RECLAIM", "-DHAVE_TRY_COMPACT", "-DHAVE_EXTFRAG"} <= set(plan.cflags)
    assert "-DHAVE_COMPACT_PRIO" not in plan.cflags  # `mode` before 4.14
    assert "-DHAVE_EXTFRAG_OWNERSHIP" not in plan.cflags
    assert "compaction:mm_compaction_kcompactd_wake" in plan.missing
    assert "vmscan:mm_vmscan_direct_reclaim_end" in plan.events


def test_plan_drops_compaction_stalls_without_alloc_result() -> None:
    kernel = FakeKernel({"compaction:mm_compaction_try_to_compact_pages":
                         fmt("int order", "unsigned long gfp_mask", "int prio")})
    plan = plan_reclaim(kernel)
    assert "-DHAVE_TRY_COMPACT" not in plan.cflags and plan.events == ()
    assert "kmem:mm_page_alloc" in plan.missing


def test_status_names_fall_back_to_the_table() -> None:
    assert status_names("no symbols here") == COMPACT_RESULTS


@needs_root
def test_status_names_from_the_running_kernel() -> None:
    end = LIVE.read_format("compaction", "mm_compaction_end")
    assert end is not None, "compaction:mm_compaction_end is in every supported kernel"
    names = status_names(end.print_fmt)
    assert names[8] == "success" and names[5] == "complete"


def stall(kind: str, tid: int, start_ms: float, end_ms: float, **kw: object) -> Stall:
    return Stall(kind=kind, pid=tid, tid=tid, comm="t", start_ns=int(start_ms * 1e6),
                 end_ns=int(end_ms * 1e6), order=4, gfp=0xcc0, **kw)  # type: ignore[arg-type]


def test_stall_log_window_and_line() -> None:
    log = StallLog()
    log.add(stall("direct_compaction", 7, 0, 10, outcome="then_reclaim",
                  compaction_status="complete"))
    log.add(stall("direct_reclaim", 7, 10, 13, outcome="done"))
    log.add(stall("direct_compaction", 7, 13, 43, outcome="no_page",
                  compaction_status="no_suitable_page", priority="sync_full"))
    log.add(stall("direct_reclaim", 8, 0, 500, outcome="done"))  # another task
    log.add(stall("direct_compaction", 7, 5000, 5001, outcome="page"))  # after the failure
    got = log.stalls_before(7, int(43e6))
    assert [s.start_ns for s in got] == [0, int(10e6), int(13e6)]
    info = log.stall_info(7, int(43e6))
    assert info["direct_compaction"]["count"] == 2
    assert info["direct_compaction"]["total_ms"] == 40.0
    assert info["direct_compaction"]["outcome"] == "no_page"
    assert info["direct_reclaim"] == {"count": 1, "total_ms": 3.0}
    assert StallLog.stall_line(info) == ("after 40.0 ms direct compaction (2x, "
                                         "no_page/no_suitable_page), 3.0 ms direct reclaim (1x)")
    assert StallLog.stall_line(log.stall_info(9, 1)) == "no direct reclaim/compaction stall"
    assert log.totals["direct_compaction"]["outcomes"] == {"then_reclaim": 1, "no_page": 1,
                                                           "page": 1}


def test_decode_stall_record() -> None:
    raw = RawStall(start_ns=100, end_ns=40_000_100, gfp=0x140cca, order=9, prio=0,
                   last_status=3, zones=2, kind=1, end=1, comm=b"stress")
    s = decode_stall(raw, COMPACT_RESULTS)
    assert (s.kind, s.outcome, s.compaction_status, s.priority) == (
        "direct_compaction", "no_page", "no_suitable_page", "sync_full")
    rec = s.to_record()
    assert rec["duration_ms"] == 40.0 and rec["gfp"] == "0x140cca" and rec["ts_ns"] == 40_000_100


@needs_root
def test_tracker_sees_real_compaction_runs() -> None:
    from paftrace.options import TraceOptions  # noqa: PLC0415
    from paftrace.session import TraceSession  # noqa: PLC0415

    session = TraceSession(TraceOptions(order_min=4, order_max=4))
    tracker = session.reclaim
    try:
        session.start(lambda raw: None, lambda stall: None)
        assert tracker is not None
        assert "compaction:mm_compaction_end" in tracker.plan.events
        assert "tracepoint:compaction:mm_compaction_end" in session.plan.probes()
        Path("/proc/sys/vm/compact_memory").write_text("1")  # compacts every zone, now
        time.sleep(0.5)
        session.poll(100)
        summary = tracker.summary()
    finally:
        session.close()
    runs = summary["compaction_runs"]["background"]
    assert sum(runs.values()) >= 1, summary  # one mm_compaction_end per zone compacted
    assert set(runs) <= set(COMPACT_RESULTS.values())
    assert summary["lost_stalls"] == 0 and summary["missing"] == []


def test_per_process_stall_time_sums_the_per_cpu_copies() -> None:
    """Threads of one process stall on several CPUs at once: each CPU keeps its own
    copy (BPF_PERCPU_HASH, paftrace.h proc_stall), user space adds them up."""
    from paftrace import contract  # noqa: PLC0415
    from paftrace.reclaim import process_stalls  # noqa: PLC0415

    ProcStall = contract.struct("proc_stall")
    per_cpu = [ProcStall(reclaim_ns=2_000_000, reclaim_n=1, max_ns=2_000_000, comm=b"java"),
               ProcStall(),  # a CPU where this process never stalled
               ProcStall(compact_ns=5_000_000, compact_n=2, max_ns=4_000_000, comm=b"java")]
    assert process_stalls(42, per_cpu) == {
        "pid": 42, "comm": "java", "reclaim_ms": 2.0, "reclaim_n": 1, "compact_ms": 5.0,
        "compact_n": 2, "max_ms": 4.0}
