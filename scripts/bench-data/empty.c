// SPDX-License-Identifier: Apache-2.0
/*
 * The floor of scripts/bench: a BPF program on kmem:mm_page_alloc that does
 * nothing. What it costs is the hook itself (tracepoint enabled, BPF program
 * run per allocation); no tracer of this classic tracepoint (bpftrace's
 * tracepoint:, perf) can be cheaper. empty_raw.c is the floor of a raw
 * tracepoint, which paftrace uses where the kernel has them (4.17+).
 */
TRACEPOINT_PROBE(kmem, mm_page_alloc)
{
    return 0;
}
