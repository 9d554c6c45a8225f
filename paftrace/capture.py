"""Capture replay fixtures (tests/data/replay/) from real failures on this kernel (root).

    scripts/capture-fixture tests/data/replay/provoke-o4-$(uname -r).json -o 4 -n 6

Traces with the real session while scripts/provoke's method produces N failures,
and writes every raw record plus the stacks and maps they need (paftrace.replay).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from paftrace.commands.selftest import CollectingRenderer, provoke_subprocess, run_with
from paftrace.loader import LoaderError
from paftrace.options import TraceOptions, parse_order_range
from paftrace.replay import Recorder
from paftrace.session import TraceSession
from paftrace.tracefs import TraceFs
from paftrace.tracer import Tracer
from paftrace.workloads.netload import loopback_connections


@click.command()
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--order", "provoke_order", type=click.IntRange(4, 10), default=4,
              show_default=True, help="Order of the provoked failures.")
@click.option("-n", "--count", type=click.IntRange(1, 100), default=6, show_default=True,
              help="Failures to provoke.")
@click.option("--trace-order", default="0+", show_default=True,
              help="Orders the tracer reports (N, N+ or N-M).")
@click.option("--all", "trace_all", is_flag=True,
              help="Also aggregate successful allocations (with loopback traffic for "
                   "softirq ones).")
def main(out: Path, provoke_order: int, count: int, trace_order: str, trace_all: bool) -> None:
    """Record the raw records of real page allocation failures as a replay fixture."""
    low, high = parse_order_range(trace_order)
    options = TraceOptions(order_min=low, order_max=high, trace_all=trace_all)
    recorder = Recorder()
    try:
        session = TraceSession(options, tap=recorder.tap)
    except LoaderError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        renderer = CollectingRenderer()
        tracer = Tracer(session, options, renderer)

        def workload() -> object:
            if trace_all:
                loopback_connections(1.0)
            return provoke_subprocess(count, provoke_order)

        provoked = run_with(tracer, renderer, workload)
        fmt = TraceFs().read_format("kmem", "mm_page_alloc")
        assert fmt is not None
        capture = recorder.capture(session, fmt.print_fmt)
    finally:
        session.close()
    capture["provoked"] = provoked
    out.write_text(json.dumps(capture, indent=1) + "\n")
    print(f"{out}: {len(capture['failures'])} failure and {len(capture['stalls'])} stall "
          f"records, {len(capture['stacks'])} stacks", file=sys.stderr)


if __name__ == "__main__":
    main()
