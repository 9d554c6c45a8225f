"""Execution context and requester from a printed trace, read like a kernel engineer.

Frames printed with "?" are the unwinder's guesses (stale return addresses
left on the stack). When the trace has reliable frames only those are used,
so a stale `? apic_timer_interrupt` among reliable process frames does not
make it interrupt context. Old kernels mark every frame "?"; then all frames
are used and the result is flagged as a guess. `<IRQ>`...`<EOI>`/`</IRQ>`
brackets tell which frames ran on the interrupt stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from paftrace.context import HARDIRQ, NMI, PROCESS, SOFTIRQ, classify_stack
from paftrace.explain.report import Frame
from paftrace.stacks import requester


@dataclass
class ContextReading:
    context: str | None
    softirq: str | None
    evidence: list[str] = field(default_factory=list)
    requester: str | None = None
    guessed: bool = False   # every frame was an unwinder guess


def usable_frames(frames: list[Frame]) -> tuple[list[Frame], bool]:
    reliable = [f for f in frames if f.reliable]
    return (reliable, False) if reliable else (frames, bool(frames))


def read_context(frames: list[Frame], comm: str | None) -> ContextReading:
    if not frames:
        return ContextReading(None, None, ["no call trace in the report"])
    usable, guessed = usable_frames(frames)
    found = classify_stack([f.text for f in usable])
    reading = ContextReading(found.context, found.softirq, guessed=guessed,
                             requester=requester([f.text for f in usable]))
    skipped = len(frames) - len(usable)
    if skipped:
        reading.evidence.append(f"{skipped} frame(s) printed with '?' ignored (unwinder guesses)")
    if guessed:
        reading.evidence.append("every frame is printed with '?' (old unwinder): read as a guess")
    section = frames[0].section
    if found.context is not None:
        reading.evidence.append(f"'{found.marker}' frame in the trace")
        if found.softirq and found.marker != found.softirq:
            reading.evidence.append(f"softirq action frame gives vector {found.softirq}")
        if section == "irq" and found.context == SOFTIRQ:
            reading.evidence.append("allocation frames inside <IRQ>: x86-64 runs softirqs on "
                                    "the IRQ stack")
    elif section == "irq":
        reading.context = HARDIRQ
        reading.evidence.append("allocation frames inside <IRQ> and no softirq frame")
    elif section == "nmi":
        reading.context = NMI
        reading.evidence.append("allocation frames inside <NMI>")
    else:
        reading.context = PROCESS
        reading.evidence.append("no <IRQ> bracket and no interrupt/softirq entry frame")
    if reading.context == PROCESS and comm and re.match(r"irq/\d+-", comm):
        reading.evidence.append(f"task '{comm}' is a threaded interrupt handler (process "
                                "context by design)")
    return reading
