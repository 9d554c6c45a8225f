"""What is made of a memory sample: per-zone figures, JSON records, failure snapshots.

Pure functions of `MemorySample`, shared by `paftrace buddyinfo`, the live view and
the failure records, so every output shows the same numbers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from paftrace.procfs import frag
from paftrace.procfs.sampler import MemorySample, ZoneSample

# zone_type order (include/linux/mmzone.h): a request may use its highest zone and below.
ZONE_ORDER = ("DMA", "DMA32", "Normal", "HighMem", "Movable")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def eligible_zones(gfp_flags: Iterable[str]) -> tuple[str, ...]:
    """Zones a request may use, from its decoded gfp flag names (gfp_zone())."""
    names = set(gfp_flags)
    if "__GFP_DMA" in names or "GFP_DMA" in names:
        top = "DMA"
    elif "__GFP_DMA32" in names or "GFP_DMA32" in names:
        top = "DMA32"
    elif "__GFP_MOVABLE" in names and "__GFP_HIGHMEM" in names or "GFP_HIGHUSER_MOVABLE" in names:
        top = "Movable"
    elif "__GFP_HIGHMEM" in names or "GFP_HIGHUSER" in names:
        top = "HighMem"
    else:
        top = "Normal"
    return ZONE_ORDER[:ZONE_ORDER.index(top) + 1]


def zone_figures(z: ZoneSample, order: int) -> dict:
    """The per-zone numbers shared by the JSON sample, the failure snapshot and renderers."""
    out: dict = {
        "node": z.node, "zone": z.zone,
        "blocks_at_or_above": frag.blocks_at_or_above(z.free, order),
        "pages_at_or_above": frag.pages_at_or_above(z.free, order),
        "free_pages": frag.free_pages(z.free),
        "unusable_index": frag.as_fraction(frag.unusable_index(z.free, order)),
        "fragmentation_index": frag.as_fraction(frag.fragmentation_index(z.free, order)),
    }
    if z.info is not None:
        out["pages_free"] = z.info.free  # NR_FREE_PAGES; pcp lists are in neither
        out["watermarks"] = z.info.watermarks()
    return out


def failure_snapshot(sample: MemorySample, order: int, gfp_flags: Iterable[str] = (),
                     failure_ts_ns: int | None = None) -> dict:
    """Compact dict for a failure record: the eligible zones at the nearest sample."""
    allowed = eligible_zones(gfp_flags)
    zones = []
    for z in sample.zones:
        if z.zone not in allowed:
            continue
        fig = zone_figures(z, order)
        fig["order0_pages"] = z.free[0] if z.free else 0
        zones.append(fig)
    snap: dict = {"sample_ts_ns": sample.ts_ns, "order": order, "zones": zones}
    if failure_ts_ns is not None:
        snap["sample_age_ms"] = round((failure_ts_ns - sample.ts_ns) / 1e6, 1)
    return snap


def sample_record(sample: MemorySample, order: int,
                  previous: MemorySample | None = None) -> dict:
    """The `--json` object of one sample (one line of the JSON stream)."""
    zones = []
    for z in sample.zones:
        fig = zone_figures(z, order)
        fig["free"] = list(z.free)
        fig["none_at_or_above"] = fig["blocks_at_or_above"] == 0
        before = previous.zone(z.node, z.zone) if previous else None
        if before is not None and len(before.free) == len(z.free):
            fig["change"] = [a - b for a, b in zip(z.free, before.free)]
        if z.info is not None:
            fig["managed"] = z.info.managed
            fig["protection"] = list(z.info.protection)
        if z.pagetypes is not None:
            fig["migratetypes"] = {t: {"free": list(c),
                                       "blocks_at_or_above": frag.blocks_at_or_above(c, order)}
                                   for t, c in z.pagetypes.items()}
        if z.pageblocks is not None:
            fig["pageblocks"] = dict(z.pageblocks)
        zones.append(fig)
    rec: dict = {"type": "buddyinfo", "ts_ns": sample.ts_ns, "order": order, "zones": zones,
                 "tunables": sample.tunables}
    if sample.pageblock_order is not None:
        rec["pageblock_order"] = sample.pageblock_order
        rec["pagetypeinfo_ts_ns"] = sample.pagetypeinfo_ts_ns
    if sample.notes:
        rec["notes"] = list(sample.notes)
    return rec
