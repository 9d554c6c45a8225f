// SPDX-License-Identifier: Apache-2.0
/*
 * paftrace kernel side: direct reclaim / compaction stalls, kswapd and kcompactd
 * wakeups and migratetype fallbacks, aggregated in the kernel.
 *
 * Header-independent: tracepoint arguments (bcc builds their structs from the
 * running kernel's format files, so `gfp_t` vs `unsigned long` fields need no
 * care here) and BPF helpers only. paftrace/planner.py (plan_reclaim) probes each tracepoint
 * and defines what exists (field lists per kernel: include/trace/events/compaction.h
 * and vmscan.h, docs/KERNEL-NOTES.md §6):
 *   HAVE_DIRECT_RECLAIM  vmscan:mm_vmscan_direct_reclaim_begin/_end (3.x+)
 *   HAVE_TRY_COMPACT     compaction:mm_compaction_try_to_compact_pages (4.4+);
 *                        its end has no tracepoint: the stall closes at the task's
 *                        next kmem:mm_page_alloc of that order (reclaim_on_alloc(),
 *                        called by pagealloc.c), or at its next direct reclaim /
 *                        compaction
 *   HAVE_COMPACT_PRIO    try_to_compact_pages has `prio` (4.14+; `mode` in 4.4)
 *   HAVE_COMPACTION_END  compaction:mm_compaction_end with `status` (4.4+)
 *   HAVE_MIGRATEPAGES    compaction:mm_compaction_migratepages
 *   HAVE_WAKEUP_KSWAPD, HAVE_KSWAPD_WAKE, HAVE_WAKEUP_KCOMPACTD (4.14+),
 *   HAVE_KCOMPACTD_WAKE (4.14+), HAVE_EXTFRAG (kmem:mm_page_alloc_extfrag),
 *   HAVE_EXTFRAG_OWNERSHIP (its `change_ownership` field), PAGEBLOCK_ORDER,
 *   HAVE_COMPACTION_SUITABLE, HAVE_COMPACTION_DEFERRED (per-zone compaction verdicts)
 */
/* paftrace/loader.py compiles this file and pagealloc.c as one object: the
 * allocation hook below runs inside pagealloc.c's mm_page_alloc program, so the
 * hottest tracepoint carries one BPF program, not two. */

/* The kcompactd tracepoints declare `enum zone_type highest_zoneidx` (4 bytes in
 * their format files); bcc copies that type into the args struct, and the enum
 * lives in linux/mmzone.h, which we do not include. Any complete enum is int-sized. */
enum zone_type { PAFTRACE_ZONE_TYPE_UNUSED };

#ifndef PAGEBLOCK_ORDER
#define PAGEBLOCK_ORDER 9
#endif

#include "paftrace.h"  /* records and constants shared with Python */

struct open_stall {
    u64 start_ns;
    u64 gfp;
    u32 order;
    s32 prio;
    s32 last_status;  /* last mm_compaction_end status in this task, -1 none */
    u32 zones;        /* compaction runs (mm_compaction_end) within the stall */
};

BPF_PERF_OUTPUT(stalls);
BPF_PERCPU_ARRAY(counters, u64, C_SLOTS);
/* direct (index + STATUS_SLOTS) and background (kcompactd, proactive) runs */
BPF_PERCPU_ARRAY(compact_status, u64, 2 * STATUS_SLOTS);
BPF_PERCPU_ARRAY(wakeup_kswapd_order, u64, KSWAPD_ORDER_SLOTS);
BPF_HASH(reclaiming, u32, struct open_stall, 10240);
BPF_HASH(compacting, u32, struct open_stall, 10240);
BPF_PERCPU_HASH(per_process, u32, struct proc_stall, 4096);  /* see paftrace.h */
/* Number of open compaction stalls: lets mm_page_alloc return at once when 0. */
BPF_ARRAY(open_compactions, s64, 1);
/* Compaction outcomes per zone (paftrace.h: struct compaction_zone_key). Shared,
 * not per-CPU: few keys, updated with atomic adds. */
BPF_HASH(compaction_zones, struct compaction_zone_key, u64, 1024);

static __always_inline void count(int idx, u64 n)
{
    u64 *v = counters.lookup(&idx);
    if (v)
        *v += n;
}

/* One more event in a shared hash entry (`map.lookup_or_try_init(...)`): atomic,
 * since CPUs share the entry; a full map is counted, never silent. */
static __always_inline void add_one(u64 *entry)
{
    if (entry)
        __sync_fetch_and_add(entry, 1);
    else
        count(C_EXTFRAG_AGG_FULL, 1);
}

static __always_inline void count_zone(struct compaction_zone_key *key)
{
    u64 zero = 0;
    add_one(compaction_zones.lookup_or_try_init(key, &zero));
}

static __always_inline void bump(void *map_lookup_result)
{
    u64 *v = map_lookup_result;
    if (v)
        *v += 1;
}

static __always_inline void account(u32 pid, u8 kind, u64 dur)
{
    struct proc_stall zero = {};
    struct proc_stall *p = per_process.lookup_or_try_init(&pid, &zero);
    if (!p)
        return;
    if (kind == KIND_DIRECT_RECLAIM) {
        p->reclaim_ns += dur;
        p->reclaim_n += 1;
    } else {
        p->compact_ns += dur;
        p->compact_n += 1;
    }
    if (dur > p->max_ns)
        p->max_ns = dur;
    bpf_get_current_comm(&p->comm, sizeof(p->comm));
}

static __always_inline void emit(void *ctx, struct open_stall *s, u8 kind, u8 end,
                                 u64 nr_reclaimed)
{
    u64 id = bpf_get_current_pid_tgid();
    struct stall_event ev = {};
    ev.start_ns = s->start_ns;
    ev.end_ns = bpf_ktime_get_ns();
    ev.gfp = s->gfp;
    ev.nr_reclaimed = nr_reclaimed;
    ev.pid = id >> 32;
    ev.tid = (u32)id;
    ev.order = s->order;
    ev.prio = s->prio;
    ev.last_status = s->last_status;
    ev.zones = s->zones;
    ev.kind = kind;
    ev.end = end;
    bpf_get_current_comm(&ev.comm, sizeof(ev.comm));
    account(ev.pid, kind, ev.end_ns - ev.start_ns);
    if (stalls.perf_submit(ctx, &ev, sizeof(ev)) != 0)
        count(C_LOST_STALLS, 1);
}

#if defined(HAVE_TRY_COMPACT)
static __always_inline void close_compaction(void *ctx, u32 tid, u8 end)
{
    struct open_stall *s = compacting.lookup(&tid);
    if (!s)
        return;
    struct open_stall copy = *s;
    compacting.delete(&tid);
    int zero = 0;
    s64 *open = open_compactions.lookup(&zero);
    if (open)
        __sync_fetch_and_add(open, -1);
    emit(ctx, &copy, KIND_DIRECT_COMPACTION, end, 0);
}

TRACEPOINT_PROBE(compaction, mm_compaction_try_to_compact_pages)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    close_compaction(args, tid, END_THEN_RECOMPACT);
    struct open_stall s = {};
    s.start_ns = bpf_ktime_get_ns();
    s.gfp = (u64)args->gfp_mask;
    s.order = args->order;
#ifdef HAVE_COMPACT_PRIO
    s.prio = args->prio;
#else
    s.prio = -1;
#endif
    s.last_status = -1;
    if (compacting.insert(&tid, &s) == 0) {
        int zero = 0;
        s64 *open = open_compactions.lookup(&zero);
        if (open)
            __sync_fetch_and_add(open, 1);
    }
    count(C_DIRECT_COMPACT, 1);
    return 0;
}

static __always_inline void reclaim_on_alloc(void *ctx, u32 order, int failed)
{
    int zero = 0;
    s64 *open = open_compactions.lookup(&zero);
    if (!open || *open <= 0)
        return;  /* the common case: one array read per allocation */
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct open_stall *s = compacting.lookup(&tid);
    if (!s || s->order != order)
        return;  /* a nested allocation of another order, not the compacting one */
    close_compaction(ctx, tid, failed ? END_NO_PAGE : END_PAGE);
}
#endif /* HAVE_TRY_COMPACT */

#ifdef HAVE_COMPACTION_END
TRACEPOINT_PROBE(compaction, mm_compaction_end)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    int status = args->status;
    int slot = status >= 0 && status < STATUS_SLOTS ? status : STATUS_SLOTS - 1;
#ifdef HAVE_TRY_COMPACT
    struct open_stall *s = compacting.lookup(&tid);
    if (s) {
        s->last_status = status;
        s->zones += 1;
        slot += STATUS_SLOTS;
    }
#endif
    bump(compact_status.lookup(&slot));
    struct compaction_zone_key zkey = {.zone_start = args->zone_start, .nid = -1,
                                       .zone_idx = -1, .event = COMPACT_EV_END,
                                       .result = status};
    count_zone(&zkey);
    return 0;
}
#endif

#ifdef HAVE_COMPACTION_SUITABLE
/* compaction_suitable() per zone (mm/compaction.c): `ret` says why compaction was
 * skipped (not_suitable_zone: below the order-0 watermark it needs to migrate;
 * skipped; success: the block is already there). */
TRACEPOINT_PROBE(compaction, mm_compaction_suitable)
{
    struct compaction_zone_key zkey = {.nid = args->nid, .zone_idx = args->idx,
                                       .event = COMPACT_EV_SUITABLE, .result = args->ret};
    count_zone(&zkey);
    return 0;
}
#endif

#ifdef HAVE_COMPACTION_DEFERRED
/* compaction_deferred() said yes: an earlier failure at this order backs compaction
 * off for 1 << defer_shift attempts (mm/compaction.c, defer_compaction). */
TRACEPOINT_PROBE(compaction, mm_compaction_deferred)
{
    struct compaction_zone_key zkey = {.nid = args->nid, .zone_idx = args->idx,
                                       .event = COMPACT_EV_DEFERRED};
    count_zone(&zkey);
    return 0;
}
#endif

#ifdef HAVE_MIGRATEPAGES
TRACEPOINT_PROBE(compaction, mm_compaction_migratepages)
{
    count(C_MIGRATED, args->nr_migrated);
    count(C_MIGRATE_FAILED, args->nr_failed);
    return 0;
}
#endif

#ifdef HAVE_DIRECT_RECLAIM
TRACEPOINT_PROBE(vmscan, mm_vmscan_direct_reclaim_begin)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
#ifdef HAVE_TRY_COMPACT
    close_compaction(args, tid, END_THEN_RECLAIM);
#endif
    struct open_stall s = {};
    s.start_ns = bpf_ktime_get_ns();
    s.gfp = (u64)args->gfp_flags;
    s.order = args->order;
    s.prio = -1;
    s.last_status = -1;
    reclaiming.update(&tid, &s);
    count(C_DIRECT_RECLAIM, 1);
    return 0;
}

TRACEPOINT_PROBE(vmscan, mm_vmscan_direct_reclaim_end)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct open_stall *s = reclaiming.lookup(&tid);
    if (!s)
        return 0;  /* began before we attached */
    struct open_stall copy = *s;
    reclaiming.delete(&tid);
    count(C_RECLAIMED, args->nr_reclaimed);
    emit(args, &copy, KIND_DIRECT_RECLAIM, END_PAGE, args->nr_reclaimed);
    return 0;
}
#endif

#ifdef HAVE_WAKEUP_KSWAPD
TRACEPOINT_PROBE(vmscan, mm_vmscan_wakeup_kswapd)
{
    int order = args->order;
    int slot = order >= 0 && order < KSWAPD_ORDER_SLOTS ? order : KSWAPD_ORDER_SLOTS - 1;
    bump(wakeup_kswapd_order.lookup(&slot));
    count(C_WAKEUP_KSWAPD, 1);
    return 0;
}
#endif

#ifdef HAVE_KSWAPD_WAKE
TRACEPOINT_PROBE(vmscan, mm_vmscan_kswapd_wake)
{
    count(C_KSWAPD_WAKE, 1);
    return 0;
}
#endif

#ifdef HAVE_WAKEUP_KCOMPACTD
TRACEPOINT_PROBE(compaction, mm_compaction_wakeup_kcompactd)
{
    count(C_WAKEUP_KCOMPACTD, 1);
    return 0;
}
#endif

#ifdef HAVE_KCOMPACTD_WAKE
TRACEPOINT_PROBE(compaction, mm_compaction_kcompactd_wake)
{
    count(C_KCOMPACTD_WAKE, 1);
    return 0;
}
#endif

#ifdef HAVE_EXTFRAG
/* Who fragments memory: each fallback to another migratetype's free list, by task,
 * orders, migratetypes and outcome (exact), and by kernel stack (sampled). */
BPF_HASH(extfrag_counts, struct extfrag_key, u64, 4096);
BPF_HASH(extfrag_stacks, struct extfrag_key, u64, 4096);
BPF_STACK_TRACE(extfrag_stack_traces, 2048);
BPF_PERCPU_ARRAY(extfrag_budget, struct window_budget, 1);

/* Walking the stack costs microseconds: at most EXTFRAG_STACKS_PER_WINDOW walks per
 * CPU per window, so a fallback storm stays cheap; the exact counts do not depend
 * on it. Tracing programs do not nest on a CPU, so the per-CPU budget has one writer. */
static __always_inline bool take_extfrag_stack(void)
{
    u32 zero = 0;
    struct window_budget *b = extfrag_budget.lookup(&zero);
    if (!b)
        return false;
    u64 now = bpf_ktime_get_ns();
    if (now - b->start_ns >= EXTFRAG_WINDOW_NS) {
        b->start_ns = now;
        b->used = 0;
    }
    if (b->used >= EXTFRAG_STACKS_PER_WINDOW)
        return false;
    b->used += 1;
    return true;
}

TRACEPOINT_PROBE(kmem, mm_page_alloc_extfrag)
{
    count(C_EXTFRAG, 1);
    struct extfrag_key key = {};
    key.alloc_order = args->alloc_order;
    key.fallback_order = args->fallback_order;
    key.alloc_migratetype = args->alloc_migratetype;
    key.fallback_migratetype = args->fallback_migratetype;
    key.stack_id = EXTFRAG_NO_STACK;
    /* the kernel's own "fragmenting" test (the tracepoint's print fmt): a fallback
     * smaller than a pageblock mixes migratetypes inside that pageblock */
    if (args->fallback_order < PAGEBLOCK_ORDER) {
        key.fragmenting = 1;
        count(C_EXTFRAG_FRAGMENTING, 1);
    }
#ifdef HAVE_EXTFRAG_OWNERSHIP
    if (args->change_ownership) {
        key.change_ownership = 1;
        count(C_EXTFRAG_STEAL, 1);
    }
#endif
    bpf_get_current_comm(&key.comm, sizeof(key.comm));
    u64 zero = 0;
    u64 *seen = extfrag_counts.lookup_or_try_init(&key, &zero);
    /* A key's first event always has its stack taken, budget or not: in a burst
     * the budget went to the keys that came first, and a key never sampled could
     * only be shown as "(stack not sampled)" (seen as the top fragmenter in the
     * kernel matrix, 322 of 491 events). At most one walk per key beyond the
     * budget: the table holds 4096 keys. */
    bool first = seen && *seen == 0;
    add_one(seen);
    if (first || take_extfrag_stack()) {
        key.stack_id = extfrag_stack_traces.get_stackid(args, 0);
        if (key.stack_id >= 0)
            add_one(extfrag_stacks.lookup_or_try_init(&key, &zero));
    }
    return 0;
}
#endif
