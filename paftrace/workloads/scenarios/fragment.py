"""Fragment free memory in a bounded way: touch N MiB, then free every other page.

The child maps N MiB anonymous memory (MADV_NOHUGEPAGE, so it is built from 4K
pages), touches every page, then MADV_DONTNEED every other 4K page: the freed
pages go back to the buddy lists as order-0 blocks whose buddies are still in
use, so order-0 counts rise and the high-order blocks that were split to back the
mapping do not come back. It holds that state for --hold seconds and exits; its
memory is bounded by N MiB and freed at exit.

    python -m paftrace.workloads.scenarios.fragment --mib 1024 --hold 10 [--touched-wait 2]
prints {"phase": "touched", ...} once every page is touched (then waits
--touched-wait seconds, so a caller can take a baseline), and {"phase":
"fragmented", "freed_pages": ...} once every other page is freed; each line is
flushed. On 6.x kernels the per-CPU lists (pcp high up to a few hundred MiB) absorb
freed pages first: fragment more than that to see them in /proc/buddyinfo.
"""

from __future__ import annotations

import json
import mmap
import os
import time

import click

PAGE = mmap.PAGESIZE


def touch(mib: int) -> mmap.mmap:
    """Map `mib` MiB and back every 4K page (no THP)."""
    size = mib << 20
    area = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        area.madvise(mmap.MADV_NOHUGEPAGE)
    for off in range(0, size, PAGE):
        area[off] = 1
    return area


def punch(area: mmap.mmap) -> int:
    """Free every other page of `area`; returns the number of pages freed."""
    size = len(area)
    freed = 0
    for off in range(PAGE, size, 2 * PAGE):
        area.madvise(mmap.MADV_DONTNEED, off, PAGE)
        freed += 1
    return freed


@click.command()
@click.option("--mib", type=click.IntRange(1, 4096), default=256, show_default=True,
              help="Memory to touch (MiB).")
@click.option("--hold", type=float, default=10.0, show_default=True,
              help="Seconds to keep the state.")
@click.option("--touched-wait", type=float, default=0.0, show_default=True,
              help="Seconds to wait between touching and freeing.")
def main(mib: int, hold: float, touched_wait: float) -> None:
    """Touch memory as 4K pages, free every other one, hold (the scripts/fragment child)."""
    area = touch(mib)
    info = {"mib": mib, "pages": (mib << 20) // PAGE, "pid": os.getpid()}
    print(json.dumps({"phase": "touched", **info}), flush=True)
    time.sleep(touched_wait)
    freed = punch(area)
    print(json.dumps({"phase": "fragmented", "freed_pages": freed, **info}), flush=True)
    time.sleep(hold)
    area.close()


if __name__ == "__main__":
    main(prog_name="python -m paftrace.workloads.scenarios.fragment")
