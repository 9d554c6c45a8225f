"""/proc/zoneinfo: watermarks, reserves and counters per zone.

Layout (mm/vmstat.c zoneinfo_show_print, 2.6.32 … 6.18): a `Node %d, zone %8s`
header; from 4.14 the first zone of a node also carries `per-node stats`; then
`pages free`, `boost` (5.x+), `min`, `low`, `high`, `promo` (6.12+), `scanned`
(<= 4.4, sometimes with a trailing "(a: .. i: ..)"), `spanned`, `present`,
`managed` (3.10+), `cma`, `protection: (a, b, ...)` (= lowmem_reserve[]), then
per-zone vmstat counters and the per-CPU `pagesets` block, which we skip.
The printed min/low/high already include the boost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from paftrace.procfs.buddyinfo import ProcFormatError

_HEADER_RE = re.compile(r"^Node\s+(\d+),\s*zone\s+(\S+)\s*$")
_PROTECTION_RE = re.compile(r"^protection:\s*\(([^)]*)\)")
_VALUE_RE = re.compile(r"^([a-z_]+(?: [a-z_]+)?)[:\s]\s*(-?\d+)")

# Lines of the zone block that are zone attributes rather than vmstat counters.
ATTRIBUTES = ("pages free", "boost", "min", "low", "high", "promo", "scanned", "spanned",
              "present", "managed", "cma")


@dataclass
class ZoneInfo:
    node: int
    zone: str
    attrs: dict[str, int] = field(default_factory=dict)   # ATTRIBUTES that were present
    protection: tuple[int, ...] = ()
    counters: dict[str, int] = field(default_factory=dict)  # nr_free_pages, numa_hit, ...
    start_pfn: int | None = None

    @property
    def key(self) -> tuple[int, str]:
        return (self.node, self.zone)

    @property
    def free(self) -> int:
        return self.attrs.get("pages free", 0)

    def watermarks(self) -> dict[str, int]:
        return {k: self.attrs[k] for k in ("min", "low", "high", "promo", "boost")
                if k in self.attrs}

    @property
    def managed(self) -> int | None:
        return self.attrs.get("managed")


# The only lines of the per-node stats and pagesets blocks that matter (parse_zoneinfo
# skips the rest without matching them: those blocks are most of the file).
_KEPT_WHILE_SKIPPING = ("pages free", "per-node stats", "pagesets", "protection", "start_pfn",
                        "node_unreclaimable", "all_unreclaimable")


def parse_zoneinfo(text: str) -> list[ZoneInfo]:
    zones: list[ZoneInfo] = []
    current: ZoneInfo | None = None
    in_node_stats = in_pagesets = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        header = _HEADER_RE.match(line) if line.startswith("Node") else None
        if header:
            current = ZoneInfo(int(header.group(1)), header.group(2))
            zones.append(current)
            in_node_stats = in_pagesets = False
            continue
        if current is None:
            raise ProcFormatError(f"unexpected /proc/zoneinfo line before a zone: {line[:80]!r}")
        if (in_node_stats or in_pagesets) and not line.startswith(_KEPT_WHILE_SKIPPING):
            continue
        if line == "per-node stats":
            in_node_stats = True
            continue
        if line == "pagesets":
            in_pagesets = True
            continue
        prot = _PROTECTION_RE.match(line) if line.startswith("protection") else None
        if prot:
            current.protection = tuple(int(v) for v in prot.group(1).replace(",", " ").split())
            continue
        m = _VALUE_RE.match(line)
        if not m:
            continue  # continuation lines, "(a: 0 i: 0)" tails, malformed captures
        name, value = m.group(1), int(m.group(2))
        if name == "pages free":
            in_node_stats = False  # the zone's own block starts here
        if name == "start_pfn":
            current.start_pfn = value
        elif in_node_stats or (in_pagesets and name not in ("node_unreclaimable",
                                                             "all_unreclaimable")):
            continue
        elif name in ATTRIBUTES:
            current.attrs[name] = value
        else:
            current.counters[name] = value
    return zones
