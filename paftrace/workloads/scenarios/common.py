"""What the scenario scripts share: signals, bounds, buddyinfo, the fragmenting child."""

from __future__ import annotations

import contextlib
import json
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


def recover_sysctls() -> list[str]:
    """What killed runs left of the sysctls the scenarios change, put back (no-op if none)."""
    return [line for sysctl in (PCP_FRACTION, *QUIET_COMPACTION) for line in sysctl.recover()]


@contextlib.contextmanager
def quiet_compaction() -> Iterator[None]:
    """No proactive compaction and no watermark boost while the block runs (kernels that
    have the tunables; root)."""
    with contextlib.ExitStack() as held:
        for sysctl in QUIET_COMPACTION:
            if not sysctl.sysctl.exists():
                continue  # a kernel before the tunable: nothing to quiet
            try:
                said = held.enter_context(sysctl.held(0))
            except OSError as exc:
                raise ScenarioError(f"cannot set {sysctl.sysctl} (root?): {exc}") from exc
            for line in said:
                print(f"quiet-compaction: {line}", file=sys.stderr, flush=True)
        yield


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
