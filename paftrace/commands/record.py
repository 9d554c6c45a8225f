"""`paftrace record -o FILE`: an incident file for `paftrace report` (paftrace/report/)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from paftrace.commands.trace import _order, trace
from paftrace.options import TraceOptions

SHARED_FILTERS = ("pid", "comm", "atomic_only", "warn_only", "disabled", "records_per_site")
RECORD_EXAMPLES = """\b
Examples:
  sudo paftrace record -o incident.paf -d 600 --order 4+
  sudo paftrace record -o net.paf --atomic-only      # until Ctrl-C
  paftrace report incident.paf                        # -> incident.html (no root needed)
"""


def _writable(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        parent = Path(value).resolve().parent
        if not parent.is_dir():
            raise click.BadParameter(f"directory {parent} does not exist")
        if Path(value).is_dir():
            raise click.BadParameter(f"{value} is a directory: give a file name")
    except OSError as exc:
        raise click.BadParameter(f"{value}: {exc.strerror or exc}") from exc
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
def record(output: str, duration: float | None, orders: tuple[int, int], interval: float,
           pid: int | None, comm: str | None, atomic_only: bool, warn_only: bool,
           disabled: frozenset[str], records_per_site: int) -> None:
    """Record failures, memory state, stalls and kernel reports into one file (root)."""
    from paftrace.report.recorder import record as run_record  # noqa: PLC0415 - bcc
    from paftrace.tracer import EXIT_SIGNAL  # noqa: PLC0415

    if os.geteuid() != 0:
        raise click.ClickException("recording needs root (BPF, tracefs, /proc/pagetypeinfo): "
                                   f"sudo paftrace record -o {output} ...")
    options = TraceOptions(order_min=orders[0], order_max=orders[1], pid=pid, comm=comm,
                           atomic_only=atomic_only, warn_only=warn_only, disabled=disabled,
                           records_per_site=records_per_site)
    click.echo(f"paftrace: recording order {options.order_label} into {output}"
               + (f" for {duration:g} s" if duration else "; Ctrl-C to stop"), err=True)
    status, renderer = run_record(options, output, duration, interval)
    counts = ", ".join(f"{n} {kind}" for kind, n in renderer.counts.items())
    if status not in (0, EXIT_SIGNAL):  # the tracer said why; the file has the facts only
        click.echo(f"paftrace: the recording failed; {output} holds the system facts and "
                   "doctor's checks only", err=True)
    else:
        click.echo(f"paftrace: wrote {output} ({counts}); next: paftrace report {output}",
                   err=True)
    sys.exit(status)


# The filters are trace's own options (same names, help and validation): -p, -c,
# --atomic-only, --warn-only, --no-feature. (-o is the output file here: --order is ours.)
record.params.extend(p for p in trace.params if p.name in SHARED_FILTERS)
