"""The cause of a reported failure, from what its Mem-Info (and nearby lines) show.

The report's per-zone lines (`Node 0 Normal free:..kB min:..kB ...`) and free
lists (`Node 0 Normal: 12*4kB ... = ..kB`) become a `MemorySample` in pages, so
the live classifier (`paftrace.cause.classify`) judges them with the same rules.
Memory cgroup lines printed by the memcg OOM report near it
(mm/memcontrol.c mem_cgroup_print_oom_meminfo: ``memory: usage %llukB, limit
%llukB, failcnt %lu`` and ``Memory cgroup stats for <path>:``) are memcg evidence.

A refused memcg charge itself never prints this report: mm/page_alloc.c frees the
page on the `out:` path of __alloc_pages (6.x; __alloc_pages_nodemask in 4.x/5.x)
without calling warn_alloc. So a printed failure is the allocator's own; memcg
lines near it are shown as context (the container was at its limit too), never as
the cause: those refusals are only seen live (`paftrace trace`).
"""

from __future__ import annotations

import re

from paftrace.cause import Cause, NodeRestriction, Request, classify
from paftrace.explain.report import Report
from paftrace.gfp import GfpTable
from paftrace.procfs.memcg import MemcgReading
from paftrace.procfs.sampler import MemorySample, ZoneSample
from paftrace.procfs.zoneinfo import ZoneInfo

_USAGE_RE = re.compile(r"\bmemory: usage (\d+)kB, limit (\d+)kB, failcnt (\d+)")
_KMEM_RE = re.compile(r"\bkmem: usage (\d+)kB")
_STATS_RE = re.compile(r"Memory cgroup stats for (\S+?):?\s*$")
_NODES_RE = re.compile(r"^\s*(\d+)(?:-(\d+))?\s*$")
UNLIMITED_KB = 1 << 52  # v1 prints PAGE_COUNTER_MAX pages in kB (9007199254740988kB)


def sample_from_report(report: Report) -> MemorySample | None:
    """The report's free lists and watermarks as a sample in pages (None without free lists)."""
    if not report.free_areas:
        return None
    states = {(z.node, z.zone): z for z in report.zones}
    zones = []
    for area in report.free_areas:
        pages = area.page_kb or 4
        top = max(area.blocks, default=-1)
        free = tuple(area.blocks.get(o, 0) for o in range(top + 1))
        info = None
        state = states.get((area.node, area.zone))
        if state is not None:
            attrs = {"pages free": state.free_kb // pages, "min": state.min_kb // pages,
                     "low": state.low_kb // pages, "high": state.high_kb // pages}
            if state.managed_kb is not None:
                attrs["managed"] = state.managed_kb // pages
            info = ZoneInfo(area.node, area.zone, attrs)
        zones.append(ZoneSample(area.node, area.zone, free, info))
    return MemorySample(0, zones, notes=["from the report's Mem-Info; lowmem_reserve not used"])


def memcg_from_lines(lines: list[str]) -> list[MemcgReading]:
    """memcg OOM lines -> readings (bytes), innermost cgroup path when printed."""
    out: list[MemcgReading] = []
    pending: dict | None = None
    for line in lines:
        m = _USAGE_RE.search(line)
        if m:
            if pending:
                out.append(_reading(pending))
            limit = int(m.group(2))
            pending = {"usage": int(m.group(1)) << 10,
                       "limit": None if limit >= UNLIMITED_KB else limit << 10,
                       "failcnt": int(m.group(3)), "path": None, "kernel": None}
            continue
        if pending is None:
            continue
        m = _KMEM_RE.search(line)
        if m:
            pending["kernel"] = int(m.group(1)) << 10
            continue
        m = _STATS_RE.search(line)
        if m:
            pending["path"] = m.group(1)
            out.append(_reading(pending))
            pending = None
    if pending:
        out.append(_reading(pending))
    return out


def _reading(p: dict) -> MemcgReading:
    return MemcgReading(1, p["path"] or "(memcg OOM report)", p["usage"], p["limit"],
                        p["failcnt"], kernel=p["kernel"])


def nodes_allowed(report: Report) -> set[int] | None:
    """mems_allowed (5.x: `0-1`, `0,2`) when it is a list of node numbers."""
    text = report.mems_allowed
    if not text:
        return None
    out: set[int] = set()
    for part in text.split(","):
        m = _NODES_RE.match(part)
        if not m:
            return None
        out.update(range(int(m.group(1)), int(m.group(2) or m.group(1)) + 1))
    return out


def report_cause(report: Report, table: GfpTable, context: str | None,
                 nearby: list[str] | None = None) -> Cause | None:
    """The cause of one page-allocation report; None for vmalloc/vmemmap reports."""
    if report.kind != "page" or report.order is None or getattr(report, "mode", None) is None:
        return None  # vmalloc/vmemmap, or a header cut before its order or mode
    page_kb = report.free_areas[0].page_kb if report.free_areas else 4
    req = Request(report.order, report.mode, table, context or "process",
                  page_size=page_kb << 10)
    sample = sample_from_report(report)
    readings = memcg_from_lines(nearby or [])
    account = table.value_of("__GFP_ACCOUNT") or 0
    if account and req.mask & account:
        # Printed, so not a refused charge: judge it as the allocator's own failure.
        req = Request(req.order, req.mask & ~account, table, req.context,
                      page_size=req.page_size)
    restriction = None
    allowed = nodes_allowed(report)
    if sample is not None and allowed is not None:
        present = {z.node for z in sample.zones}
        if present - allowed:
            restriction = NodeRestriction(frozenset(allowed & present),
                                          f"cpuset mems_allowed={report.mems_allowed}")
    cause = classify(req, sample, None, None, restriction)
    if account and report.mode & account:
        cause.evidence["note"] = ("__GFP_ACCOUNT, but a refused memory cgroup charge does "
                                  "not print this report: judged as the allocator's failure")
    if readings:
        cause.evidence["memcg_nearby"] = [r.to_json() for r in readings]
        at = [r for r in readings if r.limit is not None and r.usage is not None
              and r.limit - r.usage < req.need_bytes]
        if at:
            r = at[0]
            cause.sentence += (f"; memory cgroup {r.path} near it was at its limit too "
                               f"(usage {r.usage >> 10} kB of {r.limit >> 10} kB, failcnt "
                               f"{r.limit_events}): its charges fail silently, not here")
    if sample is None:
        cause.sentence = ("the report carries no free lists (its Mem-Info is cut or absent): "
                          "nothing to judge the zones by")
        cause.evidence["missing"] = ["the Mem-Info free lists (`Node N ZONE: n*4kB ... = NkB`)"
                                     " printed after the trace"]
    return cause
