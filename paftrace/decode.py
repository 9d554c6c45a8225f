"""Turn a raw BPF failure record into a `Failure`: stack, context, triage, blame."""

from __future__ import annotations

from collections.abc import Callable

from paftrace.context import (
    HARDIRQ,
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
from paftrace.triage import triage


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

    def irq_names(self) -> dict[int, str]:
        if self._irq_names is None:  # read lazily: only hardirq failures need it
            self._irq_names = read_irq_names()
        return self._irq_names

    def decode(self, raw: RawFailure) -> Failure:
        stack = self.stack_of(raw.stack_id)
        tracked = context_name(raw.context)
        tracked_vec = softirq_name(raw.softirq_vec)
        context, softirq, source = reconcile(tracked, tracked_vec, classify_stack(stack))
        irq = irq_label(raw.irq, self.irq_names()) if context == HARDIRQ and \
            tracked == HARDIRQ else None
        comm = decode_comm(raw.comm)
        who = requester(stack)
        warned = bool(raw.warned) if self.kprobe_warn else None
        printed = bool(raw.printed) if self.kprobe_warn and self.kprobe_printed else None
        verdict = triage(self.table, raw.gfp, raw.order, context, warned, printed)
        latency = (raw.ts_ns - raw.alloc_start_ns) / 1000 if raw.alloc_start_ns else None
        return Failure(
            ts_ns=raw.ts_ns, cpu=raw.cpu, pid=raw.pid, tid=raw.tid, comm=comm,
            comm_raw=comm_raw_hex(raw.comm),
            order=raw.order, gfp=hex(raw.gfp), gfp_flags=self.table.decode(raw.gfp),
            migratetype=migratetype_name(raw.migratetype, self.old_migratetypes),
            context=context, softirq=softirq, stack=stack, irq=irq, context_source=source,
            requester=who, blame=blame_for(context, softirq, irq, comm, raw.pid, who),
            visibility=verdict.visibility, severity=verdict.severity, rule=verdict.rule,
            warned=warned, printed=printed,
            alloc_latency_us=round(latency, 1) if latency is not None else None,
            stack_id=raw.stack_id,
        )
