"""Kernel matrix: read one kernel's payload artefacts and judge them.

Pure functions over the files scripts/matrix/payload leaves in a directory
(uname.txt, kallsyms.txt, kprobes.txt, selftest.out, trace.out, provoke.out,
warn.rc, dmesg.txt, ...), so the judging is tested on recorded runs.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from paftrace.planner import ALLOC_ENTRY_NAMES, WARN_NAMES
from paftrace.records import failures_in
from paftrace.workloads.scenarios.softirq_cli import is_reply_failure

# What the payload provokes in its live trace (scripts/matrix/payload).
SILENT_ORDER = 5   # python -m paftrace.workloads.provoke -o 5: GFP_KERNEL_ACCOUNT|__GFP_NOWARN
WARN_ORDER = 10    # pafwarn.ko: GFP_KERNEL|GFP_DMA|__GFP_NORETRY, printed by warn_alloc
NETRX_ORDER = 4    # python -m paftrace.workloads.scenarios.softirq_cli -o 4 --drain
WARN_LINE = re.compile(r"page allocation failure: order:(\d+)")
# What a guest's serial console says when it hangs (scripts/matrix/payload marks each
# step; kernel/watchdog.c prints the lockup, then each CPU's registers with RIP).
STEP_LINE = re.compile(r"PAFTRACE-MATRIX-STEP (\S+)")
LOCKUP_LINE = re.compile(r"BUG: soft lockup - CPU#\d+ stuck for \d+s! \[(.+?):\d+\]")
RIP_LINE = re.compile(r"RIP: 0010:(\S+)")


@dataclass
class KernelResult:
    kernel: str
    where: str                       # "host" or "qemu"
    selftest: str                    # pass | fail
    probes: list[str]
    failures_provoked: int
    failures_seen: int
    kprobes_available: bool
    alloc_entry_expected: str | None  # from the kernel's own /proc/kallsyms
    alloc_entry_attached: str | None
    warn_kprobe: str | None
    ring: str | None                 # ringbuf | perfbuf
    irq_tracepoints: bool
    softirq_allocations: int         # allocations seen in NET_RX during loopback traffic
    silent_provoked: int
    silent_seen: int                 # ... of which marked silent
    warn_printed: bool | None        # dmesg has "page allocation failure: order:10"; None: untested
    warn_marked: bool | None         # the trace marked that failure "reported"
    warn_stall_ms: float | None = None  # direct compaction the trace tied to that failure
    silent_memcg: int | None = None     # ... of which classified memcg-limit (issue 17)
    frag_fallbacks: int | None = None   # `paftrace frag`: fallbacks while pipes were pinned
    frag_fragmenting: int | None = None
    frag_top_site: str | None = None    # the top fragmenter's call site and task
    # The seed's case (issue 13): order-4 failures caught in softirq NET_RX while every
    # free block of order >= 4 was held, and the echo replies lost meanwhile; None: not run
    netrx_failures: int | None = None
    netrx_lost: int | None = None
    netrx_sent: int | None = None
    netrx_error: str | None = None      # the scenario's own error line, when it failed
    problems: list[str] = field(default_factory=list)
    # Why an earlier boot of this kernel hung (scripts/matrix/run.py boots it once more):
    # said in the table and the docs, never dropped.
    earlier_boot: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


def _text(directory: Path, name: str) -> str:
    try:
        return (directory / name).read_text(errors="replace")
    except OSError:
        return ""


def _last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return {}
    return {}


def json_lines(text: str) -> list[dict]:
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def expected_alloc_entry(kallsyms_names: set[str]) -> str | None:
    """The allocator entry paftrace should pick: its own preference order,
    checked against the symbols this kernel really has."""
    return next((n for n in ALLOC_ENTRY_NAMES if n in kallsyms_names), None)


def _probe_target(probes: list[str], kind: str, names: tuple[str, ...]) -> str | None:
    return next((p.split(":", 1)[1] for p in probes
                 if p.startswith(kind + ":") and p.split(":", 1)[1] in names), None)


def analyse(directory: Path, where: str = "qemu") -> KernelResult:
    kallsyms = set(_text(directory, "kallsyms.txt").split())
    kernel = _text(directory, "uname.txt").strip() or directory.name
    selftest = _last_json(_text(directory, "selftest.out"))
    records = json_lines(_text(directory, "trace.out"))
    attached = next((r for r in records if r.get("type") == "attached"), {})
    summary = next((r for r in records if r.get("type") == "summary"), {})
    failures = [r for r in records if r.get("type") == "failure"]
    probes = list(attached.get("probes") or selftest.get("probes") or [])
    provoke = _last_json(_text(directory, "provoke.out"))
    worker = provoke.get("worker_pid")
    silent = [f for f in failures if f.get("pid") == worker and f.get("order") == SILENT_ORDER]
    warned = [f for f in failures if f.get("order") == WARN_ORDER and f.get("comm") == "insmod"]
    warn_tested = _text(directory, "warn.rc").strip() == "0"
    printed = any(int(m.group(1)) == WARN_ORDER
                  for m in WARN_LINE.finditer(_text(directory, "dmesg.txt")))

    result = KernelResult(
        kernel=kernel, where=where,
        selftest=selftest.get("selftest", "fail"),
        probes=probes,
        failures_provoked=int(selftest.get("failures_provoked", 0)),
        failures_seen=int(selftest.get("failures_seen", 0)),
        kprobes_available=bool(_text(directory, "kprobes.txt").split()),
        alloc_entry_expected=expected_alloc_entry(kallsyms),
        alloc_entry_attached=_probe_target(probes, "kprobe", ALLOC_ENTRY_NAMES),
        warn_kprobe=_probe_target(probes, "kprobe", WARN_NAMES),
        ring=next((p for p in probes if p in ("ringbuf", "perfbuf")), None),
        irq_tracepoints=any(p.startswith(("tracepoint:irq:softirq",
                                            "raw_tracepoint:irq:softirq")) for p in probes),
        softirq_allocations=sum(int(a.get("count", 0)) for a in summary.get("allocations", [])
                                if a.get("context") == "softirq" and a.get("softirq") == "NET_RX"),
        silent_provoked=int(provoke.get("failures", 0)),
        silent_seen=sum(failures_in(f) for f in silent if f.get("visibility") == "silent"),
        # None for captures from before failures carried a cause
        silent_memcg=sum(failures_in(f) for f in silent if f.get("cause") == "memcg-limit")
        if any("cause" in f for f in silent) else None,
        warn_printed=printed if warn_tested else None,
        warn_marked=any(f.get("visibility") == "reported" for f in warned)
        if warn_tested else None,
        warn_stall_ms=max((f["stall"]["direct_compaction"]["total_ms"] for f in warned
                           if f.get("stall")), default=None),
    )
    frag_summary = next((r for r in json_lines(_text(directory, "frag.out"))
                         if r.get("type") == "summary"), None)
    if frag_summary and frag_summary.get("fragmenters"):
        section = frag_summary["fragmenters"]
        result.frag_fallbacks = section["fallbacks"]
        result.frag_fragmenting = section["fragmenting"]
        top = section["sites"][0] if section["sites"] else None
        result.frag_top_site = f"{top['site']} ({top['comm']})" if top else None
    netrx_rc = _text(directory, "netrx.rc").strip()
    if netrx_rc and netrx_rc != "skipped":
        result.netrx_failures = sum(failures_in(r) for r in json_lines(
            _text(directory, "netrx-trace.out")) if is_reply_failure(r, NETRX_ORDER))
        echo = _last_json(_text(directory, "netrx.out"))
        result.netrx_lost, result.netrx_sent = echo.get("lost"), echo.get("sent")
        if netrx_rc != "0":
            result.netrx_error = (_text(directory, "netrx.err").strip().splitlines()
                                  or [f"exit {netrx_rc}"])[-1]
    result.problems = problems(result, selftest, attached, guest_trouble(directory))
    return result


def guest_trouble(directory: Path) -> str | None:
    """Why a guest did not finish, from its console: the step it was in, the task a
    soft lockup caught and where that CPU was. None when it finished."""
    console = _text(directory, "console.log")
    timed_out = _text(directory, "timeout.txt").strip()
    lockup = LOCKUP_LINE.search(console)
    if not timed_out and not lockup:
        return None
    steps = STEP_LINE.findall(console)
    words = [timed_out or "guest hung", f"in step {steps[-1]}" if steps else "before any step"]
    if lockup:
        rips = list(dict.fromkeys(RIP_LINE.findall(console[lockup.start():])))
        words.append(f"soft lockup in {lockup.group(1)}" + (f" at {', '.join(rips[:3])}"
                                                             if rips else ""))
    return ": ".join(words) + " (see console.log)"


def problems(r: KernelResult, selftest: dict, attached: dict,
             trouble: str | None = None) -> list[str]:
    """Why this kernel fails the matrix; empty when it passes."""
    out = [trouble] if trouble else []
    if r.selftest != "pass":
        failed = [c["name"] for c in selftest.get("checks", []) if not c.get("ok")]
        out.append("selftest failed" + (f" ({', '.join(failed)})" if failed else
                                        " (no verdict: see selftest.err)"))
    if not attached:
        out.append("live trace did not attach (see trace.err)")
    if r.kprobes_available and attached:
        if not r.warn_kprobe:
            out.append("kprobes available but no warn_alloc kprobe attached")
        if not r.alloc_entry_attached:
            out.append("kprobes available but no allocator-entry kprobe attached")
    if r.alloc_entry_attached and r.alloc_entry_attached != r.alloc_entry_expected:
        out.append(f"allocator-entry kprobe on {r.alloc_entry_attached}, "
                   f"expected {r.alloc_entry_expected}")
    if attached and r.silent_seen != r.silent_provoked:
        out.append(f"{r.silent_seen} of {r.silent_provoked} silent order-{SILENT_ORDER} "
                   "failures seen as silent")
    # provoke's failures are memory cgroup charges refused at the limit (cgroup v2 in
    # the guests): each must say so, never look like fragmentation.
    if attached and r.silent_memcg is not None and r.silent_memcg != r.silent_provoked:
        out.append(f"{r.silent_memcg} of {r.silent_provoked} provoked memcg failures "
                   "classified memcg-limit")
    if r.warn_printed is False:
        out.append(f"the warning module did not make the kernel print an order-{WARN_ORDER} "
                   "page allocation failure")
    if r.warn_printed and r.warn_kprobe and not r.warn_marked:
        out.append("the kernel printed the failure but paftrace did not mark it reported")
    # The costly-order __GFP_NORETRY request tries async direct compaction before
    # failing (mm/page_alloc.c slow path): the timeline must show that stall.
    compaction_traced = any(p == "tracepoint:compaction:mm_compaction_try_to_compact_pages"
                            for p in r.probes)
    if r.warn_printed and compaction_traced and not r.warn_stall_ms:
        out.append("the printed failure carries no direct-compaction stall")
    if r.frag_fallbacks is not None and "pipe" not in (r.frag_top_site or ""):
        out.append(f"pinned pipes are not the top fragmenter (top: {r.frag_top_site}, "
                   f"{r.frag_fallbacks} fallbacks)")
    # A guest's free memory is first churned into order-0 holes (scripts/matrix/payload),
    # so no whole Movable pageblock is left to claim: pipe pages must fall back below
    # pageblock order (mm/page_alloc.c __rmqueue_fallback takes the largest free block).
    if r.where == "qemu" and r.frag_fallbacks is not None and not r.frag_fragmenting:
        out.append(f"no fragmenting fallback while pipes were pinned into churned memory "
                   f"({r.frag_fallbacks} fallbacks, all of whole pageblocks)")
    # The seed's case: with every free block of order >= 4 held, each order-4 reply
    # allocation in NET_RX must fail (and the trace catch it), in every guest.
    if r.netrx_error:
        out.append(f"the NET_RX scenario failed: {r.netrx_error}")
    elif r.where == "qemu" and r.netrx_failures == 0:
        out.append(f"no order-{NETRX_ORDER} failure caught in NET_RX while the free blocks "
                   f"were held ({r.netrx_lost} of {r.netrx_sent} echo replies lost)")
    return out


def passed(results: list[KernelResult]) -> bool:
    return bool(results) and not any(r.problems for r in results)


def _yes(value: bool | None) -> str:
    return "n/a" if value is None else "yes" if value else "NO"


def table_rows(results: list[KernelResult]) -> list[list[str]]:
    rows = [["kernel", "where", "selftest", "seen/provoked", "ring", "irq tp", "warn_alloc",
             "alloc entry kprobe", "NET_RX allocs", "silent", "printed", "marked",
             "stall before", "NET_RX failures"]]
    for r in results:
        rows.append([
            r.kernel, r.where, r.selftest, f"{r.failures_seen}/{r.failures_provoked}",
            r.ring or "-", _yes(r.irq_tracepoints),
            r.warn_kprobe or ("-" if r.kprobes_available else "no kprobes"),
            r.alloc_entry_attached or ("-" if r.kprobes_available else "no kprobes"),
            str(r.softirq_allocations), f"{r.silent_seen}/{r.silent_provoked}",
            _yes(r.warn_printed), _yes(r.warn_marked),
            "n/a" if r.warn_stall_ms is None else f"{r.warn_stall_ms:.1f} ms compaction",
            "n/a" if r.netrx_failures is None else f"{r.netrx_failures} ({r.netrx_lost} lost)",
        ])
    return rows


def render_table(results: list[KernelResult]) -> str:
    rows = table_rows(results)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in results:
        lines += [f"{r.kernel}: {p}" for p in r.problems]
        if r.earlier_boot:
            lines.append(f"{r.kernel}: booted twice; the first boot: {r.earlier_boot}")
    return "\n".join(lines)


def render_markdown_table(results: list[KernelResult]) -> str:
    rows = table_rows(results)
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(out)


def summary_json(results: list[KernelResult]) -> str:
    return json.dumps({"kernels": [r.to_json() for r in results], "passed": passed(results)})
