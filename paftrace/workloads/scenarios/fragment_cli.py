"""scripts/fragment: fragment free memory for a while, and show what buddyinfo says.

A child (paftrace.workloads.scenarios.fragment) touches a share of the available memory as
4K pages, then frees every other page: the freed pages are order-0 blocks whose
buddies are still in use, so they cannot merge back into high-order blocks. The
child holds that state for --hold seconds, then exits and its memory is freed.
With --drain, the free blocks of --order and above that the churn left (or compaction
builds meanwhile) are taken too and held (scenarios.drain), so that a request of that
order finds no free block while it holds. Between phases this prints, as JSON lines, the
free blocks of --order and above and the free order-0 blocks, from /proc/buddyinfo.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

import click

from paftrace.workloads.scenarios.common import (
    ScenarioError,
    bounded_mib,
    emit,
    fragmenting,
    free_blocks,
    meminfo_mib,
    quiet_compaction,
    recover_sysctls,
    run_scenario,
    small_pcp_lists,
)
from paftrace.workloads.scenarios.drain import draining

MAX_MIB = 4096  # paftrace.workloads.scenarios.fragment's own bound
MAX_HOLD = 3600.0

EPILOG = """\
examples:
  sudo scripts/fragment                     # half of MemAvailable, held 30 s
  sudo scripts/fragment --mib 300 --hold 5 --small-pcp   # small and short (CI)
  sudo scripts/fragment --share 85 -o 4     # a 1 GiB VM: order-4 blocks run out
  sudo scripts/fragment --share 60 -o 4 --drain --hold 60   # no free block >= order 4

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


def run(mib: int, hold: float, order: int, small_pcp: bool, drain: bool,
        quiet: bool) -> None:
    if os.geteuid() == 0:  # what a killed run left of its sysctls (no-op if nothing)
        for line in recover_sysctls():
            print(f"fragment: {line}", file=sys.stderr, flush=True)
    with small_pcp_lists() if small_pcp else contextlib.nullcontext(), \
            quiet_compaction() if quiet else contextlib.nullcontext():
        fragment(mib, hold, order, drain)


def fragment(mib: int, hold: float, order: int, drain: bool) -> None:
    emit(state("before", order, mib=mib, hold=hold))
    with fragmenting(mib, hold + 5, lambda _: emit(state("touched", order))) as child, \
            (draining(order) if drain else contextlib.nullcontext()) as drained:
        drain_report = drained.report if drained else dict
        emit(state("fragmented", order, freed_pages=child["freed_pages"], pid=child["pid"],
                   **drain_report()))
        time.sleep(hold)
        emit(state("held", order, **drain_report()))
    emit(state("released", order))


@click.command(epilog="\b\n" + EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--mib", type=click.IntRange(1, MAX_MIB), help=f"MiB to fragment (1..{MAX_MIB}).")
@click.option("--share", type=click.FloatRange(0, 95, min_open=True),
              help="Percent of MemAvailable to fragment (default 50).")
@click.option("--hold", type=click.FloatRange(0, MAX_HOLD, min_open=True), default=30.0,
              show_default=True, help=f"Seconds to keep memory fragmented (max {MAX_HOLD:.0f}).")
@click.option("-o", "--order", type=click.IntRange(0, 10), default=4, show_default=True,
              help="Report free blocks of this order and above.")
@click.option("--small-pcp", is_flag=True,
              help="Shrink the per-CPU page lists meanwhile (root), so that freed pages show in "
                   "buddyinfo at once; restored at the end.")
@click.option("--drain", is_flag=True,
              help="Also take and hold every free block of --order and above that is left, "
                   "and those that appear while it holds (root; kernel packet-ring memory, "
                   "keeps 128 MiB available). Above order 3 it also holds "
                   "vm.extfrag_threshold at 1000, so that compaction builds none meanwhile.")
@click.option("--quiet-compaction", "quiet", is_flag=True,
              help="Set vm.compaction_proactiveness and vm.watermark_boost_factor to 0 "
                   "meanwhile (root): the kernel then rebuilds high-order blocks only when "
                   "asked to; restored at the end.")
@click.option("--cleanup", is_flag=True,
              help="Only restore the sysctls --small-pcp, --quiet-compaction and --drain "
                   "change after a run that was killed (a normal run does it too, when it "
                   "starts).")
def cli(mib: int | None, share: float | None, hold: float, order: int, small_pcp: bool,
        drain: bool, quiet: bool, cleanup: bool) -> None:
    """Fragment free memory for a while, and show what buddyinfo says."""
    if cleanup:
        sys.exit(run_scenario("fragment", lambda: emit({"cleaned": recover_sysctls()}),
                              ""))
    if mib is not None and share is not None:
        raise click.UsageError("--mib and --share exclude each other")
    sys.exit(run_scenario("fragment", lambda: run(plan_mib(mib, share or 50.0), hold, order,
                                                  small_pcp, drain, quiet),
                          "memory released"))


def main(argv: list[str] | None = None) -> int:
    cli.main(args=argv, prog_name="scripts/fragment")
    return 0


if __name__ == "__main__":
    sys.exit(main())
