// SPDX-License-Identifier: Apache-2.0
/*
 * The raw floor of scripts/bench: a raw tracepoint program (4.17+) on
 * mm_page_alloc that does nothing. A raw tracepoint runs the program on the
 * tracepoint's own arguments; a classic tracepoint program first has the event
 * record built in a perf buffer (include/trace/perf.h, perf_trace_##call), the
 * larger part of empty.c's cost.
 */
RAW_TRACEPOINT_PROBE(mm_page_alloc)
{
    return 0;
}
