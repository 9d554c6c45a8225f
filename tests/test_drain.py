"""scenarios.drain: holding the free blocks of an order in packet-ring memory."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import pytest

from paftrace.workloads.scenarios import drain
from paftrace.workloads.scenarios.common import ScenarioError, meminfo_mib

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="packet sockets need root")

BUDDYINFO = """\
Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3
Node 0, zone   Normal      7      2      3      4      5      0      0      0      0      0      1
"""


def test_free_units_counts_larger_blocks_in_blocks_of_the_order() -> None:
    # DMA: 256 + 512 + 3*1024 pages; Normal: 5*16 + 1024 pages; in 16-page units
    assert drain.free_units(4, BUDDYINFO) == {(0, "DMA"): (256 + 512 + 3072) // 16,
                                             (0, "Normal"): (80 + 1024) // 16}
    assert drain.free_units(10, BUDDYINFO) == {(0, "DMA"): 3, (0, "Normal"): 1}
    assert sum(drain.free_units(0, BUDDYINFO).values()) == sum(
        n << k for line in BUDDYINFO.splitlines()
        for k, n in enumerate(map(int, line.split()[4:])))


def test_blocks_a_take_could_not_get_are_not_asked_again() -> None:
    held = drain.BlockDrain(4, unreachable={(0, "DMA"): 240, (0, "Normal"): 0})
    # the DMA blocks left behind are skipped; Normal's new ones and DMA's beyond them count
    assert held.wanted({(0, "DMA"): 240, (0, "Normal"): 9}) == 9
    assert held.wanted({(0, "DMA"): 250, (0, "Normal"): 0}) == 10
    assert held.wanted({(0, "DMA"): 100, (0, "DMA32"): 3}) == 3


def test_ring_request_is_one_frame_per_block() -> None:
    size = os.sysconf("SC_PAGE_SIZE") << 4
    assert struct.unpack("IIII", drain.ring_request(4, 300)) == (size, 300, size, 300)


def test_a_take_stays_within_the_bound_and_the_reserve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drain, "meminfo_mib", lambda field: 200)
    per_mib = (1 << 20) // (os.sysconf("SC_PAGE_SIZE") << 4)
    assert drain.BlockDrain(4).allowed() == (200 - drain.RESERVE_MIB) * per_mib
    assert drain.BlockDrain(4, max_mib=1).allowed() == per_mib
    monkeypatch.setattr(drain, "meminfo_mib", lambda field: drain.RESERVE_MIB - 5)
    assert drain.BlockDrain(4).allowed() == 0


def test_a_top_up_error_is_raised_at_the_end_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def take(self: drain.BlockDrain) -> int:
        calls.append(time.monotonic())
        if len(calls) == 3:
            raise ScenarioError("packet ring of 9 order-4 blocks: no room")
        return 0

    monkeypatch.setattr(drain.BlockDrain, "take", take)
    with pytest.raises(ScenarioError, match="no room"), drain.draining(4, interval=0.01):
        time.sleep(0.2)
    assert len(calls) == 3  # the thread stopped at its error


def packet_socket_inodes() -> set[str]:
    lines = Path("/proc/net/packet").read_text().splitlines()[1:]
    return {line.split()[-1] for line in lines}


EXTFRAG = Path("/proc/sys/vm/extfrag_threshold")


@root_only
def test_drain_holds_the_blocks_until_the_end() -> None:
    before_sockets = packet_socket_inodes()
    mem_before = meminfo_mib("MemFree")
    threshold = EXTFRAG.read_text()
    with drain.draining(4, max_mib=256, interval=0.05) as held:
        # above order 3 no compaction builds blocks while it holds (restored after)
        assert EXTFRAG.read_text().strip() == "1000"
        taken_sockets = packet_socket_inodes() - before_sockets
        mem_held = meminfo_mib("MemFree")
        time.sleep(0.2)
        report = held.report()
    mem_after = meminfo_mib("MemFree")
    assert EXTFRAG.read_text() == threshold
    per_mib = (1 << 20) // (os.sysconf("SC_PAGE_SIZE") << 4)
    # This machine has far more than 256 MiB of free order-4 blocks: the bound is reached
    # at the first take and the top-ups find no room left.
    assert report == {"drained_blocks": 256 * per_mib, "drained_mib": 256.0,
                      "drain_takes": 1}
    assert len(taken_sockets) == 1
    assert not taken_sockets & packet_socket_inodes()  # closed at the end
    # the blocks are really allocated and really freed (other tests may run meanwhile:
    # half of it is asked each way)
    assert mem_before - mem_held > 128 and mem_after - mem_held > 128
