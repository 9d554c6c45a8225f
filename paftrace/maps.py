"""Reads the loaded object's maps: pagealloc.c's per-order counters, stats,
per-context failures, --all aggregates and stack sampler (MapReader), and
reclaim.c's counters and stall records (ReclaimTracker). No decoding beyond
summing per-CPU values: that is paftrace/records.py's and paftrace/reclaim.py's."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from paftrace.delivery import Tap
from paftrace.fragmenters import (
    COMPACT_EVENTS,
    CompactionCount,
    ExtfragCounts,
    ExtfragKey,
)
from paftrace.planner import ReclaimPlan
from paftrace.reclaim import (
    COUNTERS,
    ReclaimCounters,
    Stall,
    StallRecords,
    process_stalls,
    reclaim_summary,
)
from paftrace.records import ORDER_SLOTS, STAT_NAMES, RawAllocKey, RawFailure, SiteKey

STAT_COALESCED = STAT_NAMES.index("coalesced")


class MapReader:
    def __init__(self, bpf: Any):
        self.bpf = bpf
        self._coalesced_read = 0  # STAT_COALESCED when `sites` was last read

    def _percpu_sums(self, name: str) -> list[int]:
        table = self.bpf[name]
        return [sum(table[table.Key(i)]) for i in range(len(table))]

    def order_counts(self) -> dict[int, tuple[int, int]]:
        out: dict[int, tuple[int, int]] = {}
        for key, per_cpu in self.bpf["order_stats"].items():
            attempts = sum(v.attempts for v in per_cpu)
            failures = sum(v.failures for v in per_cpu)
            if attempts or failures:
                out[min(key.value, ORDER_SLOTS - 1)] = (attempts, failures)
        return out

    def stats(self) -> dict[str, int]:
        """The in-kernel STAT_* counters by name (paftrace.h)."""
        values = self._percpu_sums("stats")
        return {name: values[i] for i, name in enumerate(STAT_NAMES)}

    def failures_by_context(self) -> list[int]:
        return self._percpu_sums("fail_by_ctx")

    def stack_addresses(self, stack_id: int) -> list[int]:
        if stack_id < 0:
            return []
        try:
            return list(self.bpf["stacks"].walk(stack_id))
        except KeyError:
            return []

    def set_cgroup_filter(self, ids: set[int] | frozenset[int]) -> None:
        """--cgroup: the cgroup2 ids whose failures pass the kernel's filter (added, never
        removed: a removed cgroup's id is not reused while the map holds it)."""
        table = self.bpf["cgroup_filter"]
        for cgroup_id in ids:
            table[table.Key(cgroup_id)] = table.Leaf(1)

    def set_sample_every(self, every: int) -> None:
        """Take 1 in `every` stacks; 0 lets the kernel adapt it."""
        cfg = self.bpf["sample_config"]
        cfg[cfg.Key(0)] = cfg.Leaf(max(0, every))

    def sample_every(self) -> int:
        """The largest 1-in-N stack sampling any CPU uses now (1 = every stack)."""
        per_cpu = self.bpf["sampler"][0]
        return max([s.every for s in per_cpu] + [1])

    def coalesced_sites(self) -> list[tuple[SiteKey, int, RawFailure]]:
        """(site, failures coalesced there so far, the latest of them) for each call
        site with any; [] when coalescing is off (no `sites` table) or nothing was
        coalesced since the last call (then one counter read, no table walk)."""
        try:
            table = self.bpf["sites"]
        except KeyError:
            return []
        stats = self.bpf["stats"]
        total = sum(stats[stats.Key(STAT_COALESCED)])
        if total == self._coalesced_read:
            return []
        self._coalesced_read = total  # read before the table: a later one is seen next time
        out = []
        for key, per_cpu in table.items():
            counted = [state for state in per_cpu if state.coalesced]
            if not counted:
                continue
            latest = max(counted, key=lambda state: state.last.ts_ns)
            out.append(((key.gfp, key.stack_id, key.order, key.pid, key.context,
                         key.softirq_vec), sum(state.coalesced for state in counted),
                        RawFailure.from_buffer_copy(bytes(latest.last))))
        return out

    def allocations(self) -> tuple[list[tuple[RawAllocKey, int]],
                                   list[tuple[RawAllocKey, int, int]]]:
        """(exact counts by key, sampled stack counts by key and stack id)."""
        counts = merge_alloc_counts(
            [(to_alloc_key(slot.key), slot.count)
             for _, per_cpu in self.bpf["alloc_slots"].items() for slot in per_cpu
             if slot.count],
            [(to_alloc_key(k), sum(v)) for k, v in self.bpf["alloc_counts"].items()])
        stacks = [(to_alloc_key(k.base), k.stack_id, sum(v))
                  for k, v in self.bpf["alloc_stacks"].items()]
        return counts, stacks


def to_extfrag_key(raw: Any) -> ExtfragKey:
    return ExtfragKey(alloc_order=raw.alloc_order, fallback_order=raw.fallback_order,
                      alloc_migratetype=raw.alloc_migratetype,
                      fallback_migratetype=raw.fallback_migratetype,
                      fragmenting=bool(raw.fragmenting),
                      change_ownership=bool(raw.change_ownership),
                      comm=bytes(raw.comm).split(b"\0", 1)[0].decode("utf-8", "replace"))


def merge_alloc_counts(*parts: list[tuple[RawAllocKey, int]]) -> list[tuple[RawAllocKey, int]]:
    """One count per key: a key is in several CPUs' slots (pagealloc.c,
    count_in_slot) and, once its slot was taken, in the hash map as well."""
    totals: dict[tuple[int, int, int, int], int] = {}
    for part in parts:
        for key, n in part:
            k = (key.gfp, key.order, key.context, key.softirq_vec)
            totals[k] = totals.get(k, 0) + n
    return [(RawAllocKey(gfp=g, order=o, context=c, softirq_vec=v), n)
            for (g, o, c, v), n in totals.items()]


def to_alloc_key(raw: Any) -> RawAllocKey:
    """bcc's key type (built from clang's view of paftrace.h) as the contract's type."""
    return RawAllocKey(gfp=raw.gfp, order=raw.order, context=raw.context,
                       softirq_vec=raw.softirq_vec)


class ReclaimTracker:
    """Reads reclaim.c's maps and stall records in the object the loader built."""

    def __init__(self, bpf: Any, plan: ReclaimPlan, statuses: dict[int, str],
                 tap: Tap | None = None):
        self.bpf = bpf
        self.plan = plan
        self.statuses = statuses
        self.records = StallRecords(statuses, tap)
        self.log = self.records.log
        self.handler = self.records.handler
        self.perf_lost = 0
        self.polled_ns = 0  # when the last poll of the stall buffer began

    def start(self, on_stall: Callable[[Stall], None] | None) -> None:
        self.records.on_stall = on_stall
        self.bpf["stalls"].open_perf_buffer(self.handler.callback, page_cnt=16,
                                            lost_cb=self._lost)

    def _lost(self, lost: int) -> None:
        self.perf_lost += lost

    def poll(self, timeout_ms: int = 0) -> None:
        started = time.monotonic_ns()
        self.bpf.perf_buffer_poll(timeout=timeout_ms)
        self.polled_ns = started

    def _catch_up(self, ts_ns: int) -> None:
        """Records of the failing task may still be in the buffer, unless the last
        poll began after the failure: a task's stall record is written before its
        failure's timestamp is taken (the same program, or an earlier one of that
        task), and bpf_ktime_get_ns() is CLOCK_MONOTONIC. In a storm the records
        come in batches taken after a poll, so this saves a poll per record."""
        if ts_ns >= self.polled_ns:
            self.poll(0)

    def stalls_before(self, tid: int, ts_ns: int, window_ns: int = 1_000_000_000
                      ) -> list[Stall]:
        self._catch_up(ts_ns)
        return self.log.stalls_before(tid, ts_ns, window_ns)

    def stall_info(self, tid: int, ts_ns: int, window_ns: int = 1_000_000_000) -> dict:
        self._catch_up(ts_ns)
        return self.log.stall_info(tid, ts_ns, window_ns)

    def _percpu(self, name: str) -> list[int]:
        table = self.bpf[name]
        return [sum(table[table.Key(i)]) for i in range(len(table))]

    def read_counters(self) -> ReclaimCounters:
        values = self._percpu("counters")
        values[COUNTERS.index("lost_stalls")] += self.perf_lost + self.handler.failed
        return ReclaimCounters(
            counters=values[:len(COUNTERS)], compact_status=self._percpu("compact_status"),
            wakeup_kswapd_order=self._percpu("wakeup_kswapd_order"),
            per_process=[process_stalls(key.value, per_cpu)
                         for key, per_cpu in self.bpf["per_process"].items()])

    def extfrag(self, frames: Callable[[list[int]], list[str]]) -> ExtfragCounts:
        """The fragmenting-fallback aggregates, stacks symbolized by `frames`."""
        if "-DHAVE_EXTFRAG" not in self.plan.cflags:
            return ExtfragCounts()
        traces = self.bpf["extfrag_stack_traces"]
        symbolized: dict[int, tuple[str, ...]] = {}

        def stack(stack_id: int) -> tuple[str, ...]:
            if stack_id not in symbolized:
                try:
                    symbolized[stack_id] = tuple(frames(list(traces.walk(stack_id))))
                except KeyError:
                    symbolized[stack_id] = ()
            return symbolized[stack_id]

        return ExtfragCounts(
            exact=[(to_extfrag_key(k), v.value) for k, v in self.bpf["extfrag_counts"].items()],
            sampled=[(to_extfrag_key(k), stack(k.stack_id), v.value)
                     for k, v in self.bpf["extfrag_stacks"].items()])

    def compaction_zones(self) -> list[CompactionCount]:
        events = dict(enumerate(COMPACT_EVENTS))
        return [CompactionCount(event=events.get(k.event, str(k.event)), result=k.result,
                                count=v.value, zone_start=k.zone_start, nid=k.nid,
                                zone_idx=k.zone_idx)
                for k, v in self.bpf["compaction_zones"].items()]

    def summary(self, top: int = 10) -> dict:
        return reclaim_summary(self.plan, self.statuses, self.log, self.read_counters(), top)
