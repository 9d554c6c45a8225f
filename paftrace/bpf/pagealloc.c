// SPDX-License-Identifier: Apache-2.0
/*
 * paftrace kernel side: page allocations seen at kmem:mm_page_alloc.
 *
 * Header-independent on purpose: only tracepoint arguments (bcc builds their
 * struct from the running kernel's format file) and BPF helpers are used, never
 * a kernel struct offset, so it compiles against the nearest available headers.
 *
 * Everything optional is switched by -D macros chosen by paftrace/loader.py
 * after probing the kernel (see paftrace/planner.py for the kernel change
 * behind each switch):
 *   USE_RAW_TP          mm_page_alloc and the irq tracepoints as raw tracepoints
 *                       (4.17+; see the mm_page_alloc program)
 *   HAVE_PFN            the mm_page_alloc event has `pfn` (~4.1+, failure = -1UL);
 *                       otherwise `page` (failure = NULL)
 *   USE_RINGBUF         BPF ring buffer (5.8+), else perf buffer
 *   HAVE_IRQ_TP         irq:irq_handler_entry/exit and irq:softirq_entry/exit
 *   HAVE_KPROBE_WARN    kprobes on warn_alloc and on what it calls once it prints
 *   HAVE_KPROBE_ALLOC   kprobe on the allocator entry
 *   TRACE_ALL           aggregate successful allocations too
 *   SAMPLE_PERIOD_NS    TRACE_ALL: adaptive stack sampling, one walk per CPU per period
 *   WITH_RECLAIM        reclaim.c is compiled in front of this file
 *   HAVE_CGROUP_ID      bpf_get_current_cgroup_id() (4.18+): the cgroup2 id in each record
 *   HAVE_KPROBE_MEMCG   kretprobe on the page allocator's memcg kmem charge
 *   FILTER_CGROUP       --cgroup on cgroup2: only cgroups whose id is in `cgroup_filter`
 *   SITE_RECORDS        records per call site, CPU and storm before the storm's failures
 *                       are coalesced (paftrace.h); 0: a record for every failure
 *   ORDER_MIN/MAX, ATOMIC_ONLY, WARN_ONLY, FILTER_PID, FILTER_COMM_LO/HI,
 *   GFP_DIRECT_RECLAIM, GFP_NOWARN (bit values from the running kernel)
 */
#if defined(HAVE_KPROBE_WARN) || defined(HAVE_KPROBE_ALLOC) || defined(HAVE_KPROBE_MEMCG)
/* struct pt_regs of the kprobe programs. Only then: parsing it and what it
 * includes was a sixth of the compile time, the largest part of start-up. */
#include <uapi/linux/ptrace.h>
#endif

#include "paftrace.h"  /* records and constants shared with Python */

/* Per-CPU interrupt state kept by the irq tracepoints. Device hardirq handlers
 * do not nest (IRQF_DISABLED is the default since 2.6.35) and softirqs do not
 * nest, so flags, not depth counters: a missed exit (BPF skips programs that
 * fire while another runs on the CPU) then heals at the next exit. */
struct cpu_ctx {
    u32 in_hardirq;
    s32 irq;        /* device irq number, or -1 - index of a system vector */
    u32 in_softirq;
    u32 vec;
    u32 unwoken;    /* ring buffer records since this CPU last woke the reader */
    u64 last_record_ns; /* when this CPU last wrote a ring buffer record */
};

BPF_PERCPU_ARRAY(order_stats, struct order_stat, ORDER_SLOTS);
BPF_PERCPU_ARRAY(fail_by_ctx, u64, CTX_SLOTS);
BPF_PERCPU_ARRAY(stats, u64, STAT_SLOTS);
BPF_PERCPU_ARRAY(cpu_state, struct cpu_ctx, 1);
BPF_STACK_TRACE(stacks, STACK_STORAGE_SIZE);

#ifdef USE_RINGBUF
BPF_RINGBUF_OUTPUT(failures, RINGBUF_PAGES);
#else
BPF_PERF_OUTPUT(failures);
#endif

#if SITE_RECORDS
/* Per CPU: each CPU's budget and latest failure are its own, so no entry is
 * written by two CPUs at once (tracing programs do not nest on a CPU). */
BPF_PERCPU_HASH(sites, struct site_key, struct site_state, SITE_ENTRIES);
#endif

#ifdef FILTER_CGROUP
BPF_HASH(cgroup_filter, u64, u8, CGROUP_FILTER_ENTRIES);
#endif

#ifdef HAVE_KPROBE_MEMCG
/* When the charge of a task was last refused. The page allocator charges
 * __GFP_ACCOUNT pages after finding them (mm/page_alloc.c __alloc_pages, `out:`;
 * mm/memcontrol.c __memcg_kmem_charge_page returns -ENOMEM) and frees the page on a
 * refusal, so the failure that follows is the cgroup's, not the buddy lists'. A
 * kretprobe: only the return value is read, and the function has returned before
 * mm_page_alloc fires, so no stack walk meets the kretprobe trampoline. */
BPF_HASH(memcg_refused_at, u32, u64, 10240);

int on_memcg_charge_return(struct pt_regs *ctx)
{
    if ((int)PT_REGS_RC(ctx) == 0)
        return 0;
    u32 tid = bpf_get_current_pid_tgid();
    u64 now = bpf_ktime_get_ns();
    memcg_refused_at.update(&tid, &now);
    return 0;
}
#endif

#ifdef TRACE_ALL
BPF_PERCPU_ARRAY(alloc_slots, struct alloc_slot, ALLOC_SLOTS);  /* see paftrace.h */
BPF_PERCPU_HASH(alloc_counts, struct alloc_key, u64, AGG_ENTRIES);
BPF_PERCPU_HASH(alloc_stacks, struct alloc_stack_key, u64, AGG_ENTRIES);
/* [0] = take the stack of 1 in N events (--stack-sample N); 0 = adaptive: each
 * CPU aims at one stack walk per SAMPLE_PERIOD_NS, N adapted in the kernel. */
BPF_ARRAY(sample_config, u32, 1);
struct sampler {
    u64 last_ns;        /* when this CPU last walked a stack */
    u32 left;           /* events until the next walk */
    u32 every;          /* current N; user space shows it */
};
BPF_PERCPU_ARRAY(sampler, struct sampler, 1);
#define SAMPLE_EVERY_MAX (1U << 24)
#endif

#ifdef HAVE_KPROBE_WARN
struct warn_state {
    u64 ts_ns;
    u8 printed;
};
BPF_HASH(warned_tasks, u32, struct warn_state, 1024);
#endif

#ifdef HAVE_KPROBE_ALLOC
struct alloc_timing {
    u64 start_ns;
    u32 order;
    u32 pad;
};
BPF_HASH(alloc_start, u32, struct alloc_timing, 10240);
#endif

static __always_inline void bump_stat(u32 index)
{
    u64 *value = stats.lookup(&index);
    if (value)
        (*value)++;
}

static __always_inline struct cpu_ctx *this_cpu_ctx(void)
{
    u32 zero = 0;
    return cpu_state.lookup(&zero);
}

#ifdef USE_RINGBUF
/* Waking the reader for every record cost the failing task more than the rest of
 * the program: a submit with wakeup queues an irq_work (a self-IPI on x86) that
 * wakes the reader, which then runs, per record, on a CPU the storm wants
 * (kernel/bpf/ringbuf.c, bpf_ringbuf_commit, v5.8+). So a CPU wakes the reader
 * only for
 * - its first record after RINGBUF_QUIET_NS without one: an idle reader sleeps
 *   until its next tick (paftrace/pacing.py), and a lone failure must not wait
 *   for it. After records the reader polls every POLL_MS, which is
 *   RINGBUF_QUIET_NS: a record less than that after its CPU's previous one is
 *   taken by a poll that follows the previous one's;
 * - every RINGBUF_WAKE_EVERY-th record: with all CPUs together at most a quarter
 *   of the buffer waits unannounced, so a burst cannot overrun it between polls.
 *   (bpf_ringbuf_query() would tell the fill level, but bcc 0.26 cannot pass the
 *   map to a helper it does not wrap.) */
static __always_inline u64 ringbuf_wakeup_flag(u64 now_ns)
{
    struct cpu_ctx *c = this_cpu_ctx();
    if (!c)
        return BPF_RB_FORCE_WAKEUP;
    u64 quiet = now_ns - c->last_record_ns >= RINGBUF_QUIET_NS;
    c->last_record_ns = now_ns;
    if (quiet || ++c->unwoken >= RINGBUF_WAKE_EVERY) {
        c->unwoken = 0;
        return BPF_RB_FORCE_WAKEUP;
    }
    return BPF_RB_NO_WAKEUP;
}
#endif

static __always_inline u8 current_context(u8 *vec, s32 *irq)
{
    struct cpu_ctx *c = this_cpu_ctx();
    *vec = NO_VEC;
    *irq = 0;
    if (!c)
        return CTX_PROCESS;
    if (c->in_hardirq) {
        *irq = c->irq;
        return CTX_HARDIRQ;
    }
    if (c->in_softirq) {
        *vec = c->vec;
        return CTX_SOFTIRQ;
    }
    return CTX_PROCESS;
}

#ifdef HAVE_IRQ_TP
static __always_inline int enter_hardirq(s32 irq)
{
    struct cpu_ctx *c = this_cpu_ctx();
    if (c) {
        c->in_hardirq = 1;
        c->irq = irq;
    }
    return 0;
}

static __always_inline int exit_hardirq(void)
{
    struct cpu_ctx *c = this_cpu_ctx();
    if (c)
        c->in_hardirq = 0;
    return 0;
}

static __always_inline int enter_softirq(u32 vec)
{
    struct cpu_ctx *c = this_cpu_ctx();
    if (c) {
        c->in_softirq = 1;
        c->vec = vec;
    }
    return 0;
}

static __always_inline int exit_softirq(void)
{
    struct cpu_ctx *c = this_cpu_ctx();
    if (c)
        c->in_softirq = 0;
    return 0;
}

#ifdef USE_RAW_TP
/* Raw, as mm_page_alloc (see there); a NET_RX storm runs these on every softirq.
 * include/trace/events/irq.h: irq_handler_entry/exit TP_PROTO(int irq, struct
 * irqaction *action[, int ret]), softirq_entry/exit TP_PROTO(unsigned int vec_nr)
 * (both long before 4.17). */
RAW_TRACEPOINT_PROBE(irq_handler_entry) { return enter_hardirq((s32)ctx->args[0]); }
RAW_TRACEPOINT_PROBE(irq_handler_exit) { return exit_hardirq(); }
RAW_TRACEPOINT_PROBE(softirq_entry) { return enter_softirq((u32)ctx->args[0]); }
RAW_TRACEPOINT_PROBE(softirq_exit) { return exit_softirq(); }
#else
TRACEPOINT_PROBE(irq, irq_handler_entry) { return enter_hardirq(args->irq); }
TRACEPOINT_PROBE(irq, irq_handler_exit) { return exit_hardirq(); }
TRACEPOINT_PROBE(irq, softirq_entry) { return enter_softirq(args->vec); }
TRACEPOINT_PROBE(irq, softirq_exit) { return exit_softirq(); }
#endif

/* The x86 system vectors of paftrace.h's SYSTEM_VECTORS list, bracketed like
 * device interrupts; the loader attaches these to irq_vectors:<name>_entry/exit
 * where the kernel has them (raw with USE_RAW_TP: they read no argument, so one
 * body serves both kinds). */
#define SYSTEM_VECTOR(name, index)                                           \
    int vector_entry_##name(void *ctx) { return enter_hardirq(-1 - index); } \
    int vector_exit_##name(void *ctx) { return exit_hardirq(); }
SYSTEM_VECTORS(SYSTEM_VECTOR)
#endif /* HAVE_IRQ_TP */

#ifdef HAVE_KPROBE_WARN
/* warn_alloc(gfp, nodemask, fmt, ...) runs on the failing task just before the
 * allocator returns NULL and the tracepoint fires; it returns early for
 * __GFP_NOWARN or when rate-limited, and otherwise prints, dump_stack()s and
 * show_mem()s; on_warn_printed is attached to the first of those the kernel
 * lets us probe (planner.PRINTED_MARKER_NAMES). */
int on_warn_alloc(struct pt_regs *ctx)
{
    u32 tid = bpf_get_current_pid_tgid();
    struct warn_state s = {.ts_ns = bpf_ktime_get_ns(), .printed = 0};
    warned_tasks.update(&tid, &s);
    return 0;
}

int on_warn_printed(struct pt_regs *ctx)
{
    u32 tid = bpf_get_current_pid_tgid();
    struct warn_state *s = warned_tasks.lookup(&tid);
    if (s)
        s->printed = 1;
    return 0;
}
#endif

#ifdef HAVE_KPROBE_ALLOC
/* Second argument of every allocator entry since 2.6.32 is `order`. Only the
 * traced orders are timed, and only in process context: an interrupt reuses
 * the interrupted task's tid. No kretprobe: the tracepoint fires at the end of
 * the same function and closes the timing (and a kretprobe cuts BPF stacks at
 * kretprobe_trampoline before the 5.16 unwinder fix, seen on 5.10). An entry
 * of another order is kept: it is the outer allocation of a nested one (e.g.
 * an order-0 allocation inside direct reclaim). */
int on_alloc_entry(struct pt_regs *ctx)
{
    u32 order = PT_REGS_PARM2(ctx);
    if (order < ORDER_MIN || order > ORDER_MAX)
        return 0;
    u8 vec;
    s32 irq;
    if (current_context(&vec, &irq) != CTX_PROCESS)
        return 0;
    u32 tid = bpf_get_current_pid_tgid();
    struct alloc_timing *open = alloc_start.lookup(&tid);
    if (open && open->order != order)
        return 0;
    struct alloc_timing t = {.start_ns = bpf_ktime_get_ns(), .order = order};
    alloc_start.update(&tid, &t);
    return 0;
}

/* At mm_page_alloc: the allocation that started at on_alloc_entry is over. */
static __always_inline u64 end_alloc_timing(u32 order)
{
    u32 tid = bpf_get_current_pid_tgid();
    struct alloc_timing *open = alloc_start.lookup(&tid);
    if (!open || open->order != order)
        return 0;
    u8 vec;
    s32 irq;
    if (current_context(&vec, &irq) != CTX_PROCESS)
        return 0;
    u64 start = open->start_ns;
    alloc_start.delete(&tid);
    return start;
}
#endif

static __always_inline void fill_failure(struct failure_event *e, u64 gfp, u32 order,
                                         s32 migratetype, u8 context, u8 vec, s32 irq,
                                         s32 stack_id, u64 alloc_start_ns)
{
    u64 id = bpf_get_current_pid_tgid();
    e->ts_ns = bpf_ktime_get_ns();
    e->gfp = gfp;
    e->pid = id >> 32;
    e->tid = (u32)id;
    e->cpu = bpf_get_smp_processor_id();
    e->order = order;
    e->migratetype = migratetype;
    e->stack_id = stack_id;
    e->irq = irq;
    e->context = context;
    e->softirq_vec = vec;
    e->warned = 0;
    e->printed = 0;
    e->alloc_start_ns = alloc_start_ns;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
#ifdef HAVE_CGROUP_ID
    e->cgroup_id = bpf_get_current_cgroup_id();
#else
    e->cgroup_id = 0;
#endif
    u32 tid = (u32)id;
    e->memcg_refused = 0;
#ifdef HAVE_KPROBE_MEMCG
    u64 *refused = memcg_refused_at.lookup(&tid);
    if (refused) {
        if (e->ts_ns - *refused < MEMCG_WINDOW_NS)
            e->memcg_refused = 1;
        memcg_refused_at.delete(&tid);
    }
#endif
#ifdef HAVE_KPROBE_WARN
    struct warn_state *w = warned_tasks.lookup(&tid);
    /* warn_alloc has other callers (vmalloc, vmemmap): only a call moments
     * before this failure belongs to it. */
    if (w && e->ts_ns - w->ts_ns < WARN_WINDOW_NS) {
        e->warned = 1;
        e->printed = w->printed;
    }
    if (w)
        warned_tasks.delete(&tid);
#endif
}

#if SITE_RECORDS
/* 1 when this failure is counted in its call site's entry instead of sent: the
 * site already sent SITE_RECORDS records from this CPU in its current storm. */
static __always_inline int coalesced(u64 gfp, u32 order, s32 migratetype, u8 context,
                                     u8 vec, s32 irq, s32 stack_id, u64 alloc_start_ns)
{
    struct site_key key = {.gfp = gfp, .stack_id = stack_id, .order = order,
                           .context = context, .softirq_vec = vec};
    if (context == CTX_PROCESS)
        key.pid = bpf_get_current_pid_tgid() >> 32;
    struct site_state zero = {};
    struct site_state *site = sites.lookup_or_try_init(&key, &zero);
    if (!site)
        return 0;  /* table full: a record as usual */
    u64 now = bpf_ktime_get_ns();
    if (now - site->last_ns >= SITE_QUIET_NS)
        site->sent = 0;  /* a new storm */
    site->last_ns = now;
    if (site->sent < SITE_RECORDS) {
        site->sent++;
        return 0;
    }
    fill_failure(&site->last, gfp, order, migratetype, context, vec, irq, stack_id,
                 alloc_start_ns);
    site->coalesced++;
    bump_stat(STAT_COALESCED);
    return 1;
}
#endif

#ifdef TRACE_ALL
/* Runs once per stack walk only, so the clock read is off the hot path. With
 * the walks `elapsed` apart at N, the event rate is N / elapsed and the N that
 * gives one walk per period is N * period / elapsed: one step, so a burst after
 * an idle spell is throttled at its second event, not at user space's next read. */
static __always_inline u32 next_sample_every(struct sampler *s)
{
    u32 idx = 0;
    u32 *fixed = sample_config.lookup(&idx);
    u64 now = bpf_ktime_get_ns();
    u64 every = s->every ? s->every : 1;
    if (fixed && *fixed) {
        every = *fixed;
    } else if (s->last_ns) {
        u64 elapsed = now - s->last_ns;
        every = elapsed ? every * SAMPLE_PERIOD_NS / elapsed : SAMPLE_EVERY_MAX;
        if (every < 1)
            every = 1;
        if (every > SAMPLE_EVERY_MAX)
            every = SAMPLE_EVERY_MAX;
    }
    s->last_ns = now;
    s->every = every;
    return every;
}

/* Fibonacci hashing of the key's fields into ALLOC_SLOTS slots. */
static __always_inline u32 alloc_slot_of(u64 gfp, u32 order, u8 context, u8 vec)
{
    u64 h = gfp ^ ((u64)order << 40) ^ ((u64)context << 48) ^ ((u64)vec << 56);
    return (h * 0x9E3779B97F4A7C15ULL) >> (64 - ALLOC_SLOT_BITS);
}

/* Count in this CPU's slot for the key; 0 if the slot holds another key. Each
 * CPU has its own slots and tracing programs do not nest on a CPU
 * (kernel/trace/bpf_trace.c, trace_call_bpf: bpf_prog_active), so no lock. */
static __always_inline int count_in_slot(u64 gfp, u32 order, u8 context, u8 vec)
{
    u32 index = alloc_slot_of(gfp, order, context, vec);
    struct alloc_slot *slot = alloc_slots.lookup(&index);
    if (!slot)
        return 0;
    if (!slot->count) {
        slot->key.gfp = gfp;
        slot->key.order = order;
        slot->key.context = context;
        slot->key.softirq_vec = vec;
    } else if (slot->key.gfp != gfp || slot->key.order != order ||
               slot->key.context != context || slot->key.softirq_vec != vec) {
        return 0;
    }
    slot->count++;
    return 1;
}

static __always_inline void count_allocation(void *ctx, u64 gfp, u32 order, u8 context,
                                             u8 vec)
{
    struct alloc_key key = {.gfp = gfp, .order = order, .context = context,
                            .softirq_vec = vec};
    u64 zero = 0;
    u64 *count;
    if (!count_in_slot(gfp, order, context, vec)) {
        count = alloc_counts.lookup_or_try_init(&key, &zero);
        if (!count) {
            bump_stat(STAT_AGGREGATION_FULL);
            return;
        }
        (*count)++;
    }

    /* Stacks are sampled: walking the stack on every event costs several
     * times the hook itself (docs/PERFORMANCE.md). */
    u32 idx = 0;
    struct sampler *s = sampler.lookup(&idx);
    if (!s)
        return;
    if (s->left > 1) {
        s->left--;
        return;
    }
    s->left = next_sample_every(s);
    bump_stat(STAT_SAMPLED_STACKS);
    struct alloc_stack_key skey = {.base = key};
    skey.stack_id = stacks.get_stackid(ctx, 0);
    if (skey.stack_id < 0)
        bump_stat(STAT_STACK_ERRORS);
    count = alloc_stacks.lookup_or_try_init(&skey, &zero);
    if (count)
        (*count)++;
    else
        bump_stat(STAT_AGGREGATION_FULL);
}
#endif

/* Every allocation, from either entry point below: `ctx` is what helpers that
 * take the program's context (stack walks, perf buffer output) are given. */
static __always_inline int on_page_alloc(void *ctx, int failed, u32 order, u64 gfp,
                                         s32 migratetype)
{
#if defined(WITH_RECLAIM) && defined(HAVE_TRY_COMPACT)
    reclaim_on_alloc(ctx, order, failed);  /* closes direct-compaction stalls */
#endif
    /* Always-on per-order counters: the cheapest useful thing we can do. */
    u32 slot = order < ORDER_SLOTS ? order : ORDER_SLOTS - 1;
    struct order_stat *st = order_stats.lookup(&slot);
    if (st) {
        st->attempts++;
        if (failed)
            st->failures++;
    }
    u64 alloc_start_ns = 0;
#ifdef HAVE_KPROBE_ALLOC
    if (order >= ORDER_MIN && order <= ORDER_MAX)
        alloc_start_ns = end_alloc_timing(order);
#endif
#ifndef TRACE_ALL
    if (!failed)
        return 0;
#endif
    if (order < ORDER_MIN || order > ORDER_MAX)
        return 0;
#ifdef ATOMIC_ONLY
    if (gfp & GFP_DIRECT_RECLAIM)
        return 0;
#endif
#ifdef WARN_ONLY
    if (gfp & GFP_NOWARN)
        return 0;
#endif
#ifdef FILTER_PID
    if ((bpf_get_current_pid_tgid() >> 32) != FILTER_PID)
        return 0;
#endif
#ifdef FILTER_CGROUP
    {
        u64 cgroup = bpf_get_current_cgroup_id();
        if (!cgroup_filter.lookup(&cgroup))
            return 0;
    }
#endif
#ifdef FILTER_COMM_LO
    {
        char comm[16] = {};
        bpf_get_current_comm(&comm, sizeof(comm));
        if (*(u64 *)&comm[0] != FILTER_COMM_LO || *(u64 *)&comm[8] != FILTER_COMM_HI)
            return 0;
    }
#endif
    u8 vec;
    s32 irq;
    u8 context = current_context(&vec, &irq);
#ifdef TRACE_ALL
    if (!failed) {
        count_allocation(ctx, gfp, order, context, vec);
        return 0;
    }
#endif
    bump_stat(STAT_MATCHED_FAILURES);
    u32 cslot = context;
    u64 *by_ctx = fail_by_ctx.lookup(&cslot);
    if (by_ctx)
        (*by_ctx)++;

    s32 stack_id = stacks.get_stackid(ctx, 0);
    if (stack_id < 0)
        bump_stat(STAT_STACK_ERRORS);
#if SITE_RECORDS
    if (coalesced(gfp, order, migratetype, context, vec, irq, stack_id, alloc_start_ns))
        return 0;
#endif
#ifdef USE_RINGBUF
    struct failure_event *e = failures.ringbuf_reserve(sizeof(struct failure_event));
    if (!e) {
        bump_stat(STAT_LOST_RECORDS);
        return 0;
    }
    fill_failure(e, gfp, order, migratetype, context, vec, irq, stack_id, alloc_start_ns);
    failures.ringbuf_submit(e, ringbuf_wakeup_flag(e->ts_ns));
#else
    struct failure_event e = {};
    fill_failure(&e, gfp, order, migratetype, context, vec, irq, stack_id, alloc_start_ns);
    failures.perf_submit(ctx, &e, sizeof(e));
#endif
    return 0;
}

#ifdef USE_RAW_TP
/* A raw tracepoint (4.17+, commit c4f6699dfcb8 "bpf: introduce BPF_RAW_TRACEPOINT")
 * runs on trace_mm_page_alloc()'s own arguments. A classic tracepoint program first
 * has the whole event record built in a perf buffer (include/trace/perf.h,
 * perf_trace_##call): on 6.18 that hook cost 172 ns per allocation, the raw one 36
 * (docs/PERFORMANCE.md). The arguments are the event's TP_PROTO, the same from
 * 2.6.32 to 6.18 (include/trace/events/kmem.h): (struct page *page, unsigned int order,
 * gfp_t gfp_flags, int migratetype), page NULL on failure. Stack walks from here
 * begin in the tracing code (bpf_trace_run4 and, before static calls, its
 * callers): paftrace/stacks.py drops those frames. */
RAW_TRACEPOINT_PROBE(mm_page_alloc)
{
    return on_page_alloc(ctx, ctx->args[0] == 0, (u32)ctx->args[1], (u32)ctx->args[2],
                         (s32)ctx->args[3]);
}
#else
TRACEPOINT_PROBE(kmem, mm_page_alloc)
{
#ifdef HAVE_PFN
    int failed = args->pfn == (unsigned long)-1;
#else
    int failed = (unsigned long)args->page == 0;
#endif
    return on_page_alloc(args, failed, args->order, args->gfp_flags, args->migratetype);
}
#endif
