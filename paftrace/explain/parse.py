"""Find allocation failure reports in log text and read their parts.

Every era's header is accepted (mm/page_alloc.c warn_alloc, 2.6.32 … 6.18;
docs/KERNEL-NOTES.md §1.3): "failure. order:4, mode:0x20" (2.6.x),
"failure: order:4, mode:0x2080020" (3.x-4.5), "mode:0x...(NAMES)" (4.6+),
", nodemask=..." (4.11+), ",cpuset=...,mems_allowed=..." on the same line
(5.4+) or on their own line (4.14-4.19), plus warn_alloc's other reports
(vmalloc, vmemmap). A report runs until the next header; its call trace ends
at Mem-Info or at another trace.
"""

from __future__ import annotations

import re

from paftrace.explain.logtext import LogLine, log_lines
from paftrace.explain.report import Frame, FreeArea, Report, ZoneState

_MASK = r"(?P<mode>0[xX][0-9a-fA-F]+|\d+)(?:\((?P<names>[^)]*)\))?"
_PAGE_RE = re.compile(r"(?:(?P<comm>[^:]{0,40}?):\s*)?page allocation failure(?P<sep>[.:])?\s*"
                      r"order:\s*(?P<order>\d+),\s*mode:\s*" + _MASK + r"(?P<rest>.*)$")
_OTHER_RE = re.compile(r"(?:(?P<comm>[^:]{0,40}?):\s*)?(?P<detail>(?P<kind>vmalloc|vmemmap)"
                       r"[^\n]*?),?\s*mode:\s*" + _MASK + r"(?P<rest>.*)$")
_WRAPPED_RE = re.compile(r"(?:page allocation failure[.:] order:\d+|vmalloc.*),?\s*$")
_CPU_LINE_RE = re.compile(r"CPU:\s*\d+\s+(?:UID:\s*\d+\s+)?PID:\s*(?P<pid>\d+)\s+Comm:\s*"
                          r"(?P<comm>.{1,16}?)\s+(?:Kdump|Not tainted|Tainted|\d+\.\d+)")
_PID_LINE_RE = re.compile(r"Pid:\s*(?P<pid>\d+),\s*comm:\s*(?P<comm>.{1,16}?)\s+"
                          r"(?:veid:\s*\d+\s+)?(?:Not tainted|Tainted|\d+\.\d+)")
_VERSION_RE = re.compile(r"\s(?P<version>\d+\.\d+(?:\.\d+)?[^\s#]*)\s+#\d")
_CPUSET_LINE_RE = re.compile(r"cpuset=(?P<cpuset>\S+?)\s+mems_allowed=(?P<mems>\S+)")
_MARKER_RE = re.compile(r"^\s*(?P<m></?(?:IRQ|NMI|TASK)>|<EOI>|<#DF>)\s*")
_FRAME_RE = re.compile(r"^\s*(?:\[<[0-9a-fA-F]+>\]\s*)?(?P<q>\?\s+)?"
                       r"(?P<sym>[A-Za-z_.$][\w.$]*)(?P<off>\+0x[0-9a-fA-F]+(?:/0x[0-9a-fA-F]+)?)"
                       r"(?:\s+\[(?P<mod>[\w-]+)\])?(?:\s+#.*)?\s*$")
# ARM: "[<c009bf44>] (warn_alloc_failed+0xdc/0x124) from [<c009e194>] (...)"
_ARM_FRAME_RE = re.compile(r"^\s*\[<[0-9a-fA-F]+>\]\s*\((?P<sym>[A-Za-z_.$][\w.$]*)"
                           r"(?P<off>\+0x[0-9a-fA-F]+/0x[0-9a-fA-F]+)?(?:\s+\[(?P<mod>[\w-]+)\])?"
                           r"\)\s+from\s")
_TRACE_START_RE = re.compile(r"^\s*(?:Call Trace|Call trace|Backtrace):?\s*$", re.I)
_TRACE_END_RE = re.compile(r"Mem-Info|Mem-info|invoked oom-killer|---\[ end trace|Call Trace:")
_FREE_AREA_RE = re.compile(r"^(?:Node\s+(?P<node>\d+)\s+)?(?P<zone>[A-Za-z][\w]*):\s+"
                           r"(?P<body>(?:\d+\*\d+kB.*?)?)=\s*(?P<total>\d+)kB")
_BLOCK_RE = re.compile(r"(\d+)\*(\d+)kB")
_FRAGMENT_RE = re.compile(r"^(?:Node \d+ ?|\w+: ?|\d+\*\d+kB ?|\([A-Z]+\) ?|= ?\d+kB ?)$")
_ZONE_RE = re.compile(r"^Node\s+(?P<node>\d+)\s+(?P<zone>\w+)\s+free:(?P<free>\d+)kB\s+"
                      r"(?:boost:\d+kB\s+)?min:(?P<min>\d+)kB\s+low:(?P<low>\d+)kB\s+"
                      r"high:(?P<high>\d+)kB")
_MANAGED_RE = re.compile(r"managed:(\d+)kB")
_RAM_RE = re.compile(r"^(\d+) pages RAM")
_MAX_BLOCK_LINES = 4000


def _header(text: str) -> re.Match[str] | None:
    if "page allocation failure" in text:
        return _PAGE_RE.search(text)
    if "vmalloc" in text or "vmemmap alloc failure" in text:
        return _OTHER_RE.search(text)
    return None


def _join_wrapped(lines: list[LogLine]) -> list[LogLine]:
    """Re-join headers cut after 'order:N,' (mail/issue pastes) and free-area
    lines that syslog split into one record per pr_cont() fragment."""
    out: list[LogLine] = []
    for line in lines:
        prev = out[-1] if out else None
        text = line.text.strip()
        if prev and text and (
                (_WRAPPED_RE.search(prev.text) and re.match(r"(mode|nodemask|cpuset)", text))
                or (re.match(r"^Node \d+\b", prev.text) and "kB" not in prev.text.split()[-1:]
                    and "=" not in prev.text and "free:" not in prev.text
                    and "active" not in prev.text and _FRAGMENT_RE.match(text))):
            sep = "" if prev.text.endswith((" ", ",")) else " "
            out[-1] = LogLine(prev.number, prev.text + sep + text, prev.timestamp)
            continue
        out.append(LogLine(line.number, line.text, line.timestamp))
    return out


def _new_report(match: re.Match[str], line: LogLine) -> Report:
    groups = match.groupdict()
    is_page = "order" in groups
    kind = "page" if is_page else groups["kind"]
    detail = None if is_page else groups["detail"].strip().rstrip(",")
    order: int | None = int(groups["order"]) if is_page else None
    if detail and (m := re.search(r"order:(\d+)", detail)):
        order = int(m.group(1))
    comm = (groups.get("comm") or "").strip() or None
    report = Report(kind=kind, line=line.number, header=line.text.strip(),
                    mode=int(groups["mode"], 0), order=order, comm=comm,
                    timestamp=line.timestamp, detail=detail,
                    period_separator=bool(is_page and groups.get("sep") == "."))
    if groups.get("names") is not None:
        report.printed_flags = [n for n in groups["names"].split("|") if n]
    rest = groups.get("rest") or ""
    if m := re.search(r"nodemask=(\(null\)|[\d,-]+)", rest):
        report.nodemask = m.group(1)
    if m := re.search(r"cpuset=([^,\s]+)", rest):
        report.cpuset = m.group(1)
    if m := re.search(r"mems_allowed=([\d,-]+)", rest):
        report.mems_allowed = m.group(1)
    return report


def _read_identity(report: Report, text: str) -> bool:
    m = _CPU_LINE_RE.search(text) or _PID_LINE_RE.search(text)
    if not m:
        return False
    report.pid = int(m.group("pid"))
    report.comm = report.comm or m.group("comm").strip()
    v = _VERSION_RE.search(text[m.end("comm"):] + " ")
    if v:
        report.kernel = v.group("version")
    return True


def _frame(text: str) -> tuple[str, str | None, bool, str] | None:
    m = _FRAME_RE.match(text) or _ARM_FRAME_RE.match(text)
    if not m:
        return None
    return m.group("sym"), m.group("mod"), not m.groupdict().get("q"), m.group("off") or ""


class _TraceReader:
    """Frames innermost first, each tagged with the stack section it was printed in."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.started = False
        self.done = False
        self.section: str | None = None

    def feed(self, text: str) -> None:
        if self.done:
            return
        if _TRACE_START_RE.match(text):
            if self.frames:
                self.done = True
            self.started = True
            return
        if self.started and _TRACE_END_RE.search(text):
            self.done = True
            return
        marker = _MARKER_RE.match(text)
        if marker:
            self._marker(marker.group("m"))
            text = text[marker.end():]
        parsed = _frame(text)
        if parsed:
            self.started = True
            name, module, reliable, offset = parsed
            self.frames.append(Frame(name, module, reliable, self.section, offset))

    def _marker(self, marker: str) -> None:
        self.started = True
        if marker in ("<EOI>", "</IRQ>"):
            # Frames seen before the closing bracket ran on the IRQ stack even if
            # the opening bracket was cut from the paste.
            self.frames = [f if f.section else Frame(f.name, f.module, f.reliable, "irq",
                                                     f.offset) for f in self.frames]
            self.section = "task"
        elif marker == "<IRQ>":
            self.section = "irq"
        elif marker == "<NMI>":
            self.section = "nmi"
        else:
            self.section = "task"


def _free_area(m: re.Match[str]) -> FreeArea | None:
    sizes = [(int(count), int(kb)) for count, kb in _BLOCK_RE.findall(m.group("body"))]
    if not sizes:
        return None
    page_kb = sizes[0][1]
    blocks: dict[int, int] = {}
    for count, kb in sizes:
        if kb % page_kb or (kb // page_kb) & (kb // page_kb - 1):
            return None
        blocks[(kb // page_kb).bit_length() - 1] = count
    return FreeArea(int(m.group("node") or 0), m.group("zone"), page_kb, blocks,
                    int(m.group("total")))


def _read_memory(report: Report, text: str) -> None:
    if m := _ZONE_RE.match(text):
        managed = _MANAGED_RE.search(text)
        report.zones.append(ZoneState(int(m.group("node")), m.group("zone"), int(m.group("free")),
                                      int(m.group("min")), int(m.group("low")),
                                      int(m.group("high")),
                                      int(managed.group(1)) if managed else None))
    elif (m := _FREE_AREA_RE.match(text)) and (area := _free_area(m)):
        report.free_areas.append(area)
    elif m := _RAM_RE.match(text):
        report.ram_pages = int(m.group(1))


def _finish(report: Report, block: list[LogLine], trace: _TraceReader) -> Report:
    report.frames = trace.frames
    if report.kernel is None and report.pid is None:
        report.problems.append("no 'CPU: ... Comm:' / 'Pid: ..., comm:' line: pid and kernel "
                               "version unknown")
    if not trace.frames:
        report.problems.append("no call trace: context and requester cannot be read")
    if not report.free_areas:
        report.problems.append("no per-zone free lists (Mem-Info part missing)")
    elif any(a.total_kb is None for a in report.free_areas):
        report.problems.append("a free-area line is truncated")
    return report


def parse_reports(text: str) -> list[Report]:
    """Every allocation failure report in `text`, in input order."""
    lines = _join_wrapped(log_lines(text))
    reports: list[Report] = []
    current: Report | None = None
    block: list[LogLine] = []
    trace = _TraceReader()
    for line in lines:
        match = _header(line.text)
        if match:
            if current:
                reports.append(_finish(current, block, trace))
            current, block, trace = _new_report(match, line), [], _TraceReader()
            continue
        if current is None or len(block) >= _MAX_BLOCK_LINES:
            continue
        block.append(line)
        text = line.text.strip()
        if current.pid is None and _read_identity(current, text):
            continue
        if current.cpuset is None and (m := _CPUSET_LINE_RE.search(text)):
            current.cpuset, current.mems_allowed = m.group("cpuset"), m.group("mems")
            continue
        trace.feed(text)
        _read_memory(current, text)
    if current:
        reports.append(_finish(current, block, trace))
    return reports
