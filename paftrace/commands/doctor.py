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
from paftrace.tracefs import TraceFs, TraceFsError

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


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = False


def _memcg_available() -> bool:
    if Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists():
        return True
    return any("memory" in (p / "cgroup.subtree_control").read_text().split()
               for p in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))
               if (p / "cgroup.subtree_control").exists())


def run_checks(load_test: bool = True) -> list[Check]:
    checks: list[Check] = []
    add = checks.append
    release = platform.release()
    root = os.geteuid() == 0
    add(Check("root", root, "running as root" if root else f"running as uid {os.geteuid()}",
              "run paftrace with sudo", required=True))
    add(Check("kernel", True, f"{release} ({platform.machine()})"))
    bpf = can_create_map(BPF_MAP_TYPE_ARRAY, 1, 4, 4) if root else False
    add(Check("bpf", bpf, "bpf() syscall creates maps" if bpf else
              "cannot create a BPF map" + ("" if root else " (not root)"),
              "needs root and a kernel with CONFIG_BPF_SYSCALL=y", required=True))
    tracefs = TraceFs()
    try:
        where = tracefs.ensure_mounted() if root else tracefs.locate()
        add(Check("tracefs", where is not None, f"at {where}" if where else "not mounted",
                  "mount -t tracefs nodev /sys/kernel/tracing (paftrace does it as root)",
                  required=True))
    except TraceFsError as exc:
        add(Check("tracefs", False, str(exc), "mount -t tracefs nodev /sys/kernel/tracing",
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

    kernel = LiveKernel(tracefs)
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
    ring = kernel.ringbuf_supported() if root else False
    add(Check("ringbuf", ring, "BPF ring buffer" if ring else "no BPF ring buffer: the perf "
              "buffer is used (works, one buffer per CPU)", "Linux 5.8+ for the ring buffer"))
    kprobes = kernel.kprobes_available()
    add(Check("kprobes", kprobes, "available" if kprobes else
              "not available (CONFIG_KPROBES / CONFIG_KPROBE_EVENTS off): no warn_alloc marking, "
              "no time-in-allocator; everything else works",
              "a kernel built with CONFIG_KPROBES=y and CONFIG_KPROBE_EVENTS=y"))
    if kprobes and root:
        warn = first_present(kernel, WARN_NAMES)
        add(Check("kprobe:warn_alloc", warn is not None, warn or "no warn_alloc in kallsyms",
                  "warn_alloc may be inlined in this build"))
        entry = first_present(kernel, ALLOC_ENTRY_NAMES)
        add(Check("kprobe:allocator", entry is not None, entry or "no allocator entry symbol",
                  f"expected one of {', '.join(ALLOC_ENTRY_NAMES)}"))
    btf = Path("/sys/kernel/btf/vmlinux").exists()
    add(Check("btf", btf, "present (not needed by paftrace)" if btf else
              "absent (not needed: paftrace reads only tracepoint arguments)"))
    memcg = _memcg_available()
    add(Check("memory-cgroup", memcg, "memory controller available (selftest, scripts/provoke)"
              if memcg else "no memory cgroup controller", "needed only by selftest/provoke"))
    if load_test and all(c.ok for c in checks if c.required):
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


def _render(checks: list[Check]) -> None:
    if sys.stdout.isatty():
        from rich.console import Console  # noqa: PLC0415
        from rich.table import Table  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415

        table = Table(title="paftrace doctor")
        for col in ("check", "", "detail", "how to get it"):
            table.add_column(col, overflow="fold")
        for c in checks:
            mark = Text("ok", "green") if c.ok else Text("MISSING" if c.required else "no",
                                                         "bold red" if c.required else "yellow")
            table.add_row(c.name, mark, Text(c.detail), Text("" if c.ok else c.fix))
        Console().print(table)
        return
    for c in checks:
        mark = "ok" if c.ok else "MISSING" if c.required else "no"
        print(f"{mark:8} {c.name:40} {c.detail}" + (f"\n{'':8} fix: {c.fix}" if not c.ok and
                                                      c.fix else ""))


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
        print("paftrace can trace on this machine." if ok else
              "paftrace cannot trace here yet: fix the MISSING items above.")
    sys.exit(0 if ok else 1)
