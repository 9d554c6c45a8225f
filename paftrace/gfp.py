"""gfp mask decoding.

For the running kernel the flag table comes from the kernel itself: the
``print fmt`` of ``kmem:mm_page_alloc`` carries ``__print_flags(REC->gfp_flags,
"|", {value, "NAME"}, ...)``, in the order the kernel prints them (composite
masks such as GFP_KERNEL_ACCOUNT first, then single ``__GFP_*`` bits).
Decoding is greedy in table order, exactly as the kernel's
``trace_print_flags_seq()`` (kernel/trace/trace_output.c) and libtraceevent do:
an entry matches when all its bits are set; its bits are then cleared; what is
left is shown as a hex number, never dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from paftrace.cexpr import CExprError, evaluate

_ENTRY_RE = re.compile(r"\{\s*([^{}]*?)\s*,\s*\"([^\"]+)\"\s*\}")


@dataclass
class GfpTable:
    """An ordered flag table and where it came from."""

    entries: list[tuple[int, str]]
    source: str
    zero_name: str = "none"
    skipped: list[str] = field(default_factory=list)  # entries that did not evaluate

    def decode(self, mask: int) -> list[str]:
        if mask == 0:
            return [self.zero_name]
        names: list[str] = []
        rest = mask
        for value, name in self.entries:
            if value and (rest & value) == value:
                names.append(name)
                rest &= ~value
        if rest:
            names.append(hex(rest))
        return names

    def format(self, mask: int) -> str:
        return "|".join(self.decode(mask))

    def value_of(self, name: str) -> int | None:
        """Bit value of a flag, by its name with or without leading underscores."""
        want = name.lstrip("_")
        for value, entry in self.entries:
            if entry.lstrip("_") == want:
                return value
        return None

    def has(self, mask: int, name: str) -> bool:
        value = self.value_of(name)
        return bool(value) and (mask & value) == value  # type: ignore[operator]


def _matching_paren(text: str, open_index: int) -> int:
    depth = 0
    in_string = False
    for i in range(open_index, len(text)):
        ch = text[i]
        if ch == '"' and text[i - 1] != "\\":
            in_string = not in_string
        elif not in_string:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    return i
    raise ValueError("unbalanced parentheses in print fmt")


def table_from_print_fmt(print_fmt: str, field_name: str = "gfp_flags",
                         source: str = "running kernel") -> GfpTable:
    """Extract the flag table that prints ``field_name`` from a tracepoint print fmt."""
    start = print_fmt.find(f"__print_flags(REC->{field_name}")
    if start < 0:
        raise ValueError(f"no __print_flags table for {field_name} in the print fmt")
    end = _matching_paren(print_fmt, print_fmt.index("(", start))
    body = print_fmt[start:end]
    entries: list[tuple[int, str]] = []
    skipped: list[str] = []
    for expr, name in _ENTRY_RE.findall(body):
        try:
            entries.append((evaluate(expr), name))
        except CExprError:
            skipped.append(name)
    zero = re.match(r'\s*:\s*"([^"]*)"', print_fmt[end + 1:])
    # 2.6.32-4.4 print "GFP_NOWAIT" for 0; 4.14+ print "none"
    # (include/trace/events/mmflags.h, show_gfp_flags).
    return GfpTable(entries=entries, source=source,
                    zero_name=zero.group(1) if zero else "none", skipped=skipped)


def parse_mask(text: str) -> int:
    """Parse a mask as printed in logs: 0x2080020, 0x400cc0(GFP_KERNEL_ACCOUNT), 32."""
    m = re.match(r"\s*(0[xX][0-9a-fA-F]+|\d+)", text)
    if not m:
        raise ValueError(f"not a gfp mask: {text!r}")
    return int(m.group(1), 0)
