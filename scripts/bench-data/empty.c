// SPDX-License-Identifier: Apache-2.0
/*
 * The floor of scripts/bench: a BPF program on kmem:mm_page_alloc that does
 * nothing. What it costs is the hook itself (tracepoint enabled, BPF program
 * run per allocation); no tracer of this event can be cheaper.
 */
TRACEPOINT_PROBE(kmem, mm_page_alloc)
{
    return 0;
}
