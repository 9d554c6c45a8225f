"""Probe planning against fake kernels of several eras."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from paftrace.planner import ALLOC_ENTRY_NAMES, PlanError, plan_probes
from paftrace.tracefs import TracepointFormat, parse_format
from tests.helpers import DATA

FMT_PFN = parse_format((DATA / "formats" / "mm_page_alloc-6.18.format").read_text())
FMT_PAGE = parse_format(
    "name: mm_page_alloc\nformat:\n"
    "\tfield:struct page * page;\toffset:8;\tsize:8;\tsigned:0;\n"
    "\tfield:unsigned int order;\toffset:16;\tsize:4;\tsigned:0;\n")
IRQ_EVENTS = {("irq", e) for e in ("irq_handler_entry", "irq_handler_exit", "softirq_entry",
                                   "softirq_exit")}
VECTORS = {("irq_vectors", f"local_timer_{x}") for x in ("entry", "exit")}


@dataclass
class FakeKernel:
    release: str = "6.1.0"
    events: set = field(default_factory=lambda: IRQ_EVENTS | VECTORS)
    functions: set = field(default_factory=set)
    kprobes: bool = True
    ringbuf: bool = True
    fmt: TracepointFormat = field(default_factory=lambda: FMT_PFN)
    fmt_missing: bool = False

    def has_event(self, category: str, event: str) -> bool:
        return (category, event) in self.events

    def read_format(self, category: str, event: str) -> TracepointFormat | None:
        if self.fmt_missing:
            return None
        return self.fmt if (category, event) == ("kmem", "mm_page_alloc") else None

    def has_function(self, name: str) -> bool:
        return name in self.functions

    def kprobes_available(self) -> bool:
        return self.kprobes

    def ringbuf_supported(self) -> bool:
        return self.ringbuf


@pytest.mark.parametrize("functions,expected", [
    ({"__alloc_pages_nodemask", "warn_alloc"}, "__alloc_pages_nodemask"),          # 5.10
    ({"__alloc_pages", "warn_alloc"}, "__alloc_pages"),                            # 6.1
    ({"__alloc_pages_noprof", "warn_alloc"}, "__alloc_pages_noprof"),              # 6.12
    ({"__alloc_pages_noprof", "__alloc_frozen_pages_noprof"}, "__alloc_frozen_pages_noprof"),
])
def test_allocator_entry_name_per_era(functions, expected):
    plan = plan_probes(FakeKernel(functions=functions))
    assert plan.alloc_kprobe == expected
    assert f"kprobe:{expected}" in plan.probes()
    assert not any(p.startswith("kretprobe:") for p in plan.probes())


def test_warn_alloc_and_printed_marker_candidates():
    plan = plan_probes(FakeKernel(functions={"warn_alloc_failed", "dump_stack", "show_mem",
                                             "__alloc_pages_nodemask"}))
    assert plan.warn_kprobe == "warn_alloc_failed"
    # show_mem first: dump_stack is refused by kprobes on 5.10-6.12 (kernel matrix).
    assert plan.printed_kprobes == ["show_mem", "dump_stack"]
    assert plan.printed_kprobe is None  # set by the loader to the one that attached


def test_no_kprobes_like_this_host():
    plan = plan_probes(FakeKernel(kprobes=False, functions=set(ALLOC_ENTRY_NAMES)))
    assert plan.alloc_kprobe is None and plan.warn_kprobe is None
    status = {s.name: s for s in plan.statuses}
    assert not status["kprobes"].used and "CONFIG_KPROBES" in status["kprobes"].detail


def test_old_kernel_page_field_and_perf_buffer():
    plan = plan_probes(FakeKernel(fmt=FMT_PAGE, ringbuf=False, events=IRQ_EVENTS))
    assert plan.failure_field == "page"
    assert not plan.ringbuf and "perfbuf" in plan.probes()
    assert plan.system_vectors == []


def test_no_feature_forces_fallbacks():
    kernel = FakeKernel(functions={"__alloc_pages", "warn_alloc", "dump_stack_lvl"})
    plan = plan_probes(kernel, frozenset({"ringbuf", "irq-tracepoints", "alloc-kprobe"}))
    assert not plan.ringbuf and not plan.irq_tracepoints and plan.system_vectors == []
    assert plan.alloc_kprobe is None and plan.warn_kprobe == "warn_alloc"
    assert plan_probes(kernel, frozenset({"kprobes"})).warn_kprobe is None


def test_missing_irq_tracepoints_fall_back_to_stacks():
    plan = plan_probes(FakeKernel(events=set()))
    assert not plan.irq_tracepoints
    assert any("stack" in s.detail for s in plan.statuses if s.name == "irq-tracepoints")


def test_required_pieces_raise_plan_errors():
    with pytest.raises(PlanError, match="mm_page_alloc is missing"):
        plan_probes(FakeKernel(fmt_missing=True))
    with pytest.raises(PlanError, match="unknown feature"):
        plan_probes(FakeKernel(), frozenset({"warp-drive"}))
