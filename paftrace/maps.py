"""Reads pagealloc.c's maps: per-order counters, stats, per-context failures,
--all aggregates and the stack sampler. No decoding beyond summing per-CPU values."""

from __future__ import annotations

from typing import Any

from paftrace.records import ORDER_SLOTS, STAT_NAMES, RawAllocKey


class MapReader:
    def __init__(self, bpf: Any):
        self.bpf = bpf

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

    def set_sample_every(self, every: int) -> None:
        """Take 1 in `every` stacks; 0 lets the kernel adapt it."""
        cfg = self.bpf["sample_config"]
        cfg[cfg.Key(0)] = cfg.Leaf(max(0, every))

    def sample_every(self) -> int:
        """The largest 1-in-N stack sampling any CPU uses now (1 = every stack)."""
        per_cpu = self.bpf["sampler"][0]
        return max([s.every for s in per_cpu] + [1])

    def allocations(self) -> tuple[list[tuple[RawAllocKey, int]],
                                   list[tuple[RawAllocKey, int, int]]]:
        """(exact counts by key, sampled stack counts by key and stack id)."""
        counts = [(to_alloc_key(k), sum(v)) for k, v in self.bpf["alloc_counts"].items()]
        stacks = [(to_alloc_key(k.base), k.stack_id, sum(v))
                  for k, v in self.bpf["alloc_stacks"].items()]
        return counts, stacks


def to_alloc_key(raw: Any) -> RawAllocKey:
    """bcc's key type (built from clang's view of paftrace.h) as the contract's type."""
    return RawAllocKey(gfp=raw.gfp, order=raw.order, context=raw.context,
                       softirq_vec=raw.softirq_vec)
