"""`paftrace record -o FILE`: an incident file for `paftrace report` (paftrace/report/)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from paftrace.commands.trace import _features, _order
from paftrace.options import TraceOptions

RECORD_EXAMPLES = """\b
Examples:
  sudo paftrace record -o incident.paf -d 600 --order 4+
  sudo paftrace record -o net.paf --atomic-only      # until Ctrl-C
  paftrace report incident.paf                        # -> incident.html (no root needed)
"""


def _writable(ctx: click.Context, param: click.Parameter, value: str) -> str:
    parent = Path(value).resolve().parent
    if not parent.is_dir():
        raise click.BadParameter(f"directory {parent} does not exist")
    if Path(value).is_dir():
        raise click.BadParameter(f"{value} is a directory: give a file name")
    return value


@click.command(epilog=RECORD_EXAMPLES)
@click.option("-o", "--output", required=True, callback=_writable, metavar="FILE",
              help="The incident file to write (gzip JSON Lines; overwritten).")
@click.option("-d", "--duration", type=click.FloatRange(min=0, min_open=True),
              help="Stop after this many seconds (default: at Ctrl-C / SIGTERM).")
@click.option("--order", "orders", default="0+", show_default=True, callback=_order,
              help="Orders to report: N, N+ (N and above) or N-M.")
@click.option("-i", "--interval", type=click.FloatRange(min=0.1), default=1.0,
              show_default=True, help="Memory-state sample and rate interval (seconds).")
@click.option("-p", "--pid", type=int, help="Only this process (tgid).")
@click.option("-c", "--comm", help="Only tasks with this name (exact, up to 15 chars).")
@click.option("--atomic-only", is_flag=True,
              help="Only allocations that cannot reclaim (no __GFP_DIRECT_RECLAIM).")
@click.option("--warn-only", is_flag=True,
              help="Only allocations that warn in dmesg (no __GFP_NOWARN).")
@click.option("--no-feature", "disabled", multiple=True, callback=_features, metavar="NAME",
              help="Force a fallback path (see `paftrace trace --help`).")
def record(output: str, duration: float | None, orders: tuple[int, int], interval: float,
           pid: int | None, comm: str | None, atomic_only: bool, warn_only: bool,
           disabled: frozenset[str]) -> None:
    """Record failures, memory state, stalls and kernel reports into one file (root)."""
    from paftrace.report.recorder import record as run_record  # noqa: PLC0415 - bcc

    options = TraceOptions(order_min=orders[0], order_max=orders[1], pid=pid, comm=comm,
                           atomic_only=atomic_only, warn_only=warn_only, disabled=disabled)
    click.echo(f"paftrace: recording order {options.order_label} into {output}"
               + (f" for {duration:g} s" if duration else "; Ctrl-C to stop"), err=True)
    status, renderer = run_record(options, output, duration, interval)
    counts = ", ".join(f"{n} {kind}" for kind, n in renderer.counts.items())
    click.echo(f"paftrace: wrote {output} ({counts}); next: paftrace report {output}",
               err=True)
    sys.exit(status)
