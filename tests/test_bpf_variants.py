"""Every variant of the BPF program the planner can choose compiles and passes this
kernel's verifier, built by the real loader (program_source, cflags_for,
compile_program) from real plans: this kernel's plan with the switches of other
kernels, and reclaim plans made by `plan_reclaim` for kernels that lack events.

Some paths cannot attach here (no kprobes on this kernel) but they can still be
compiled and loaded: `load_func` runs the verifier without attaching, so a
kprobe-only variant is checked here and not first on a user's machine.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from paftrace.loader import cflags_for, compile_program, import_bcc, prepare, program_source
from paftrace.options import TraceOptions
from paftrace.planner import plan_reclaim
from paftrace.reclaim import pageblock_order
from paftrace.tracefs import TracepointFormat
from tests.helpers import needs_root

pytestmark = needs_root

ALL_KPROBES = ("on_warn_alloc", "on_warn_printed", "on_alloc_entry", "on_memcg_charge_return")
OPTIONS = TraceOptions(order_min=2, order_max=5, pid=1, comm="x", atomic_only=True,
                       warn_only=True)


class OlderKernel:
    """The running kernel seen as an older one: some events absent, some fields
    not yet there (include/trace/events/compaction.h and kmem.h history)."""

    def __init__(self, kernel, hidden_events=(), hidden_fields=()):
        self.kernel = kernel
        self.release = kernel.release
        self.hidden_events = set(hidden_events)
        self.hidden_fields = set(hidden_fields)

    def has_event(self, category: str, event: str) -> bool:
        return (f"{category}:{event}" not in self.hidden_events
                and self.kernel.has_event(category, event))

    def read_format(self, category: str, event: str) -> TracepointFormat | None:
        fmt = self.kernel.read_format(category, event)
        if fmt is None:
            return None
        return TracepointFormat(fmt.name, [f for f in fmt.fields
                                           if f"{event}.{f.name}" not in self.hidden_fields],
                                fmt.print_fmt)


# 4.4..4.13: try_to_compact_pages has `mode`, not `prio`; no kcompactd events before 4.14
KERNEL_4_4 = {"hidden_events": ("compaction:mm_compaction_wakeup_kcompactd",
                                "compaction:mm_compaction_kcompactd_wake"),
              "hidden_fields": ("mm_compaction_try_to_compact_pages.prio",
                                "mm_page_alloc_extfrag.change_ownership")}
# a kernel without compaction tracepoints at all (CONFIG_COMPACTION=n)
NO_COMPACTION = {"hidden_events": ("compaction:mm_compaction_try_to_compact_pages",
                                   "compaction:mm_compaction_end",
                                   "compaction:mm_compaction_migratepages",
                                   "compaction:mm_compaction_wakeup_kcompactd",
                                   "compaction:mm_compaction_kcompactd_wake")}


def compile_and_verify(plan, options: TraceOptions, kprobes: tuple[str, ...]) -> None:
    prepared = prepare(options)
    bcc = import_bcc()
    bpf = compile_program(bcc, program_source(plan),
                          cflags_for(options, plan, prepared.gfp_table))
    try:
        for name in kprobes:
            assert bpf.load_func(name, bcc.BPF.KPROBE).fd >= 0
    finally:
        bpf.cleanup()


@pytest.mark.parametrize("changes,kprobes,trace_all", [
    ({"warn_kprobe": "warn_alloc", "printed_kprobes": ("__show_mem",),
      "alloc_kprobe": "__alloc_pages", "memcg_kprobe": "__memcg_kmem_charge_page"},
     ALL_KPROBES, False),
    ({"warn_kprobe": "warn_alloc", "alloc_kprobe": "__alloc_pages",
      "memcg_kprobe": "__memcg_kmem_charge_page"}, ALL_KPROBES, True),
    ({"ringbuf": False, "memcg_kprobe": "__memcg_kmem_charge"}, ("on_memcg_charge_return",),
     False),
    ({"ringbuf": False, "alloc_kprobe": "__alloc_pages"}, ("on_alloc_entry",), True),
    ({"ringbuf": False, "reclaim": None}, (), False),          # 4.x-5.7, no reclaim
    ({"irq_tracepoints": False, "system_vectors": ()}, (), False),
    ({"system_vectors": ()}, (), True),                        # not x86
    ({"cgroup_id": False, "ringbuf": False}, (), False),       # 4.17: no cgroup id helper
    # < 4.17: classic tracepoints only (with and without the kprobes and --all)
    ({"cgroup_id": False, "ringbuf": False, "raw_tracepoints": False}, (), False),
    ({"raw_tracepoints": False, "warn_kprobe": "warn_alloc", "alloc_kprobe": "__alloc_pages",
      "memcg_kprobe": "__memcg_kmem_charge_page"}, ALL_KPROBES, True),
])
def test_planned_variant_loads(changes, kprobes, trace_all):
    options = replace(OPTIONS, trace_all=trace_all)
    plan = replace(prepare(options).plan, **changes)
    compile_and_verify(plan, options, kprobes)


@pytest.mark.parametrize("ringbuf", [True, False])
def test_cgroup_filter_variant_loads(ringbuf):
    options = replace(OPTIONS, cgroup="/x", cgroup_ids=frozenset({1, 2}))
    plan = replace(prepare(options).plan, ringbuf=ringbuf, cgroup_id=True)
    assert "-DFILTER_CGROUP" in cflags_for(options, plan, prepare(options).gfp_table)
    compile_and_verify(plan, options, ())


@pytest.mark.parametrize("era", [KERNEL_4_4, NO_COMPACTION], ids=["4.4", "no-compaction"])
def test_reclaim_variant_for_older_kernels_loads(era):
    prepared = prepare(OPTIONS)
    reclaim = plan_reclaim(OlderKernel(prepared.kernel, **era), pageblock_order())
    assert reclaim.events and reclaim.missing  # a real subset of this kernel's events
    if era is KERNEL_4_4:
        assert "-DHAVE_COMPACT_PRIO" not in reclaim.cflags
        assert "-DHAVE_TRY_COMPACT" in reclaim.cflags
    compile_and_verify(replace(prepared.plan, reclaim=reclaim), OPTIONS, ())
