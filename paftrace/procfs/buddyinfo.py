"""/proc/buddyinfo: free blocks per order, per node and zone.

Format (mm/vmstat.c frag_show_print, unchanged since 2.6): `Node %d, zone %8s `
then one `%6lu ` per order = zone->free_area[order].nr_free. The number of
columns is the kernel's order count (11 on x86-64, 14 on arm64 with 64K pages).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE_RE = re.compile(r"^Node\s+(\d+),\s*zone\s+(\S+)\s+(.*)$")


class ProcFormatError(ValueError):
    """A /proc file did not have the expected layout."""


@dataclass(frozen=True)
class ZoneFree:
    node: int
    zone: str
    free: tuple[int, ...]  # free blocks per order, index = order

    @property
    def key(self) -> tuple[int, str]:
        return (self.node, self.zone)


def parse_buddyinfo(text: str) -> list[ZoneFree]:
    zones: list[ZoneFree] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        m = _LINE_RE.match(line)
        if not m:
            raise ProcFormatError(f"unexpected /proc/buddyinfo line: {line[:80]!r}")
        counts = tuple(int(v) for v in m.group(3).split())
        zones.append(ZoneFree(int(m.group(1)), m.group(2), counts))
    return zones
