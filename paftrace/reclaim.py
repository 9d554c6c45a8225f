"""Direct reclaim / compaction stalls and background activity, from tracepoints.

paftrace/bpf/reclaim.c is compiled by the loader together with pagealloc.c, with
only the tracepoints this kernel has (planned by `paftrace.planner.plan_reclaim`).
This module is pure: it decodes the stall records (`decode_stall`), keeps them
(`StallLog`, fed by `StallRecords`) and builds the `reclaim_summary` from them and
the in-kernel counters; `paftrace.maps.ReclaimTracker` reads those from the
loaded object. The tracer asks `stall_info(tid, ts_ns)` for each failure.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paftrace import contract
from paftrace.delivery import GuardedHandler, Tap
from paftrace.planner import KernelInfo, ReclaimPlan
from paftrace.records import comm_raw_hex, decode_comm

BPF_SOURCE = "reclaim.c"

# From paftrace/bpf/paftrace.h, the one source of the kernel/user contract.
COUNTERS = contract.enumeration("C_")
STATUS_SLOTS = contract.constants()["STATUS_SLOTS"]
KINDS = contract.enumeration("KIND_")
ENDS = contract.enumeration("END_")
RawStall = contract.struct("stall_event")
# enum compact_priority (include/linux/compaction.h, 4.14 -> 6.18)
PRIORITIES = {0: "sync_full", 1: "sync_light", 2: "async"}
# enum compact_result, 4.14 -> 6.18 (include/linux/compaction.h); the running kernel's
# print fmt of mm_compaction_end wins when it names them.
COMPACT_RESULTS = {0: "not_suitable_zone", 1: "skipped", 2: "deferred", 3: "no_suitable_page",
                   4: "continue", 5: "complete", 6: "partial_skipped", 7: "contended",
                   8: "success"}


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
    comm_raw: str | None = None  # hex of the kernel's bytes when comm is not UTF-8

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    def to_record(self) -> dict:
        """One JSON Lines object for the failure timeline."""
        record = {"type": "stall", "kind": self.kind, "ts_ns": self.end_ns,
                  "start_ns": self.start_ns, "duration_ms": round(self.duration_ns / 1e6, 3),
                  "pid": self.pid, "tid": self.tid, "comm": self.comm, "order": self.order,
                  "gfp": hex(self.gfp), "outcome": self.outcome,
                  "compaction_status": self.compaction_status, "zones": self.zones,
                  "nr_reclaimed": self.nr_reclaimed, "priority": self.priority}
        if self.comm_raw is not None:
            record["comm_raw"] = self.comm_raw
        return record


def decode_stall(raw: RawStall, statuses: dict[int, str]) -> Stall:
    kind = KINDS[raw.kind] if raw.kind < len(KINDS) else f"kind{raw.kind}"
    if kind == "direct_reclaim":
        outcome = "done"
    else:
        outcome = ENDS[raw.end] if raw.end < len(ENDS) else f"end{raw.end}"
    return Stall(
        kind=kind, pid=raw.pid, tid=raw.tid,
        comm=decode_comm(raw.comm), comm_raw=comm_raw_hex(raw.comm),
        start_ns=raw.start_ns, end_ns=raw.end_ns,
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
        self._no_stalls: dict[int, dict] = {}

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
        if not stalls:  # most failures: one shared answer (never changed by callers)
            empty = self._no_stalls.get(window_ns)
            if empty is None:
                empty = self._no_stalls[window_ns] = self._info([], window_ns)
            return empty
        return self._info(stalls, window_ns)

    @staticmethod
    def _info(stalls: list[Stall], window_ns: int) -> dict:
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


def process_stalls(pid: int, per_cpu: list[Any]) -> dict:
    """One process's stall time from its per-CPU `proc_stall` copies (paftrace.h)."""
    used = [v for v in per_cpu if v.reclaim_n or v.compact_n]
    comm = used[-1].comm if used else b""
    return {"pid": pid, "comm": decode_comm(comm),
            "reclaim_ms": round(sum(v.reclaim_ns for v in used) / 1e6, 3),
            "reclaim_n": sum(v.reclaim_n for v in used),
            "compact_ms": round(sum(v.compact_ns for v in used) / 1e6, 3),
            "compact_n": sum(v.compact_n for v in used),
            "max_ms": round(max((v.max_ns for v in used), default=0) / 1e6, 3)}


@dataclass
class ReclaimCounters:
    """reclaim.c's in-kernel counters, summed over CPUs (paftrace.h C_* order)."""

    counters: list[int]
    compact_status: list[int]      # background runs, then direct (STATUS_SLOTS each)
    wakeup_kswapd_order: list[int]
    per_process: list[dict]        # process_stalls() of each process

    def __post_init__(self) -> None:
        # Captures (tests/data/replay) made before a counter was added to paftrace.h
        # hold fewer: the missing ones were not counted, so they are 0.
        self.counters = list(self.counters) + [0] * (len(COUNTERS) - len(self.counters))

    def to_json(self) -> dict:
        return dict(vars(self))


def reclaim_summary(plan: ReclaimPlan, statuses: dict[int, str], log: StallLog,
                    counters: ReclaimCounters, top: int = 10) -> dict:
    """The `reclaim_summary` object: the stall log beside the in-kernel counters."""
    c = dict(zip(COUNTERS, counters.counters))
    status = counters.compact_status
    runs = {scope: {statuses.get(i, str(i)): n
                    for i, n in enumerate(status[base:base + STATUS_SLOTS]) if n}
            for scope, base in (("background", 0), ("direct", STATUS_SLOTS))}
    procs = sorted(counters.per_process, key=lambda p: p["reclaim_ms"] + p["compact_ms"],
                   reverse=True)
    totals = {k: {"stalls": t["stalls"], "total_ms": round(t["total_ns"] / 1e6, 3),
                  "max_ms": round(t["max_ns"] / 1e6, 3), "outcomes": dict(t["outcomes"])}
              for k, t in log.totals.items()}
    return {
        "type": "reclaim_summary",
        "events": list(plan.events), "missing": list(plan.missing),
        "direct_compaction": {**totals["direct_compaction"], "entered": c["direct_compact"]},
        "direct_reclaim": {**totals["direct_reclaim"], "entered": c["direct_reclaim"],
                           "nr_reclaimed": c["reclaimed"]},
        "compaction_runs": runs,
        "migrated": c["migrated"], "migrate_failed": c["migrate_failed"],
        "kswapd": {"wakeup_requests": c["wakeup_kswapd"], "wakes": c["kswapd_wake"],
                   "wakeup_orders": {str(o): n for o, n in
                                     enumerate(counters.wakeup_kswapd_order) if n}},
        "kcompactd": {"wakeup_requests": c["wakeup_kcompactd"], "wakes": c["kcompactd_wake"]},
        "extfrag": {"fallbacks": c["extfrag"], "fragmenting": c["extfrag_fragmenting"],
                    "steals": c["extfrag_steal"],
                    # fallbacks (or compaction verdicts) a full map could not attribute
                    "not_attributed": c["extfrag_agg_full"]},
        "per_process": procs[:top],
        "lost_stalls": c["lost_stalls"],
    }


class StallRecords:
    """Decodes stall records into a StallLog and passes each on; the handler behind
    the perf buffer (real or replayed)."""

    def __init__(self, statuses: dict[int, str], tap: Tap | None = None):
        self.statuses = statuses
        self.log = StallLog()
        self.on_stall: Callable[[Stall], None] | None = None
        self.handler = GuardedHandler(self._deliver, RawStall, tap)

    def _deliver(self, raw: RawStall) -> None:
        stall = decode_stall(raw, self.statuses)
        self.log.add(stall)
        if self.on_stall is not None:
            self.on_stall(stall)
