// SPDX-License-Identifier: Apache-2.0
/*
 * What each step of paftrace's failure path costs, measured in the kernel:
 * on every failed allocation (pfn == -1) this program does, one after the other,
 * what pagealloc.c does for a failure, and adds the time of each step (two
 * bpf_ktime_get_ns() reads apart) to a per-CPU slot. Step `clock` is two reads
 * with nothing between: the measuring cost, to subtract. The ring buffer submit
 * alternates between a wakeup per record (the old way) and BPF_RB_NO_WAKEUP
 * (what pagealloc.c does now); records are discarded by nobody reading them,
 * so the buffer is consumed by failpath.py. Built by scripts/bench-data/failpath.py.
 */
#include "paftrace.h"

#define STEP_CLOCK 0
#define STEP_CONTEXT 1      /* per-CPU irq state read */
#define STEP_COUNTERS 2     /* matched + per-context counters */
#define STEP_STACK 3        /* bpf_get_stackid */
#define STEP_RESERVE 4      /* ring buffer reserve */
#define STEP_FILL 5         /* clock, ids, cpu, comm into the record */
#define STEP_TASK_LOOKUP 6  /* per-task hash lookup + delete (warn_alloc/alloc-entry state) */
#define STEP_RECLAIM 7      /* open-compaction count read (reclaim.c, every allocation) */
#define STEP_SUBMIT_WAKE 8  /* submit, waking the reader */
#define STEP_SUBMIT_QUIET 9 /* submit with BPF_RB_NO_WAKEUP */
#define STEPS 10

struct cpu_ctx {
    u32 in_hardirq;
    s32 irq;
    u32 in_softirq;
    u32 vec;
    u32 unwoken;
};

BPF_PERCPU_ARRAY(step_ns, u64, STEPS);
BPF_PERCPU_ARRAY(step_runs, u64, STEPS);
BPF_PERCPU_ARRAY(cpu_state, struct cpu_ctx, 1);
BPF_PERCPU_ARRAY(counters, u64, STAT_SLOTS);
BPF_ARRAY(open_compactions, s64, 1);
BPF_HASH(per_task, u32, u64, 1024);
BPF_STACK_TRACE(stacks, 1024);
BPF_RINGBUF_OUTPUT(records, 64);

static __always_inline u64 step(u32 index, u64 since)
{
    u64 now = bpf_ktime_get_ns();
    u64 *ns = step_ns.lookup(&index);
    u64 *runs = step_runs.lookup(&index);
    if (ns && runs) {
        *ns += now - since;
        *runs += 1;
    }
    return bpf_ktime_get_ns();  /* the bookkeeping above is not the next step's */
}

TRACEPOINT_PROBE(kmem, mm_page_alloc)
{
    if (args->pfn != (unsigned long)-1)
        return 0;
    u64 t = bpf_ktime_get_ns();
    t = step(STEP_CLOCK, t);

    u32 zero = 0;
    struct cpu_ctx *c = cpu_state.lookup(&zero);
    u8 context = c && c->in_softirq ? CTX_SOFTIRQ : CTX_PROCESS;
    t = step(STEP_CONTEXT, t);

    u32 matched = STAT_MATCHED_FAILURES;
    u64 *v = counters.lookup(&matched);
    if (v)
        (*v)++;
    u32 slot = context;
    v = counters.lookup(&slot);
    if (v)
        (*v)++;
    t = step(STEP_COUNTERS, t);

    s32 stack_id = stacks.get_stackid(args, 0);
    t = step(STEP_STACK, t);

    struct failure_event *e = records.ringbuf_reserve(sizeof(struct failure_event));
    t = step(STEP_RESERVE, t);
    if (!e)
        return 0;

    u64 id = bpf_get_current_pid_tgid();
    e->ts_ns = bpf_ktime_get_ns();
    e->gfp = args->gfp_flags;
    e->pid = id >> 32;
    e->tid = (u32)id;
    e->cpu = bpf_get_smp_processor_id();
    e->order = args->order;
    e->stack_id = stack_id;
    e->context = context;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    t = step(STEP_FILL, t);

    u32 tid = (u32)id;
    u64 *seen = per_task.lookup(&tid);
    if (seen)
        per_task.delete(&tid);
    t = step(STEP_TASK_LOOKUP, t);

    s64 *open = open_compactions.lookup(&zero);
    if (open && *open > 0)
        e->warned = 1;
    t = step(STEP_RECLAIM, t);

    if (c && (++c->unwoken & 1)) {
        records.ringbuf_submit(e, 0);
        step(STEP_SUBMIT_WAKE, t);
    } else {
        records.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
        step(STEP_SUBMIT_QUIET, t);
    }
    return 0;
}
