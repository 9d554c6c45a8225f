"""`paftrace buddyinfo`: live free-block counts, watermarks and fragmentation per zone."""

from __future__ import annotations

import json
import sys
import time

import click

from paftrace.procfs.buddyinfo import ProcFormatError

EXAMPLES = """\b
Examples:
  paftrace buddyinfo                     # live view, order 4, every second
  paftrace buddyinfo -o 9 -n 5 --plain   # five samples as text, order 9 (THP)
  paftrace buddyinfo --json -n 10        # JSON Lines, one object per sample
  sudo paftrace buddyinfo --pagetypeinfo # also migratetypes and the HighAtomic reserve
"""


@click.command(epilog=EXAMPLES)
@click.option("-o", "--order", type=click.IntRange(0, 20), default=4, show_default=True,
              help="Order to evaluate (blocks at or above it, fragmentation indices).")
@click.option("-i", "--interval", type=click.FloatRange(min=0.05), default=1.0,
              show_default=True, help="Seconds between samples.")
@click.option("-n", "--count", type=click.IntRange(min=1), help="Stop after N samples.")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines: one object per sample.")
@click.option("--plain", is_flag=True, help="Plain text even on a terminal.")
@click.option("--pagetypeinfo", is_flag=True,
              help="Also read /proc/pagetypeinfo (root; costly, so at most every 10 s).")
def buddyinfo(order: int, interval: float, count: int | None, as_json: bool, plain: bool,
              pagetypeinfo: bool) -> None:
    """Free blocks per order and zone, watermarks and fragmentation, live.

    Works as a normal user; migratetypes (--pagetypeinfo) need root.
    """
    from paftrace.procfs.sampler import MemorySampler  # noqa: PLC0415 - keeps --help fast

    sampler = MemorySampler(interval, pagetypeinfo_period=0 if pagetypeinfo else None)
    mode = "json" if as_json else "plain" if plain or not sys.stdout.isatty() else "live"
    try:
        run(sampler, order, count, mode)
    except (OSError, ProcFormatError) as exc:
        click.echo(f"paftrace buddyinfo: cannot read the memory state: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        pass


def _samples(sampler, count: int | None):  # noqa: ANN001, ANN202 - small generator
    n = 0
    while count is None or n < count:
        if n:
            time.sleep(sampler.interval)
        yield sampler.sample()
        n += 1


def run(sampler, order: int, count: int | None, mode: str) -> None:  # noqa: ANN001
    from paftrace.procfs.report import sample_record  # noqa: PLC0415
    from paftrace.render import memory as render_memory  # noqa: PLC0415

    if mode == "live":
        from rich.live import Live  # noqa: PLC0415

        with Live(auto_refresh=False, screen=False) as live:
            for s in _samples(sampler, count):
                history = list(sampler.history)
                live.update(render_memory.memory_panel(s, order, sampler.previous(), history,
                                                       title="paftrace buddyinfo"),
                            refresh=True)
        return
    for s in _samples(sampler, count):
        if mode == "json":
            print(json.dumps(sample_record(s, order, sampler.previous())), flush=True)
        else:
            print(render_memory.memory_text(s, order, sampler.previous()), flush=True)


if __name__ == "__main__":  # `python -m paftrace.commands.buddyinfo`, used by tests and scripts
    buddyinfo()
