"""What one allocation failure report in a kernel log says, as parsed."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Frame:
    name: str
    module: str | None
    reliable: bool          # False for frames printed with "?" (the unwinder's guesses)
    section: str | None     # "irq" / "nmi" / "task" from <IRQ>..<EOI>|</IRQ> brackets
    offset: str = ""
    trap: int | None = None  # powerpc "--- interrupt: 500": an exception frame, no function

    @property
    def text(self) -> str:
        """As the tracer prints frames ('? name+0x1/0x2 [mod]'), for context/stacks helpers."""
        if self.trap is not None:
            return f"--- interrupt: {self.trap:x}"
        mod = f" [{self.module}]" if self.module else ""
        return f"{'' if self.reliable else '? '}{self.name}{self.offset}{mod}"


@dataclass(frozen=True)
class FreeArea:
    """One `Node N ZONE: 150*4kB (UEM) 260*8kB ... = 12345kB` line."""
    node: int
    zone: str
    page_kb: int
    blocks: dict[int, int]              # order -> free blocks
    total_kb: int | None                # what the kernel summed, None if the line was cut

    def blocks_at_least(self, order: int) -> int:
        return sum(n for o, n in self.blocks.items() if o >= order)

    def kb_at_least(self, order: int) -> int:
        return sum(n * self.page_kb << o for o, n in self.blocks.items() if o >= order)

    def free_kb(self) -> int:
        return sum(n * self.page_kb << o for o, n in self.blocks.items())


@dataclass(frozen=True)
class ZoneState:
    """`Node 0 Normal free:12345kB min:11264kB low:14080kB high:16896kB ... managed:...`"""
    node: int
    zone: str
    free_kb: int
    min_kb: int
    low_kb: int
    high_kb: int
    managed_kb: int | None


@dataclass
class Report:
    kind: str                       # "page" | "vmalloc" | "vmemmap"
    line: int                       # line number of the header in the input
    header: str
    mode: int | None                # None: the printed mask could not be read (see problems)
    order: int | None
    comm: str | None = None
    pid: int | None = None
    kernel: str | None = None
    timestamp: float | None = None
    printed_flags: list[str] | None = None   # names the kernel printed after the mask (4.6+)
    period_separator: bool = False           # "failure." (2.6.x) instead of "failure:"
    nodemask: str | None = None
    cpuset: str | None = None
    mems_allowed: str | None = None
    detail: str | None = None                # vmalloc/vmemmap message text
    frames: list[Frame] = field(default_factory=list)
    free_areas: list[FreeArea] = field(default_factory=list)
    zones: list[ZoneState] = field(default_factory=list)
    ram_pages: int | None = None
    caller: str | None = None                # printk caller id of the header ("T12", "C3")
    address_only: int = 0                    # trace frames printed without a symbol
    trace_cut: bool = False                  # the report ends inside its call trace
    problems: list[str] = field(default_factory=list)  # why the result is partial

    @property
    def partial(self) -> bool:
        return bool(self.problems)
