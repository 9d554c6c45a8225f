"""Context classification from stacks, and its reconciliation with BPF's per-CPU state."""

from __future__ import annotations

import json

import pytest

from paftrace.context import (
    StackContext,
    classify_stack,
    irq_label,
    read_irq_names,
    reconcile,
    softirq_name,
    symbol_name,
)
from paftrace.stacks import requester, without_tracing_frames
from tests.helpers import DATA

STACKS = json.loads((DATA / "stacks-6.18.json").read_text())
SEED_TG3 = [  # innermost first, from the 2.6.32 report in shared/seed (every frame has '?')
    "? __alloc_pages_nodemask+0x757/0x8d0", "? kmem_getpages+0x62/0x170",
    "? fallback_alloc+0x1ba/0x270", "? cache_grow+0x2cf/0x320",
    "? ____cache_alloc_node+0x99/0x160", "? kmem_cache_alloc_node_trace+0x90/0x200",
    "? __kmalloc_node+0x4d/0x60", "? __alloc_skb+0x6d/0x190", "? skb_copy+0x36/0xa0",
    "? tg3_start_xmit+0xa8c/0xd50 [tg3]", "? dev_hard_start_xmit+0x308/0x530",
    "? tcp_v4_rcv+0x4fe/0x8d0", "? tg3_poll_msix+0x4c/0x150 [tg3]",
    "? net_rx_action+0x103/0x2f0", "? __do_softirq+0xc1/0x1e0",
    "? handle_IRQ_event+0x60/0x170", "? do_IRQ+0x75/0xf0",
]


def test_symbol_names():
    assert symbol_name("net_rx_action+0x103/0x2f0") == "net_rx_action"
    assert symbol_name("? __do_softirq+0xc1/0x1e0") == "__do_softirq"
    assert symbol_name("__slab_alloc.isra.0+0x2b") == "__slab_alloc"
    assert symbol_name("tg3_start_xmit+0xa8c/0xd50 [tg3]") == "tg3_start_xmit"


def test_process_stack_has_no_marker():
    assert classify_stack(STACKS["process"]) == StackContext(None)


def test_net_rx_stack_captured_on_618():
    seen = classify_stack(STACKS["softirq-vec3"])
    assert seen.context == "softirq" and seen.softirq == "NET_RX"
    assert seen.marker in ("handle_softirqs", "__do_softirq", "run_ksoftirqd",
                           "do_softirq_own_stack")


def test_seed_tg3_trace_is_net_rx_softirq_from_tg3():
    seen = classify_stack(SEED_TG3)
    assert (seen.context, seen.softirq, seen.marker) == ("softirq", "NET_RX", "__do_softirq")
    assert requester(SEED_TG3) == "tg3_start_xmit [tg3]"


@pytest.mark.parametrize("frames,context", [
    (["__alloc_pages+0x1", "handle_irq_event+0x1", "__do_softirq+0x1"], "hardirq"),
    (["alloc_pages+0x1", "default_do_nmi+0x1"], "nmi"),
    (["run_timer_softirq+0x1"], "softirq"),
])
def test_innermost_marker_wins(frames, context):
    assert classify_stack(frames).context == context


def test_reconcile_prefers_the_stack_when_it_knows():
    assert reconcile("process", None, StackContext(None)) == ("process", None, "irq-tracepoints")
    assert reconcile("softirq", "NET_RX", StackContext("softirq", "NET_RX", "x")) == (
        "softirq", "NET_RX", "irq-tracepoints+stack")
    # A stale hardirq flag (missed exit event) is corrected by a softirq stack.
    assert reconcile("hardirq", None, StackContext("softirq", "TIMER", "x")) == (
        "softirq", "TIMER", "stack")


def test_softirq_and_irq_names():
    assert softirq_name(3) == "NET_RX" and softirq_name(0xFF) is None
    assert softirq_name(12) == "vec12"
    names = read_irq_names(str(DATA / "formats" / "interrupts-6.18.txt"))
    assert names, "the capture has device interrupts"
    assert names[24] == "ACPI:Ged"
    assert irq_label(24, names) == "irq 24 (ACPI:Ged)"
    assert irq_label(-1, names) == "local_timer (system vector)"


def test_requester_skips_allocator_and_slab():
    assert requester(STACKS["process"]) == "page_cache_ra_order"
    pipe = ["__alloc_frozen_pages_noprof+0x26b", "alloc_pages_mpol+0x86",
            "___kmalloc_large_node+0xa1", "__kmalloc_large_node_noprof+0x19",
            "__kmalloc_noprof+0x4ad", "pipe_resize_ring+0x30", "pipe_fcntl+0xf2"]
    assert requester(pipe) == "pipe_resize_ring"
    assert requester([]) is None


def test_unnamed_module_text_is_the_requester_not_its_caller():
    frames = ["__alloc_pages_noprof+0x228", "alloc_pages_mpol_noprof+0x8f",
              "0xffffffffc0a1b2c3 [module text, symbol gone]", "do_one_initcall+0x5b"]
    assert requester(frames) == "0xffffffffc0a1b2c3 [module text, symbol gone]"


PIPE_STACK = ["__alloc_frozen_pages_noprof+0x26b", "alloc_pages_mpol+0x86", "pipe_resize_ring+0x30"]


@pytest.mark.parametrize("top", [
    ["bpf_prog_8f1216e804d2cb98_raw_tracepoint__mm_page_alloc+0x5c", "bpf_trace_run4+0x7c"],  # 6.18
    ["bpf_prog_0123456789abcdef_raw_tracepoint__mm_page_alloc+0x1d", "bpf_trace_run4+0x8a",
     "__bpf_trace_mm_page_alloc+0x11", "__traceiter_mm_page_alloc+0x2f"],  # no static calls
    ["[unknown]", "bpf_trace_run4+0x7c"],  # the program unnamed: no bpf_jit_kallsyms
    [],  # a classic tracepoint's stack: nothing to drop
])
def test_raw_tracepoint_frames_are_dropped_from_the_top(top):
    assert without_tracing_frames([*top, *PIPE_STACK]) == PIPE_STACK


def test_a_stack_of_tracing_code_only_is_shown_whole():
    top = ["bpf_prog_8f1216e804d2cb98_raw_tracepoint__mm_page_alloc+0x5c", "bpf_trace_run4+0x7c"]
    assert without_tracing_frames(top) == top


def test_tracing_frames_deeper_in_the_stack_stay():
    """Only the top is the tracing code: a tracepoint's frames further down belong to
    the story (say, an allocation made by a tracer's own program)."""
    deep = [*PIPE_STACK, "a+0x1", "b+0x1", "c+0x1", "bpf_trace_run2+0x10", "d+0x1"]
    assert without_tracing_frames(deep) == deep
