"""scripts/softirq-highorder: high-order page allocations in the NET_RX softirq, on demand.

Two network namespaces of its own, joined by a veth pair with a large MTU; the
receiving end has scatter-gather off, as many jumbo-frame NICs and drivers do.
Large ICMP echo requests go from one namespace to the other; the receiver's
kernel answers each one in the NET_RX softirq, and with scatter-gather off the
reply is one linear buffer: kmalloc of the whole packet, which above 8 KiB comes
straight from the page allocator as GFP_ATOMIC|__GFP_NOWARN of order 2..5
(kmalloc_reserve <- __alloc_skb <- sock_alloc_send_pskb <- __ip_append_data <-
icmp_reply). That is the classic "order:N, mode:0x20" of jumbo frames.
--fragment-mib fragments memory meanwhile, and --drain holds every free block of the
reply order and above (scenarios.drain), so that the allocations fail where the kernel
cannot find a free block; a failed reply allocation drops the reply.
The namespaces (and the veth pair) are removed at the end, also on Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import sys
import time
from dataclasses import dataclass

import click

from paftrace.workloads.scenarios import icmp, netns
from paftrace.workloads.scenarios.common import (
    MIN_FREE,
    ScenarioError,
    bounded_mib,
    emit,
    fragmenting,
    memory_pressure,
    pressure_during,
    recover_sysctls,
    run_scenario,
    thin_reserve,
)
from paftrace.workloads.scenarios.drain import draining

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
  sudo scripts/softirq-highorder --seconds 20 --fragment-mib 500 --drain   # failures, surely
  sudo scripts/softirq-highorder --drain --until-lost 20 --seconds 120     # 20 of them
  sudo scripts/softirq-highorder --cleanup          # undo what a SIGKILLed run left

What paftrace shows meanwhile:
  sudo paftrace -o 2+ --all    allocations of the chosen order in softirq NET_RX,
                               GFP_ATOMIC|__GFP_NOWARN, requester sock_alloc_send_pskb
  sudo paftrace -o 4 --atomic-only   the failing ones (context softirq NET_RX, silent)
"""


# Frames of the reply path, one of which a reply failure's stack shows (Debian 6.1 guest,
# 2026-12-02: net_rx_action -> ... -> icmp_reply -> ... -> sock_alloc_send_pskb -> ...
# -> __alloc_skb -> kmalloc_reserve -> __alloc_pages).
REPLY_FRAMES = ("sock_alloc_send_pskb", "__alloc_skb", "icmp_reply", "net_rx_action")


def is_reply_failure(record: dict, order: int) -> bool:
    """A paftrace record of this scenario's failure: a reply buffer of `order` that the
    NET_RX softirq could not get (what the kernel matrix and the Vagrant check count)."""
    return (record.get("type") == "failure" and record.get("order") == order
            and record.get("context") == "softirq" and record.get("softirq") == "NET_RX"
            and any(name in frame for frame in record.get("stack") or ()
                    for name in REPLY_FRAMES))


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


@dataclass(frozen=True)
class EchoOptions:
    order: int = 4
    mtu: int = MAX_MTU
    size: int | None = None
    seconds: float = 10.0
    count: int = 1_000_000
    until_lost: int | None = None
    keep_sg: bool = False
    fragment_mib: int = 0
    drain: bool = False


def run(args: EchoOptions) -> dict:
    size = args.size or size_for_order(args.order, args.mtu)
    if os.geteuid() != 0:
        raise ScenarioError("needs root (network namespaces, raw sockets): run it with sudo")
    for name in netns.remove_stale():  # what a killed run left
        print(f"softirq-highorder: removed namespace {name} of a run that is gone",
              file=sys.stderr, flush=True)
    for line in recover_sysctls():  # and of the sysctls a drain holds
        print(f"softirq-highorder: {line}", file=sys.stderr, flush=True)
    with netns.VethPair(args.mtu) as pair:
        with netns.entered(pair.receiver):
            netns.set_scatter_gather(netns.DEVICE, args.keep_sg)
        with netns.entered(pair.sender):
            sock = icmp.raw_icmp_socket()
        fragment = (fragmenting(bounded_mib(args.fragment_mib), args.seconds + 10)
                    if args.fragment_mib else contextlib.nullcontext())
        drain = draining(page_order(reply_buffer(size, args.mtu))) if args.drain \
            else contextlib.nullcontext()
        # the reserve first: the drain's first take then gets what the thinning gave back
        reserve = thin_reserve() if args.drain else contextlib.nullcontext()
        t0 = time.monotonic()
        with sock, fragment, reserve, drain as drained:
            holder = None
            if drained:  # the blocks only atomic requests may take: the replies' own
                with netns.entered(pair.sender):
                    holder = icmp.ReplyHolder(int(drained.room_mib()) << 20)
            before = memory_pressure()
            try:
                stats = icmp.echo_loop(sock, netns.RECEIVER_ADDR, size, args.seconds,
                                       args.count, args.until_lost)
            finally:
                held = holder.release() if holder else None
            pressure = pressure_during(before)
            drain_report = {**drained.report(), "held_replies": held,
                            "min_free_kbytes": int(MIN_FREE.sysctl.read_text())
                            } if drained else {}
        namespaces = [pair.sender, pair.receiver]
    buffer = reply_buffer(size, args.mtu)
    return {**drain_report, "mtu": args.mtu, "size": size, "scatter_gather": args.keep_sg,
            "reply_order": None if args.keep_sg else page_order(buffer),
            "sent": stats.sent, "replies": stats.replies, "lost": stats.lost,
            "echo_s": {"sending": round(stats.sending_s, 6), "waiting": round(stats.waiting_s, 6),
                       "slowest": round(stats.slowest_s, 6)},
            "memory": {"before": before, "during": pressure},
            "seconds": round(time.monotonic() - t0, 3), "fragment_mib": args.fragment_mib,
            "namespaces_removed": namespaces}


@click.command(epilog="\b\n" + EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-o", "--order", type=click.IntRange(2, 5), default=4, show_default=True,
              help="Order of the reply allocations.")
@click.option("--mtu", type=click.IntRange(MIN_MTU, MAX_MTU), default=MAX_MTU,
              show_default=True, help="veth MTU.")
@click.option("--size", type=click.IntRange(min=1),
              help="Echo payload bytes (overrides --order's choice; at most MTU - 28).")
@click.option("--seconds", type=click.FloatRange(0, MAX_SECONDS, min_open=True), default=10.0,
              show_default=True, help="How long to send.")
@click.option("--count", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="At most this many requests.")
@click.option("--until-lost", type=click.IntRange(min=1),
              help="Stop once this many replies were lost (failed), --seconds at the "
                   "latest: a run that must see failures, in a VM that may stall.")
@click.option("--keep-sg", is_flag=True,
              help="Leave scatter-gather on: replies use order-3 page fragments "
                   "(skb_page_frag_refill, with an order-0 fallback) instead.")
@click.option("--fragment-mib", type=click.IntRange(0, 4096), default=0, show_default=True,
              help="Fragment this many MiB meanwhile (scripts/fragment's method).")
@click.option("--drain", is_flag=True,
              help="Hold every free block of the reply order and above meanwhile, and those "
                   "that appear (kernel packet-ring memory, keeps 128 MiB available); "
                   "vm.extfrag_threshold is held at 1000 meanwhile, so that compaction "
                   "builds none, and vm.min_free_kbytes at most the kernel's default "
                   "(int_sqrt(RAM kB x 16)), so that a few dozen held replies use up the "
                   "atomic reserve.")
@click.option("--cleanup", is_flag=True,
              help="Only remove the namespaces and restore the sysctls a run that was killed left.")
def cli(cleanup: bool, **options: object) -> None:
    """High-order atomic allocations in NET_RX: ICMP echo over a veth pair (root)."""
    args = EchoOptions(**options)  # type: ignore[arg-type]
    if args.size is not None and args.size > args.mtu - 28:
        raise click.BadParameter("must be between 1 and MTU - 28", param_hint="--size")
    if cleanup:
        sys.exit(run_scenario("softirq-highorder",
                              lambda: emit({"removed": netns.remove_stale(),
                                            "cleaned": recover_sysctls()}), ""))
    sys.exit(run_scenario("softirq-highorder", lambda: emit(run(args)), "namespaces removed"))


def main(argv: list[str] | None = None) -> int:
    cli.main(args=argv, prog_name="scripts/softirq-highorder")
    return 0


if __name__ == "__main__":
    sys.exit(main())
