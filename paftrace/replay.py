"""Replay raw records captured from a real kernel: a `Session` without BPF or root.

A capture (tests/data/replay/*.json, made as root by scripts/capture-fixture
while scripts/provoke produces real failures) holds the bytes of each ring/perf
buffer record exactly as the kernel wrote them, the symbolized stacks they refer
to, and the map contents at the end of the run. `ReplaySession` hands the
records to the tracer through the same `GuardedHandler` as the real session,
called through a ctypes function pointer as libbcc calls it, so decoding,
aggregation, renderers and the exception path are the production ones.
"""

from __future__ import annotations

import ctypes
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from paftrace.delivery import GuardedHandler, raise_all_pending
from paftrace.fragmenters import CompactionCount, ExtfragCounts, ExtfragKey, Fragmentation
from paftrace.gfp import GfpTable, table_from_print_fmt
from paftrace.pacing import POLL_MS
from paftrace.planner import FeatureStatus, ProbePlan, ReclaimPlan
from paftrace.reclaim import RawStall, ReclaimCounters, StallRecords, reclaim_summary
from paftrace.records import RawAllocKey, RawFailure, SiteKey
from paftrace.session import Allocations, FailureHandler, StallHandler

FORMAT_VERSION = 1
RECORD_TYPES = {"failure": RawFailure, "stall": RawStall}
# bcc's ring buffer callback type (bcc/libbcc.py _RINGBUF_CB_TYPE): ctx, data, size
CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)


def plan_to_json(plan: ProbePlan) -> dict:
    return asdict(plan)


def plan_from_json(data: dict) -> ProbePlan:
    reclaim = data.get("reclaim")
    fields = {**data,
              "system_vectors": tuple(data["system_vectors"]),
              "printed_kprobes": tuple(data["printed_kprobes"]),
              "statuses": tuple(FeatureStatus(**s) for s in data["statuses"]),
              "reclaim": ReclaimPlan(**{k: tuple(v) for k, v in reclaim.items()})
              if reclaim else None}
    return ProbePlan(**fields)


class ReplaySession:
    """Implements paftrace.session.Session from a capture. Each poll() delivers
    `per_poll` records (failures and stalls in time order); `exhausted` says when
    all were delivered."""

    def __init__(self, capture: dict, per_poll: int = 4):
        if capture.get("format") != FORMAT_VERSION:
            raise ValueError(f"capture format {capture.get('format')} is not {FORMAT_VERSION}")
        self.capture = capture
        self.plan = plan_from_json(capture["plan"])
        self.kernel_release = capture["kernel"]
        self.gfp_table: GfpTable = table_from_print_fmt(
            capture["gfp_print_fmt"], source=f"captured kernel {self.kernel_release}")
        self.startup_s = 0.0
        self.refused: list[str] = list(capture.get("refused", []))
        self.printed_kprobe: str | None = capture.get("printed_kprobe")
        self.memcg_kprobe: str | None = capture.get("memcg_kprobe")
        self.per_poll = per_poll
        self.statuses = {int(k): v for k, v in capture.get("statuses", {}).items()}
        self._pending = sorted(
            [(int.from_bytes(bytes.fromhex(h)[:8], "little"), "failure", h)
             for h in capture["failures"]] +
            [(int.from_bytes(bytes.fromhex(h)[8:16], "little"), "stall", h)  # end_ns
             for h in capture.get("stalls", [])])
        self._stacks = {int(k): v for k, v in capture["stacks"].items()}
        self.failure_handler: GuardedHandler | None = None
        self.stalls: StallRecords | None = None
        self.closed = False

    def attached(self) -> list[str]:
        return self.plan.probes()

    def start(self, on_failure: FailureHandler, on_stall: StallHandler) -> None:
        self.failure_handler = GuardedHandler(on_failure, RawFailure)
        if self.plan.reclaim is not None:
            self.stalls = StallRecords(self.statuses)
            self.stalls.on_stall = on_stall

    @property
    def exhausted(self) -> bool:
        return not self._pending

    def _deliver(self, count: int) -> None:
        assert self.failure_handler is not None, "start() first"
        callbacks = {"failure": CALLBACK(self.failure_handler.callback)}
        if self.stalls is not None:
            callbacks["stall"] = CALLBACK(self.stalls.handler.callback)
        try:
            while self._pending and count > 0:
                _, kind, data = self._pending.pop(0)
                count -= 1
                if kind not in callbacks:
                    continue  # a stall in a capture replayed without reclaim
                # Captures made before a layout grew (e.g. cgroup_id) read as zeros there.
                raw = bytes.fromhex(data).ljust(ctypes.sizeof(RECORD_TYPES[kind]), b"\0")
                buf = ctypes.create_string_buffer(raw)
                if callbacks[kind](None, ctypes.addressof(buf), len(buf.raw)) < 0:
                    break  # a handler raised: the ring buffer stops consuming too
        finally:
            raise_all_pending([h for h in (self.failure_handler,
                                           self.stalls.handler if self.stalls else None) if h])

    def poll(self, timeout_ms: int = POLL_MS) -> None:
        self._deliver(self.per_poll)

    def drain(self) -> None:
        self._deliver(len(self._pending))

    def order_counts(self) -> dict[int, tuple[int, int]]:
        return {int(k): (v[0], v[1]) for k, v in self.capture["order_counts"].items()}

    def stats(self) -> dict[str, int]:
        out = dict(self.capture["stats"])
        out["perf_lost"] = 0
        out["unhandled"] = self.failure_handler.failed if self.failure_handler else 0
        return out

    def failures_by_context(self) -> list[int]:
        return list(self.capture["failures_by_context"])

    def stack(self, stack_id: int) -> list[str]:
        return list(self._stacks.get(stack_id, []))

    def sample_every(self) -> int:
        return int(self.capture.get("sample_every", 1))

    def coalesced_sites(self) -> list[tuple[SiteKey, int, RawFailure]]:
        """The capture's coalesced call sites, once every record was delivered (the
        kernel's counts as they were at the end of the capture)."""
        if self._pending:
            return []
        return [(tuple(row[:6]), row[6], RawFailure.from_buffer_copy(
                    bytes.fromhex(row[7]).ljust(ctypes.sizeof(RawFailure), b"\0")))
                for row in self.capture.get("coalesced", [])]

    def allocations(self) -> Allocations:
        alloc = self.capture.get("allocations", {"counts": [], "stacks": []})

        def key(gfp: int, order: int, ctx: int, vec: int) -> RawAllocKey:
            return RawAllocKey(gfp=gfp, order=order, context=ctx, softirq_vec=vec)

        return ([(key(*row[:4]), row[4]) for row in alloc["counts"]],
                [(key(*row[:4]), row[4], row[5]) for row in alloc["stacks"]])

    def stall_info(self, tid: int, ts_ns: int) -> dict | None:
        return self.stalls.log.stall_info(tid, ts_ns) if self.stalls else None

    def reclaim_summary(self) -> dict | None:
        if self.plan.reclaim is None or self.stalls is None:
            return None
        counters = ReclaimCounters(**self.capture["reclaim_counters"])
        return reclaim_summary(self.plan.reclaim, self.statuses, self.stalls.log, counters)

    def fragmentation(self) -> Fragmentation | None:
        """Captures keep the extfrag maps as rows: key fields, frames, count."""
        data = self.capture.get("fragmentation")
        if data is None:
            return None

        def key(row: dict) -> ExtfragKey:
            return ExtfragKey(**row["key"])

        return Fragmentation(
            extfrag=ExtfragCounts(
                exact=[(key(r), r["count"]) for r in data["exact"]],
                sampled=[(key(r), tuple(r["frames"]), r["count"]) for r in data["sampled"]]),
            compaction=[CompactionCount(**r) for r in data.get("compaction", [])],
            zone_names={int(k): v for k, v in data.get("zone_names", {}).items()},
            statuses=self.statuses)
    def filter_cgroups(self, ids: set[int]) -> None:
        pass  # replayed records were filtered (or not) when they were captured

    def close(self) -> None:
        self.closed = True


def fragmentation_to_json(data: Fragmentation | None) -> dict | None:
    if data is None:
        return None
    return {"exact": [{"key": asdict(k), "count": n} for k, n in data.extfrag.exact],
            "sampled": [{"key": asdict(k), "frames": list(f), "count": n}
                        for k, f, n in data.extfrag.sampled],
            "compaction": [asdict(c) for c in data.compaction],
            "zone_names": {str(k): v for k, v in data.zone_names.items()}}


def load_capture(path: Path) -> dict:
    return json.loads(path.read_text())


class Recorder:
    """The capture side: a tap for TraceSession that keeps every raw record."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {RawFailure.__name__: [], RawStall.__name__: []}

    def tap(self, kind: str, data: bytes) -> None:
        self.records.setdefault(kind, []).append(data.hex())

    def capture(self, session: Any, gfp_print_fmt: str) -> dict:
        """Everything a ReplaySession needs, read from a live TraceSession at the end."""
        failures = self.records[RawFailure.__name__]
        stack_ids = {RawFailure.from_buffer_copy(bytes.fromhex(h)).stack_id for h in failures}
        counts, stacks = session.allocations() if session.options.trace_all else ([], [])
        stack_ids |= {sid for _, sid, _ in stacks}

        def row(k: RawAllocKey) -> list[int]:
            return [k.gfp, k.order, k.context, k.softirq_vec]

        in_kernel = session.maps.stats()
        return {
            "format": FORMAT_VERSION, "kernel": session.kernel_release,
            "plan": plan_to_json(session.plan), "refused": session.refused,
            "printed_kprobe": session.printed_kprobe, "gfp_print_fmt": gfp_print_fmt,
            "memcg_kprobe": session.memcg_kprobe,
            "statuses": {str(k): v for k, v in session.statuses.items()},
            "failures": failures, "stalls": self.records[RawStall.__name__],
            "coalesced": [[*key, total, bytes(last).hex()]
                          for key, total, last in session.coalesced_sites()],
            "stacks": {str(sid): session.stack(sid) for sid in sorted(stack_ids) if sid >= 0},
            "order_counts": {str(o): list(v) for o, v in session.order_counts().items()},
            "stats": in_kernel,
            "failures_by_context": session.failures_by_context(),
            "sample_every": session.sample_every() if session.options.trace_all else 1,
            "allocations": {"counts": [[*row(k), n] for k, n in counts],
                            "stacks": [[*row(k), sid, n] for k, sid, n in stacks]},
            "reclaim_counters": session.reclaim.read_counters().to_json()
            if session.reclaim else None,
            "fragmentation": fragmentation_to_json(session.fragmentation()),
        }
