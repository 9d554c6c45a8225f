"""Parsers of /proc/buddyinfo, zoneinfo and pagetypeinfo on real captures and live files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from paftrace.procfs.buddyinfo import ProcFormatError, parse_buddyinfo
from paftrace.procfs.pagetypeinfo import parse_pagetypeinfo
from paftrace.procfs.zoneinfo import parse_zoneinfo

DATA = Path(__file__).parent / "data" / "procfs"


def read(name: str) -> str:
    return (DATA / name).read_text()


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("buddyinfo.*")))
def test_buddyinfo_captures_keep_every_line_and_column(name: str) -> None:
    text = read(name)
    zones = parse_buddyinfo(text)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(zones) == len(lines)
    for zone, line in zip(zones, lines):
        assert line.split()[-len(zone.free):] == [str(c) for c in zone.free]
        assert f"Node {zone.node}," in line and zone.zone in line


def test_buddyinfo_numa_and_orders() -> None:
    arm = parse_buddyinfo(read("buddyinfo.numa4-arm64-64k"))
    assert [(z.node, z.zone) for z in arm] == [(0, "DMA"), (0, "Normal"), (1, "Normal"),
                                               (2, "Normal"), (3, "Normal")]
    assert {len(z.free) for z in arm} == {14}  # 64K pages: MAX_ORDER 14
    assert arm[4].free[13] == 237
    x86 = parse_buddyinfo(read("buddyinfo.numa4-x86-3tb"))
    assert x86[4].free[0] == 8662816 and x86[4].key == (2, "Normal")
    high = parse_buddyinfo(read("buddyinfo.arm32-highmem"))
    assert [z.zone for z in high] == ["Normal", "HighMem"]


def test_buddyinfo_rejects_other_text() -> None:
    with pytest.raises(ProcFormatError):
        parse_buddyinfo("MemTotal: 1 kB\n")


def test_zoneinfo_sosreport_skips_node_stats_and_pagesets() -> None:
    zones = parse_zoneinfo(read("zoneinfo.sosreport-x86"))
    assert [z.zone for z in zones] == ["DMA", "DMA32", "Normal", "Movable", "Device"]
    dma = zones[0]
    assert dma.free == 3975 and dma.watermarks() == {"min": 33, "low": 41, "high": 49}
    assert dma.protection == (0, 3828, 7894, 7894, 7894)
    assert dma.counters["nr_free_pages"] == 3975
    assert "nr_active_anon" not in dma.counters  # per-node stat, not the zone's
    assert "count" not in dma.counters  # pagesets
    assert dma.counters["node_unreclaimable"] == 0 and dma.start_pfn == 1
    normal = zones[2]
    assert (normal.free, normal.managed, normal.start_pfn) == (10852, 1042033, 1048576)
    assert zones[3].managed == 0 and zones[3].start_pfn is None


def test_zoneinfo_two_nodes_old_kernel() -> None:
    zones = parse_zoneinfo(read("zoneinfo.numa2-2015-excerpt"))
    assert [z.key for z in zones] == [(0, "Normal"), (1, "DMA"), (1, "DMA32"), (1, "Normal")]
    assert zones[3].watermarks() == {"min": 8221, "low": 10276, "high": 12331}
    assert zones[3].attrs["scanned"] == 0 and zones[3].managed is None


def test_zoneinfo_live_6_18_has_boost_and_promo() -> None:
    zones = {z.zone: z for z in parse_zoneinfo(read("zoneinfo.live-6.18-x86"))}
    marks = zones["Normal"].watermarks()
    assert set(marks) == {"min", "low", "high", "promo", "boost"}
    assert marks["min"] < marks["low"] < marks["high"] < marks["promo"]
    assert zones["Normal"].free == zones["Normal"].counters["nr_free_pages"]


def test_pagetypeinfo_sosreport() -> None:
    info = parse_pagetypeinfo(read("pagetypeinfo.sosreport-x86"))
    assert (info.pageblock_order, info.pages_per_block) == (9, 512)
    assert info.free[(0, "Normal")]["Movable"] == (12, 3, 368, 235, 123, 5, 3, 1, 3, 2, 0)
    assert info.blocks[(0, "DMA32")] == {"Unmovable": 1654, "Movable": 298,
                                         "Reclaimable": 24, "HighAtomic": 0, "Isolate": 0}
    # per-type counts add up to buddyinfo; the two files were read at different times,
    # so only the DMA zone (which nothing allocates from) is comparable
    buddy = {z.key: z.free for z in parse_buddyinfo(read("buddyinfo.sosreport-x86"))}
    dma = info.free[(0, "DMA")]
    assert [sum(col) for col in zip(*dma.values())] == list(buddy[(0, "DMA")])


def test_pagetypeinfo_pre_highatomic_reserve_and_cap() -> None:
    info = parse_pagetypeinfo(read("pagetypeinfo.arm32-highmem"))
    assert info.block_types == ("Unmovable", "Reclaimable", "Movable", "Reserve", "Isolate")
    assert info.free[(0, "HighMem")]["Reserve"][0] == 9
    capped = parse_pagetypeinfo(
        "Page block order: 9\nNode    0, zone   Normal, type      Movable >100000      3 \n")
    assert capped.free[(0, "Normal")]["Movable"] == (100000, 3)
    assert capped.capped == [(0, "Normal", "Movable", 0)]


def test_pagetypeinfo_mixed_blocks_section_kept_apart() -> None:
    text = read("pagetypeinfo.sosreport-x86") + (
        "Number of mixed blocks    Unmovable      Movable  Reclaimable   HighAtomic      Isolate \n"
        "Node 0, zone   Normal            7            1            0            0            0 \n")
    info = parse_pagetypeinfo(text)
    assert info.blocks[(0, "Normal")]["Unmovable"] == 1557
    assert info.mixed[(0, "Normal")]["Unmovable"] == 7


def test_live_files_parse_and_agree() -> None:
    buddy = parse_buddyinfo(Path("/proc/buddyinfo").read_text())
    zones = {z.key: z for z in parse_zoneinfo(Path("/proc/zoneinfo").read_text())}
    assert buddy
    for z in buddy:
        assert z.key in zones and zones[z.key].managed  # buddyinfo lists populated zones


@pytest.mark.skipif(os.geteuid() != 0, reason="/proc/pagetypeinfo is root-only (4.14+)")
def test_live_pagetypeinfo_covers_buddyinfo_zones() -> None:
    info = parse_pagetypeinfo(Path("/proc/pagetypeinfo").read_text())
    buddy = parse_buddyinfo(Path("/proc/buddyinfo").read_text())
    assert info.pageblock_order is not None
    assert {z.key for z in buddy} <= set(info.free)
    assert "HighAtomic" in info.block_types
