"""`paftrace trace` (the default command): trace failing page allocations live."""

from __future__ import annotations

import sys

import click

from paftrace.options import OptionError, TraceOptions, parse_order_range
from paftrace.planner import FEATURES

TRACE_EXAMPLES = """\b
Examples:
  sudo paftrace --order 4            # live view of failing order-4 allocations
  sudo paftrace -o 4+ --atomic-only  # order >= 4, only atomic (no direct reclaim)
  sudo paftrace -o 2-5 -d 60 --json  # JSON Lines for 60 s, then a summary object
  sudo paftrace -o 0 --all           # also successful allocations, by context and stack
  sudo paftrace -p 1234 -o 3+        # one process
  sudo paftrace doctor               # what this kernel supports, and how to fix the rest
  sudo paftrace selftest             # provoke real failures and check they are seen
  paftrace explain dmesg.txt         # decode pasted page allocation failure reports
  paftrace gfp 0x400cc0              # decode a gfp mask
"""


def _order(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    try:
        return parse_order_range(value)
    except OptionError as exc:
        raise click.BadParameter(str(exc)) from exc


def _features(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
              ) -> frozenset[str]:
    unknown = set(value) - FEATURES.keys()
    if unknown:
        raise click.BadParameter(f"unknown: {', '.join(sorted(unknown))}; known: "
                                 f"{', '.join(FEATURES)}")
    return frozenset(value)


@click.command(epilog=TRACE_EXAMPLES)
@click.option("-o", "--order", "orders", default="0+", show_default=True, callback=_order,
              help="Orders to report: N, N+ (N and above) or N-M.")
@click.option("-a", "--all", "trace_all", is_flag=True,
              help="Also count successful allocations (aggregated in the kernel by order, "
                   "gfp, context and sampled stack).")
@click.option("-p", "--pid", type=int, help="Only this process (tgid).")
@click.option("-c", "--comm", help="Only tasks with this name (exact, up to 15 chars).")
@click.option("--atomic-only", is_flag=True,
              help="Only allocations that cannot reclaim (no __GFP_DIRECT_RECLAIM).")
@click.option("--warn-only", is_flag=True,
              help="Only allocations that warn in dmesg (no __GFP_NOWARN).")
@click.option("-d", "--duration", type=float, help="Stop after this many seconds.")
@click.option("-i", "--interval", type=float, default=1.0, show_default=True,
              help="Refresh interval of the live view and rates (seconds).")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines output (see README).")
@click.option("--plain", is_flag=True, help="Plain text even on a terminal.")
@click.option("--stack-sample", type=int, default=0, show_default=True,
              help="--all: take the stack of 1 in N allocations (0 = adaptive).")
@click.option("--stack-storage-size", type=int, default=16384, show_default=True,
              help="Distinct kernel stacks kept in the kernel.")
@click.option("--no-feature", "disabled", multiple=True, callback=_features,
              metavar="NAME", help="Force a fallback path: " + ", ".join(FEATURES) + ".")
@click.option("--dry-run", is_flag=True, help="Print the probe plan and exit.")
@click.option("--ebpf", is_flag=True, hidden=True, help="Print the BPF C and cflags, exit.")
def trace(orders: tuple[int, int], trace_all: bool, pid: int | None, comm: str | None,
          atomic_only: bool, warn_only: bool, duration: float | None, interval: float,
          as_json: bool, plain: bool, stack_sample: int, stack_storage_size: int,
          disabled: frozenset[str], dry_run: bool, ebpf: bool) -> None:
    """Trace failing page allocations live (the default command)."""
    from paftrace.tracer import run_trace  # noqa: PLC0415 - keeps `--help` fast

    options = TraceOptions(
        order_min=orders[0], order_max=orders[1], trace_all=trace_all, pid=pid, comm=comm,
        atomic_only=atomic_only, warn_only=warn_only, disabled=disabled,
        stack_storage=stack_storage_size, sample_every=stack_sample,
    )
    mode = "json" if as_json else "plain" if plain or not sys.stdout.isatty() else "live"
    sys.exit(run_trace(options, mode=mode, duration=duration, interval=interval,
                       dry_run=dry_run, print_ebpf_source=ebpf))
