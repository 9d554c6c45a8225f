"""scripts/softirq-highorder: high-order page allocations in the NET_RX softirq, on demand.

Two network namespaces of its own, joined by a veth pair with a large MTU; the
receiving end has scatter-gather off, as many jumbo-frame NICs and drivers do.
Large ICMP echo requests go from one namespace to the other; the receiver's
kernel answers each one in the NET_RX softirq, and with scatter-gather off the
reply is one linear buffer: kmalloc of the whole packet, which above 8 KiB comes
straight from the page allocator as GFP_ATOMIC|__GFP_NOWARN of order 2..5
(kmalloc_reserve <- __alloc_skb <- sock_alloc_send_pskb <- __ip_append_data <-
icmp_reply). That is the classic "order:N, mode:0x20" of jumbo frames.
--fragment-mib fragments memory meanwhile, so that the allocations can fail where
the kernel cannot find a free block; a failed reply allocation drops the reply.
The namespaces (and the veth pair) are removed at the end, also on Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import mmap
import os
import sys
import time

from paftrace.workloads.scenarios import icmp, netns
from paftrace.workloads.scenarios.common import (
    ScenarioError,
    bounded_mib,
    emit,
    fragmenting,
    run_scenario,
)

# A linear skb's kmalloc is the packet plus headroom (LL_RESERVED_SPACE, 16 on veth),
# 15 bytes of alignment slack and struct skb_shared_info (320 on x86-64): about 384.
SKB_OVERHEAD = 384
KMALLOC_MAX_CACHE = 2 * mmap.PAGESIZE  # SLUB: larger kmallocs go to the page allocator
MIN_MTU, MAX_MTU = 1280, 65535  # veth's maximum is ETH_MAX_MTU
MAX_SECONDS = 600.0

EPILOG = """\
examples:
  sudo scripts/softirq-highorder                    # order-4 replies for 10 s
  sudo scripts/softirq-highorder -o 2 --mtu 9000    # order 2: 9000-byte jumbo frames
  sudo scripts/softirq-highorder --seconds 60 --fragment-mib 700   # a 1 GiB VM: failures
  sudo scripts/softirq-highorder --cleanup          # remove namespaces left by a SIGKILL

What paftrace shows meanwhile:
  sudo paftrace -o 2+ --all    allocations of the chosen order in softirq NET_RX,
                               GFP_ATOMIC|__GFP_NOWARN, requester sock_alloc_send_pskb
  sudo paftrace -o 4 --atomic-only   the failing ones (context softirq NET_RX, silent)
"""


def page_order(nbytes: int) -> int:
    """get_order(): the smallest order whose block holds nbytes."""
    return max(0, (nbytes - 1) // mmap.PAGESIZE).bit_length()


def reply_buffer(size: int, mtu: int) -> int:
    """Bytes of one linear reply buffer (one IP fragment when the reply exceeds the MTU)."""
    return min(size + icmp.IP_HEADER + icmp.ICMP_HEADER, mtu) + SKB_OVERHEAD


def size_for_order(order: int, mtu: int) -> int:
    """An echo payload whose reply buffer is about 3/4 of an order-`order` block."""
    size = min((3 * (mmap.PAGESIZE << order)) // 4, mtu) - icmp.IP_HEADER - icmp.ICMP_HEADER
    buffer = reply_buffer(size, mtu)
    if buffer <= KMALLOC_MAX_CACHE or page_order(buffer) != order:
        raise ScenarioError(f"order {order} cannot be reached with MTU {mtu}: replies of "
                            f"at most {mtu} bytes need order {page_order(buffer)}"
                            + (" (from slab, not the page allocator)"
                               if buffer <= KMALLOC_MAX_CACHE else ""))
    return size


def run(args: argparse.Namespace) -> dict:
    size = args.size or size_for_order(args.order, args.mtu)
    if os.geteuid() != 0:
        raise ScenarioError("needs root (network namespaces, raw sockets): run it with sudo")
    with netns.VethPair(args.mtu) as pair:
        with netns.entered(pair.receiver):
            netns.set_scatter_gather(netns.DEVICE, args.keep_sg)
        with netns.entered(pair.sender):
            sock = icmp.raw_icmp_socket()
        fragment = (fragmenting(bounded_mib(args.fragment_mib), args.seconds + 10)
                    if args.fragment_mib else contextlib.nullcontext())
        t0 = time.monotonic()
        with sock, fragment:
            stats = icmp.echo_loop(sock, netns.RECEIVER_ADDR, size, args.seconds, args.count)
        namespaces = [pair.sender, pair.receiver]
    buffer = reply_buffer(size, args.mtu)
    return {"mtu": args.mtu, "size": size, "scatter_gather": args.keep_sg,
            "reply_order": None if args.keep_sg else page_order(buffer),
            "sent": stats.sent, "replies": stats.replies, "lost": stats.lost,
            "seconds": round(time.monotonic() - t0, 3), "fragment_mib": args.fragment_mib,
            "namespaces_removed": namespaces}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/softirq-highorder",
                                     description=__doc__.split("\n")[0], epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--order", type=int, default=4,
                        help="order of the reply allocations (2..5, default 4)")
    parser.add_argument("--mtu", type=int, default=MAX_MTU,
                        help=f"veth MTU ({MIN_MTU}..{MAX_MTU}, default {MAX_MTU})")
    parser.add_argument("--size", type=int,
                        help="echo payload bytes (overrides --order's choice)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help=f"how long to send (default 10, max {MAX_SECONDS:.0f})")
    parser.add_argument("--count", type=int, default=1_000_000,
                        help="at most this many requests (default 1000000)")
    parser.add_argument("--keep-sg", action="store_true",
                        help="leave scatter-gather on: replies use order-3 page fragments "
                             "(skb_page_frag_refill, with an order-0 fallback) instead")
    parser.add_argument("--fragment-mib", type=int, default=0,
                        help="fragment this many MiB meanwhile (scripts/fragment's method)")
    parser.add_argument("--cleanup", action="store_true",
                        help="only remove namespaces left by a run that was killed")
    args = parser.parse_args(argv)
    if not MIN_MTU <= args.mtu <= MAX_MTU or not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--mtu must be in {MIN_MTU}..{MAX_MTU}, --seconds in (0, "
                     f"{MAX_SECONDS:.0f}]")
    if not 2 <= args.order <= 5 or args.count < 1 or not 0 <= args.fragment_mib <= 4096:
        parser.error("--order must be in 2..5, --count at least 1, --fragment-mib in 0..4096")
    if args.size is not None and not 1 <= args.size <= args.mtu - 28:
        parser.error("--size must be between 1 and MTU - 28")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cleanup:
        return run_scenario("softirq-highorder",
                            lambda: emit({"removed": netns.remove_stale()}), "")
    return run_scenario("softirq-highorder", lambda: emit(run(args)), "namespaces removed")

if __name__ == "__main__":
    sys.exit(main())
