"""The Prometheus sink and collector, without root: injected counters, captured /proc files."""

from __future__ import annotations

import shutil
from pathlib import Path

import click
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paftrace.procfs.buddyinfo import parse_buddyinfo
from paftrace.procfs.sampler import MemorySampler
from paftrace.records import Failure
from tests.exporter_helpers import parse_exposition, require_prometheus_client
from tests.helpers import DATA, gfp_table_618

require_prometheus_client()

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from paftrace.cause import CAUSES  # noqa: E402
from paftrace.commands.exporter import parse_listen  # noqa: E402
from paftrace.render.prometheus import (  # noqa: E402
    CONTEXT_PAIRS,
    FAILURE_LABELS,
    OTHER,
    BoundedCounter,
    ExporterInfo,
    PrometheusSink,
    TracerCollector,
    failure_labels,
    gfp_label_values,
    leading_gfp_name,
    other_failure,
    other_site,
    series_bound,
    site_labels,
)

TABLE = gfp_table_618()
GFP_KERNEL_ACCOUNT_NOWARN = 0x400cc0 | 0x2000


class FakeCounters:
    """The in-kernel counters as the tracer's session would return them."""

    def __init__(self) -> None:
        self.orders = {0: (1000, 0), 4: (50, 7)}
        self.by_context = {"process": 7, "softirq": 0, "hardirq": 0, "nmi": 0}
        self.lost_counts = {"records": 2, "stack_errors": 1, "aggregation_full": 0}
        self.reclaim: dict[str, int] | None = {
            "wakeup_kswapd": 3, "kswapd_wake": 2, "wakeup_kcompactd": 5, "kcompactd_wake": 4,
            "extfrag": 11, "extfrag_fragmenting": 1, "lost_stalls": 0}

    def order_counts(self) -> dict[int, tuple[int, int]]:
        return self.orders

    def failures_by_context(self) -> dict[str, int]:
        return self.by_context

    def lost(self) -> dict[str, int]:
        return self.lost_counts

    def reclaim_counters(self) -> dict[str, int] | None:
        return self.reclaim


def make_failure(order: int = 4, context: str = "process", softirq: str | None = None,
                 mask: int = GFP_KERNEL_ACCOUNT_NOWARN, requester: str | None = "pipe_resize_ring",
                 pid: int = 100) -> Failure:
    return Failure(ts_ns=1, cpu=0, pid=pid, tid=pid, comm=f"task{pid}", order=order,
                   gfp=hex(mask), gfp_flags=TABLE.decode(mask), migratetype="Unmovable",
                   context=context, softirq=softirq, stack=[f"{requester}+0x10"],
                   requester=requester, visibility="silent", severity="expected")


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    """A /proc with the live 6.18 captures of buddyinfo and zoneinfo."""
    shutil.copy(DATA / "procfs" / "buddyinfo.live-6.18-x86", tmp_path / "buddyinfo")
    shutil.copy(DATA / "procfs" / "zoneinfo.live-6.18-x86", tmp_path / "zoneinfo")
    return tmp_path


def scrape(sink: PrometheusSink, registry: CollectorRegistry, proc: Path,
           source: FakeCounters | None = None, order: int = 4) -> dict[str, dict]:
    """Exposition text parsed back by the client library: {sample name: {labels: value}}."""
    info = ExporterInfo("6.18.0-test", order, ["tracepoint:kmem:mm_page_alloc"],
                        ["kprobe:warn_alloc"])
    registry.register(TracerCollector(source or FakeCounters(), sink, info,
                                      MemorySampler(interval=0, proc=str(proc), history=2)))
    return parse_exposition(generate_latest(registry).decode())


def labels(**kw: str) -> tuple:
    return tuple(sorted(kw.items()))


def test_leading_gfp_name_is_the_kernels_composite() -> None:
    assert leading_gfp_name(TABLE.decode(0x400cc0)) == "GFP_KERNEL_ACCOUNT"
    assert leading_gfp_name(TABLE.decode(0x820)) == "GFP_ATOMIC"
    assert leading_gfp_name(TABLE.decode(GFP_KERNEL_ACCOUNT_NOWARN)) == "GFP_KERNEL_ACCOUNT"
    assert leading_gfp_name(TABLE.decode(0)) == "none"
    assert leading_gfp_name(TABLE.decode(0x2000)) == OTHER  # __GFP_NOWARN alone
    assert leading_gfp_name(TABLE.decode(1 << 40)) == OTHER  # bits the table does not name


def test_failure_labels_in_order_and_softirq_only_in_softirq() -> None:
    assert failure_labels(make_failure()) == ("4", "process", "", "GFP_KERNEL_ACCOUNT",
                                              "silent", "expected", "unknown")
    memcg = make_failure()
    memcg.cause = "memcg-limit"
    assert failure_labels(memcg)[-1] == "memcg-limit"
    net = make_failure(context="softirq", softirq="NET_RX", mask=0x820)
    assert failure_labels(net)[:4] == ("4", "softirq", "NET_RX", "GFP_ATOMIC")
    assert failure_labels(make_failure(context="softirq", softirq=None))[2] == "?"
    assert len(failure_labels(net)) == len(FAILURE_LABELS)


def test_sites_keep_their_series_and_the_rest_go_to_other() -> None:
    sites = BoundedCounter(2, other_site)
    for name in ("a", "b", "c", "a", "d", "c"):
        sites.add(site_labels(make_failure(requester=name)))
    sites.add(site_labels(make_failure(order=5, context="softirq", requester=None)))
    assert sites.counts == {("a", "4", "process"): 2, ("b", "4", "process"): 1,
                            (OTHER, "4", "process"): 3, (OTHER, "5", "softirq"): 1}
    before = dict(sites.counts)
    sites.add(("b", "4", "process"))  # an admitted site stays admitted: counters only grow
    assert all(sites.counts[k] >= v for k, v in before.items())


def test_no_requester_is_unknown_not_dropped() -> None:
    sites = BoundedCounter(5, other_site)
    sites.add(site_labels(make_failure(context="hardirq", requester=None)))
    assert sites.counts == {("unknown", "4", "hardirq"): 1}


def test_failure_label_sets_beyond_the_cap_keep_order_and_context() -> None:
    failures = BoundedCounter(1, other_failure)
    failures.add(failure_labels(make_failure()))
    failures.add(failure_labels(make_failure(context="softirq", softirq="NET_RX", mask=0x820)))
    assert failures.counts == {
        ("4", "process", "", "GFP_KERNEL_ACCOUNT", "silent", "expected", "unknown"): 1,
        ("4", "softirq", "NET_RX", OTHER, OTHER, OTHER, "unknown"): 1}  # cause is kept


def test_scrape_has_every_metric_of_the_issue(proc: Path) -> None:
    registry = CollectorRegistry()
    sink = PrometheusSink(registry, max_sites=20)
    for _ in range(3):
        sink.failure(make_failure())
    sink.failure(make_failure(context="softirq", softirq="NET_RX", mask=0x820,
                              requester="tg3_start_xmit [tg3]"))
    sink.event({"type": "stall", "kind": "direct_compaction", "duration_ms": 40.0})
    sink.event({"type": "buddyinfo"})  # other timeline records are not stalls
    m = scrape(sink, registry, proc)

    assert m["paftrace_page_alloc_attempts_total"] == {labels(order="0"): 1000,
                                                       labels(order="4"): 50}
    failures = m["paftrace_page_alloc_failures_total"]
    assert failures[labels(order="4", context="process", softirq="", gfp="GFP_KERNEL_ACCOUNT",
                           visibility="silent", severity="expected", cause="unknown")] == 3
    assert failures[labels(order="4", context="softirq", softirq="NET_RX", gfp="GFP_ATOMIC",
                           visibility="silent", severity="expected", cause="unknown")] == 1
    assert m["paftrace_page_alloc_failures_matched_total"][labels(context="process")] == 7
    assert m["paftrace_page_alloc_failure_sites_total"] == {
        labels(requester="pipe_resize_ring", order="4", context="process"): 3,
        labels(requester="tg3_start_xmit [tg3]", order="4", context="softirq"): 1}
    assert m["paftrace_lost_records_total"] == {labels(stream="failures"): 2,
                                                labels(stream="stalls"): 0}
    assert m["paftrace_stack_errors_total"] == {(): 1}
    assert m["paftrace_build_info"] == {labels(version="0.1.0", kernel="6.18.0-test"): 1}
    assert m["paftrace_probe_info"] == {
        labels(probe="tracepoint:kmem:mm_page_alloc", used="true"): 1,
        labels(probe="kprobe:warn_alloc", used="false"): 1}
    assert m["paftrace_kswapd_wakeup_requests_total"] == {(): 3}
    assert m["paftrace_kswapd_wakeups_total"] == {(): 2}
    assert m["paftrace_kcompactd_wakeup_requests_total"] == {(): 5}
    assert m["paftrace_kcompactd_wakeups_total"] == {(): 4}
    assert m["paftrace_extfrag_fallbacks_total"] == {(): 11}
    assert m["paftrace_direct_compaction_stall_seconds_count"] == {(): 1}
    assert m["paftrace_direct_compaction_stall_seconds_sum"] == {(): pytest.approx(0.04)}
    assert m["paftrace_direct_compaction_stall_seconds_bucket"][labels(le="0.025")] == 0
    assert m["paftrace_direct_compaction_stall_seconds_bucket"][labels(le="0.05")] == 1
    assert m["paftrace_direct_reclaim_stall_seconds_count"] == {(): 0}
    assert 0 <= m["paftrace_scrape_duration_seconds"][()] < 1


def test_memory_gauges_equal_the_files(proc: Path) -> None:
    registry = CollectorRegistry()
    m = scrape(PrometheusSink(registry), registry, proc, order=4)
    zones = parse_buddyinfo((proc / "buddyinfo").read_text())
    blocks = m["paftrace_buddy_free_blocks"]
    assert len(blocks) == sum(len(z.free) for z in zones)
    for z in zones:
        for order, count in enumerate(z.free):
            assert blocks[labels(node=str(z.node), zone=z.zone, order=str(order))] == count
        key = labels(node=str(z.node), zone=z.zone, order="4")
        assert m["paftrace_zone_free_blocks_at_or_above_order"][key] == sum(z.free[4:])
        assert 0 <= m["paftrace_zone_unusable_index"][key] <= 1
        assert -1 <= m["paftrace_zone_fragmentation_index"][key] <= 1
    # zoneinfo.live-6.18-x86, Node 0 zone Normal: pages free / min / low / high.
    text = (proc / "zoneinfo").read_text()
    normal = text[text.index("zone   Normal"):]
    figures = {k: int(normal.split(f"\n        {k} ", 1)[1].split()[0])
               for k in ("min", "low", "high")}
    for mark, value in figures.items():
        assert m["paftrace_zone_watermark_pages"][labels(node="0", zone="Normal",
                                                         watermark=mark)] == value
    for z in zones:  # the free lists summed, from the same read as the blocks
        assert m["paftrace_zone_free_pages"][labels(node=str(z.node), zone=z.zone)] == sum(
            n << k for k, n in enumerate(z.free))


def test_without_reclaim_tracepoints_reclaim_counters_are_absent(proc: Path) -> None:
    registry = CollectorRegistry()
    source = FakeCounters()
    source.reclaim = None
    m = scrape(PrometheusSink(registry), registry, proc, source=source)
    assert "paftrace_kswapd_wakeups_total" not in m
    assert m["paftrace_lost_records_total"] == {labels(stream="failures"): 2}


def test_unreadable_proc_drops_only_the_memory_gauges(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    m = scrape(PrometheusSink(registry), registry, tmp_path)  # no buddyinfo there
    assert "paftrace_buddy_free_blocks" not in m
    assert "paftrace_page_alloc_attempts_total" in m


# Kernel symbols and module names are data: whatever they hold must come back intact.
@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=60))
def test_requester_text_survives_the_exposition_format(name: str) -> None:
    registry = CollectorRegistry()
    sink = PrometheusSink(registry)
    sink.failure(make_failure(requester=name))
    collector = TracerCollector(FakeCounters(), sink, ExporterInfo("k", 4),
                                MemorySampler(interval=0, proc="/nonexistent", history=2))
    registry.register(collector)
    text = generate_latest(registry).decode()
    sites = [s for f in text_string_to_metric_families(text) for s in f.samples
             if s.name == "paftrace_page_alloc_failure_sites_total"]
    assert [(s.labels["requester"], s.value) for s in sites] == [(name, 1)]


def test_a_storm_of_call_sites_and_processes_stays_under_the_bound(proc: Path) -> None:
    """Every order, context, vector, gfp mask and 5000 call sites from 5000 processes."""
    registry = CollectorRegistry()
    sink = PrometheusSink(registry, max_sites=20)
    masks = [value for value, _ in TABLE.entries] + [0, 1 << 40, 0x2000]
    n = 0
    for order in range(11):
        for context, vector in CONTEXT_PAIRS:
            for mask in masks:
                n += 1
                f = make_failure(order=order, context=context, softirq=vector or None,
                                 mask=mask, requester=f"site_{n % 5000}", pid=n)
                for visibility, severity in (("silent", "expected"), ("reported", "harmful"),
                                             ("rate-limited", "harmful")):
                    f.visibility, f.severity = visibility, severity
                    sink.failure(f)
    m = scrape(sink, registry, proc)
    zones = parse_buddyinfo((proc / "buddyinfo").read_text())
    bound = series_bound(TABLE, orders=11, kernel_orders=len(zones[0].free), zones=len(zones),
                         max_sites=20, probes=2)
    failures = m["paftrace_page_alloc_failures_total"]
    assert len(failures) <= bound.per_metric["paftrace_page_alloc_failures_total"] == \
        200 + 11 * len(CONTEXT_PAIRS) * len(CAUSES)
    assert sum(1 for k in failures if dict(k)["gfp"] != OTHER) <= 200
    assert {dict(k)["gfp"] for k in failures} <= gfp_label_values(TABLE)
    sites = m["paftrace_page_alloc_failure_sites_total"]
    assert len(sites) <= bound.per_metric["paftrace_page_alloc_failure_sites_total"]
    assert sum(1 for k in sites if dict(k)["requester"] != OTHER) == 20
    assert sum(sites.values()) == sum(failures.values()) == n * 3  # nothing lost in "other"
    series = sum(len(v) for k, v in m.items() if not k.endswith("_created"))
    assert series <= bound.total


@pytest.mark.parametrize("text,expected", [
    ("127.0.0.1:9854", ("127.0.0.1", 9854)),
    ("0.0.0.0:80", ("0.0.0.0", 80)),
    ("[::1]:9854", ("::1", 9854)),
    ("localhost:0", ("localhost", 0)),
])
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9854", ":9854", "host:", "host:70000", "host:port"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_listen(text)
