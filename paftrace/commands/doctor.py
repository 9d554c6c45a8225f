"""`paftrace doctor`: what this machine offers, and how to get what is missing."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from paftrace.loader import LoaderError, TraceSession, headers_hint, import_bcc
from paftrace.options import TraceOptions
from paftrace.planner import (
    ALLOC_ENTRY_NAMES,
    BPF_MAP_TYPE_ARRAY,
    WARN_NAMES,
    LiveKernel,
    can_create_map,
    first_present,
    headers_dir,
)
from paftrace.tracefs import TRACEFS_CANDIDATES, TraceFs, TraceFsError

KPROBE_PMU = "/sys/bus/event_source/devices/kprobe/type"  # perf kprobe PMU, Linux 4.17+
# Tracepoints paftrace uses, whether it cannot run without them, and why it wants them.
TRACEPOINTS = [
    ("kmem", "mm_page_alloc", True, "every allocation and its failure"),
    ("irq", "softirq_entry", False, "softirq context and vector"),
    ("irq", "softirq_exit", False, "softirq context and vector"),
    ("irq", "irq_handler_entry", False, "hardirq context"),
    ("irq", "irq_handler_exit", False, "hardirq context"),
    ("irq_vectors", "local_timer_entry", False, "LAPIC timer hardirqs (x86)"),
    ("kmem", "mm_page_alloc_extfrag", False, "fragmentation fallbacks"),
    ("compaction", "mm_compaction_begin", False, "compaction runs"),
    ("compaction", "mm_compaction_end", False, "compaction outcomes"),
    ("compaction", "mm_compaction_try_to_compact_pages", False, "direct compaction"),
    ("vmscan", "mm_vmscan_direct_reclaim_begin", False, "direct reclaim stalls"),
    ("vmscan", "mm_vmscan_direct_reclaim_end", False, "direct reclaim stalls"),
    ("vmscan", "mm_vmscan_wakeup_kswapd", False, "kswapd wakeups"),
]
TRACEPOINT_FIX = "the kernel lacks this event (CONFIG_TRACEPOINTS / the subsystem's events)"


ROOT_ONLY = "not checked: needs root"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = False
    checked: bool = True  # False: only root can tell (tracefs is 0700, bpf() needs root)


def unchecked(name: str, why: str, required: bool = False) -> Check:
    """A check an ordinary user cannot make: say so instead of guessing."""
    return Check(name, False, f"{ROOT_ONLY} ({why})", "sudo paftrace doctor",
                 required=required, checked=False)


def tracefs_mount_points(mounts: str | None = None) -> list[str]:
    """Where tracefs is mounted, from the mount table (readable by every user)."""
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text()
        except OSError:
            return []
    return [fields[1] for fields in (line.split() for line in mounts.splitlines())
            if len(fields) > 2 and fields[2] == "tracefs"]


def _memcg_available() -> bool:
    if Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists():
        return True
    return any("memory" in (p / "cgroup.subtree_control").read_text().split()
               for p in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))
               if (p / "cgroup.subtree_control").exists())


def kernel_checks(kernel: LiveKernel) -> list[Check]:
    """Tracepoints, probe points and BPF features: tracefs and bpf() answer only root."""
    checks: list[Check] = []
    add = checks.append
    for cat, event, required, why in TRACEPOINTS:
        present = kernel.has_event(cat, event)
        add(Check(f"{cat}:{event}", present, why if present else f"missing: {why} unavailable",
                  TRACEPOINT_FIX, required=required))
    fmt = kernel.read_format("kmem", "mm_page_alloc")
    if fmt:
        field = "pfn" if fmt.get("pfn") else "page" if fmt.get("page") else None
        add(Check("failure-field", field is not None,
                  f"failed allocations show {field} == {'-1' if field == 'pfn' else 'NULL'}"
                  if field else "neither pfn nor page field", required=True))
    ring = kernel.ringbuf_supported()
    add(Check("ringbuf", ring, "BPF ring buffer" if ring else "no BPF ring buffer: the perf "
              "buffer is used (works, one buffer per CPU)", "Linux 5.8+ for the ring buffer"))
    kprobes = kernel.kprobes_available()
    add(Check("kprobes", kprobes, "available" if kprobes else
              "not available (CONFIG_KPROBES / CONFIG_KPROBE_EVENTS off): no warn_alloc marking, "
              "no time-in-allocator; everything else works",
              "a kernel built with CONFIG_KPROBES=y and CONFIG_KPROBE_EVENTS=y"))
    if kprobes:
        warn = first_present(kernel, WARN_NAMES)
        add(Check("kprobe:warn_alloc", warn is not None, warn or "no warn_alloc in kallsyms",
                  "warn_alloc may be inlined in this build"))
        entry = first_present(kernel, ALLOC_ENTRY_NAMES)
        add(Check("kprobe:allocator", entry is not None, entry or "no allocator entry symbol",
                  f"expected one of {', '.join(ALLOC_ENTRY_NAMES)}"))
    return checks


def unprivileged_kernel_checks() -> list[Check]:
    """What a user can say about the same things: only that root must look."""
    checks = [unchecked("tracepoints", f"{len(TRACEPOINTS)} tracepoints, kmem:mm_page_alloc "
                        "first; tracefs is readable by root only", required=True)]
    checks.append(unchecked("ringbuf", "creating a BPF ring buffer map"))
    if Path(KPROBE_PMU).exists():  # world-readable sysfs: a true answer either way
        checks.append(Check("kprobes", True, "available (perf kprobe PMU)"))
    else:
        checks.append(unchecked("kprobes", "no perf kprobe PMU; tracefs kprobe_events is "
                                "root's to look at"))
    return checks


def run_checks(load_test: bool = True) -> list[Check]:
    checks: list[Check] = []
    add = checks.append
    release = platform.release()
    root = os.geteuid() == 0
    add(Check("root", root, "running as root" if root else f"running as uid {os.geteuid()}",
              "run paftrace with sudo", required=True))
    add(Check("kernel", True, f"{release} ({platform.machine()})"))
    if root:
        bpf = can_create_map(BPF_MAP_TYPE_ARRAY, 1, 4, 4)
        add(Check("bpf", bpf, "bpf() syscall creates maps" if bpf else "cannot create a BPF map",
                  "needs a kernel with CONFIG_BPF_SYSCALL=y", required=True))
    else:
        add(unchecked("bpf", "creating a BPF map", required=True))
    tracefs = TraceFs()
    if root:
        try:
            where = tracefs.ensure_mounted()
            add(Check("tracefs", True, f"at {where}", required=True))
        except TraceFsError as exc:
            add(Check("tracefs", False, str(exc), "mount -t tracefs nodev /sys/kernel/tracing",
                      required=True))
    else:
        mounted = [m for m in TRACEFS_CANDIDATES if m in tracefs_mount_points()]
        add(Check("tracefs", True, f"mounted at {mounted[0]} (its files are root's)"
                  if mounted else "not mounted yet: paftrace mounts it when run as root",
                  required=True))
    try:
        bcc = import_bcc()
        add(Check("bcc", True, f"bcc {getattr(bcc, '__version__', '?')} from "
                  f"{Path(bcc.__file__).parent}", required=True))
    except LoaderError as exc:
        add(Check("bcc", False, str(exc), "apt-get install python3-bpfcc bpfcc-tools",
                  required=True))
    hdr = headers_dir(release)
    add(Check("headers", hdr is not None, f"{hdr}" + (f" -> {hdr.resolve()}" if hdr and
              hdr.is_symlink() else "") if hdr else "none found",
              headers_hint(release), required=True))

    if root:
        checks += kernel_checks(LiveKernel(tracefs))
    else:
        checks += unprivileged_kernel_checks()
    btf = Path("/sys/kernel/btf/vmlinux").exists()
    add(Check("btf", btf, "present (not needed by paftrace)" if btf else
              "absent (not needed: paftrace reads only tracepoint arguments)"))
    memcg = _memcg_available()
    add(Check("memory-cgroup", memcg, "memory controller available (selftest, scripts/provoke)"
              if memcg else "no memory cgroup controller", "needed only by selftest/provoke"))
    if load_test and root and all(c.ok for c in checks if c.required):
        t0 = time.monotonic()
        try:
            session = TraceSession(TraceOptions(order_min=4, order_max=4), lambda raw: None)
            probes = session.plan.probes()
            session.close()
            add(Check("load", True, f"compiled and attached {len(probes)} probes in "
                      f"{time.monotonic() - t0:.2f}s", required=True))
        except LoaderError as exc:
            add(Check("load", False, str(exc), "see the failing checks above", required=True))
    return checks


def _mark(c: Check) -> str:
    if not c.checked:
        return "unknown"
    return "ok" if c.ok else "MISSING" if c.required else "no"


def verdict(checks: list[Check]) -> str:
    if all(c.ok for c in checks if c.required):
        return "paftrace can trace on this machine."
    unknown = sum(not c.checked for c in checks)
    if unknown:
        return (f"paftrace needs root to trace. As uid {os.geteuid()} doctor checked what a "
                f"user can; {unknown} checks need root: run sudo paftrace doctor for them.")
    return "paftrace cannot trace here yet: fix the MISSING items above."


def _render(checks: list[Check]) -> None:
    if sys.stdout.isatty():
        from rich.console import Console  # noqa: PLC0415
        from rich.table import Table  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415

        table = Table(title="paftrace doctor")
        for col in ("check", "", "detail", "how to get it"):
            table.add_column(col, overflow="fold")
        for c in checks:
            styles = {"ok": "green", "MISSING": "bold red", "no": "yellow", "unknown": "dim"}
            mark = Text(_mark(c), styles[_mark(c)])
            table.add_row(Text(c.name), mark, Text(c.detail), Text("" if c.ok else c.fix))
        Console().print(table)
        return
    for c in checks:
        mark = _mark(c)
        print(f"{mark:8} {c.name:40} {c.detail}" + (f"\n{'':8} fix: {c.fix}" if not c.ok and
                                                      c.checked and c.fix else ""))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.option("--no-load", is_flag=True, help="Skip the compile-and-attach test.")
def doctor(as_json: bool, no_load: bool) -> None:
    """Check what this machine supports and say how to fix what is missing."""
    checks = run_checks(load_test=not no_load)
    ok = all(c.ok for c in checks if c.required)
    if as_json:
        print(json.dumps({"ok": ok, "kernel": platform.release(),
                          "checks": [asdict(c) for c in checks]}))
    else:
        _render(checks)
        print(verdict(checks))
    sys.exit(0 if ok else 1)
