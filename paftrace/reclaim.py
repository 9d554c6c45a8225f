"""Direct reclaim / compaction stalls and background activity, from tracepoints.

paftrace/bpf/reclaim.c is compiled by the loader together with pagealloc.c, with
only the tracepoints this kernel has (`plan_reclaim`, testable with a fake
KernelInfo). `ReclaimTracker` reads that object: it polls the per-stall records
into a `StallLog` and reads the in-kernel counters for `summary()`; the tracer
asks `stall_info(tid, ts_ns)` for each failure.
"""

from __future__ import annotations

import ctypes
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from paftrace.planner import KernelInfo

BPF_SOURCE = "reclaim.c"

# (category, event, macro); fields that vary are probed in plan_reclaim.
EVENTS = (
    ("vmscan", "mm_vmscan_direct_reclaim_begin", "HAVE_DIRECT_RECLAIM"),
    ("compaction", "mm_compaction_try_to_compact_pages", "HAVE_TRY_COMPACT"),
    ("compaction", "mm_compaction_end", "HAVE_COMPACTION_END"),
    ("compaction", "mm_compaction_migratepages", "HAVE_MIGRATEPAGES"),
    ("vmscan", "mm_vmscan_wakeup_kswapd", "HAVE_WAKEUP_KSWAPD"),
    ("vmscan", "mm_vmscan_kswapd_wake", "HAVE_KSWAPD_WAKE"),
    ("compaction", "mm_compaction_wakeup_kcompactd", "HAVE_WAKEUP_KCOMPACTD"),
    ("compaction", "mm_compaction_kcompactd_wake", "HAVE_KCOMPACTD_WAKE"),
    ("kmem", "mm_page_alloc_extfrag", "HAVE_EXTFRAG"),
)
# Mirrors of reclaim.c's constants.
COUNTERS = ("direct_compact", "direct_reclaim", "reclaimed", "wakeup_kswapd", "kswapd_wake",
            "wakeup_kcompactd", "kcompactd_wake", "extfrag", "extfrag_fragmenting",
            "extfrag_steal", "migrated", "migrate_failed", "lost_stalls")
STATUS_SLOTS = 16
KINDS = ("direct_reclaim", "direct_compaction")
ENDS = ("page", "no_page", "then_reclaim", "then_recompact")
# enum compact_priority (include/linux/compaction.h, 4.14 -> 6.18)
PRIORITIES = {0: "sync_full", 1: "sync_light", 2: "async"}
# enum compact_result, 4.14 -> 6.18 (KERNEL-FACTS §6.1); the running kernel's
# print fmt of mm_compaction_end wins when it names them.
COMPACT_RESULTS = {0: "not_suitable_zone", 1: "skipped", 2: "deferred", 3: "no_suitable_page",
                   4: "continue", 5: "complete", 6: "partial_skipped", 7: "contended",
                   8: "success"}


class RawStall(ctypes.Structure):
    _fields_ = [
        ("start_ns", ctypes.c_uint64), ("end_ns", ctypes.c_uint64), ("gfp", ctypes.c_uint64),
        ("nr_reclaimed", ctypes.c_uint64), ("pid", ctypes.c_uint32), ("tid", ctypes.c_uint32),
        ("order", ctypes.c_uint32), ("prio", ctypes.c_int32), ("last_status", ctypes.c_int32),
        ("zones", ctypes.c_uint32), ("kind", ctypes.c_uint8), ("end", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 6), ("comm", ctypes.c_char * 16),
    ]


@dataclass
class ReclaimPlan:
    cflags: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)   # attached, "category:event"
    missing: list[str] = field(default_factory=list)  # absent on this kernel


def plan_reclaim(kernel: KernelInfo, pageblock_order: int = 9) -> ReclaimPlan:
    plan = ReclaimPlan(cflags=[f"-DPAGEBLOCK_ORDER={pageblock_order}"])
    for category, event, macro in EVENTS:
        fmt = kernel.read_format(category, event) if kernel.has_event(category, event) else None
        if fmt is None:
            plan.missing.append(f"{category}:{event}")
            continue
        plan.cflags.append(f"-D{macro}")
        plan.events.append(f"{category}:{event}")
        if event == "mm_compaction_try_to_compact_pages":
            if fmt.get("prio"):  # `mode` (enum migrate_mode) in 4.4, `prio` from 4.14
                plan.cflags.append("-DHAVE_COMPACT_PRIO")
            if not kernel.has_event("kmem", "mm_page_alloc"):
                # Without the allocation's result the stall cannot close.
                plan.cflags.remove(f"-D{macro}")
                plan.events.remove(f"{category}:{event}")
                plan.missing.append("kmem:mm_page_alloc")
                continue
        if event == "mm_page_alloc_extfrag" and fmt.get("change_ownership"):
            plan.cflags.append("-DHAVE_EXTFRAG_OWNERSHIP")
    if "vmscan:mm_vmscan_direct_reclaim_begin" in plan.events:
        plan.events.append("vmscan:mm_vmscan_direct_reclaim_end")
    return plan


def status_names(print_fmt: str) -> dict[int, str]:
    """{value: name} from mm_compaction_end's __print_symbolic(REC->status, ...)."""
    found = {int(v): n for v, n in re.findall(r'\{\s*(-?\d+)\s*,\s*"([a-z_]+)"\s*\}',
                                              print_fmt)}
    return found or dict(COMPACT_RESULTS)


@dataclass(frozen=True)
class Stall:
    kind: str          # direct_reclaim | direct_compaction
    pid: int
    tid: int
    comm: str
    start_ns: int
    end_ns: int
    order: int
    gfp: int
    outcome: str       # reclaim: "done"; compaction: ENDS
    compaction_status: str | None = None  # last compaction run's result in the stall
    zones: int = 0
    nr_reclaimed: int = 0
    priority: str | None = None

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    def to_record(self) -> dict:
        """One JSON Lines object for the failure timeline."""
        return {"type": "stall", "kind": self.kind, "ts_ns": self.end_ns,
                "start_ns": self.start_ns, "duration_ms": round(self.duration_ns / 1e6, 3),
                "pid": self.pid, "tid": self.tid, "comm": self.comm, "order": self.order,
                "gfp": hex(self.gfp), "outcome": self.outcome,
                "compaction_status": self.compaction_status, "zones": self.zones,
                "nr_reclaimed": self.nr_reclaimed, "priority": self.priority}


def decode_stall(raw: RawStall, statuses: dict[int, str]) -> Stall:
    kind = KINDS[raw.kind] if raw.kind < len(KINDS) else f"kind{raw.kind}"
    if kind == "direct_reclaim":
        outcome = "done"
    else:
        outcome = ENDS[raw.end] if raw.end < len(ENDS) else f"end{raw.end}"
    return Stall(
        kind=kind, pid=raw.pid, tid=raw.tid,
        comm=raw.comm.decode("utf-8", "replace"), start_ns=raw.start_ns, end_ns=raw.end_ns,
        order=raw.order, gfp=raw.gfp, outcome=outcome,
        compaction_status=(None if raw.last_status < 0 else
                           statuses.get(raw.last_status, str(raw.last_status))),
        zones=raw.zones, nr_reclaimed=raw.nr_reclaimed,
        priority=None if raw.prio < 0 else PRIORITIES.get(raw.prio, str(raw.prio)))


class StallLog:
    """Recent stalls per task plus session totals; pure, fed by the tracker."""

    def __init__(self, per_task: int = 64, tasks: int = 4096):
        self.per_task = per_task
        self.tasks = tasks
        self._by_tid: dict[int, deque[Stall]] = {}
        self.totals: dict[str, dict[str, Any]] = {
            k: {"stalls": 0, "total_ns": 0, "max_ns": 0, "outcomes": {}} for k in KINDS}

    def add(self, stall: Stall) -> None:
        if stall.tid not in self._by_tid and len(self._by_tid) >= self.tasks:
            self._by_tid.pop(next(iter(self._by_tid)))  # forget the oldest task
        self._by_tid.setdefault(stall.tid, deque(maxlen=self.per_task)).append(stall)
        t = self.totals.setdefault(stall.kind, {"stalls": 0, "total_ns": 0, "max_ns": 0,
                                                "outcomes": {}})
        t["stalls"] += 1
        t["total_ns"] += stall.duration_ns
        t["max_ns"] = max(t["max_ns"], stall.duration_ns)
        t["outcomes"][stall.outcome] = t["outcomes"].get(stall.outcome, 0) + 1

    def stalls_before(self, tid: int, ts_ns: int, window_ns: int = 1_000_000_000
                      ) -> list[Stall]:
        """Stalls of task `tid` that overlap [ts_ns - window_ns, ts_ns], oldest first."""
        return [s for s in self._by_tid.get(tid, ())
                if s.start_ns <= ts_ns and s.end_ns >= ts_ns - window_ns]

    def stall_info(self, tid: int, ts_ns: int, window_ns: int = 1_000_000_000) -> dict:
        """Compact dict for a failure record: what the task went through before failing."""
        stalls = self.stalls_before(tid, ts_ns, window_ns)
        out: dict[str, Any] = {"window_ms": window_ns / 1e6}
        for kind in KINDS:
            mine = [s for s in stalls if s.kind == kind]
            out[kind] = {"count": len(mine),
                         "total_ms": round(sum(s.duration_ns for s in mine) / 1e6, 3)}
        last = next((s for s in reversed(stalls) if s.kind == "direct_compaction"), None)
        if last is not None:
            out["direct_compaction"].update(outcome=last.outcome,
                                            status=last.compaction_status,
                                            priority=last.priority)
        return out

    @staticmethod
    def stall_line(info: dict) -> str:
        """'after 40.2 ms direct compaction (2x, no_page/complete), 3.1 ms reclaim'."""
        parts = []
        dc, dr = info["direct_compaction"], info["direct_reclaim"]
        if dc["count"]:
            detail = "/".join(str(v) for v in (dc.get("outcome"), dc.get("status")) if v)
            parts.append(f"{dc['total_ms']:.1f} ms direct compaction ({dc['count']}x"
                         + (f", {detail}" if detail else "") + ")")
        if dr["count"]:
            parts.append(f"{dr['total_ms']:.1f} ms direct reclaim ({dr['count']}x)")
        return ("after " + ", ".join(parts)) if parts else "no direct reclaim/compaction stall"


def pageblock_order() -> int:
    from paftrace.procfs.pagetypeinfo import parse_pagetypeinfo  # noqa: PLC0415

    try:
        with open("/proc/pagetypeinfo") as f:
            head = f.read(64)  # header only; the kernel still builds the first chunk
        order = parse_pagetypeinfo(head.split("\n\n")[0]).pageblock_order
    except (OSError, ValueError):
        order = None
    return order if order is not None else 9


def statuses_for(kernel: KernelInfo) -> dict[int, str]:
    end_fmt = kernel.read_format("compaction", "mm_compaction_end")
    return status_names(end_fmt.print_fmt) if end_fmt else dict(COMPACT_RESULTS)


class ReclaimTracker:
    """Reads reclaim.c's maps and stall records in the object the loader built."""

    def __init__(self, bpf: Any, plan: ReclaimPlan, statuses: dict[int, str]):
        self.bpf = bpf
        self.plan = plan
        self.statuses = statuses
        self.log = StallLog()
        self.on_stall: Callable[[Stall], None] | None = None
        self.bpf["stalls"].open_perf_buffer(self._deliver, page_cnt=16,
                                            lost_cb=self._lost)
        self.perf_lost = 0

    def _deliver(self, cpu: int, data: Any, size: int) -> None:
        raw = ctypes.cast(data, ctypes.POINTER(RawStall)).contents
        stall = decode_stall(raw, self.statuses)
        self.log.add(stall)
        if self.on_stall is not None:
            self.on_stall(stall)

    def _lost(self, lost: int) -> None:
        self.perf_lost += lost

    def poll(self, timeout_ms: int = 0) -> None:
        self.bpf.perf_buffer_poll(timeout=timeout_ms)

    def stalls_before(self, tid: int, ts_ns: int, window_ns: int = 1_000_000_000
                      ) -> list[Stall]:
        self.poll(0)  # records of the failing task may still be in the buffer
        return self.log.stalls_before(tid, ts_ns, window_ns)

    def stall_info(self, tid: int, ts_ns: int, window_ns: int = 1_000_000_000) -> dict:
        self.poll(0)
        return self.log.stall_info(tid, ts_ns, window_ns)

    def _percpu(self, name: str) -> list[int]:
        table = self.bpf[name]
        return [sum(table[table.Key(i)]) for i in range(len(table))]

    def counters(self) -> dict[str, int]:
        values = self._percpu("counters")
        out = dict(zip(COUNTERS, values))
        out["lost_stalls"] += self.perf_lost
        return out

    def summary(self, top: int = 10) -> dict:
        c = self.counters()
        status = self._percpu("compact_status")
        runs = {scope: {self.statuses.get(i, str(i)): n
                        for i, n in enumerate(status[base:base + STATUS_SLOTS]) if n}
                for scope, base in (("background", 0), ("direct", STATUS_SLOTS))}
        procs = []
        for key, v in self.bpf["per_process"].items():
            procs.append({"pid": key.value, "comm": v.comm.decode("utf-8", "replace"),
                          "reclaim_ms": round(v.reclaim_ns / 1e6, 3), "reclaim_n": v.reclaim_n,
                          "compact_ms": round(v.compact_ns / 1e6, 3),
                          "compact_n": v.compact_n, "max_ms": round(v.max_ns / 1e6, 3)})
        procs.sort(key=lambda p: p["reclaim_ms"] + p["compact_ms"], reverse=True)
        totals = {k: {"stalls": t["stalls"], "total_ms": round(t["total_ns"] / 1e6, 3),
                      "max_ms": round(t["max_ns"] / 1e6, 3), "outcomes": dict(t["outcomes"])}
                  for k, t in self.log.totals.items()}
        return {
            "type": "reclaim_summary",
            "events": list(self.plan.events), "missing": list(self.plan.missing),
            "direct_compaction": {**totals["direct_compaction"],
                                  "entered": c["direct_compact"]},
            "direct_reclaim": {**totals["direct_reclaim"], "entered": c["direct_reclaim"],
                               "nr_reclaimed": c["reclaimed"]},
            "compaction_runs": runs,
            "migrated": c["migrated"], "migrate_failed": c["migrate_failed"],
            "kswapd": {"wakeup_requests": c["wakeup_kswapd"], "wakes": c["kswapd_wake"],
                       "wakeup_orders": {str(o): n for o, n in
                                         enumerate(self._percpu("wakeup_kswapd_order")) if n}},
            "kcompactd": {"wakeup_requests": c["wakeup_kcompactd"],
                          "wakes": c["kcompactd_wake"]},
            "extfrag": {"fallbacks": c["extfrag"], "fragmenting": c["extfrag_fragmenting"],
                        "steals": c["extfrag_steal"]},
            "per_process": procs[:top],
            "lost_stalls": c["lost_stalls"],
        }

