"""`paftrace frag`: who made order N impossible — fragmentation attributed, live."""

from __future__ import annotations

import sys

import click

FRAG_EXAMPLES = """\b
Examples:
  sudo paftrace frag --order 4         # live: zones, pageblock mix, top fragmenters
  sudo paftrace frag -o 4 -d 60 --json # fragmenter records, then the summary
"""


@click.command(epilog=FRAG_EXAMPLES)
@click.option("-o", "--order", type=click.IntRange(0, 31), default=4, show_default=True,
              help="The order whose blocks you are losing (also the failures shown).")
@click.option("-d", "--duration", type=click.FloatRange(0, min_open=True),
              help="Stop after this many seconds.")
@click.option("-i", "--interval", type=click.FloatRange(0.1), default=2.0, show_default=True,
              help="Refresh interval (seconds).")
@click.option("--pagetypeinfo-period", type=click.FloatRange(10), default=10.0,
              show_default=True,
              help="Read the pageblock mix (/proc/pagetypeinfo, which takes every zone "
                   "lock) at most this often.")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines (the tracer's contract).")
@click.option("--plain", is_flag=True, help="Plain text even on a terminal.")
def frag(order: int, duration: float | None, interval: float, pagetypeinfo_period: float,
         as_json: bool, plain: bool) -> None:
    """Attribute fragmentation to call sites and tasks, live.

    Every fallback of an allocation to another migratetype's free list
    (kmem:mm_page_alloc_extfrag) is counted in the kernel by task, orders, migratetypes
    and outcome; stacks are sampled. Shown beside how the free blocks >= ORDER and the
    pageblock mix (/proc/pagetypeinfo) moved since the start, and why compaction could
    not rebuild them (compaction:* tracepoints, per zone)."""
    from paftrace.options import TraceOptions  # noqa: PLC0415 - keeps `--help` fast
    from paftrace.procfs.sampler import MemorySampler  # noqa: PLC0415
    from paftrace.render import make_renderer  # noqa: PLC0415
    from paftrace.render.fragview import FragLiveRenderer, FragPlainRenderer  # noqa: PLC0415
    from paftrace.tracer import run_trace  # noqa: PLC0415

    options = TraceOptions(order_min=order, order_max=order)
    if as_json:
        mode, renderer = "json", make_renderer("json")
    elif plain or not sys.stdout.isatty():
        mode, renderer = "plain", FragPlainRenderer()
    else:
        mode, renderer = "live", FragLiveRenderer()
    sys.exit(run_trace(options, mode=mode, duration=duration, interval=interval,
                       renderer=renderer,
                       memory=MemorySampler(interval=interval,
                                            pagetypeinfo_period=pagetypeinfo_period)))
