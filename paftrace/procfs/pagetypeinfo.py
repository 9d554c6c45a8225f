"""/proc/pagetypeinfo: free blocks per migratetype and pageblocks per type (root, 0400).

Layout (mm/vmstat.c pagetypeinfo_show, 2.6.32 … 6.18): `Page block order`,
`Pages per block`, then `Node %4d, zone %8s, type %12s ` lines with one count per
order (from 5.4 a count that reached the 100000 reading cap is printed `>100000`),
then `Number of blocks type` + type names and one line per zone. Types are
Unmovable/Movable/Reclaimable/HighAtomic[/CMA][/Isolate] since 4.4, with Reserve
instead of HighAtomic before. Reading it walks the free lists under the zone
lock, so callers read it on demand only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from paftrace.procfs.buddyinfo import ProcFormatError

_FREE_RE = re.compile(r"^Node\s+(\d+),\s*zone\s+(\S+),\s*type\s+(\S+)\s+(.*)$")
_BLOCKS_RE = re.compile(r"^Node\s+(\d+),\s*zone\s+(\S+)\s+([\d\s]+)$")
_HEADER_INT_RE = re.compile(r"^(Page block order|Pages per block):\s*(\d+)")

ZoneKey = tuple[int, str]


@dataclass
class PageTypeInfo:
    pageblock_order: int | None = None
    pages_per_block: int | None = None
    # (node, zone) -> migratetype -> free blocks per order
    free: dict[ZoneKey, dict[str, tuple[int, ...]]] = field(default_factory=dict)
    # counts shown as ">100000" (capped by the kernel), as (node, zone, type, order)
    capped: list[tuple[int, str, str, int]] = field(default_factory=list)
    # (node, zone) -> migratetype -> number of pageblocks
    blocks: dict[ZoneKey, dict[str, int]] = field(default_factory=dict)
    block_types: tuple[str, ...] = ()
    # CONFIG_PAGE_OWNER: pageblocks holding pages of another migratetype
    mixed: dict[ZoneKey, dict[str, int]] = field(default_factory=dict)


def _count(token: str) -> tuple[int, bool]:
    return (int(token[1:]), True) if token.startswith(">") else (int(token), False)


def parse_pagetypeinfo(text: str) -> PageTypeInfo:
    info = PageTypeInfo()
    section = info.blocks
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        head = _HEADER_INT_RE.match(line)
        if head:
            if head.group(1) == "Page block order":
                info.pageblock_order = int(head.group(2))
            else:
                info.pages_per_block = int(head.group(2))
            continue
        m = _FREE_RE.match(line)
        if m:
            node, zone, mtype = int(m.group(1)), m.group(2), m.group(3)
            counts = []
            for order, token in enumerate(m.group(4).split()):
                value, capped = _count(token)
                counts.append(value)
                if capped:
                    info.capped.append((node, zone, mtype, order))
            info.free.setdefault((node, zone), {})[mtype] = tuple(counts)
            continue
        if line.startswith("Number of blocks type"):
            info.block_types = tuple(line[len("Number of blocks type"):].split())
            section = info.blocks
            continue
        if line.startswith("Number of mixed blocks"):
            section = info.mixed
            continue
        if line.startswith("Free pages count"):
            continue
        m = _BLOCKS_RE.match(line)
        if m and info.block_types:
            values = [int(v) for v in m.group(3).split()]
            section[(int(m.group(1)), m.group(2))] = dict(zip(info.block_types, values))
            continue
        raise ProcFormatError(f"unexpected /proc/pagetypeinfo line: {line[:80]!r}")
    return info
