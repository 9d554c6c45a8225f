"""Fragmentation indices: hand-computed values and the kernel's own debugfs numbers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from paftrace.procfs import frag
from paftrace.procfs.buddyinfo import parse_buddyinfo

DATA = Path(__file__).parent / "data" / "procfs"
EXTFRAG = Path("/sys/kernel/debug/extfrag")


def test_hand_computed_unusable_index() -> None:
    # free: 4 order-0, 2 order-1, 1 order-2 => 4 + 4 + 4 = 12 pages
    free = [4, 2, 1]
    assert frag.unusable_index(free, 0) == 0
    # order 1: suitable blocks = 2 + 1*2 = 4 -> 8 pages usable; (12-8)*1000/12 = 333
    assert frag.unusable_index(free, 1) == 333
    # order 2: 1 block -> 4 pages usable; 8000/12 = 666 (integer division)
    assert frag.unusable_index(free, 2) == 666
    assert frag.unusable_index(free, 3) == 1000
    assert frag.unusable_index([0, 0], 0) == 1000  # nothing free


def test_hand_computed_fragmentation_index() -> None:
    assert frag.fragmentation_index([4, 2, 1], 2) == -1000  # would succeed
    assert frag.fragmentation_index([0, 0, 0], 2) == 0  # nothing free
    # 100 order-0 pages, order 4 requested: 1000 - (1000 + 100*1000/16) / 100
    # = 1000 - (1000 + 6250) // 100 = 1000 - 72 = 928 -> fragmentation
    assert frag.fragmentation_index([100], 4) == 928
    # 2 order-3 blocks (16 pages), order 4: 1000 - (1000 + 1000)//2 = 0 -> lack of memory
    assert frag.fragmentation_index([0, 0, 0, 2], 4) == 0
    assert frag.as_fraction(928) == 0.928 and frag.as_fraction(-1000) == -1.0


def test_blocks_and_pages_at_or_above() -> None:
    free = [5, 0, 3, 1]
    assert frag.blocks_at_or_above(free, 2) == 4
    assert frag.pages_at_or_above(free, 2) == 3 * 4 + 8
    assert frag.free_pages(free) == 5 + 12 + 8


def check_against_debugfs(buddy_text: str, unusable_text: str, extfrag_text: str) -> int:
    unusable = frag.parse_extfrag(unusable_text)
    extfrag = frag.parse_extfrag(extfrag_text)
    checked = 0
    for z in parse_buddyinfo(buddy_text):
        for order, expected in enumerate(unusable[z.key]):
            assert frag.unusable_index(z.free, order) == expected, (z.key, order)
            checked += 1
        for order, expected in enumerate(extfrag[z.key]):
            assert frag.fragmentation_index(z.free, order) == expected, (z.key, order)
    return checked


def test_matches_kernel_capture() -> None:
    stem = "extfrag.live-6.18-x86"
    assert check_against_debugfs((DATA / "buddyinfo.live-6.18-x86").read_text(),
                                 (DATA / f"{stem}.unusable_index").read_text(),
                                 (DATA / f"{stem}.extfrag_index").read_text()) == 33


@pytest.mark.skipif(os.geteuid() != 0, reason="debugfs needs root")
def test_matches_live_debugfs() -> None:
    if not EXTFRAG.is_dir():
        subprocess.run(["mount", "-t", "debugfs", "none", "/sys/kernel/debug"], check=False)
    assert EXTFRAG.is_dir(), "debugfs extfrag missing (CONFIG_DEBUG_FS / CONFIG_COMPACTION)"
    # The counts move all the time: keep a triple read between two identical buddyinfos.
    for _ in range(500):
        before = Path("/proc/buddyinfo").read_text()
        unusable = (EXTFRAG / "unusable_index").read_text()
        extfrag = (EXTFRAG / "extfrag_index").read_text()
        if Path("/proc/buddyinfo").read_text() == before:
            assert check_against_debugfs(before, unusable, extfrag) > 0
            return
    pytest.fail("buddyinfo never stood still for one debugfs read")
