"""Hold the free blocks of an order and above, so that a request of that order finds none.

Fragmenting (scenarios.fragment) leaves free memory in order-0 holes, but not all of it:
what the churn did not reach stays in whole blocks, and compaction (kcompactd, woken by
kswapd for each failing high-order request) builds new ones from the movable pages around
the holes. A drain takes those blocks as they appear and holds them. Above order 3 it also
keeps compaction from building any meanwhile (common.no_costly_compaction): otherwise how
long the blocks stay gone depends on how fast the drain's user outruns kcompactd.

The memory is an AF_PACKET receive ring per take: `setsockopt(PACKET_RX_RING)` allocates
`tp_block_nr` blocks of `tp_block_size` bytes, each one `__get_free_pages(GFP_KERNEL |
__GFP_COMP | __GFP_ZERO | __GFP_NOWARN | __GFP_NORETRY, order)` (net/packet/af_packet.c,
alloc_one_pg_vec_page, v5.10..v6.18): exactly blocks of the order asked, unmovable, not
charged to a memory cgroup, freed when the socket closes (also when the process dies).
A ring socket of protocol 0 receives no packets. When no block is left the kernel falls
back to vzalloc for the rest of that ring (order-0 pages), so each take asks only for the
blocks /proc/buddyinfo shows.
"""

from __future__ import annotations

import contextlib
import mmap
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from paftrace.procfs.buddyinfo import parse_buddyinfo
from paftrace.procfs.frag import pages_at_or_above
from paftrace.workloads.scenarios.common import (
    COSTLY_ORDER,
    ScenarioError,
    meminfo_mib,
    no_costly_compaction,
)

SOL_PACKET = 263      # include/linux/socket.h
PACKET_RX_RING = 5    # include/uapi/linux/if_packet.h
RESERVE_MIB = 128     # as scenarios.common.bounded_mib: never below this much MemAvailable
MAX_MIB = 4096        # one drain holds at most this much
TOP_UP_S = 0.25
PAGE = mmap.PAGESIZE


def free_units(order: int, buddyinfo: str | None = None) -> dict[tuple[int, str], int]:
    """Free memory in blocks of `order` and above, counted in blocks of `order`, per zone."""
    text = Path("/proc/buddyinfo").read_text() if buddyinfo is None else buddyinfo
    return {z.key: pages_at_or_above(z.free, order) >> order for z in parse_buddyinfo(text)}


def ring_request(order: int, blocks: int) -> bytes:
    """struct tpacket_req: one frame per block, so any order's block size is valid."""
    size = PAGE << order
    return struct.pack("IIII", size, blocks, size, blocks)


@dataclass
class BlockDrain:
    """Blocks of `order` taken so far, in rings of AF_PACKET sockets held open."""

    order: int
    max_mib: int = MAX_MIB
    blocks: int = 0
    takes: int = 0
    sockets: list[socket.socket] = field(default_factory=list)
    # Per zone, the blocks a take left behind: those an ordinary allocation may not have
    # (a zone at its watermark plus lowmem protection, e.g. ZONE_DMA of a small machine:
    # mm/page_alloc.c __zone_watermark_ok). Asking for them again would only be served by
    # vmalloc (order-0 pages) after a failed compaction, every top-up.
    unreachable: dict[tuple[int, str], int] = field(default_factory=dict)

    @property
    def block_mib(self) -> float:
        return (PAGE << self.order) / (1 << 20)

    @property
    def mib(self) -> float:
        return self.blocks * self.block_mib

    def room_mib(self) -> float:
        """What more may be held: the bound, and MemAvailable above the reserve."""
        return max(0.0, min(self.max_mib - self.mib, meminfo_mib("MemAvailable") - RESERVE_MIB))

    def allowed(self) -> int:
        """Blocks one more take may hold."""
        return int(self.room_mib() / self.block_mib)

    def wanted(self, units: dict[tuple[int, str], int]) -> int:
        return sum(max(0, n - self.unreachable.get(zone, 0)) for zone, n in units.items())

    def take(self) -> int:
        """Take every free block of `order` and above that buddyinfo shows (within bounds),
        but those an earlier take could not get; returns how many were asked for."""
        seen = self.wanted(free_units(self.order))
        wanted = min(seen, self.allowed())
        if wanted == 0:
            return 0
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, ring_request(self.order, wanted))
        except OSError as exc:
            sock.close()
            raise ScenarioError(f"packet ring of {wanted} order-{self.order} blocks: {exc}") \
                from exc
        self.sockets.append(sock)
        self.blocks += wanted
        self.takes += 1
        if wanted == seen:  # not cut by the bound: what is left now, the kernel kept
            self.unreachable = free_units(self.order)
        return wanted

    def release(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()

    def report(self) -> dict:
        return {"drained_blocks": self.blocks, "drained_mib": round(self.mib, 1),
                "drain_takes": self.takes}


@contextlib.contextmanager
def draining(order: int, max_mib: int = MAX_MIB, interval: float = TOP_UP_S
             ) -> Iterator[BlockDrain]:
    """Take the free blocks of `order` and above now, and those that appear every `interval`
    seconds until the block ends; then free them all. Above order 3 no compaction builds new
    ones meanwhile (vm.extfrag_threshold held at 1000). A top-up's error is raised here, at
    the end of the block, never lost in the thread."""
    drain = BlockDrain(order, max_mib)
    stop = threading.Event()
    errors: list[BaseException] = []

    def top_up() -> None:
        while not stop.wait(interval):
            try:
                drain.take()
            except BaseException as exc:  # kept, re-raised by the caller's thread
                errors.append(exc)
                return

    held_off = no_costly_compaction() if order > COSTLY_ORDER else contextlib.nullcontext()
    with held_off:
        try:
            drain.take()
            worker = threading.Thread(target=top_up, name="drain-top-up", daemon=True)
            worker.start()
            try:
                yield drain
            finally:
                stop.set()
                worker.join()
            if errors:
                raise errors[0]
        finally:
            drain.release()
