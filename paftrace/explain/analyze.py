"""Report -> Explanation (decoded, classified, judged), and grouping of repeats."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from paftrace.cause import Cause
from paftrace.explain.advice import Assessment, VmSettings, assess, read_vm_settings
from paftrace.explain.cause_read import report_cause
from paftrace.explain.context_read import ContextReading, read_context, usable_frames
from paftrace.explain.kernel import TableChoice, choose_table
from paftrace.explain.parse import parse_reports
from paftrace.explain.report import Report


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
            "order": order, "mode": hex(r.mode), "gfp_flags": self.flags,
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
            "count": self.count, "lines": self.lines,
            "partial": r.partial, "problems": r.problems,
            "cause": self.cause.cause if self.cause else None,
            "cause_evidence": self.cause.to_json() if self.cause else None,
        }


def _is_this_machine(report: Report) -> bool:
    return bool(report.kernel) and report.kernel == os.uname().release


def explain_report(report: Report, kernel: str | None = None,
                   vm: VmSettings | None = None, nearby: list[str] | None = None
                   ) -> Explanation:
    """`nearby`: the log lines around the report (memcg OOM lines are evidence)."""
    choice = choose_table(report, kernel)
    reading = read_context(report.frames, report.comm)
    if vm is None:
        vm = read_vm_settings() if _is_this_machine(report) else VmSettings()
    cause = report_cause(report, choice.table, reading.context, nearby)
    assessment = assess(report, choice.table, reading.context, vm, cause)
    return Explanation(report, choice, choice.table.decode(report.mode), reading, assessment,
                       lines=[report.line], cause=cause)


def group(explanations: list[Explanation]) -> list[Explanation]:
    """Same stack, order and mode -> one entry with a count, in first-seen order."""
    seen: dict[tuple[Any, ...], Explanation] = {}
    for e in explanations:
        key = e.signature()
        if key in seen:
            seen[key].count += 1
            seen[key].lines.append(e.report.line)
        else:
            seen[key] = e
    return list(seen.values())


def explain_text(text: str, kernel: str | None = None, vm: VmSettings | None = None,
                 grouped: bool = True) -> list[Explanation]:
    reports = parse_reports(text)
    lines = text.splitlines()
    starts = [r.line for r in reports] + [len(lines) + 1]
    found = [explain_report(r, kernel, vm, lines[max(0, prev - 1):nxt - 1])
             for r, prev, nxt in zip(reports, [1, *starts[:-2]], starts[1:])]
    return group(found) if grouped else found
