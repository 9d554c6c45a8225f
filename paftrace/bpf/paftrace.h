/* SPDX-License-Identifier: Apache-2.0 */
/*
 * paftrace's kernel/user contract: every record layout and every constant that
 * both the BPF programs (pagealloc.c, reclaim.c) and Python need.
 *
 * This file is the only source: paftrace/contract.py parses it (the #defines
 * below and the structs of plain scalars) into the Python constants and ctypes
 * layouts, and tests/test_contract.py compares those with the layouts clang
 * gives the compiled program. Keep it simple C that parser reads:
 *   - `#define NAME <integer>` with an optional U/ULL suffix;
 *   - structs of u8/u16/u32/u64/s32/s64/char fields, arrays and nested structs
 *     declared earlier in this file, natural alignment, no bitfields;
 *   - enumerations as `#define PREFIX_NAME value`: Python names them after the
 *     part behind the prefix, lower-cased (STAT_LOST_RECORDS -> "lost_records").
 * Only tracepoint arguments and BPF helpers feed these records, never a kernel
 * struct offset: the same object compiles against the nearest kernel headers.
 */
#ifndef PAFTRACE_H
#define PAFTRACE_H

/* Execution context of an allocation: the `context` byte, index of
 * fail_by_ctx. NMI is told from the stack only (paftrace/context.py). */
#define CTX_PROCESS 0
#define CTX_SOFTIRQ 1
#define CTX_HARDIRQ 2
#define CTX_NMI 3
#define CTX_SLOTS 4

#define NO_VEC 0xff        /* softirq_vec of a record outside any softirq */
#define ORDER_SLOTS 32     /* order_stats: orders 0..31, the last slot takes the rest */

/* Indexes of the per-CPU `stats` array. */
#define STAT_LOST_RECORDS 0      /* ring buffer reserve failed */
#define STAT_STACK_ERRORS 1      /* bpf_get_stackid() failed (map full / collision) */
#define STAT_AGGREGATION_FULL 2  /* an aggregation map was full */
#define STAT_MATCHED_FAILURES 3  /* failures that passed the filters */
#define STAT_SAMPLED_STACKS 4    /* --all: events whose stack was sampled */
#define STAT_COALESCED 5         /* failures counted in `sites` instead of sent (below) */
#define STAT_SLOTS 8

/* warn_alloc() has other callers (vmalloc, vmemmap): only a call this close
 * before a failure of the same task belongs to that failure. */
#define WARN_WINDOW_NS 100000000ULL

/* x86 system vectors (LAPIC timer, IPIs) never pass through irq_handler_entry;
 * pagealloc.c brackets these with irq_vectors:<name>_entry/exit (4.14+;
 * `reschedule` 5.10+, arch/x86/include/asm/trace/irq_vectors.h). A record's
 * `irq` is then -1 - index. Not irq_work: perf and the BPF ring buffer wake
 * readers through irq_work, and the kernel refuses a BPF attachment there
 * (EPERM, seen on 6.18). */
#define SYSTEM_VECTORS(X)        \
    X(local_timer, 0)            \
    X(call_function, 1)          \
    X(call_function_single, 2)   \
    X(reschedule, 3)             \
    X(thermal_apic, 4)           \
    X(threshold_apic, 5)         \
    X(deferred_error_apic, 6)    \
    X(error_apic, 7)             \
    X(spurious_apic, 8)

/* Kind of a stall record. */
#define KIND_DIRECT_RECLAIM 0
#define KIND_DIRECT_COMPACTION 1

/* How a direct-compaction stall ended. */
#define END_PAGE 0            /* the allocation got a page */
#define END_NO_PAGE 1         /* the allocation failed */
#define END_THEN_RECLAIM 2    /* the task went on to direct reclaim */
#define END_THEN_RECOMPACT 3  /* the task compacted again (retry loop) */

/* Indexes of reclaim.c's per-CPU `counters` array. */
#define C_DIRECT_COMPACT 0
#define C_DIRECT_RECLAIM 1
#define C_RECLAIMED 2
#define C_WAKEUP_KSWAPD 3
#define C_KSWAPD_WAKE 4
#define C_WAKEUP_KCOMPACTD 5
#define C_KCOMPACTD_WAKE 6
#define C_EXTFRAG 7
#define C_EXTFRAG_FRAGMENTING 8
#define C_EXTFRAG_STEAL 9
#define C_MIGRATED 10
#define C_MIGRATE_FAILED 11
#define C_LOST_STALLS 12
#define C_EXTFRAG_AGG_FULL 13    /* an extfrag_* or compaction_zones map was full */
#define C_SLOTS 16

#define STATUS_SLOTS 16        /* compact_result values (<= 8 on 4.14..6.18) */
#define KSWAPD_ORDER_SLOTS 16

struct order_stat {
    u64 attempts;
    u64 failures;
};

/* One failed allocation (ring buffer or perf buffer record). */
struct failure_event {
    u64 ts_ns;
    u64 gfp;
    u64 alloc_start_ns; /* allocator entry (kprobe), 0 if unknown */
    u32 pid;
    u32 tid;
    u32 cpu;
    u32 order;
    s32 migratetype;
    s32 stack_id;
    s32 irq;            /* device irq, or -1 - index of a SYSTEM_VECTORS entry */
    u8 context;         /* CTX_* */
    u8 softirq_vec;     /* NO_VEC outside softirqs */
    u8 warned;          /* warn_alloc() ran for this failure */
    u8 printed;         /* ... and it got past its rate limit (show_mem ran) */
    char comm[16];
    u64 cgroup_id;      /* bpf_get_current_cgroup_id(): the task's cgroup2 id, 0 without it */
    u8 memcg_refused;   /* the memcg kmem charge of this task was refused just before */
    u8 pad[7];
};

/* Storm coalescing (SITE_RECORDS, a -D flag: --records-per-site). Each CPU sends
 * the first SITE_RECORDS failure records of a call site's storm: its failures on
 * that CPU with less than SITE_QUIET_NS between one and the next. The storm's
 * further failures are counted in the site's `sites` entry, which keeps the last
 * of them whole, and user space reports them as one `failure` record with a
 * `count` within 0.5 s (tracer.COALESCED_EVERY_S). A storm then costs the
 * kernel's part only (the stack walk, needed for the key, and a map update),
 * not a record and its decoding each, however long it lasts; a quiet second
 * gives the site its records back. A full table sends the record as usual:
 * nothing is dropped, only coalescing stops for new sites.
 * SITE_RECORDS 0: every failure is a record and the table does not exist. */
#define SITE_QUIET_NS 1000000000ULL
#define SITE_ENTRIES 512

struct site_key {
    u64 gfp;
    s32 stack_id;
    u32 order;
    u32 pid;            /* tgid in process context; 0 in interrupts (whoever was interrupted) */
    u8 context;
    u8 softirq_vec;
    u16 pad;
};

struct site_state {
    u64 last_ns;        /* the site's latest failure on this CPU */
    u64 coalesced;      /* failures counted here since the entry was made; never reset */
    u32 sent;           /* records sent in the current storm */
    u32 pad;
    struct failure_event last;  /* the latest coalesced failure */
};

/* A refused memcg charge belongs to the failure of the same task that follows it
 * within this window (the charge returns microseconds before mm_page_alloc fires). */
#define MEMCG_WINDOW_NS 10000000ULL

/* --cgroup on cgroup2: ids of the cgroup and its descendants (user space adds new
 * ones each interval); failures of other cgroups stay in the kernel. */
#define CGROUP_FILTER_ENTRIES 4096

/* --all: successful allocations aggregated in the kernel. */
struct alloc_key {
    u64 gfp;
    u32 order;
    u8 context;
    u8 softirq_vec;
    u16 pad;
};

/* --all: a per-CPU direct-mapped cache in front of alloc_counts. The hash map
 * update was most of --all's cost over an empty program (jhash of the key and a
 * bucket walk per event); a run of the same few keys now costs an array read and
 * a compare. A key whose slot another key holds goes to the hash map. User space
 * adds slots and hash entries with the same key. */
#define ALLOC_SLOT_BITS 6
#define ALLOC_SLOTS 64     /* 1 << ALLOC_SLOT_BITS */

struct alloc_slot {
    struct alloc_key key;
    u64 count;             /* 0: the slot is free */
};

struct alloc_stack_key {
    struct alloc_key base;
    s32 stack_id;
    u32 pad;
};

/* One direct reclaim or direct compaction stall, as it ends (perf buffer). */
struct stall_event {
    u64 start_ns;
    u64 end_ns;
    u64 gfp;
    u64 nr_reclaimed;
    u32 pid;
    u32 tid;
    u32 order;
    s32 prio;
    s32 last_status;
    u32 zones;
    u8 kind;            /* KIND_* */
    u8 end;             /* END_* */
    u8 pad[6];
    char comm[16];
};

/* Stall time per process (tgid), one copy per CPU (BPF_PERCPU_HASH): threads
 * of one process stall on several CPUs at once, and a read-modify-write of one
 * shared entry would lose their updates. Tracing programs do not nest on a CPU
 * (kernel/trace/bpf_trace.c, trace_call_bpf: bpf_prog_active), so each copy
 * has one writer; user space sums the copies and takes the largest max_ns. */
struct proc_stall {
    u64 reclaim_ns;
    u64 compact_ns;
    u64 max_ns;
    u32 reclaim_n;
    u32 compact_n;
    char comm[16];
};

/* Fragmentation attribution (kmem:mm_page_alloc_extfrag): exact counts per
 * extfrag_key with stack_id = EXTFRAG_NO_STACK in `extfrag_counts`; the stack is
 * walked for each key's first event and for at most EXTFRAG_STACKS_PER_WINDOW
 * events per CPU per EXTFRAG_WINDOW_NS, counted per key and stack in
 * `extfrag_stacks`, and scaled
 * to the exact totals in user space (marked as estimates). */
#define EXTFRAG_NO_STACK -1
#define EXTFRAG_STACKS_PER_WINDOW 32
#define EXTFRAG_WINDOW_NS 100000000ULL

struct extfrag_key {
    s32 alloc_order;
    s32 fallback_order;
    s32 alloc_migratetype;
    s32 fallback_migratetype;
    s32 stack_id;
    u8 fragmenting;       /* fallback_order < pageblock order: the kernel's own test */
    u8 change_ownership;  /* the pageblock was claimed for alloc_migratetype */
    u16 pad;
    char comm[16];
};

struct window_budget {
    u64 start_ns;
    u32 used;
    u32 pad;
};

/* Compaction's side, per zone: why it could not rebuild high-order blocks. */
#define COMPACT_EV_END 0       /* mm_compaction_end: result = status, zone by zone_start pfn */
#define COMPACT_EV_SUITABLE 1  /* mm_compaction_suitable: result = ret, zone by (nid, idx) */
#define COMPACT_EV_DEFERRED 2  /* mm_compaction_deferred: result = 0, zone by (nid, idx) */

struct compaction_zone_key {
    u64 zone_start;  /* COMPACT_EV_END: the zone's first pfn; 0 otherwise */
    s32 nid;         /* -1 for COMPACT_EV_END */
    s32 zone_idx;    /* -1 for COMPACT_EV_END */
    s32 event;       /* COMPACT_EV_* */
    s32 result;
};

#endif /* PAFTRACE_H */
