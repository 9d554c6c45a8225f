"""Execution context of an allocation: process, softirq (which vector), hardirq, NMI.

Two independent sources, cross-checked:

1. Per-CPU state kept in BPF by the irq:softirq_entry/exit and
   irq:irq_handler_entry/exit tracepoints (plus x86 irq_vectors:* for LAPIC
   timer and IPIs). Cheap and available for every event.
2. The kernel stack of a failure, read innermost frame first: the first
   context marker found decides (x86 entry code and kernel/softirq.c
   per version: docs/KERNEL-NOTES.md §4.4). It is the only way to see
   NMI, and it corrects the per-CPU state when an irq entry/exit event was
   skipped (BPF does not run a program while another runs on that CPU).

Limits are documented in docs/CONTEXT.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from paftrace import contract

PROCESS, SOFTIRQ, HARDIRQ, NMI = "process", "softirq", "hardirq", "nmi"
# index = value of the BPF `context` byte (paftrace.h CTX_*)
CONTEXTS = contract.enumeration("CTX_")
assert CONTEXTS == (PROCESS, SOFTIRQ, HARDIRQ, NMI), CONTEXTS

# softirq_to_name[] (kernel/softirq.c); vector 5 was BLOCK_IOPOLL up to 4.4.
SOFTIRQ_NAMES = ("HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED",
                 "HRTIMER", "RCU")

# Negative irq numbers in records are x86 system vectors (paftrace.h SYSTEM_VECTORS).
SYSTEM_VECTOR_NAMES = contract.system_vectors()

# Softirq action functions -> vector (open_softirq() callers, kernel/softirq.c and
# net/core/dev.c, block/, kernel/rcu/, kernel/time/; docs/KERNEL-NOTES.md §4.4).
SOFTIRQ_ACTIONS = {
    "tasklet_hi_action": "HI",
    "run_timer_softirq": "TIMER",
    "net_tx_action": "NET_TX",
    "net_rx_action": "NET_RX",
    "blk_done_softirq": "BLOCK",
    "irq_poll_softirq": "IRQ_POLL",
    "blk_iopoll_softirq": "IRQ_POLL",
    "tasklet_action": "TASKLET",
    "run_rebalance_domains": "SCHED",
    "sched_balance_softirq": "SCHED",
    "hrtimer_run_softirq": "HRTIMER",
    "run_hrtimer_softirq": "HRTIMER",
    "rcu_core_si": "RCU",
    "rcu_process_callbacks": "RCU",
}
SOFTIRQ_ENTRY_FRAMES = frozenset({"__do_softirq", "handle_softirqs", "run_ksoftirqd",
                                  "do_softirq_own_stack", "call_softirq", "invoke_softirq"})
HARDIRQ_FRAMES = frozenset({
    "handle_irq_event", "handle_irq_event_percpu", "__handle_irq_event_percpu",
    "handle_edge_irq", "handle_fasteoi_irq", "handle_level_irq",
    "do_IRQ", "common_interrupt", "asm_common_interrupt", "handle_IRQ_event",
    "smp_apic_timer_interrupt", "apic_timer_interrupt", "__sysvec_apic_timer_interrupt",
    "sysvec_apic_timer_interrupt", "asm_sysvec_apic_timer_interrupt", "sysvec_irq_work",
    "__sysvec_irq_work", "sysvec_call_function", "sysvec_call_function_single",
    "__sysvec_call_function", "__sysvec_call_function_single",
    "generic_smp_call_function_single_interrupt",
    "hrtimer_interrupt",
})
NMI_FRAMES = frozenset({"do_nmi", "nmi", "exc_nmi", "asm_exc_nmi", "default_do_nmi",
                        "nmi_handle", "end_repeat_nmi"})

_SYMBOL_RE = re.compile(r"^\s*(?:\?\s*)?([A-Za-z_.$][\w.$]*)")


def symbol_name(frame: str) -> str:
    """'net_rx_action+0x103/0x2f0 [mod]' -> 'net_rx_action' (drops .isra/.constprop too)."""
    m = _SYMBOL_RE.match(frame)
    if not m:
        return ""
    return re.sub(r"\.(?:isra|constprop|part|cold|llvm)\.?\d*.*$", "", m.group(1))


@dataclass(frozen=True)
class StackContext:
    context: str | None  # None: no marker found (process context, or an unwinder gap)
    softirq: str | None = None
    marker: str | None = None


def classify_stack(frames: list[str]) -> StackContext:
    """Context read from a kernel stack, innermost frame first."""
    vector: str | None = None
    for frame in frames:
        name = symbol_name(frame)
        if name in NMI_FRAMES:
            return StackContext(NMI, None, name)
        if name in HARDIRQ_FRAMES:
            return StackContext(HARDIRQ, None, name)
        if name in SOFTIRQ_ACTIONS and vector is None:
            vector = SOFTIRQ_ACTIONS[name]
            continue
        if name in SOFTIRQ_ENTRY_FRAMES:
            return StackContext(SOFTIRQ, vector, name)
    if vector:
        # A softirq action frame without the loop frame (inlined handle_softirqs).
        return StackContext(SOFTIRQ, vector, vector)
    return StackContext(None)


NO_VEC = contract.constants()["NO_VEC"]  # not in a softirq


def softirq_name(vec: int) -> str | None:
    if 0 <= vec < len(SOFTIRQ_NAMES):
        return SOFTIRQ_NAMES[vec]
    return None if vec == NO_VEC else f"vec{vec}"


def irq_label(irq: int, irq_names: dict[int, str]) -> str:
    """Human name of the hardirq source recorded by BPF."""
    if irq < 0:
        index = -1 - irq
        name = SYSTEM_VECTOR_NAMES[index] if index < len(SYSTEM_VECTOR_NAMES) else "vector"
        return f"{name} (system vector)"
    return f"irq {irq} ({irq_names[irq]})" if irq in irq_names else f"irq {irq}"


def reconcile(tracked: str, tracked_vec: str | None,
              from_stack: StackContext) -> tuple[str, str | None, str]:
    """Final (context, softirq, source) for a failure.

    The stack wins when it has a marker: it is what the CPU was really doing.
    Without a marker the per-CPU state is kept; a process-context stack has no
    marker by definition.
    """
    if from_stack.context is None:
        return tracked, tracked_vec, "irq-tracepoints"
    if from_stack.context == tracked:
        return tracked, tracked_vec or from_stack.softirq, "irq-tracepoints+stack"
    return from_stack.context, from_stack.softirq, "stack"


def read_irq_names(path: str = "/proc/interrupts") -> dict[int, str]:
    """irq number -> action names (the last column of /proc/interrupts)."""
    names: dict[int, str] = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return names
    if not lines:
        return names
    ncpu = len(lines[0].split())
    for line in lines[1:]:
        head, _, rest = line.partition(":")
        if not head.strip().isdigit():
            continue
        tail = rest.split()[ncpu:]
        # "IO-APIC 5-edge ACPI:Ged", "IR-PCI-MSI 512000-edge ahci[..]": the action
        # names follow the trigger token.
        cut = next((i + 1 for i, tok in enumerate(tail)
                    if tok.endswith(("edge", "level", "fasteoi"))), len(tail) - 1)
        names[int(head)] = " ".join(tail[cut:])
    return names
