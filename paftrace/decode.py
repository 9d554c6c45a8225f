"""Turn a raw BPF failure record into a `Failure`: stack, context, triage, blame.

A failure storm repeats a handful of call sites thousands of times a second, so
what depends only on the stack id (frames, the context the stack shows, the
requester), on the gfp mask (its flag names) or on the triage inputs is decoded
once and reused: decoding was most of the ~170 us paftrace spent per record
(docs/PERFORMANCE.md). A stack id names one stack for the life of the map: the
program never deletes stacks and calls bpf_get_stackid() without
BPF_F_REUSE_STACKID, so a hash collision fails (-EEXIST) instead of replacing
the stack behind an id (kernel/bpf/stackmap.c, __bpf_get_stackid, v4.6+).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from paftrace.context import (
    HARDIRQ,
    StackContext,
    classify_stack,
    irq_label,
    read_irq_names,
    reconcile,
    softirq_name,
)
from paftrace.gfp import GfpTable
from paftrace.records import (
    Failure,
    RawFailure,
    blame_for,
    comm_raw_hex,
    context_name,
    decode_comm,
    migratetype_name,
)
from paftrace.stacks import requester
from paftrace.triage import Verdict, triage

# Entries per cache; a cache that fills up is emptied (a storm repeats few keys).
CACHE_MAX = 4096


@dataclass(frozen=True)
class StackFacts:
    """What a stack id tells, decoded once. `frames` is shared by every failure
    of that stack: read it, never change it."""

    frames: list[str]
    seen: StackContext
    requester: str | None


def _remember(cache: dict, key: object, value: object) -> None:
    if len(cache) >= CACHE_MAX:
        cache.clear()
    cache[key] = value


class FailureDecoder:
    def __init__(self, table: GfpTable, stack_of: Callable[[int], list[str]],
                 old_migratetypes: bool = False, kprobe_warn: bool = False,
                 kprobe_printed: bool = False):
        self.table = table
        self.stack_of = stack_of
        self.old_migratetypes = old_migratetypes
        self.kprobe_warn = kprobe_warn
        self.kprobe_printed = kprobe_printed
        self._irq_names: dict[int, str] | None = None
        self._stacks: dict[int, StackFacts] = {}
        self._gfp_names: dict[int, list[str]] = {}
        self._verdicts: dict[tuple, Verdict] = {}

    def irq_names(self) -> dict[int, str]:
        if self._irq_names is None:  # read lazily: only hardirq failures need it
            self._irq_names = read_irq_names()
        return self._irq_names

    def stack_facts(self, stack_id: int) -> StackFacts:
        facts = self._stacks.get(stack_id)
        if facts is None:
            frames = self.stack_of(stack_id)
            facts = StackFacts(frames, classify_stack(frames), requester(frames))
            if stack_id >= 0 and frames:  # an id not (yet) readable is asked again
                _remember(self._stacks, stack_id, facts)
        return facts

    def gfp_names(self, gfp: int) -> list[str]:
        """Flag names of a mask, shared by every failure with it: never change them."""
        names = self._gfp_names.get(gfp)
        if names is None:
            names = self.table.decode(gfp)
            _remember(self._gfp_names, gfp, names)
        return names

    def verdict(self, gfp: int, order: int, context: str, warned: bool | None,
                printed: bool | None) -> Verdict:
        key = (gfp, order, context, warned, printed)
        found = self._verdicts.get(key)
        if found is None:
            found = triage(self.table, gfp, order, context, warned, printed)
            _remember(self._verdicts, key, found)
        return found

    def decode(self, raw: RawFailure) -> Failure:
        facts = self.stack_facts(raw.stack_id)
        stack = facts.frames
        tracked = context_name(raw.context)
        tracked_vec = softirq_name(raw.softirq_vec)
        context, softirq, source = reconcile(tracked, tracked_vec, facts.seen)
        irq = irq_label(raw.irq, self.irq_names()) if context == HARDIRQ and \
            tracked == HARDIRQ else None
        comm = decode_comm(raw.comm)
        who = facts.requester
        warned = bool(raw.warned) if self.kprobe_warn else None
        printed = bool(raw.printed) if self.kprobe_warn and self.kprobe_printed else None
        verdict = self.verdict(raw.gfp, raw.order, context, warned, printed)
        latency = (raw.ts_ns - raw.alloc_start_ns) / 1000 if raw.alloc_start_ns else None
        return Failure(
            ts_ns=raw.ts_ns, cpu=raw.cpu, pid=raw.pid, tid=raw.tid, comm=comm,
            comm_raw=comm_raw_hex(raw.comm),
            order=raw.order, gfp=hex(raw.gfp), gfp_flags=self.gfp_names(raw.gfp),
            migratetype=migratetype_name(raw.migratetype, self.old_migratetypes),
            context=context, softirq=softirq, stack=stack, irq=irq, context_source=source,
            requester=who, blame=blame_for(context, softirq, irq, comm, raw.pid, who),
            visibility=verdict.visibility, severity=verdict.severity, rule=verdict.rule,
            warned=warned, printed=printed,
            alloc_latency_us=round(latency, 1) if latency is not None else None,
            stack_id=raw.stack_id,
        )
