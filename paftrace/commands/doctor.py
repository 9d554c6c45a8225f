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

from paftrace.loader import LoaderError, headers_hint, import_bcc
from paftrace.options import TraceOptions
from paftrace.planner import (
    ALLOC_ENTRY_NAMES,
    BPF_MAP_TYPE_ARRAY,
    TRACEPOINTS,
    LiveKernel,
    PlanError,
    can_create_map,
    headers_dir,
    plan_probes,
)
from paftrace.reclaim import pageblock_order
from paftrace.render.text import text_table
from paftrace.session import TraceSession
from paftrace.tracefs import TraceFs, TraceFsError

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


# How to get what a feature of the plan lacks.
FEATURE_FIXES = {
    "ringbuf": "Linux 5.8+ for the ring buffer",
    "kprobes": "a kernel built with CONFIG_KPROBES=y and CONFIG_KPROBE_EVENTS=y",
    "warn-kprobe": "warn_alloc may be inlined in this build",
    "alloc-kprobe": f"expected one of {', '.join(ALLOC_ENTRY_NAMES)}",
    "irq-tracepoints": TRACEPOINT_FIX,
    "reclaim": TRACEPOINT_FIX,
}


def plan_checks(kernel: LiveKernel) -> list[Check]:
    """The tracepoints paftrace may use, then the probe plan the tracer would follow."""
    checks = []
    for tp in TRACEPOINTS:
        if tp.category == "irq_vectors":
            continue  # x86 only, optional: summed up by the plan's irq-vectors line
        present = kernel.has_event(tp.category, tp.event)
        checks.append(Check(tp.name, present, tp.why if present else
                            f"missing: {tp.why} unavailable", TRACEPOINT_FIX,
                            required=tp.feature == "core"))
    try:
        plan = plan_probes(kernel, pageblock_order=pageblock_order())
    except PlanError as exc:
        return [*checks, Check("plan", False, str(exc), TRACEPOINT_FIX, required=True)]
    checks += [Check(st.name, st.used, st.detail, "" if st.used else
                     FEATURE_FIXES.get(st.name, ""), required=st.name == "failure-field")
               for st in plan.statuses]
    checks.append(Check("plan", True, f"would attach {len(plan.probes())} probes "
                        "(paftrace --dry-run lists them)"))
    return checks


def run_checks(load_test: bool = True) -> list[Check]:
    checks: list[Check] = []
    add = checks.append
    release = platform.release()
    root = os.geteuid() == 0
    add(Check("root", root, "running as root" if root else f"running as uid {os.geteuid()}",
              "run paftrace with sudo", required=True))
    add(Check("kernel", True, f"{release} ({platform.machine()})"))
    tracefs = TraceFs()
    try:
        where = tracefs.ensure_mounted() if root else tracefs.locate()
        add(Check("tracefs", where is not None, f"at {where}" if where else "not mounted",
                  "mount -t tracefs nodev /sys/kernel/tracing (paftrace does it as root)",
                  required=True))
    except TraceFsError as exc:
        add(Check("tracefs", False, str(exc), "mount -t tracefs nodev /sys/kernel/tracing",
                  required=True))
    try:  # after the tracefs mount: bcc picks its tracefs path when imported
        bcc = import_bcc()
        add(Check("bcc", True, f"bcc {getattr(bcc, '__version__', '?')} from "
                  f"{Path(bcc.__file__).parent}", required=True))
    except LoaderError as exc:
        bcc = None
        add(Check("bcc", False, str(exc), "apt-get install python3-bpfcc bpfcc-tools",
                  required=True))
    bpf = can_create_map(BPF_MAP_TYPE_ARRAY, 1, 4, 4) if root and bcc else False
    add(Check("bpf", bpf, "bpf() syscall creates maps" if bpf else
              "cannot create a BPF map" + ("" if root else " (not root)"),
              "needs root and a kernel with CONFIG_BPF_SYSCALL=y", required=True))
    hdr = headers_dir(release)
    add(Check("headers", hdr is not None, f"{hdr}" + (f" -> {hdr.resolve()}" if hdr and
              hdr.is_symlink() else "") if hdr else "none found",
              headers_hint(release), required=True))

    if root and bcc:
        checks += plan_checks(LiveKernel(tracefs))
    btf = Path("/sys/kernel/btf/vmlinux").exists()
    add(Check("btf", btf, "present (not needed by paftrace)" if btf else
              "absent (not needed: paftrace reads only tracepoint arguments)"))
    memcg = _memcg_available()
    add(Check("memory-cgroup", memcg, "memory controller available (selftest, scripts/provoke)"
              if memcg else "no memory cgroup controller", "needed only by selftest/provoke"))
    if load_test and all(c.ok for c in checks if c.required):
        t0 = time.monotonic()
        try:
            session = TraceSession(TraceOptions(order_min=4, order_max=4))
            probes = session.attached()
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
    rows = [("ok" if c.ok else "MISSING" if c.required else "no", c.name, c.detail,
             "" if c.ok else c.fix) for c in checks]
    print(text_table(("", "check", "detail", "how to get it"), rows))


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
