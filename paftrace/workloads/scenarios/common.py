"""What the scenario scripts share: signals, bounds, buddyinfo, the fragmenting child."""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from paftrace.procfs.buddyinfo import parse_buddyinfo
from paftrace.procfs.frag import blocks_at_or_above
from paftrace.workloads.childproc import python_env, read_line
from paftrace.workloads.leftovers import SharedSysctl, signals_interrupt


class ScenarioError(RuntimeError):
    """Something a user can fix; printed as one line."""


def meminfo_mib(field: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == field:
            return int(rest.split()[0]) >> 10
    raise ScenarioError(f"/proc/meminfo has no {field}")


def memory_pressure() -> dict[str, float]:
    """What says a small machine is thrashing: MemAvailable, the major faults so far
    (/proc/vmstat pgmajfault: code and data read back from disk) and the seconds some task
    stalled on memory (/proc/pressure/memory "some total", 4.20+ with PSI; absent: -1)."""
    vmstat = dict(line.split() for line in Path("/proc/vmstat").read_text().splitlines())
    try:
        some = Path("/proc/pressure/memory").read_text().splitlines()[0]
        stalled = int(some.rpartition("total=")[2]) / 1e6
    except (OSError, ValueError, IndexError):
        stalled = -1.0
    return {"available_mib": meminfo_mib("MemAvailable"),
            "major_faults": int(vmstat.get("pgmajfault", 0)), "memory_stall_s": stalled}


def pressure_during(before: dict[str, float]) -> dict[str, float]:
    """memory_pressure() now, its counters as increases since `before`."""
    now = memory_pressure()
    return {"available_mib": now["available_mib"],
            "major_faults": now["major_faults"] - before["major_faults"],
            "memory_stall_s": (round(now["memory_stall_s"] - before["memory_stall_s"], 3)
                               if before["memory_stall_s"] >= 0 else -1.0)}


def free_blocks(order: int) -> int:
    """Free blocks of `order` or larger, all zones (what an order-`order` request can use)."""
    zones = parse_buddyinfo(Path("/proc/buddyinfo").read_text())
    return sum(blocks_at_or_above(z.free, order) for z in zones)


def read_json_line(proc: subprocess.Popen[str], timeout: float, name: str) -> dict:
    """The next JSON line a child prints, or ScenarioError if it exits or is too slow."""
    line = read_line(proc, timeout)
    if line is None:
        raise ScenarioError(f"{name} said nothing within {timeout:.0f} s "
                            f"(exit status {proc.poll()})")
    return json.loads(line)


@contextlib.contextmanager
def fragmenting(mib: int, hold: float, on_touched: Callable[[dict], None] | None = None,
                timeout: float = 300.0) -> Iterator[dict]:
    """Run paftrace.workloads.scenarios.fragment as a child; yields its "fragmented" phase once
    every other page is freed, and ends the child (freeing its memory) on the way out.
    `on_touched` runs once every page is touched, before any is freed (a baseline)."""
    child = subprocess.Popen([sys.executable, "-m", "paftrace.workloads.scenarios.fragment",
                              "--mib", str(mib), "--hold", str(hold),
                              "--touched-wait", "0.5" if on_touched else "0"],
                             stdout=subprocess.PIPE, text=True, env=python_env(),
                             start_new_session=True)  # a terminal's Ctrl-C is ours to handle
    try:
        phase = read_json_line(child, timeout, "the fragmenting child")
        if on_touched:
            on_touched(phase)
        while phase.get("phase") != "fragmented":
            phase = read_json_line(child, timeout, "the fragmenting child")
        yield phase
    finally:
        child.kill()
        child.wait()


PCP_HIGH_FRACTION = Path("/proc/sys/vm/percpu_pagelist_high_fraction")
# Shared by concurrent runs and restored after a killed one (paftrace/workloads/leftovers.py).
PCP_FRACTION = SharedSysctl(PCP_HIGH_FRACTION, "percpu_pagelist_high_fraction")


@contextlib.contextmanager
def small_pcp_lists() -> Iterator[None]:
    """Shrink the per-CPU page lists while the block runs, then restore the tunable.

    Freed pages go to per-CPU lists first; on 6.x their size is auto-tuned up to a few
    hundred MiB per CPU, and pages there are invisible in /proc/buddyinfo. A large
    vm.percpu_pagelist_high_fraction (zone pages / fraction, at least 4 batches) sends
    them on to the buddy lists at once (mm/page_alloc.c zone_highsize)."""
    try:
        said = PCP_FRACTION.hold(100000)
    except OSError as exc:
        raise ScenarioError(f"cannot set vm.percpu_pagelist_high_fraction (root?): {exc}") from exc
    for line in said:
        print(f"small-pcp: {line}", file=sys.stderr, flush=True)
    try:
        yield
    finally:
        PCP_FRACTION.leave()


# The kernel's background repair of a fragmented state: proactive compaction (5.9+,
# mm/compaction.c proactive_compact_node, woken by the fragmentation score a churn raises)
# and the watermark boost after each fragmenting fallback (5.0+, mm/page_alloc.c
# boost_watermark: kswapd, then kcompactd). In a 1 GiB Debian 6.1 VM with both on, kcompactd
# migrated 42,460 pages in a minute and rebuilt nineteen order-10 blocks out of the holes
# (2026-12-02). Lowered to 0 while a run holds (the smallest wish wins), restored after.
QUIET_COMPACTION = (
    SharedSysctl(Path("/proc/sys/vm/compaction_proactiveness"), "compaction_proactiveness",
                 combine=min),
    SharedSysctl(Path("/proc/sys/vm/watermark_boost_factor"), "watermark_boost_factor",
                 combine=min),
)


# Compaction builds a block of a costly order (above PAGE_ALLOC_COSTLY_ORDER, 3:
# include/linux/mmzone.h) only where the zone's fragmentation index is above
# vm.extfrag_threshold (mm/compaction.c compaction_suitable, kcompactd and direct compaction
# alike; v5.10..v6.18). At its maximum, 1000, none is built: a drain (scenarios.drain) then
# holds every block there is instead of racing kcompactd for those it builds (a 1 GiB
# Debian 6.1 guest migrated 32,115 pages into new order-4 blocks in 15 s, 2026-12-03).
# The largest wish wins.
COSTLY_ORDER = 3
NO_COSTLY_COMPACTION = SharedSysctl(Path("/proc/sys/vm/extfrag_threshold"),
                                    "extfrag_threshold")


# The atomic reserve: free memory between a zone's min watermark and half of it, which
# only __GFP_HIGH requests such as the NET_RX replies may take (mm/page_alloc.c
# __zone_watermark_ok; the replies carry __GFP_NOMEMALLOC, so not the quarter below that).
# With transparent hugepages khugepaged raises vm.min_free_kbytes to two free pageblocks
# per zone plus MIGRATE_PCPTYPES² of them (mm/khugepaged.c
# set_recommended_min_free_kbytes): about 44 MiB in a 1 GiB guest, a band kswapd refills as
# the replies take it, and the kernel matrix's guests held 820-911 replies before the first
# one failed (2026-12-03). Thinned to the kernel's own default, a few dozen do. The
# smallest wish wins.
MIN_FREE = SharedSysctl(Path("/proc/sys/vm/min_free_kbytes"), "min_free_kbytes", combine=min)


def default_min_free_kbytes(lowmem_kb: int) -> int:
    """What the kernel sets without khugepaged's raise: int_sqrt(lowmem kB x 16) within
    [128, 262144] (mm/page_alloc.c calculate_min_free_kbytes, 5.10.89+)."""
    return min(max(math.isqrt(lowmem_kb * 16), 128), 262144)


def recover_sysctls() -> list[str]:
    """What killed runs left of the sysctls the scenarios change, put back (no-op if none)."""
    return [line for sysctl in (PCP_FRACTION, *QUIET_COMPACTION, NO_COSTLY_COMPACTION, MIN_FREE)
            for line in sysctl.recover()]


@contextlib.contextmanager
def holding(sysctls: tuple[SharedSysctl, ...], value: int, label: str) -> Iterator[None]:
    """Hold each of `sysctls` at `value` while the block runs (those the kernel has; root),
    saying on stderr what was dropped or restored."""
    with contextlib.ExitStack() as held:
        for sysctl in sysctls:
            if not sysctl.sysctl.exists():
                continue  # a kernel before the tunable: nothing to hold
            try:
                said = held.enter_context(sysctl.held(value))
            except OSError as exc:
                raise ScenarioError(f"cannot set {sysctl.sysctl} (root?): {exc}") from exc
            for line in said:
                print(f"{label}: {line}", file=sys.stderr, flush=True)
        yield


def quiet_compaction() -> contextlib.AbstractContextManager[None]:
    """No proactive compaction and no watermark boost while the block runs."""
    return holding(QUIET_COMPACTION, 0, "quiet-compaction")


def no_costly_compaction() -> contextlib.AbstractContextManager[None]:
    """No compaction builds blocks above order 3 while the block runs."""
    return holding((NO_COSTLY_COMPACTION,), 1000, "no-costly-compaction")


def thin_reserve() -> contextlib.AbstractContextManager[None]:
    """vm.min_free_kbytes at most the kernel's default while the block runs."""
    lowmem_kb = meminfo_mib("MemTotal") << 10
    return holding((MIN_FREE,), default_min_free_kbytes(lowmem_kb), "thin-reserve")


def bounded_mib(mib: int, reserve_mib: int = 128) -> int:
    """`mib`, refused when it would leave less than `reserve_mib` of MemAvailable."""
    available = meminfo_mib("MemAvailable")
    if mib > available - reserve_mib:
        raise ScenarioError(f"{mib} MiB would leave less than {reserve_mib} MiB available "
                            f"(MemAvailable {available} MiB): ask for less")
    return mib


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def run_scenario(name: str, body: Callable[[], object], undone: str) -> int:
    """Run a scenario's body with SIGTERM/SIGHUP as Ctrl-C; errors are one line on stderr.
    `undone` says what was cleaned up when interrupted."""
    try:
        with signals_interrupt():
            body()
    except ScenarioError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except PermissionError as exc:
        print(f"{name}: needs root: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{name}: interrupted; {undone}", file=sys.stderr)
        return 130
    return 0
