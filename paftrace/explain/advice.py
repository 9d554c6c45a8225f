"""Verdict and advice for one report, each statement with the evidence behind it.

The arithmetic (fragmentation share, suggested vm.min_free_kbytes) is pure;
the live values of /proc/sys/vm are read by `read_vm_settings` and passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from paftrace.cause import Cause
from paftrace.context import HARDIRQ, PROCESS, SOFTIRQ
from paftrace.explain.report import FreeArea, Report, ZoneState
from paftrace.gfp import GfpTable
from paftrace.triage import EXPECTED, cause_advice, triage

# khugepaged's set_recommended_min_free_kbytes() (mm/khugepaged.c): two free
# pageblocks per zone plus MIGRATE_PCPTYPES² for fallbacks, at most 5 % of lowmem.
MIGRATE_PCPTYPES = 3
PAGEBLOCK_KB = 2048  # x86-64 pageblock_order 9 with 4 KiB pages
NETWORK_FRAMES = ("net_rx_action", "net_tx_action", "napi_", "netif_receive", "dev_queue_xmit",
                  "dev_hard_start_xmit", "_xmit", "__napi_alloc_skb", "netdev_alloc",
                  "alloc_skb", "skb_copy", "tcp_", "ip_rcv", "ip_output")


@dataclass(frozen=True)
class Point:
    text: str
    evidence: str


@dataclass
class Assessment:
    verdict: str                     # "benign" | "real"
    reasons: list[Point] = field(default_factory=list)
    findings: list[Point] = field(default_factory=list)
    advice: list[Point] = field(default_factory=list)


@dataclass(frozen=True)
class VmSettings:
    min_free_kbytes: int | None = None
    watermark_scale_factor: int | None = None
    mem_total_kb: int | None = None
    source: str = "report"


@dataclass(frozen=True)
class MinFreeSuggestion:
    current_kb: int
    suggested_kb: int
    reasoning: list[str]


def read_vm_settings(proc: str = "/proc") -> VmSettings:
    def value(path: str) -> int | None:
        try:
            return int(Path(proc, path).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
    total = None
    try:
        for line in Path(proc, "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return VmSettings(value("sys/vm/min_free_kbytes"), value("sys/vm/watermark_scale_factor"),
                      total, source="this machine (/proc/sys/vm)")


def suggest_min_free_kbytes(current_kb: int, lowmem_kb: int, nr_zones: int,
                            pageblock_kb: int = PAGEBLOCK_KB) -> MinFreeSuggestion:
    recommended = pageblock_kb * nr_zones * (2 + MIGRATE_PCPTYPES ** 2)
    cap = lowmem_kb * 5 // 100
    target = min(max(2 * current_kb, recommended), cap)
    reasoning = [
        f"kernel's own anti-fragmentation reserve: {pageblock_kb} kB pageblock x {nr_zones} "
        f"zone(s) x (2 + {MIGRATE_PCPTYPES}²) = {recommended} kB (khugepaged rule)",
        f"doubling the current {current_kb} kB doubles every zone's min/low/high, so kswapd "
        "wakes earlier and keeps more free high-order blocks for atomic bursts",
        f"capped at 5 % of {lowmem_kb} kB RAM = {cap} kB (same cap the kernel uses)",
    ]
    if target <= current_kb:
        reasoning.append("already at or above that: raise watermark_scale_factor instead")
        target = current_kb
    return MinFreeSuggestion(current_kb, target, reasoning)


def fragmentation(order: int, areas: list[FreeArea]) -> Point | None:
    """Plenty free in total, (almost) nothing in blocks of the failed order or larger."""
    if order <= 0 or not areas:
        return None
    free = sum(a.free_kb() for a in areas)
    big = sum(a.kb_at_least(order) for a in areas)
    blocks = sum(a.blocks_at_least(order) for a in areas)
    need = areas[0].page_kb << order
    if free < 64 * need or big * 10 > free:
        return None
    unusable = (free - big) * 100 // free
    return Point("fragmentation: plenty of free memory, but in blocks too small for order "
                 f"{order} ({need} kB)",
                 f"{free} kB free in the zone lists, only {big} kB in {blocks} block(s) of order "
                 f">= {order}: {unusable} % of free memory is unusable for this request")


def _lowmem_kb(report: Report, vm: VmSettings) -> int | None:
    if vm.mem_total_kb:
        return vm.mem_total_kb
    managed = [z.managed_kb for z in report.zones if z.managed_kb]
    if managed:
        return sum(managed)
    if report.ram_pages and report.free_areas:
        return report.ram_pages * report.free_areas[0].page_kb
    return None


def _current_min_free(zones: list[ZoneState], vm: VmSettings) -> tuple[int | None, str]:
    if vm.min_free_kbytes is not None:
        return vm.min_free_kbytes, vm.source
    lowmem = [z for z in zones if z.zone not in ("HighMem", "Movable")]
    if lowmem:
        return sum(z.min_kb for z in lowmem), "sum of the zones' min watermarks in the report"
    return None, ""


def _benign_reasons(table: GfpTable, report: Report, names: set[str]) -> list[Point]:
    if report.mode is None:
        return []
    mode = hex(report.mode)
    out = []
    for flag, why in (("__GFP_NOWARN", "the caller asked for silence and handles failure"),
                      ("__GFP_NORETRY", "the caller asked not to retry: it expects failure and "
                                        "has a fallback")):
        if table.has(report.mode, flag):
            out.append(Point(why, f"{flag} in mode {mode}"))
    if names & {"GFP_TRANSHUGE", "GFP_TRANSHUGE_LIGHT"}:
        out.append(Point("THP allocation: the fault falls back to small pages",
                         f"mode {mode} decodes as a transparent-huge-page mask"))
    frame_names = {f.name for f in report.frames}
    if report.kind == "page" and frame_names & {"kvmalloc_node", "__kvmalloc_node",
                                               "__kvmalloc_node_noprof", "kvmalloc"}:
        out.append(Point("kvmalloc: the kmalloc attempt falls back to vmalloc",
                         "kvmalloc frame in the trace"))
    return out


def assess(report: Report, table: GfpTable, context: str | None,
           vm: VmSettings | None = None, cause: Cause | None = None) -> Assessment:
    vm = vm or VmSettings()
    order = report.order or 0
    if context == "unknown":
        context = None
    if report.mode is None:
        result = Assessment("unknown", [Point("the gfp mask is unreadable: no verdict",
                                              report.header)])
        return result
    names = set(table.decode(report.mode))
    benign = _benign_reasons(table, report, names)
    if benign:
        result = Assessment("benign", benign)
    else:
        verdict = triage(table, report.mode, order, context or PROCESS)
        label = "benign" if verdict.severity == EXPECTED else "real"
        result = Assessment(label, [Point(verdict.rule, f"mode {hex(report.mode)} = "
                                          f"{table.format(report.mode)}, context "
                                          f"{context or 'unknown'}, "
                                          + (f"order {order}" if report.order is not None
                                             else "no order"))])
    if report.kind == "vmalloc":
        result.findings.append(Point("vmalloc failure, not a buddy-allocator one: contiguous "
                                     "physical memory is not needed; the report gives a size, "
                                     "no order", report.detail or report.header))
    elif report.detail and report.detail.startswith(("vmalloc", "vmap")):
        result.findings.append(Point("this page allocation failure is vmalloc's: old kernels "
                                     "(2.6.28-3.x) printed the vmalloc message on its own line, "
                                     "then the order-0 page report", report.detail))
        if report.detail and "exceeds total pages" in report.detail:
            result.findings.append(Point("the requested size is larger than all RAM: a bogus "
                                         "size or a limit set too high (e.g. kernel.sem)",
                                         report.detail))
    atomic = not (table.has(report.mode, "__GFP_DIRECT_RECLAIM")
                  or table.has(report.mode, "__GFP_WAIT"))
    frag = fragmentation(order, report.free_areas)
    if frag:
        result.findings.append(frag)
    if cause is not None and cause.cause not in ("no-free-block", "watermark"):
        result.advice += [Point(text, ev) for text, ev in cause_advice(cause.cause,
                                                                       cause.evidence)]
    tunable = cause is None or cause.cause in ("no-free-block", "watermark", "unknown")
    if atomic and order > 0 and context in (SOFTIRQ, HARDIRQ) and tunable:
        if not frag:
            result.findings.append(Point(
                f"atomic order-{order} request in {context}: cannot reclaim or compact, so it "
                "only succeeds if a free block of that size is already there",
                "no free-area lines in the report to measure fragmentation" if not
                report.free_areas else "see the buddy table"))
        _tuning_advice(result, report, vm, order)
    if _network(report):
        _network_advice(result, report, order)
    return result


def _tuning_advice(result: Assessment, report: Report, vm: VmSettings, order: int) -> None:
    current, source = _current_min_free(report.zones, vm)
    lowmem = _lowmem_kb(report, vm)
    if current and lowmem:
        nr_zones = max(1, len([z for z in report.zones if z.managed_kb]) or
                       len(report.free_areas) or 2)
        s = suggest_min_free_kbytes(current, lowmem, nr_zones)
        result.advice.append(Point(
            f"vm.min_free_kbytes: {s.current_kb} -> {s.suggested_kb} "
            f"(sysctl -w vm.min_free_kbytes={s.suggested_kb})",
            f"current value from {source}; " + "; ".join(s.reasoning)))
    else:
        result.advice.append(Point(
            "raise vm.min_free_kbytes (e.g. double it, at most 5 % of RAM)",
            "the report has no zone watermarks and this is not the machine it came from: "
            "run `paftrace explain` on that machine for a computed value"))
    wsf = vm.watermark_scale_factor if vm.watermark_scale_factor is not None else 10
    result.advice.append(Point(
        f"vm.watermark_scale_factor: {wsf} -> {max(wsf, 10) * 10 if wsf < 100 else wsf} "
        "(4.6+): widens the low-high gap so kswapd reclaims and compacts ahead of bursts",
        f"GFP_ATOMIC at order {order} only checks the min watermark and never compacts"))
    result.advice.append(Point(
        "compaction: `echo 1 > /proc/sys/vm/compact_memory` once to confirm, then "
        "vm.compaction_proactiveness (5.9+) for background compaction",
        "atomic requests cannot compact for themselves (no __GFP_DIRECT_RECLAIM)"))


def _network(report: Report) -> bool:
    return any(any(key in f.name for key in NETWORK_FRAMES) for f in report.frames)


def _network_advice(result: Assessment, report: Report, order: int) -> None:
    frames = [f.name + (f" [{f.module}]" if f.module else "") for f in report.frames
              if any(key in f.name for key in NETWORK_FRAMES)]
    evidence = "network frames in the trace: " + ", ".join(dict.fromkeys(frames[:5]))
    if order > 0:
        result.advice.append(Point(
            f"driver side: order {order} = {4 << order} kB buffers; a smaller MTU (no jumbo "
            "frames) keeps receive buffers at order 0", evidence))
    result.advice.append(Point(
        "driver side: rx copybreak (`ethtool --set-tunable DEV rx-copybreak N` or the "
        "driver's copybreak parameter) copies small packets into small buffers", evidence))
    if any(f.name in ("skb_copy", "__pskb_pull_tail", "skb_linearize", "__skb_linearize")
           or f.name.endswith("_start_xmit") for f in report.frames):
        result.advice.append(Point(
            "transmit path copies whole skbs: lowering TSO/GSO size (`ethtool -K DEV tso off` "
            "or `ip link set DEV gso_max_size N`) keeps those copies small", evidence))
