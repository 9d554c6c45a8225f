"""Execution context and requester from a printed trace, read like a kernel engineer.

Frames are read innermost first; the first *decisive* frame wins:

- NMI handler frames -> nmi;
- a softirq loop frame (`__do_softirq`/`handle_softirqs`, `run_ksoftirqd`, ...) -> softirq,
  with the vector named by the softirq action frame inner to it (`net_rx_action` ...);
- an interrupt-*handler* frame (`do_IRQ`, `handle_irq_event`, `gic_handle_irq`,
  `__sysvec_*`, a driver's `*_intr`/`*_interrupt`, ...) -> hardirq;
- a system-call entry (`do_syscall_64`, `el0_svc`, powerpc `--- interrupt: c00`, ...)
  -> process: everything outer to it ran before the task entered the kernel.

An interrupt-*entry* frame (`common_interrupt`, `asm_sysvec_*`, `ret_from_intr`,
arm `__irq_svc`, arm64 `el1_irq`, mips `ret_from_irq`/`handle_int`, s390
`io_int_handler`, powerpc `--- interrupt: 500`) is not decisive: a real interrupt
always has handler frames on its inner side, which decide first. An entry frame
reached with none is a stale return address left on a scanned stack (x86 before
v4.x, 2.6.9 x86-64, mips raw traces): it is ignored and said so (issue 12 item 7).

Frames printed with "?" (x86), in parentheses (s390) or "(unreliable)"
(powerpc) are the unwinder's guesses: when the trace has reliable frames only
those are used. Old kernels mark every frame "?"; then all are used and the
result is flagged as a guess. x86 `<IRQ>`...`<EOI>`/`</IRQ>` brackets tell which
frames ran on the interrupt stack (x86-64 runs both hardirqs and softirqs there).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from paftrace.context import (
    HARDIRQ,
    NMI,
    NMI_FRAMES,
    PROCESS,
    SOFTIRQ,
    SOFTIRQ_ACTIONS,
    SOFTIRQ_ENTRY_FRAMES,
    symbol_name,
)
from paftrace.explain.report import Frame
from paftrace.stacks import requester

UNKNOWN = "unknown"

_SOFTIRQ_LOOP = SOFTIRQ_ENTRY_FRAMES | {
    "____do_softirq",        # arm64/generic do_softirq_own_stack() body, v5.14+
    "do_softirq",            # x86-32/ppc/s390 do_softirq() before the generic one
    "call_do_softirq",       # powerpc: switches to the softirq stack (misc_{32,64}.S)
}
_NMI = NMI_FRAMES | {
    "system_reset_exception", "machine_check_exception",  # powerpc 0x100 / 0x200
    "__machine_check_exception",
    "s390_do_machine_check", "do_machine_check",           # s390 mcck, x86 #MC
    "arm64_serror_panic", "do_serror",                     # arm64 SError
}
# Interrupt-handler frames: code that only runs once an interrupt was taken.
_HANDLERS = frozenset({
    # generic IRQ core (kernel/irq/*.c), every architecture
    "handle_irq_event", "handle_irq_event_percpu", "__handle_irq_event_percpu",
    "handle_IRQ_event", "handle_edge_irq", "handle_level_irq", "handle_fasteoi_irq",
    "handle_percpu_irq", "handle_percpu_devid_irq", "handle_simple_irq",
    "generic_handle_irq", "generic_handle_irq_desc", "generic_handle_domain_irq",
    "handle_irq_desc", "__handle_domain_irq", "handle_domain_irq", "generic_handle_arch_irq",
    "hrtimer_interrupt", "tick_sched_timer", "tick_handle_periodic", "irq_work_run",
    "__sysvec_apic_timer_interrupt", "__sysvec_irq_work", "__sysvec_call_function",
    "__sysvec_call_function_single", "__sysvec_reschedule_ipi", "__common_interrupt",
    # x86 C handlers before v5.8 (arch/x86/kernel/irq.c do_IRQ, apic.c)
    "do_IRQ", "handle_irq", "smp_apic_timer_interrupt", "local_apic_timer_interrupt",
    "smp_call_function_interrupt", "smp_call_function_single_interrupt",
    "smp_reschedule_interrupt", "smp_irq_work_interrupt",
    "generic_smp_call_function_single_interrupt",
    # arm / arm64 (arch/arm/kernel/irq.c, drivers/irqchip/irq-gic*.c)
    "asm_do_IRQ", "handle_IRQ", "gic_handle_irq", "handle_arch_irq", "do_interrupt_handler",
    # powerpc (arch/powerpc/kernel/irq.c, time.c)
    "__do_irq", "__do_IRQ", "timer_interrupt", "doorbell_exception",
    # s390 (arch/s390/kernel/irq.c: do_IRQ <= v5.11, do_io_irq/do_ext_irq v5.12+)
    "do_io_irq", "do_ext_irq", "do_irq_async", "do_extint", "do_ext_interrupt",
    "do_cio_interrupt", "do_IO_interrupt",
    # mips (arch/mips/*/irq.c: the platform dispatcher called by handle_int)
    "plat_irq_dispatch",
})
_DRIVER_HANDLER_RE = re.compile(r"(?:_intr|_interrupt|_isr|_irq_handler|_hardirq)$")
# Interrupt-entry frames (assembly or IDT entry glue): decisive only with handler
# frames inside them.
_ENTRIES = frozenset({
    # x86: arch/x86/kernel/entry_64.S (<= v4.x), arch/x86/entry/entry_64.S +
    # idtentry.h (v5.8+: asm_* entries and the sysvec_* / common_interrupt C wrappers)
    "common_interrupt", "asm_common_interrupt", "ret_from_intr", "irq_entries_start",
    "apic_timer_interrupt", "call_function_interrupt", "call_function_single_interrupt",
    "reschedule_interrupt", "irq_work_interrupt", "spurious_interrupt",
    "error_interrupt", "thermal_interrupt", "threshold_interrupt",
    # arm: arch/arm/kernel/entry-armv.S; arm64: entry.S / entry-common.c
    "__irq_svc", "__irq_usr", "el1_irq", "el0_irq", "el1_interrupt", "el0_interrupt",
    "el1h_64_irq", "el1h_64_irq_handler", "el0t_64_irq", "el0t_64_irq_handler",
    "el0t_32_irq", "el0t_32_irq_handler", "el1h_64_fiq", "el0t_64_fiq", "call_on_irq_stack",
    # powerpc: exceptions-64s.S / head_*.S labels
    "hardware_interrupt_common", "decrementer_common", "hardware_interrupt_common_virt",
    "decrementer_common_virt", "h_virt_irq_common", "do_hard_irq",
    # s390: arch/s390/kernel/entry.S
    "io_int_handler", "ext_int_handler",
    # mips: arch/mips/kernel/genex.S, entry.S
    "ret_from_irq", "handle_int", "except_vec_vi_handler",
})
# System-call and task-start frames: the task's own entry into the kernel.
_PROCESS_ENTRIES = frozenset({
    "do_syscall_64", "do_syscall_32_irqs_on", "do_fast_syscall_32", "do_int80_syscall_32",
    "entry_SYSCALL_64_after_hwframe", "entry_SYSCALL_64", "entry_SYSCALL_64_fastpath",
    "system_call_fastpath", "system_call", "tracesys", "sysenter_do_call", "syscall_call",
    "ia32_sysenter_target", "ia32_syscall", "entry_SYSENTER_32", "entry_INT80_32",
    "ret_from_fork", "ret_from_fork_asm", "kernel_thread_helper", "child_rip",
    "kthread", "worker_thread",
    "el0_svc", "el0_svc_common", "el0_svc_handler", "do_el0_svc", "el0t_64_sync",
    "el0t_64_sync_handler", "el0_sync", "invoke_syscall",
    "ret_fast_syscall", "vector_swi", "__sys_trace_return",
    "system_call_common", "system_call_exception", "syscall_exit_prepare",
    "__do_syscall", "do_syscall", "handle_sys", "handle_sys64", "syscall_common",
    "ret_from_kernel_thread",
})
# System-call handlers (include/linux/syscalls.h SYSCALL_DEFINEx and the per-arch
# wrappers of arch/*/include/asm/syscall_wrapper.h): they only run for a task.
_SYSCALL_RE = re.compile(r"^(?:__(?:x64|ia32|x32|arm64|s390x|s390|riscv|powerpc|se|do)_)?"
                         r"(?:compat_)?sys_\w+$|^SyS_\w+$|^ksys_\w+$|^__sys_\w+$")
# powerpc exception vectors (arch/powerpc/include/asm/ptrace.h, interrupt.h INTERRUPT_*):
# the "--- interrupt: N" line names regs->trap; the low bits are flags (TRAP()).
_PPC_TRAP_HARDIRQ = {0x500: "external", 0x900: "decrementer", 0x980: "hypervisor decrementer",
                     0xa00: "doorbell", 0xe80: "hypervisor doorbell",
                     0xea0: "hypervisor virtualization"}
_PPC_TRAP_NMI = {0x100: "system reset", 0x200: "machine check"}
_PPC_TRAP_SYSCALL = {0xc00: "system call", 0x3000: "scv system call"}


@dataclass
class ContextReading:
    context: str | None
    softirq: str | None
    evidence: list[str] = field(default_factory=list)
    requester: str | None = None
    guessed: bool = False   # every frame was an unwinder guess


@dataclass
class _Scan:
    context: str | None = None
    vector: str | None = None
    marker: str | None = None
    process_entry: str | None = None
    stale: list[str] = field(default_factory=list)


def usable_frames(frames: list[Frame]) -> tuple[list[Frame], bool]:
    reliable = [f for f in frames if f.reliable]
    return (reliable, False) if reliable else (frames, bool(frames))


def is_entry(name: str) -> bool:
    # x86 v5.8+ (arch/x86/include/asm/idtentry.h): asm_* are the assembly stubs and
    # sysvec_* the C wrappers that switch stacks; __sysvec_* are the handlers.
    return name in _ENTRIES or name.startswith(("asm_", "sysvec_"))


def is_handler(name: str) -> bool:
    return name in _HANDLERS or (not is_entry(name) and bool(_DRIVER_HANDLER_RE.search(name)))


def _trap(scan: _Scan, trap: int) -> bool:
    """True when a powerpc exception frame decides the context."""
    vector = trap & ~0xf
    label = f"--- interrupt: {trap:x}"
    if vector in _PPC_TRAP_NMI:
        scan.context, scan.marker = NMI, f"{label} ({_PPC_TRAP_NMI[vector]})"
        return True
    if vector in _PPC_TRAP_SYSCALL:
        scan.process_entry = f"{label} ({_PPC_TRAP_SYSCALL[vector]})"
        return True
    if vector in _PPC_TRAP_HARDIRQ:
        scan.stale.append(f"{label} ({_PPC_TRAP_HARDIRQ[vector]} interrupt)")
    return False


_IRQ_THREAD = frozenset({"irq_thread", "irq_thread_fn", "irq_forced_thread_fn"})


def _threaded(outer: list[Frame]) -> str | None:
    for frame in outer:
        name = symbol_name(frame.name)
        if name in _IRQ_THREAD:
            return name
        if is_entry(name) or name in _SOFTIRQ_LOOP:
            return None
    return None


def _scan(frames: list[Frame]) -> _Scan:
    scan = _Scan()
    for index, frame in enumerate(frames):
        if frame.trap is not None:
            if _trap(scan, frame.trap):
                return scan
            continue
        name = symbol_name(frame.name)
        if name in _NMI:
            scan.context, scan.marker = NMI, name
            return scan
        if name in SOFTIRQ_ACTIONS and scan.vector is None:
            scan.vector = SOFTIRQ_ACTIONS[name]
            continue
        if name in _SOFTIRQ_LOOP:
            scan.context, scan.marker = SOFTIRQ, name
            return scan
        if is_handler(name):
            scan.context, scan.marker = HARDIRQ, name
            if thread := _threaded(frames[index + 1:]):
                # kernel/irq/manage.c irq_thread(): a (force-)threaded handler runs in
                # its own kthread, process context.
                scan.context, scan.marker = PROCESS, f"{name} called by {thread}"
            return scan
        if is_entry(name):
            scan.stale.append(name)
        elif name in _PROCESS_ENTRIES or _SYSCALL_RE.match(name):
            scan.process_entry = name
            return scan
    if scan.vector:
        scan.context, scan.marker = SOFTIRQ, scan.vector
    return scan


def read_context(frames: list[Frame], comm: str | None, address_only: int = 0,
                 cut: bool = False) -> ContextReading:
    if not frames:
        if address_only:
            return ContextReading(UNKNOWN, None, [
                f"the call trace has {address_only} address(es) and no symbols (kernel without "
                "CONFIG_KALLSYMS, or symbols stripped): context not guessed; resolve them with "
                "scripts/decode_stacktrace.sh or addr2line against that kernel's vmlinux"])
        return ContextReading(UNKNOWN, None, ["no call trace in the report"])
    usable, guessed = usable_frames(frames)
    scan = _scan(usable)
    reading = ContextReading(scan.context, scan.vector, guessed=guessed,
                             requester=requester([f.text for f in usable]))
    evidence = reading.evidence
    if skipped := len(frames) - len(usable):
        evidence.append(f"{skipped} frame(s) printed as unreliable ('?', '(...)' or "
                        "'(unreliable)') ignored: unwinder guesses")
    if guessed:
        evidence.append("every frame is marked unreliable (old unwinder): read as a guess")
    if address_only:
        evidence.append(f"{address_only} frame(s) printed as bare addresses, not read")
    for entry in scan.stale:
        evidence.append(f"'{entry}' ignored: an interrupt-entry frame with no interrupt-handler "
                        "frame on its inner side is a stale return address, not an interrupt")
    section = frames[0].section
    closed = any(f.section == "task" for f in frames)
    if scan.context is not None:
        evidence.append(f"'{scan.marker}' frame in the trace")
        if scan.context == SOFTIRQ and scan.vector and scan.marker != scan.vector:
            evidence.append(f"softirq action frame gives vector {scan.vector}")
        if section == "irq" and scan.context == SOFTIRQ:
            evidence.append("allocation frames inside <IRQ>: x86-64 runs softirqs on the IRQ "
                            "stack")
    elif section in ("irq", "nmi") and scan.process_entry:
        return _conflict(reading, f"allocation frames inside <{section.upper()}>",
                         f"but the system-call entry '{scan.process_entry}' is on their "
                         "inner side")
    elif section == "irq":
        if closed:
            reading.context = HARDIRQ
            evidence.append("allocation frames inside <IRQ> (bracket closed by <EOI>/</IRQ>) "
                            "and no softirq frame")
        else:
            reading.context = UNKNOWN
            evidence.append("allocation frames inside <IRQ>, but the trace is cut before the "
                            "bracket closes: hardirq or softirq (x86-64 runs both there)")
    elif section == "nmi":
        reading.context = NMI
        evidence.append("allocation frames inside <NMI>")
    elif scan.process_entry:
        reading.context = PROCESS
        evidence.append(f"task entry '{scan.process_entry}' reached with no interrupt or "
                        "softirq frame on its inner side")
    elif cut:
        reading.context = UNKNOWN
        evidence.append("the trace is cut before its outer frames and the part shown has no "
                        "interrupt, softirq or task-entry frame: an interrupt further out "
                        "cannot be ruled out")
    else:
        reading.context = PROCESS
        evidence.append("whole trace printed with no <IRQ> bracket and no interrupt-handler "
                        "or softirq frame")
    if reading.context == PROCESS and comm and re.match(r"irq/\d+-", comm):
        evidence.append(f"task '{comm}' is a threaded interrupt handler (process "
                        "context by design)")
    return reading


def _conflict(reading: ContextReading, one: str, other: str) -> ContextReading:
    reading.evidence.append(f"conflicting evidence: {one}, {other}")
    reading.context, reading.softirq = UNKNOWN, None
    return reading


def cross_check(reading: ContextReading, caller: str | None, sleepable: bool | None,
                mode_text: str) -> ContextReading:
    """Independent witnesses of the context: the printk caller id and the gfp mask.
    Agreement is noted; disagreement makes the context `unknown` with both pieces."""
    context = reading.context
    if context == UNKNOWN and caller and caller.startswith("T") and \
            not any(e.startswith("conflicting") for e in reading.evidence):
        reading.context = PROCESS
        reading.evidence.append(f"printk caller id [{caller}] says task context (in_task()), "
                                "which the trace alone could not tell")
        return reading
    if context in (None, UNKNOWN):
        return reading
    interrupt = context in (HARDIRQ, SOFTIRQ, NMI)
    if caller:
        # kernel/printk/printk.c printk_caller_id() (v5.1+, commit 15ff2069cb7f):
        # in_task() ? "T<pid>" : "C<cpu>"; in_task() is false in hardirq, NMI and
        # while serving a softirq.
        from_task = caller.startswith("T")
        said = f"printk caller id [{caller}] says {'task' if from_task else 'interrupt'} context"
        if from_task == interrupt:
            return _conflict(reading, f"the trace says {context}", said)
        reading.evidence.append(said + " (agrees)")
    if sleepable and interrupt:
        return _conflict(reading, f"the trace says {context}",
                         f"mode {mode_text} may sleep (direct reclaim), which is never "
                         "allowed there (might_sleep_if() in the allocator)")
    return reading
