"""Probe planning against fake kernels of several eras."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from paftrace.planner import ALLOC_ENTRY_NAMES, FEATURES, PlanError, plan_probes
from paftrace.tracefs import TracepointFormat, parse_format
from tests.helpers import DATA, needs_root

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
    raw: bool = True  # raw tracepoints (4.17+)
    fmt: TracepointFormat = field(default_factory=lambda: FMT_PFN)
    fmt_missing: bool = False
    formats: dict = field(default_factory=dict)  # other tracepoints' formats
    helpers: set = field(default_factory=lambda: {"bpf_get_current_cgroup_id"})

    def has_event(self, category: str, event: str) -> bool:
        return (category, event) in self.events

    def read_format(self, category: str, event: str) -> TracepointFormat | None:
        if self.fmt_missing:
            return None
        if (category, event) == ("kmem", "mm_page_alloc"):
            return self.fmt
        return self.formats.get((category, event))

    def has_function(self, name: str) -> bool:
        return name in self.functions

    def kprobes_available(self) -> bool:
        return self.kprobes

    def ringbuf_supported(self) -> bool:
        return self.ringbuf

    def raw_tracepoints_supported(self) -> bool:
        return self.raw

    def has_bpf_helper(self, name: str) -> bool:
        return name in self.helpers


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
    assert plan.printed_kprobes == ("show_mem", "dump_stack")
    # The loader attaches the first the kernel accepts; the plan lists that one.
    assert plan.probes()[-1] == "kprobe:show_mem"


def test_no_kprobes_like_this_host():
    plan = plan_probes(FakeKernel(kprobes=False, functions=set(ALLOC_ENTRY_NAMES)))
    assert plan.alloc_kprobe is None and plan.warn_kprobe is None
    status = {s.name: s for s in plan.statuses}
    assert not status["kprobes"].used and "CONFIG_KPROBES" in status["kprobes"].detail


def test_old_kernel_page_field_and_perf_buffer():
    plan = plan_probes(FakeKernel(fmt=FMT_PAGE, ringbuf=False, events=IRQ_EVENTS))
    assert plan.failure_field == "page"
    assert not plan.ringbuf and "perfbuf" in plan.probes()
    assert plan.system_vectors == ()


def test_no_feature_forces_fallbacks():
    kernel = FakeKernel(functions={"__alloc_pages", "warn_alloc", "dump_stack_lvl"})
    plan = plan_probes(kernel, frozenset({"ringbuf", "irq-tracepoints", "alloc-kprobe"}))
    assert not plan.ringbuf and not plan.irq_tracepoints and plan.system_vectors == ()
    assert plan.alloc_kprobe is None and plan.warn_kprobe == "warn_alloc"
    assert plan_probes(kernel, frozenset({"kprobes"})).warn_kprobe is None


def test_missing_irq_tracepoints_fall_back_to_stacks():
    plan = plan_probes(FakeKernel(events=set()))
    assert not plan.irq_tracepoints
    assert any("stack" in s.detail for s in plan.statuses if s.name == "irq-tracepoints")


def test_the_plan_is_frozen_and_lists_every_tracepoint_once():
    plan = plan_probes(FakeKernel(functions={"__alloc_pages", "warn_alloc"}))
    with pytest.raises(AttributeError):
        plan.ringbuf = False  # type: ignore[misc]
    assert plan.tracepoints() == ("kmem:mm_page_alloc", *(f"irq:{e}" for e in (
        "irq_handler_entry", "irq_handler_exit", "softirq_entry", "softirq_exit")),
        "irq_vectors:local_timer_entry", "irq_vectors:local_timer_exit")
    assert plan.probes() == [*(f"raw_tracepoint:{t}" for t in plan.tracepoints()), "ringbuf",
                             "kprobe:warn_alloc", "kprobe:__alloc_pages"]


@pytest.mark.parametrize("kernel,disabled", [(FakeKernel(raw=False), frozenset()),
                                             (FakeKernel(), frozenset({"raw-tracepoint"}))])
def test_the_allocation_hook_is_a_classic_tracepoint_without_raw_ones(kernel, disabled):
    """Before 4.17, or with --no-feature raw-tracepoint: every tracepoint is classic."""
    plan = plan_probes(kernel, disabled)
    assert not plan.raw_tracepoints
    assert plan.probes()[:2] == ["tracepoint:kmem:mm_page_alloc",
                                 "tracepoint:irq:irq_handler_entry"]
    assert not any(p.startswith("raw_") for p in plan.probes())
    status = next(s for s in plan.statuses if s.name == "raw-tracepoint")
    assert not status.used and "classic tracepoint" in status.detail
    assert plan_probes(FakeKernel()).raw_tracepoints


def test_reclaim_is_part_of_the_plan():
    kernel = FakeKernel()
    kernel.events |= {("compaction", "mm_compaction_end")}
    end_fmt = parse_format("name: mm_compaction_end\nformat:\n"
                           "\tfield:int status;\toffset:8;\tsize:4;\tsigned:1;\n")
    kernel.formats = {("compaction", "mm_compaction_end"): end_fmt}
    plan = plan_probes(kernel)
    assert plan.reclaim is not None and plan.reclaim.events == ("compaction:mm_compaction_end",)
    assert "tracepoint:compaction:mm_compaction_end" in plan.probes()  # classic, not raw
    assert "-DHAVE_COMPACTION_END" in plan.reclaim.cflags
    assert plan.is_raw("kmem:mm_page_alloc") and not plan.is_raw("kmem:mm_page_alloc_extfrag")
    assert plan_probes(kernel, frozenset({"reclaim"})).reclaim is None


def test_required_pieces_raise_plan_errors():
    with pytest.raises(PlanError, match="mm_page_alloc is missing"):
        plan_probes(FakeKernel(fmt_missing=True))
    with pytest.raises(PlanError, match="unknown feature"):
        plan_probes(FakeKernel(), frozenset({"warp-drive"}))


def test_cgroup_id_helper_is_probed_and_can_be_disabled():
    plan = plan_probes(FakeKernel())
    assert plan.cgroup_id
    status = next(s for s in plan.statuses if s.name == "cgroup-id")
    assert status.used and "read in the kernel" in status.detail
    old = plan_probes(FakeKernel(helpers=set()))  # before 4.18 / no CONFIG_CGROUPS
    assert not old.cgroup_id
    assert "/proc/PID/cgroup" in next(s for s in old.statuses if s.name == "cgroup-id").detail
    assert not plan_probes(FakeKernel(), frozenset({"cgroup-id"})).cgroup_id


@pytest.mark.parametrize("functions,expected", [
    ({"__memcg_kmem_charge_page", "__memcg_kmem_charge"}, "__memcg_kmem_charge_page"),
    ({"__memcg_kmem_charge"}, "__memcg_kmem_charge"),   # before the page-level name
    (set(), None),
])
def test_memcg_charge_kretprobe_is_probed(functions, expected):
    plan = plan_probes(FakeKernel(functions=functions))
    assert plan.memcg_kprobe == expected
    if expected:
        assert f"kretprobe:{expected}" in plan.probes()
    assert plan_probes(FakeKernel(kprobes=False, functions=functions)).memcg_kprobe is None
    assert plan_probes(FakeKernel(functions=functions),
                       frozenset({"memcg-kprobe"})).memcg_kprobe is None


@needs_root
def test_the_helper_probe_agrees_with_kallsyms():
    """The cgroup-id helper is probed by loading a program that calls it (a kallsyms
    parse took a sixth of start-up): the verifier's answer is kallsyms' answer. The
    same probe, without a helper call, tells whether raw tracepoints exist."""
    from paftrace.planner import (
        BPF_PROG_TYPE_RAW_TRACEPOINT,
        BPF_PROG_TYPE_TRACEPOINT,
        CGROUP_ID_HELPER,
        HELPER_IDS,
        kallsyms_text_symbols,
        program_loads,
    )

    assert program_loads(BPF_PROG_TYPE_TRACEPOINT, HELPER_IDS[CGROUP_ID_HELPER]) is (
        CGROUP_ID_HELPER in kallsyms_text_symbols())
    # no such helper, no such program type: the kernel says EINVAL
    assert program_loads(BPF_PROG_TYPE_TRACEPOINT, 10**6) is False
    assert program_loads(10**6) is False
    assert program_loads(BPF_PROG_TYPE_RAW_TRACEPOINT) is (
        "bpf_raw_tracepoint_open" in kallsyms_text_symbols()
        or "bpf_get_raw_tracepoint" in kallsyms_text_symbols())


def test_every_feature_is_documented_where_no_feature_is():
    """README and the man page list every name --no-feature accepts."""
    root = DATA.parent.parent
    readme = (root / "README.md").read_text()
    listed = readme[readme.index("`--no-feature NAME`"):].split("),", 1)[0]
    man = (root / "paftrace" / "man" / "paftrace.8").read_text().replace("\\-", "-")
    man_listed = man[man.index("Force a fallback path:"):].split("\n.", 1)[0]
    for name in FEATURES:
        assert f"`{name}`" in listed, name
        assert name in man_listed, name
