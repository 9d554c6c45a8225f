"""`paftrace trace` (the default command): trace failing page allocations live."""

from __future__ import annotations

import sys

import click

from paftrace.commands import TRACE_EXAMPLES
from paftrace.options import (
    DEFAULT_NICE,
    DEFAULT_RECORDS_PER_SITE,
    MAX_INTERVAL_S,
    MAX_RECORDS_PER_SITE,
    MIN_INTERVAL_S,
    OptionError,
    TraceOptions,
    finite_seconds,
    kernel_comm,
    parse_order_range,
    pid_problem,
)
from paftrace.planner import FEATURES


def _order(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    try:
        return parse_order_range(value)
    except OptionError as exc:
        raise click.BadParameter(str(exc)) from exc


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    try:
        return None if value is None else finite_seconds(value, f"--{param.name}")
    except OptionError as exc:
        raise click.BadParameter(str(exc)) from exc


def _comm(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        _, warning = kernel_comm(value)
    except OptionError as exc:
        raise click.BadParameter(str(exc)) from exc
    if warning:
        click.echo(f"paftrace: {warning}", err=True)
    return value  # comm_words() compares the same first 15 bytes


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
@click.option("-p", "--pid", type=click.IntRange(min=1),
              help="Only this process (tgid); it must exist unless --wait-for-pid.")
@click.option("--wait-for-pid", is_flag=True,
              help="Accept a -p process that does not exist (yet): trace it when it appears.")
@click.option("-c", "--comm", callback=_comm,
              help="Only tasks with this name (exact; the kernel keeps the first 15 bytes, "
                   "longer names are cut to them with a warning).")
@click.option("--cgroup", "cgroup", metavar="PATH",
              help="Only tasks in this cgroup or below it, e.g. /system.slice/docker-<id>.scope "
                   "(cgroup2 path: filtered in the kernel; a v1 memory cgroup path: in user "
                   "space).")
@click.option("--atomic-only", is_flag=True,
              help="Only allocations that cannot reclaim (no __GFP_DIRECT_RECLAIM).")
@click.option("--warn-only", is_flag=True,
              help="Only allocations that warn in dmesg (no __GFP_NOWARN).")
@click.option("-d", "--duration", type=click.FloatRange(min=0, min_open=True),
              callback=_finite, help="Stop after this many seconds (> 0).")
@click.option("-i", "--interval", type=click.FloatRange(MIN_INTERVAL_S, MAX_INTERVAL_S),
              default=1.0, show_default=True, callback=_finite,
              help=f"Refresh interval of the live view and rates (seconds, "
                   f"{MIN_INTERVAL_S}..{MAX_INTERVAL_S:.0f}).")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines output (see README).")
@click.option("--plain", is_flag=True, help="Plain text even on a terminal.")
@click.option("--stack-sample", type=click.IntRange(min=0), default=0, show_default=True,
              help="--all: take the stack of 1 in N allocations (0 = adaptive).")
@click.option("--stack-storage-size", type=click.IntRange(1, 1 << 20), default=16384,
              show_default=True,
              help="Distinct kernel stacks kept in the kernel.")
@click.option("--no-feature", "disabled", multiple=True, callback=_features,
              metavar="NAME", help="Force a fallback path: " + ", ".join(FEATURES) + ".")
@click.option("--nice", type=click.IntRange(0, 19), default=DEFAULT_NICE, show_default=True,
              help="Niceness once attached: the traced workload gets the CPU first (0: keep "
                   "the priority paftrace started with). Records it cannot keep up with are "
                   "counted as lost.")
@click.option("--records-per-site", type=click.IntRange(0, MAX_RECORDS_PER_SITE),
              default=DEFAULT_RECORDS_PER_SITE, show_default=True, metavar="N",
              help="Failure records per call site and CPU at the start of a storm "
                   "(failures less than a second apart); the rest of the storm is counted "
                   "in the kernel and reported every 0.5 s as one record with a count "
                   "(0: a record for every failure).")
@click.option("--dry-run", is_flag=True, help="Print the probe plan and exit.")
@click.option("--ebpf", is_flag=True, hidden=True, help="Print the BPF C and cflags, exit.")
def trace(orders: tuple[int, int], trace_all: bool, pid: int | None, wait_for_pid: bool,
          comm: str | None, cgroup: str | None, atomic_only: bool, warn_only: bool,
          duration: float | None, interval: float, as_json: bool, plain: bool,
          stack_sample: int, stack_storage_size: int,
          disabled: frozenset[str], nice: int, records_per_site: int, dry_run: bool,
          ebpf: bool) -> None:
    """Trace failing page allocations live (the default command)."""
    from paftrace.tracer import run_trace  # noqa: PLC0415 - keeps `--help` fast

    if pid is not None and not wait_for_pid:
        problem = pid_problem(pid)
        if problem:
            raise click.BadParameter(f"{problem}; add --wait-for-pid to trace it whenever "
                                     "it appears", param_hint="'-p' / '--pid'")

    options = TraceOptions(
        order_min=orders[0], order_max=orders[1], trace_all=trace_all, pid=pid, comm=comm,
        atomic_only=atomic_only, warn_only=warn_only, disabled=disabled,
        stack_storage=stack_storage_size, sample_every=stack_sample, cgroup=cgroup,
        nice=nice, records_per_site=records_per_site,
    )
    mode = "json" if as_json else "plain" if plain or not sys.stdout.isatty() else "live"
    sys.exit(run_trace(options, mode=mode, duration=duration, interval=interval,
                       dry_run=dry_run, print_ebpf_source=ebpf))
