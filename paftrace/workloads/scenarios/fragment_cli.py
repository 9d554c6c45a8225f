"""scripts/fragment: fragment free memory for a while, and show what buddyinfo says.

A child (paftrace.workloads.scenarios.fragment) touches a share of the available memory as
4K pages, then frees every other page: the freed pages are order-0 blocks whose
buddies are still in use, so they cannot merge back into high-order blocks. The
child holds that state for --hold seconds, then exits and its memory is freed.
Between phases this prints, as JSON lines, the free blocks of --order and above
and the free order-0 blocks, from /proc/buddyinfo.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

from paftrace.workloads.scenarios.common import (
    ScenarioError,
    bounded_mib,
    emit,
    fragmenting,
    free_blocks,
    meminfo_mib,
    run_scenario,
    small_pcp_lists,
)

MAX_MIB = 4096  # paftrace.workloads.scenarios.fragment's own bound
MAX_HOLD = 3600.0

EPILOG = """\
examples:
  sudo scripts/fragment                     # half of MemAvailable, held 30 s
  sudo scripts/fragment --mib 300 --hold 5 --small-pcp   # small and short (CI)
  sudo scripts/fragment --share 85 -o 4     # a 1 GiB VM: order-4 blocks run out

While it holds, `paftrace buddyinfo` shows order-0 counts up and fewer blocks of
high orders; `sudo paftrace -o 4+ --atomic-only` shows atomic high-order requests
that fail for it (on a small machine). Ctrl-C or SIGTERM ends it and frees the memory.
"""


def plan_mib(mib: int | None, share: float) -> int:
    """MiB to fragment: --mib as given, or a share of MemAvailable; both bounded."""
    if mib is None:
        mib = int(meminfo_mib("MemAvailable") * share / 100)
    if not 1 <= mib <= MAX_MIB:
        raise ScenarioError(f"{mib} MiB is out of range: use 1..{MAX_MIB}")
    return bounded_mib(mib)


def state(phase: str, order: int, **extra: object) -> dict:
    """One JSON line: the phase, when (CLOCK_MONOTONIC, as paftrace's ts_ns), buddyinfo."""
    return {"phase": phase, "ts_ns": time.monotonic_ns(), "order": order,
            "free_blocks": free_blocks(order),
            "order0_blocks": free_blocks(0) - free_blocks(1), **extra}


def run(mib: int, hold: float, order: int, small_pcp: bool) -> None:
    with small_pcp_lists() if small_pcp else contextlib.nullcontext():
        fragment(mib, hold, order)


def fragment(mib: int, hold: float, order: int) -> None:
    emit(state("before", order, mib=mib, hold=hold))
    with fragmenting(mib, hold + 5, lambda _: emit(state("touched", order))) as child:
        emit(state("fragmented", order, freed_pages=child["freed_pages"], pid=child["pid"]))
        time.sleep(hold)
        emit(state("held", order))
    emit(state("released", order))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/fragment", description=__doc__.split("\n")[0],
                                     epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--mib", type=int, help=f"MiB to fragment (1..{MAX_MIB})")
    size.add_argument("--share", type=float, default=50.0,
                      help="percent of MemAvailable to fragment (default 50)")
    parser.add_argument("--hold", type=float, default=30.0,
                        help=f"seconds to keep memory fragmented (default 30, max {MAX_HOLD:.0f})")
    parser.add_argument("-o", "--order", type=int, default=4,
                        help="report free blocks of this order and above (default 4)")
    parser.add_argument("--small-pcp", action="store_true",
                        help="shrink the per-CPU page lists meanwhile (root), so that freed "
                             "pages show in buddyinfo at once; restored at the end")
    args = parser.parse_args(argv)
    if not 0 < args.hold <= MAX_HOLD or not 0 < args.share <= 95 or not 0 <= args.order <= 10:
        parser.error(f"--hold must be in (0, {MAX_HOLD:.0f}], --share in (0, 95], "
                     "--order in 0..10")
    return run_scenario("fragment", lambda: run(plan_mib(args.mib, args.share), args.hold,
                                                args.order, args.small_pcp),
                        "memory released")

if __name__ == "__main__":
    sys.exit(main())
