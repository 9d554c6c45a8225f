"""Find allocation failure reports in log text and read their parts, streaming.

Headers are recognised by explain/headers.py, wrapped lines re-joined by
explain/wrapping.py, trace lines tokenised by explain/frames.py. cpuset/mems_allowed
come on the header line (5.4+) or on their own line (4.14-4.19).

A report runs until the next header from the same printk caller (or, without
caller ids, the next header); its call trace ends at Mem-Info or at another trace.
Only the reports are kept, never the input: memory is bounded by the number of
reports open at once (issue 12 item 6).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from paftrace.explain.frames import Token, tokens
from paftrace.explain.headers import find_header, new_report
from paftrace.explain.logtext import LogLine, iter_log_lines
from paftrace.explain.report import Frame, FreeArea, Report, ZoneState
from paftrace.explain.wrapping import join_wrapped

_CPU_LINE_RE = re.compile(r"CPU:\s*\d+\s+(?:UID:\s*\d+\s+)?PID:\s*(?P<pid>\d+)\s+Comm:\s*"
                          r"(?P<comm>.{1,16}?)\s+(?:Kdump|Not tainted|Tainted|\d+\.\d+)")
_PID_LINE_RE = re.compile(r"Pid:\s*(?P<pid>\d+),\s*comm:\s*(?P<comm>.{1,16}?)\s+"
                          r"(?:veid:\s*\d+\s+)?(?:Not tainted|Tainted|\d+\.\d+)")
_VERSION_RE = re.compile(r"\s(?P<version>\d+\.\d+(?:\.\d+)?[^\s#]{0,64})\s+#\d")
_CPUSET_LINE_RE = re.compile(r"cpuset=(?P<cpuset>\S{1,512}?)\s+mems_allowed=(?P<mems>\S{1,512})")
_TRACE_START_RE = re.compile(r"^(?:Call Trace|Call trace|Backtrace|Stack trace):?\s*", re.I)
# Lines of the rest of a report (show_mem): the trace before them was printed whole.
_AFTER_TRACE_RE = re.compile(r"(?:Node \d+ (?:active_anon|\w+ (?:free|per-cpu))|lowmem_reserve|"
                             r"active_anon:|\d+ total pagecache|\d+ pages RAM|Free swap|"
                             r"---\[ end)")
_TRACE_END_RE = re.compile(r"Mem-Info|Mem-info|invoked oom-killer|---\[ end trace|"
                           r"Last Breaking-Event-Address|Instruction dump")
_FREE_AREA_RE = re.compile(r"^(?:Node\s+(?P<node>\d+)\s+)?(?P<zone>[A-Za-z]\w{0,31}):\s+"
                           r"(?P<body>(?:\d+\*\d+kB[^=]{0,4096})?)=\s*(?P<total>\d+)kB")
_BLOCK_RE = re.compile(r"(\d+)\*(\d+)kB")
_ZONE_RE = re.compile(r"^Node\s+(?P<node>\d+)\s+(?P<zone>\w+)\s+free:(?P<free>\d+)kB\s+"
                      r"(?:boost:\d+kB\s+)?min:(?P<min>\d+)kB\s+low:(?P<low>\d+)kB\s+"
                      r"high:(?P<high>\d+)kB")
_MANAGED_RE = re.compile(r"managed:(\d+)kB")
_RAM_RE = re.compile(r"^(\d+) pages RAM")
_MAX_BLOCK_LINES = 4000
_MAX_OPEN = 64          # reports of different printk callers open at once


def _read_identity(report: Report, text: str) -> bool:
    if "omm:" not in text:
        return False
    m = _CPU_LINE_RE.search(text) or _PID_LINE_RE.search(text)
    if not m:
        return False
    report.pid = int(m.group("pid"))
    report.comm = report.comm or m.group("comm").strip()
    v = _VERSION_RE.search(text[m.end("comm"):] + " ")
    if v:
        report.kernel = v.group("version")
    return True


class _TraceReader:
    """Frames innermost first, each tagged with the stack section it was printed in."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.started = False
        self.done = False
        self.section: str | None = None
        self.address_only = 0
        self.arm_caller: Token | None = None   # arm "X from Y": Y, until the next line
        self.complete = False   # something that follows a trace came after it

    def feed(self, text: str) -> None:
        if self.done:
            return
        if m := _TRACE_START_RE.match(text):
            if self.frames or self.address_only:
                self.complete = True
                self._finish()
                return
            self.started = True
            text = text[m.end():]
            if not text:
                return
        if self.started and (_TRACE_END_RE.search(text) or _AFTER_TRACE_RE.match(text)):
            self.complete = True
            self._finish()
            return
        for token in tokens(text):
            self.started = True
            if token.kind == "marker":
                self.complete = self.complete or token.name == "</TASK>"
                self._marker(token.name)
            elif token.kind == "address":
                self.address_only += 1
            else:
                self._frame(token)
        if len(self.frames) > 512:
            self._finish()

    def _frame(self, token: Token) -> None:
        self.arm_caller = Token("frame", token.caller) if token.caller else None
        self.frames.append(Frame(token.name, token.module, token.reliable, self.section,
                                 token.offset, token.trap))

    def _finish(self) -> None:
        if self.arm_caller is not None:
            self.frames.append(Frame(self.arm_caller.name, None, True, self.section))
            self.arm_caller = None
        self.done = True

    def _marker(self, marker: str) -> None:
        if marker in ("<EOI>", "</IRQ>", "<EOE>", "</NMI>"):
            # Frames seen before the closing bracket ran on that stack even if
            # the opening bracket was cut from the paste.
            closed = "nmi" if marker == "</NMI>" else "irq"
            self.frames = [f if f.section else Frame(f.name, f.module, f.reliable, closed,
                                                     f.offset, f.trap) for f in self.frames]
            self.section = "task"
        elif marker == "<IRQ>":
            self.section = "irq"
        elif marker == "<NMI>":
            self.section = "nmi"
        elif marker in ("<TASK>", "</TASK>"):
            self.section = "task"
        else:
            self.section = "exception"


def _free_area(m: re.Match[str]) -> FreeArea | None:
    sizes = [(int(count), int(kb)) for count, kb in _BLOCK_RE.findall(m.group("body"))]
    if not sizes or sizes[0][1] == 0:
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
    if "kB" not in text and "pages RAM" not in text:
        return
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


@dataclass
class _Open:
    report: Report
    trace: _TraceReader = field(default_factory=_TraceReader)
    lines: int = 0
    last: int = 0
    done: bool = False

    def feed(self, line: LogLine) -> None:
        report, text = self.report, line.text.strip()
        self.lines += 1
        self.last = line.number
        if report.pid is None and _read_identity(report, text):
            return
        if report.cpuset is None and "mems_allowed=" in text and \
                (m := _CPUSET_LINE_RE.search(text)):
            report.cpuset, report.mems_allowed = m.group("cpuset"), m.group("mems")
            return
        self.trace.feed(text)
        _read_memory(report, text)

    def finish(self) -> Report:
        if not self.trace.done:
            self.trace._finish()
        report, trace = self.report, self.trace
        report.frames, report.address_only = trace.frames, trace.address_only
        report.trace_cut = bool(trace.frames) and not trace.complete
        if report.kernel is None and report.pid is None:
            report.problems.append("no 'CPU: ... Comm:' / 'Pid: ..., comm:' line: pid and kernel "
                                   "version unknown")
        if not trace.frames:
            report.problems.append("call trace has addresses only: context and requester not "
                                   "read" if trace.address_only else
                                   "no call trace: context and requester cannot be read")
        if not report.free_areas:
            report.problems.append("no per-zone free lists (Mem-Info part missing)")
        elif any(a.total_kb is None for a in report.free_areas):
            report.problems.append("a free-area line is truncated")
        self.done = True
        return report


class _Router:
    """Send each line to the report its printk caller id belongs to, so two CPUs'
    interleaved reports stay apart ([T1234] / [C3]); reports come out in input order."""

    def __init__(self) -> None:
        self.open: list[_Open] = []          # in header order, finished ones until released
        # v2.6.28-v3.x vmalloc printed "vmalloc: allocation failure, allocated N of M bytes"
        # (or ": N bytes") on its own line, then warn_alloc_failed()'s page report.
        self.vmalloc_line: LogLine | None = None

    def _target(self, caller: str | None) -> _Open | None:
        live = [o for o in self.open if not o.done]
        if caller is not None:
            for o in reversed(live):
                if o.report.caller == caller:
                    return o
        return next((o for o in reversed(live) if caller is None or o.report.caller is None),
                    None)

    def line(self, line: LogLine) -> Iterator[Report]:
        text = line.text
        found = find_header(text) if ("failure" in text or "vmalloc" in text) else None
        if found:
            report = new_report(found, line)
            pending = self.vmalloc_line
            if report.kind == "page" and pending and line.number - pending.number <= 2:
                report.detail = pending.text.strip()
            self.vmalloc_line = None
            self._start(report, line)
        else:
            if line.text.startswith(("vmalloc: allocation failure", "vmap allocation")):
                self.vmalloc_line = line
            target = self._target(line.caller)
            if target is not None and target.lines < _MAX_BLOCK_LINES:
                target.feed(line)
            for o in self.open:
                if not o.done and line.number - o.last > _MAX_BLOCK_LINES:
                    o.finish()
        if len([o for o in self.open if not o.done]) > _MAX_OPEN:
            next(o for o in self.open if not o.done).finish()
        yield from self._release()

    def _start(self, report: Report, line: LogLine) -> None:
        for o in self.open:
            if not o.done and (line.caller is None or o.report.caller in (None, line.caller)):
                o.finish()
        self.open.append(_Open(report, last=line.number))

    def _release(self) -> Iterator[Report]:
        while self.open and self.open[0].done:
            yield self.open.pop(0).report

    def close(self) -> Iterator[Report]:
        for o in self.open:
            if not o.done:
                o.finish()
        yield from self._release()


def iter_reports(lines: Iterable[LogLine]) -> Iterator[Report]:
    """Every allocation failure report in a stream of log lines, in input order."""
    router = _Router()
    for line in join_wrapped(lines):
        yield from router.line(line)
    yield from router.close()


def parse_reports(text: str) -> list[Report]:
    """Every allocation failure report in `text`, in input order."""
    return list(iter_reports(iter_log_lines(text.replace("\r\n", "\n").split("\n"))))
