"""The kernel's external-fragmentation figures, computed from buddyinfo counts.

Same integer arithmetic as mm/vmstat.c (fill_contig_page_info, unusable_free_index,
__fragmentation_index; 3.10 -> 6.18; docs/KERNEL-NOTES.md §5.4), which debugfs
extfrag/{unusable_index,extfrag_index} prints: results are x1000 integers, so
they match the debugfs files digit for digit and work without debugfs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ContigInfo:
    free_blocks_total: int     # blocks of any order
    free_pages: int            # pages in all free blocks
    free_blocks_suitable: int  # blocks of `order` that the free blocks >= order could supply


def contig_info(free: Sequence[int], order: int) -> ContigInfo:
    total = pages = suitable = 0
    for k, blocks in enumerate(free):
        total += blocks
        pages += blocks << k
        if k >= order:
            suitable += blocks << (k - order)
    return ContigInfo(total, pages, suitable)


def unusable_index(free: Sequence[int], order: int) -> int:
    """Share of free memory (x1000) in blocks too small for `order`; 1000 if nothing is free."""
    info = contig_info(free, order)
    if info.free_pages == 0:
        return 1000
    return (info.free_pages - (info.free_blocks_suitable << order)) * 1000 // info.free_pages


def fragmentation_index(free: Sequence[int], order: int) -> int:
    """-1000 if an `order` block exists; else 0..1000, ~0 = lack of memory, ~1000 = fragmentation.

    0 when nothing at all is free (the kernel's convention).
    """
    info = contig_info(free, order)
    if info.free_blocks_total == 0:
        return 0
    if info.free_blocks_suitable:
        return -1000
    requested = 1 << order
    return 1000 - (1000 + info.free_pages * 1000 // requested) // info.free_blocks_total


def as_fraction(index: int) -> float:
    """x1000 index -> fraction with three decimals, as debugfs prints it."""
    return round(index / 1000, 3)


def blocks_at_or_above(free: Sequence[int], order: int) -> int:
    return sum(free[order:])


def pages_at_or_above(free: Sequence[int], order: int) -> int:
    return sum(blocks << k for k, blocks in enumerate(free) if k >= order)


def free_pages(free: Sequence[int]) -> int:
    return sum(blocks << k for k, blocks in enumerate(free))


def parse_extfrag(text: str) -> dict[tuple[int, str], tuple[int, ...]]:
    """debugfs extfrag/* text -> x1000 integers per (node, zone), for cross-checks."""
    out: dict[tuple[int, str], tuple[int, ...]] = {}
    for line in text.splitlines():
        parts = line.replace(",", " ").split()
        if len(parts) < 4 or parts[0] != "Node":
            continue
        values = tuple(round(float(v) * 1000) for v in parts[4:])
        out[(int(parts[1]), parts[3])] = values
    return out
