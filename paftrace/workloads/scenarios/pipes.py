"""Pin unmovable kernel memory: fill pipes and hold them (a known fragmenter).

Each pipe buffer page comes from pipe_write()'s alloc_page(GFP_HIGHUSER |
__GFP_ACCOUNT) (fs/pipe.c, 5.5+; copy_page_to_iter before), which is unmovable:
when the unmovable free lists run dry the allocator falls back to another
migratetype's pageblock (kmem:mm_page_alloc_extfrag), and a held pipe page keeps
that pageblock from ever being compacted back into a high-order block. Bounded:
--mib of pipe pages, freed at exit.

    python -m paftrace.workloads.scenarios.pipes --mib 256 --hold 10
prints {"phase": "pinned", "pipes": N, "bytes": B, "pid": P} once every pipe is full.
"""

from __future__ import annotations

import fcntl
import json
import os
import time

import click

from paftrace.procfs import frag
from paftrace.procfs.pagetypeinfo import parse_pagetypeinfo
from paftrace.workloads.childproc import raise_open_files

PIPE_BYTES = 1 << 20  # F_SETPIPE_SZ: 256 pages per pipe (fs.pipe-max-size is 1 MiB by default)
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def fill_pipes(mib: int) -> list[tuple[int, int]]:
    """Open pipes holding `mib` MiB in total; the write ends stay open."""
    count = max(1, (mib << 20) // PIPE_BYTES)
    raise_open_files(2 * count + 64)  # two ends per pipe, and the interpreter's own
    pipes = []
    chunk = b"\xa5" * 65536
    for _ in range(count):
        r, w = os.pipe()
        size = fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_BYTES)
        os.set_blocking(w, False)
        written = 0
        while written < size:
            try:
                written += os.write(w, chunk)
            except BlockingIOError:
                break
        pipes.append((r, w))
    return pipes


def free_unmovable_mib(text: str) -> int:
    """Free pages on the Unmovable free lists of every zone (/proc/pagetypeinfo), MiB.

    Pipe pages come from there first: only what is pinned beyond it falls back."""
    free = parse_pagetypeinfo(text).free
    pages = sum(frag.free_pages(per_type.get("Unmovable", ())) for per_type in free.values())
    return pages * os.sysconf("SC_PAGE_SIZE") >> 20


@click.command()
@click.option("--mib", type=click.IntRange(1, 4096), default=256, show_default=True,
              help="Pipe buffer memory to pin (MiB).")
@click.option("--beyond-free", is_flag=True,
              help="Pin MIB beyond the free Unmovable pages (/proc/pagetypeinfo, root), "
                   "so that many pages must fall back to other migratetypes.")
@click.option("--hold", type=click.FloatRange(0, 3600), default=10.0, show_default=True,
              help="Seconds to keep the pipes full.")
def main(mib: int, hold: float, beyond_free: bool) -> None:
    """Fill pipes with MIB MiB and hold them (unmovable pages)."""
    if beyond_free:
        with open("/proc/pagetypeinfo") as f:
            mib += free_unmovable_mib(f.read())
    pipes = fill_pipes(mib)
    print(json.dumps({"phase": "pinned", "pipes": len(pipes), "bytes": len(pipes) * PIPE_BYTES,
                      "pid": os.getpid()}), flush=True)
    time.sleep(hold)


if __name__ == "__main__":
    main(prog_name="python -m paftrace.workloads.scenarios.pipes")
