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

import argparse
import json
import mmap
import os
import sys
import time

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paftrace.workloads.scenarios.fragment",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="memory to touch (MiB)")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds to keep the state")
    parser.add_argument("--touched-wait", type=float, default=0.0,
                        help="seconds to wait between touching and freeing")
    args = parser.parse_args(argv)
    if not 1 <= args.mib <= 4096:
        print("fragment: --mib must be between 1 and 4096", file=sys.stderr)
        return 2
    area = touch(args.mib)
    info = {"mib": args.mib, "pages": (args.mib << 20) // PAGE, "pid": os.getpid()}
    print(json.dumps({"phase": "touched", **info}), flush=True)
    time.sleep(args.touched_wait)
    freed = punch(area)
    print(json.dumps({"phase": "fragmented", "freed_pages": freed, **info}), flush=True)
    time.sleep(args.hold)
    area.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
