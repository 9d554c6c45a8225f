"""Prometheus metrics: a sink fed by the tracer's run loop and a collector read at scrape time.

`PrometheusSink` is a renderer (same calls as render/plain.py): each decoded failure
bumps a counter under bounded labels, each `stall` record is observed in a histogram.
`TracerCollector` builds everything else when Prometheus scrapes: the in-kernel
per-order and per-context counters (read from the BPF maps then, never cached),
the lost-record counters, and the memory state (/proc/buddyinfo and /proc/zoneinfo
read then, through the same pure procfs readers as `paftrace buddyinfo`).

Cardinality is bounded by construction: no pid, task name or stack in any label;
labels are kernel-defined sets (orders, contexts, softirq vectors, the gfp table's
composite names, triage verdicts) except `requester`, which only the first
`max_sites` call sites get (the rest are summed under requester="other"); and
failures get at most `max_failure_series` label sets of their own (the rest keep
order, context and softirq, with gfp/visibility/severity "other").
`series_bound()` is that bound as a number, documented in docs/EXPORTER.md.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from paftrace import __version__
from paftrace.cause import CAUSES
from paftrace.context import CONTEXTS, SOFTIRQ, SOFTIRQ_NAMES
from paftrace.gfp import GfpTable
from paftrace.procfs import frag
from paftrace.procfs.buddyinfo import ProcFormatError, ZoneFree
from paftrace.procfs.sampler import MemorySampler
from paftrace.procfs.zoneinfo import ZoneInfo
from paftrace.records import Failure
from paftrace.render import Snapshot
from paftrace.triage import EXPECTED, HARMFUL, RATE_LIMITED, REPORTED, SILENT

# Label names of paftrace_page_alloc_failures_total, in this order. `cause` takes one
# of paftrace.cause.CAUSES (six values), so it stays bounded (docs/EXPORTER.md,
# "Cardinality"); it is kept when a label set is folded into "other".
FAILURE_LABELS = ("order", "context", "softirq", "gfp", "visibility", "severity", "cause")
SITE_LABELS = ("requester", "order", "context")
OTHER = "other"
NO_REQUESTER = "unknown"
# Direct reclaim/compaction stalls: 100 us (a cheap compaction pass) to 10 s (a thrashing host).
STALL_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# (context, softirq) pairs a failure can carry: softirq is "" outside softirq context,
# one of the kernel's vectors or "?" (vector unknown) inside it.
CONTEXT_PAIRS = [(c, "") for c in CONTEXTS if c != SOFTIRQ] + \
    [(SOFTIRQ, v) for v in (*SOFTIRQ_NAMES, "?")]
VISIBILITIES = (SILENT, REPORTED, RATE_LIMITED)
SEVERITIES = (EXPECTED, HARMFUL)
WATERMARKS = ("min", "low", "high")
WATERMARK_PERIOD_S = 10.0
# prometheus_client's ProcessCollector: virtual/resident memory, start time, cpu, fds.
PROCESS_SERIES = 6


def leading_gfp_name(gfp_flags: list[str]) -> str:
    """The kernel's leading composite name (GFP_KERNEL_ACCOUNT, GFP_ATOMIC, ...).

    The print fmt table lists composites first, so the first decoded name is the
    composite when there is one. A mask of single __GFP_ bits only is "other";
    mask 0 keeps the kernel's own name for it ("none", or "GFP_NOWAIT" before 4.14).
    """
    first = gfp_flags[0] if gfp_flags else OTHER
    return first if not first.startswith(("__", "0x")) else OTHER


def gfp_label_values(table: GfpTable) -> set[str]:
    """Every value leading_gfp_name() can return with this kernel's table."""
    return {name for _, name in table.entries if not name.startswith(("__", "0x"))} | {
        table.zero_name, OTHER}


def failure_labels(f: Failure) -> tuple[str, ...]:
    """Label values of one failure, in FAILURE_LABELS order."""
    return (str(f.order), f.context, (f.softirq or "?") if f.context == SOFTIRQ else "",
            leading_gfp_name(f.gfp_flags), f.visibility, f.severity, f.cause)


class BoundedCounter:
    """Counts by label values, with at most `limit` label sets of their own.

    A label set keeps its series once it has one, so every counter stays monotonic
    (a set that left a recomputed top N would look like a counter reset to rate()).
    Later label sets are counted under `fold(labels)`, a coarser set ("other").
    """

    def __init__(self, limit: int, fold: Callable[[tuple[str, ...]], tuple[str, ...]]):
        self.limit = limit
        self.fold = fold
        self.counts: Counter[tuple[str, ...]] = Counter()
        self._named: set[tuple[str, ...]] = set()

    def add(self, labels: tuple[str, ...], n: int = 1) -> None:
        if labels not in self._named:
            if len(self._named) >= self.limit:
                labels = self.fold(labels)
            else:
                self._named.add(labels)
        self.counts[labels] += n


def site_labels(f: Failure) -> tuple[str, ...]:
    """(requester, order, context): a call site, in SITE_LABELS order."""
    return (f.requester or NO_REQUESTER, str(f.order), f.context)


def other_site(labels: tuple[str, ...]) -> tuple[str, ...]:
    return (OTHER, *labels[1:])


def other_failure(labels: tuple[str, ...]) -> tuple[str, ...]:
    """Keep order, context, softirq and cause; gfp, visibility and severity become "other"."""
    return (*labels[:3], OTHER, OTHER, OTHER, labels[6])


class PrometheusSink:
    """The tracer's renderer for the exporter: counts what the run loop decodes."""

    def __init__(self, registry: CollectorRegistry, max_sites: int = 20,
                 max_failure_series: int = 200):
        self.lock = threading.Lock()
        self.failures = BoundedCounter(max_failure_series, other_failure)
        self.sites = BoundedCounter(max_sites, other_site)
        self.info: dict = {}
        self.summary: dict | None = None
        # The client library's histogram is thread-safe; observed from the run loop.
        self.stalls = {
            kind: Histogram(f"paftrace_{kind}_stall_seconds",
                            f"Time tasks spent in {kind.replace('_', ' ')} before their "
                            "allocation went on (from the vmscan/compaction tracepoints)",
                            buckets=STALL_BUCKETS, registry=registry)
            for kind in ("direct_reclaim", "direct_compaction")
        }

    def attached(self, info: dict) -> None:
        self.info = info

    def failure(self, failure: Failure) -> None:
        with self.lock:
            self.failures.add(failure_labels(failure), failure.count)
            self.sites.add(site_labels(failure), failure.count)

    def event(self, record: dict) -> None:
        if record.get("type") == "stall" and record.get("kind") in self.stalls:
            self.stalls[record["kind"]].observe(record["duration_ms"] / 1000)

    def tick(self, snapshot: Snapshot) -> None:
        pass  # everything is read at scrape time

    def finish(self, summary: dict) -> None:
        self.summary = summary

    def close(self) -> None:
        pass

    def copy(self) -> tuple[dict[tuple[str, ...], int], dict[tuple[str, ...], int]]:
        with self.lock:
            return dict(self.failures.counts), dict(self.sites.counts)


class CounterSource(Protocol):
    """The tracer's in-kernel counters (commands/exporter.py adapts the running Tracer)."""

    def order_counts(self) -> dict[int, tuple[int, int]]: ...

    def failures_by_context(self) -> dict[str, int]: ...

    def lost(self) -> dict[str, int]: ...

    def reclaim_counters(self) -> dict[str, int] | None: ...


# (metric, in-kernel counter of paftrace/reclaim.py COUNTERS, help)
RECLAIM_COUNTERS = (
    ("paftrace_kswapd_wakeup_requests_total", "wakeup_kswapd",
     "Allocations that asked kswapd to wake (vmscan:mm_vmscan_wakeup_kswapd)"),
    ("paftrace_kswapd_wakeups_total", "kswapd_wake",
     "Times kswapd woke up to reclaim (vmscan:mm_vmscan_kswapd_wake)"),
    ("paftrace_kcompactd_wakeup_requests_total", "wakeup_kcompactd",
     "Requests to wake kcompactd (compaction:mm_compaction_wakeup_kcompactd)"),
    ("paftrace_kcompactd_wakeups_total", "kcompactd_wake",
     "Times kcompactd woke up to compact (compaction:mm_compaction_kcompactd_wake)"),
    ("paftrace_extfrag_fallbacks_total", "extfrag",
     "Allocations that fell back to another migratetype's free list "
     "(kmem:mm_page_alloc_extfrag)"),
    ("paftrace_extfrag_fragmenting_fallbacks_total", "extfrag_fragmenting",
     "Fallbacks that split a pageblock of another migratetype (fragmenting)"),
)


@dataclass
class ExporterInfo:
    kernel: str
    order: int                                  # the watched order (lowest traced order)
    probes: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


class TracerCollector:
    """Everything that is read when Prometheus scrapes."""

    def __init__(self, source: CounterSource, sink: PrometheusSink, info: ExporterInfo,
                 memory: MemorySampler | None = None):
        self.source = source
        self.sink = sink
        self.info = info
        # The free lists are read at every scrape; /proc/zoneinfo (watermarks: they move
        # only with the vm.* tunables and watermark boosts) at most every WATERMARK_PERIOD_S:
        # parsing it was a third of a scrape's CPU. History 2 keeps memory flat.
        self.memory = memory or MemorySampler(interval=WATERMARK_PERIOD_S, history=2)
        self._lock = threading.Lock()  # two scrapers at once: one collection at a time

    def describe(self) -> list[Metric]:
        return []  # no duplicate checks against the registry's other collectors

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            started = time.perf_counter()
            failures, sites = self.sink.copy()
            metrics = [*self._allocations(failures), self._sites(sites),
                       *self._self_observability(), *self._reclaim(), *self._memory()]
            duration = GaugeMetricFamily(
                "paftrace_scrape_duration_seconds",
                "Time this scrape took to read the kernel counters and /proc")
            duration.add_metric([], time.perf_counter() - started)
        yield from metrics
        yield duration

    def _allocations(self, counts: dict[tuple[str, ...], int]) -> Iterable[Metric]:
        attempts = CounterMetricFamily(
            "paftrace_page_alloc_attempts",
            "Page allocations by order, successful or not, every task (in-kernel counter)",
            labels=["order"])
        for order, (count, _) in sorted(self.source.order_counts().items()):
            attempts.add_metric([str(order)], count)
        failures = CounterMetricFamily(
            "paftrace_page_alloc_failures",
            "Failed page allocations matching the filters, decoded (gfp = the kernel's "
            "leading composite name)", labels=list(FAILURE_LABELS))
        matched = CounterMetricFamily(
            "paftrace_page_alloc_failures_matched",
            "Failed page allocations matching the filters by context, counted in the kernel "
            "(exact even when records are lost; every context present from the start)",
            labels=["context"])
        for labels, count in sorted(counts.items()):
            failures.add_metric(list(labels), count)
        for context, count in self.source.failures_by_context().items():
            matched.add_metric([context], count)
        return [attempts, failures, matched]

    def _sites(self, counts: dict[tuple[str, ...], int]) -> Metric:
        sites = CounterMetricFamily(
            "paftrace_page_alloc_failure_sites",
            f"Failures by call site (first {self.sink.sites.limit} sites; the rest under "
            'requester="other")', labels=list(SITE_LABELS))
        for labels, count in sorted(counts.items()):
            sites.add_metric(list(labels), count)
        return sites

    def _self_observability(self) -> Iterable[Metric]:
        lost = self.source.lost()
        reclaim = self.source.reclaim_counters()
        records = CounterMetricFamily(
            "paftrace_lost_records",
            "Records the kernel could not hand over (buffer full): failures or stalls",
            labels=["stream"])
        records.add_metric(["failures"], lost["records"])
        if reclaim is not None:
            records.add_metric(["stalls"], reclaim["lost_stalls"])
        stack_errors = CounterMetricFamily(
            "paftrace_stack_errors", "Failures whose kernel stack could not be stored "
            "(stack map full or walk error)")
        stack_errors.add_metric([], lost["stack_errors"])
        build = GaugeMetricFamily("paftrace_build_info", "paftrace version and running kernel",
                                  labels=["version", "kernel"])
        build.add_metric([__version__, self.info.kernel], 1)
        probes = GaugeMetricFamily("paftrace_probe_info",
                                   "Probes the planner chose: attached (used=true) or refused "
                                   "by this kernel (used=false)", labels=["probe", "used"])
        for probe in self.info.probes:
            probes.add_metric([probe, "true"], 1)
        for probe in self.info.refused:
            probes.add_metric([probe, "false"], 1)
        return [records, stack_errors, build, probes]

    def _reclaim(self) -> Iterable[Metric]:
        counters = self.source.reclaim_counters()
        if counters is None:
            return []
        out = []
        for name, key, doc in RECLAIM_COUNTERS:
            metric = CounterMetricFamily(name.removesuffix("_total"), doc)
            metric.add_metric([], counters[key])
            out.append(metric)
        return out

    def _memory(self) -> Iterable[Metric]:
        try:
            zones = self.memory.free_lists()
        except (OSError, ProcFormatError):
            return []
        try:
            infos = {z.key: z.info for z in self.memory.latest().zones}
        except (OSError, ProcFormatError):
            infos = {}
        return memory_metrics(zones, infos, self.info.order)


def memory_metrics(zones: list[ZoneFree], infos: dict[tuple[int, str], ZoneInfo | None],
                   order: int) -> list[Metric]:
    """Memory-state gauges: free lists of one /proc/buddyinfo read, watermarks of the
    zones' latest /proc/zoneinfo block; `order` is the watched order."""
    zone = ["node", "zone"]
    blocks = GaugeMetricFamily("paftrace_buddy_free_blocks",
                               "Free blocks per order (/proc/buddyinfo)", labels=[*zone, "order"])
    above = GaugeMetricFamily("paftrace_zone_free_blocks_at_or_above_order",
                              "Free blocks of the watched order or larger", labels=[*zone, "order"])
    free = GaugeMetricFamily("paftrace_zone_free_pages",
                             "Free pages of the zone: its free lists summed (the buddy pages "
                             "NR_FREE_PAGES counts), from the same read as the blocks",
                             labels=zone)
    marks = GaugeMetricFamily("paftrace_zone_watermark_pages",
                              "Zone watermarks in pages (/proc/zoneinfo, boost included)",
                              labels=[*zone, "watermark"])
    unusable = GaugeMetricFamily("paftrace_zone_unusable_index",
                                 "Share of free memory in blocks too small for the watched "
                                 "order, 0..1 (mm/vmstat.c unusable_free_index)",
                                 labels=[*zone, "order"])
    fragmentation = GaugeMetricFamily(
        "paftrace_zone_fragmentation_index",
        "Why the watched order would fail: ~0 lack of memory, ~1 fragmentation, -1 a block "
        "exists (mm/vmstat.c __fragmentation_index)", labels=[*zone, "order"])
    watched = str(order)
    for z in zones:
        key = [str(z.node), z.zone]
        for k, count in enumerate(z.free):
            blocks.add_metric([*key, str(k)], count)
        above.add_metric([*key, watched], frag.blocks_at_or_above(z.free, order))
        free.add_metric(key, frag.free_pages(z.free))
        unusable.add_metric([*key, watched], frag.as_fraction(frag.unusable_index(z.free, order)))
        fragmentation.add_metric([*key, watched],
                                 frag.as_fraction(frag.fragmentation_index(z.free, order)))
        info = infos.get(z.key)
        levels = info.watermarks() if info is not None else {}
        for mark in WATERMARKS:
            if mark in levels:
                marks.add_metric([*key, mark], levels[mark])
    return [blocks, above, free, marks, unusable, fragmentation]


def parse_exposition(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{sample name: {sorted label items: value}} of an exposition text (tests, bench)."""
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


@dataclass(frozen=True)
class SeriesBound:
    """The most series the exporter can expose, per metric (docs/EXPORTER.md)."""

    per_metric: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.per_metric.values())


def series_bound(table: GfpTable, orders: int, kernel_orders: int, zones: int,
                 max_sites: int, probes: int, max_failure_series: int = 200) -> SeriesBound:
    """orders: traced orders that exist (order_max clipped to the kernel's);
    kernel_orders: columns of /proc/buddyinfo; zones: lines of it."""
    contexts = len(CONTEXTS)
    every_label_set = orders * len(CONTEXT_PAIRS) * len(gfp_label_values(table)) * len(
        VISIBILITIES) * len(SEVERITIES) * len(CAUSES)
    stall = len(STALL_BUCKETS) + 1 + 3  # buckets with +Inf, _sum, _count, _created
    return SeriesBound({
        "paftrace_page_alloc_attempts_total": min(kernel_orders, 32),
        "paftrace_page_alloc_failures_total":
            min(every_label_set,
                max_failure_series + orders * len(CONTEXT_PAIRS) * len(CAUSES)),
        "paftrace_page_alloc_failures_matched_total": contexts,
        "paftrace_page_alloc_failure_sites_total": max_sites + orders * contexts,
        "paftrace_lost_records_total": 2,
        "paftrace_stack_errors_total": 1,
        "paftrace_build_info": 1,
        "paftrace_probe_info": probes,
        "reclaim counters": len(RECLAIM_COUNTERS),
        "stall histograms": 2 * stall,
        "paftrace_buddy_free_blocks": zones * kernel_orders,
        "zone gauges (at_or_above, free, 3 watermarks, 2 indexes)": zones * 7,
        "paftrace_scrape_duration_seconds": 1,
        "process_* (client library)": PROCESS_SERIES,
    })
