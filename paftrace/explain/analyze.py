"""Report -> Explanation (decoded, classified, judged), and grouping of repeats."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from paftrace.cause import Cause
from paftrace.explain.advice import Assessment, VmSettings, assess, read_vm_settings
from paftrace.explain.cause_read import report_cause
from paftrace.explain.context_read import ContextReading, cross_check, read_context, usable_frames
from paftrace.explain.kernel import TableChoice, choose_table
from paftrace.explain.parse import parse_reports
from paftrace.explain.report import Report

MAX_LINES_KEPT = 1000   # line numbers listed per group; `count` keeps counting
MAX_GROUPS = 2000       # distinct reports kept for grouped output (--no-group streams all)


@dataclass
class Explanation:
    report: Report
    choice: TableChoice
    flags: list[str]
    reading: ContextReading
    assessment: Assessment
    count: int = 1
    lines: list[int] = field(default_factory=list)
    cause: Cause | None = None

    def signature(self) -> tuple[Any, ...]:
        frames, _ = usable_frames(self.report.frames)
        return (self.report.kind, self.report.order, self.report.mode,
                tuple(f.name for f in frames) or self.report.comm)

    def to_json(self) -> dict[str, Any]:
        r, order = self.report, self.report.order
        return {
            "kind": r.kind, "comm": r.comm, "pid": r.pid, "kernel": r.kernel,
            "kernel_source": self.choice.note, "gfp_table": self.choice.table.source,
            "order": order, "order_note": order_note(r),
            "mode": None if r.mode is None else hex(r.mode), "gfp_flags": self.flags,
            "printed_flags": r.printed_flags, "flags_agree": self.choice.agrees,
            "context": self.reading.context, "softirq": self.reading.softirq,
            "context_evidence": self.reading.evidence,
            "requester": self.reading.requester, "requester_guessed": self.reading.guessed,
            "stack": [f.text for f in r.frames],
            "free_areas": [{"node": a.node, "zone": a.zone, "page_kb": a.page_kb,
                            "blocks": {str(o): n for o, n in sorted(a.blocks.items())},
                            "free_kb": a.free_kb(), "total_kb": a.total_kb,
                            "blocks_at_or_above_order": a.blocks_at_least(order or 0),
                            "kb_at_or_above_order": a.kb_at_least(order or 0)}
                           for a in r.free_areas],
            "zones": [vars(z) for z in r.zones],
            "nodemask": r.nodemask, "cpuset": r.cpuset, "mems_allowed": r.mems_allowed,
            "detail": r.detail, "timestamp": r.timestamp,
            "verdict": self.assessment.verdict,
            "verdict_evidence": [vars(p) for p in self.assessment.reasons],
            "findings": [vars(p) for p in self.assessment.findings],
            "advice": [vars(p) for p in self.assessment.advice],
            "count": self.count, "lines": self.lines, "caller": r.caller,
            "address_only_frames": r.address_only, "trace_cut": r.trace_cut,
            "partial": r.partial, "problems": r.problems,
            "cause": self.cause.cause if self.cause else None,
            "cause_evidence": self.cause.to_json() if self.cause else None,
        }


def order_note(report: Report) -> str | None:
    if report.order is not None:
        return None
    if report.kind == "vmalloc":
        return ("no order: vmalloc reports a size in bytes and maps single pages, so no "
                "contiguous block of any order was asked for")
    return "order not readable in the report"


def _is_this_machine(report: Report) -> bool:
    return bool(report.kernel) and report.kernel == os.uname().release


def explain_report(report: Report, kernel: str | None = None,
                   vm: VmSettings | None = None, nearby: list[str] | None = None
                   ) -> Explanation:
    """`nearby`: the log lines around the report (memcg OOM lines are evidence)."""
    choice = choose_table(report, kernel)
    table = choice.table
    reading = read_context(report.frames, report.comm, report.address_only, report.trace_cut)
    sleepable = None if report.mode is None else (table.has(report.mode, "__GFP_DIRECT_RECLAIM")
                                                  or table.has(report.mode, "__GFP_WAIT"))
    mode_text = "unreadable" if report.mode is None else hex(report.mode)
    reading = cross_check(reading, report.caller, sleepable, mode_text)
    if vm is None:
        vm = read_vm_settings() if _is_this_machine(report) else VmSettings()
    cause = report_cause(report, table, reading.context, nearby)
    assessment = assess(report, table, reading.context, vm, cause)
    flags = [] if report.mode is None else table.decode(report.mode)
    return Explanation(report, choice, flags, reading, assessment, lines=[report.line],
                       cause=cause)


class Grouper:
    """Same stack, order and mode -> one entry with a count, in first-seen order.
    Consumes a stream keeping only the first report of each group, and at most `limit`
    groups (memory stays bounded for any input): further distinct reports are counted in
    `dropped`, never silently lost."""

    def __init__(self, limit: int | None = None) -> None:
        self.seen: dict[tuple[Any, ...], Explanation] = {}
        self.limit = limit
        self.dropped = 0

    def add(self, e: Explanation) -> None:
        key = e.signature()
        if key in self.seen:
            self.seen[key].count += 1
            if len(self.seen[key].lines) < MAX_LINES_KEPT:
                self.seen[key].lines.append(e.report.line)
        elif self.limit is not None and len(self.seen) >= self.limit:
            self.dropped += 1
        else:
            self.seen[key] = e

    def groups(self) -> list[Explanation]:
        return list(self.seen.values())


def group(explanations: Iterable[Explanation], limit: int | None = None) -> list[Explanation]:
    grouper = Grouper(limit)
    for e in explanations:
        grouper.add(e)
    return grouper.groups()


def explain_reports(reports: Iterable[Report], kernel: str | None = None,
                    vm: VmSettings | None = None) -> Iterator[Explanation]:
    for report in reports:
        yield explain_report(report, kernel, vm)


def explain_text(text: str, kernel: str | None = None, vm: VmSettings | None = None,
                 grouped: bool = True) -> list[Explanation]:
    reports = parse_reports(text)
    lines = text.splitlines()
    starts = [r.line for r in reports] + [len(lines) + 1]
    found = [explain_report(r, kernel, vm, lines[max(0, prev - 1):nxt - 1])
             for r, prev, nxt in zip(reports, [1, *starts[:-2]], starts[1:])]
    return group(found) if grouped else found
