"""Kernel stack helpers shared by the live tracer and `paftrace explain`."""

from __future__ import annotations

import re

from paftrace.context import symbol_name

# Frames that belong to the page/slab allocator or to generic buffer helpers
# wrapping it: the requester is the first frame outside them, innermost first
# (e.g. tg3_start_xmit above skb_copy -> __alloc_skb -> __kmalloc_node).
_ALLOCATOR_PATTERNS = [
    r"_*alloc_pages.*", r"_*alloc_frozen_pages.*", r"get_page_from_freelist",
    r"__get_free_pages", r"get_zeroed_page.*", r"alloc_pages_.*", r"folio_alloc.*",
    r"__folio_alloc.*", r"alloc_slab_page", r"allocate_slab", r"new_slab", r"_*slab_alloc.*",
    r"kmem_getpages", r"fallback_alloc", r"cache_grow.*", r"_*cache_alloc.*",
    r"kmem_cache_alloc.*", r"_*kmalloc.*", r"kmalloc_.*", r"_*kvmalloc.*", r"kcalloc.*",
    r"kzalloc.*", r"kmalloc_large.*", r"_*kmalloc_large.*", r"_*alloc_skb.*",
    r"_*netdev_alloc_.*", r"_*napi_alloc_.*", r"skb_copy.*", r"pskb_expand_head",
    r"page_frag_alloc.*", r"_*page_frag_cache_refill", r"warn_alloc.*", r"dump_stack.*",
    r"show_stack", r"_*alloc_pages_slowpath", r"__alloc_pages_direct_.*",
    r"trace_event_raw_event_.*", r"perf_trace_.*", r"trace_call_bpf", r"__traceiter_.*",
    r"stack_trace_save.*", r"memcg_.*charge.*", r"__memcg_.*",
    r"obj_cgroup_charge.*", r"kmalloc_trace.*", r"krealloc.*", r"kmemdup.*",
    # Unwinder entry points of arm/arm64 dumps, old page-frag names, vmalloc internals
    # (the requester of a "vmalloc error" report is the vmalloc caller).
    r"dump_backtrace", r"unwind_backtrace", r"_*alloc_page_frag", r"_*page_frag_alloc.*",
    r"_*vmalloc.*", r"vzalloc.*", r"_*vmalloc_node.*", r"_*vmalloc_area_node",
    r"vm_area_alloc_pages",
    # The buddy allocator's own steps, seen in kmem:mm_page_alloc_extfrag stacks
    # (mm/page_alloc.c: rmqueue, __rmqueue_pcplist, __rmqueue_fallback, and since
    # v6.15 try_to_claim_block; steal_suitable_fallback before).
    r"_*rmqueue.*", r"try_to_claim_block", r"steal_suitable_fallback", r"move_freepages.*",
]
_ALLOCATOR_RE = re.compile("^(?:" + "|".join(_ALLOCATOR_PATTERNS) + ")$")


# A stack walked from a raw tracepoint program begins in the tracing code that ran it
# (kernel/trace/bpf_trace.c: bpf_get_stackid_raw_tp takes the registers where it is
# called): the program itself, bpf_trace_runN and, on kernels or configurations
# without static calls, __bpf_trace_<event> and __traceiter_<event>. A classic
# tracepoint's stack begins at the caller of the tracepoint instead.
_TRACING_ENTRY_RE = re.compile(r"^(?:bpf_trace_run\d+|__bpf_trace_run|__bpf_trace_\w+|"
                               r"__traceiter_\w+)$")
_TRACING_ENTRY_DEPTH = 6  # the program and at most four tracing frames, plus slack


def without_tracing_frames(frames: list[str]) -> list[str]:
    """`frames` from the first frame after the tracing code, if it is on top. The
    program's own frame may be unnamed (no bpf_jit_kallsyms): the cut is after the
    last tracing frame among the first few, whatever precedes it. A stack that is all
    tracing code (an unwinder that stopped there) stays whole: shown, not hidden."""
    cut = 0
    for index, frame in enumerate(frames[:_TRACING_ENTRY_DEPTH]):
        if _TRACING_ENTRY_RE.match(symbol_name(frame)):
            cut = index + 1
    return frames[cut:] or frames


def is_allocator_frame(frame: str) -> bool:
    return bool(_ALLOCATOR_RE.match(symbol_name(frame)))


def requester(frames: list[str]) -> str | None:
    """Innermost frame outside the allocator, as printed (keeps `[module]`)."""
    for frame in frames:
        if frame.startswith("0x"):
            return frame  # module text with no symbol left: blaming its caller would mislead
        name = symbol_name(frame)
        if name and not is_allocator_frame(frame):
            module = re.search(r"\[([\w-]+)\]\s*$", frame)
            return f"{name} [{module.group(1)}]" if module else name
    return None
