"""Find allocation failure reports in log text and read their parts, streaming.

Every report warn_alloc() (mm/page_alloc.c) and its predecessors print:
"failure. order:4, mode:0x20" (2.6.x), "failure: order:4, mode:0x2080020"
(3.x-4.5), "mode:0x...(NAMES)" (4.6+), ", nodemask=..." (4.11+), ",cpuset=...,
mems_allowed=..." on the same line (5.4+) or on their own line (4.14-4.19);
vmalloc's "vmalloc: allocation failure: N bytes, mode:..." (mm/vmalloc.c,
v4.12-v5.12) and "vmalloc error: size N, <reason>, mode:..." (v5.13+), which
carry a size and no order; "vmemmap alloc failure: order:N" (mm/sparse-vmemmap.c).
The mask is printed "%#x" (4.6+), "0x%x" before: always hexadecimal.

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
from paftrace.explain.logtext import LogLine, iter_log_lines
from paftrace.explain.report import Frame, FreeArea, Report, ZoneState

_PAGE_KEY = "page allocation failure"
_OTHER_KEYS = ("vmalloc error:", "vmalloc: allocation failure", "vmemmap alloc failure")
_HEAD_LIMIT = 2048   # a header's fields are within this many characters of its keyword
# "mode:%#x(%pGg)" and what follows (nodemask=, cpuset=, mems_allowed=)
_MASK_TAIL = (r"\s{0,4}mode:\s{0,4}(?P<mode>[^\s,(]{0,32})(?:\((?P<names>[^)]{0,1024})\))?"
              r"(?P<rest>.{0,2048})")
_PAGE_RE = re.compile(r"page allocation failure(?P<sep>[.:])?\s{0,4}"
                      r"order:\s{0,4}(?P<order>[^,\s]{0,32}),?" + _MASK_TAIL)
_OTHER_RE = re.compile(r"(?P<detail>(?P<kind>vmalloc|vmemmap)[^\n]{0,1024}?),?" + _MASK_TAIL)
_CPU_LINE_RE = re.compile(r"CPU:\s*\d+\s+(?:UID:\s*\d+\s+)?PID:\s*(?P<pid>\d+)\s+Comm:\s*"
                          r"(?P<comm>.{1,16}?)\s+(?:Kdump|Not tainted|Tainted|\d+\.\d+)")
_PID_LINE_RE = re.compile(r"Pid:\s*(?P<pid>\d+),\s*comm:\s*(?P<comm>.{1,16}?)\s+"
                          r"(?:veid:\s*\d+\s+)?(?:Not tainted|Tainted|\d+\.\d+)")
_VERSION_RE = re.compile(r"\s(?P<version>\d+\.\d+(?:\.\d+)?[^\s#]{0,64})\s+#\d")
_CPUSET_LINE_RE = re.compile(r"cpuset=(?P<cpuset>\S{1,512}?)\s+mems_allowed=(?P<mems>\S{1,512})")
_TRACE_START_RE = re.compile(r"^(?:Call Trace|Call trace|Backtrace|Stack trace):?\s*", re.I)
_TRACE_END_RE = re.compile(r"Mem-Info|Mem-info|invoked oom-killer|---\[ end trace|"
                           r"Last Breaking-Event-Address|Instruction dump")
_FREE_AREA_RE = re.compile(r"^(?:Node\s+(?P<node>\d+)\s+)?(?P<zone>[A-Za-z]\w{0,31}):\s+"
                           r"(?P<body>(?:\d+\*\d+kB[^=]{0,4096})?)=\s*(?P<total>\d+)kB")
_BLOCK_RE = re.compile(r"(\d+)\*(\d+)kB")
_FRAGMENT_RE = re.compile(r"^(?:Node \d+ ?|\w+: ?|\d+\*\d+kB ?|\([A-Z]+\) ?|= ?\d+kB ?)$")
_ZONE_RE = re.compile(r"^Node\s+(?P<node>\d+)\s+(?P<zone>\w+)\s+free:(?P<free>\d+)kB\s+"
                      r"(?:boost:\d+kB\s+)?min:(?P<min>\d+)kB\s+low:(?P<low>\d+)kB\s+"
                      r"high:(?P<high>\d+)kB")
_MANAGED_RE = re.compile(r"managed:(\d+)kB")
_RAM_RE = re.compile(r"^(\d+) pages RAM")
_CONTINUATION_RE = re.compile(r"^(?:mode:|nodemask=|cpuset=|mems_allowed=|\(GFP|,\s*mode:|"
                              r"\+0x[0-9a-fA-F]+/0x|\[[\w-]+\]\)?\s*(?:from\b|$)|"
                              r"\(unreliable\)|from\s)")
_HEADER_PART_RE = re.compile(r"(?:page allocation failure[.:]?|vmalloc error:|vmalloc: allocation"
                             r" failure:?)(?!.{0,2048}mode:)")
# A header cut by a mail client before its keyword was complete.
_HEADER_START_RE = re.compile(r"(?:\bpage|page allocation|vmalloc|vmalloc:|vmalloc: allocation|"
                              r"vmalloc error:|vmemmap alloc)\s*$")
_MAX_BLOCK_LINES = 4000
_MAX_JOINS, _MAX_JOINED = 8, 4096   # a wrapped record is a few lines, never a whole file
_MAX_OPEN = 64          # reports of different printk callers open at once


def _header(text: str) -> tuple[str, re.Match[str]] | None:
    """Linear: locate the keyword with str.find, then match bounded fields there."""
    at = text.find(_PAGE_KEY)
    if at >= 0:
        m = _PAGE_RE.match(text, at, at + _HEAD_LIMIT)
        return (text[:at], m) if m else None
    for key in _OTHER_KEYS:
        at = text.find(key)
        if at >= 0:
            m = _OTHER_RE.match(text, at, at + _HEAD_LIMIT)
            return (text[:at], m) if m else None
    return None


def parse_mask(text: str) -> int | None:
    """The mask as the kernel printed it: "%#x" / "0x%x" / "%x" -> always hex
    ("mode:0123" is 0x123, "mode:08" is 0x8); None when it is not a number."""
    digits = text[2:] if text[:2].lower() == "0x" else text
    if not digits or len(digits) > 16 or not re.fullmatch(r"[0-9a-fA-F]+", digits):
        return None
    return int(digits, 16)


def _balance(text: str) -> bool:
    return ("(" in text and text.count("(") > text.count(")")) or \
        ("[" in text and text.count("[") > text.count("]"))


def _frame_in(text: str) -> bool:
    return any(t.kind == "frame" for t in tokens(text))


_LINE_START_RE = re.compile(r"^(?:CPU:|Pid:|Call [Tt]race|Backtrace|Hardware name|Mem-[Ii]nfo|"
                            r"Node \d|Workqueue:|Stack:|Code:|RIP:|NIP|LR|Exception stack|"
                            r"Modules linked|lowmem_reserve|\d+ pages|\d+ total|Free swap|"
                            r"Total swap|"
                            r"active_anon|[A-Za-z]\w*: \d+\*\d+kB|\w+ per-cpu|-+\[|\S+ cpuset=)")


def _self_standing(text: str) -> bool:
    return bool(_LINE_START_RE.match(text) or tokens(text) or _header(text)
                or "failure" in text or "vmalloc" in text)


def _keyword_at(text: str) -> int:
    found = [at for key in (_PAGE_KEY, *_OTHER_KEYS) if (at := text.find(key)) >= 0]
    return min(found, default=-1)


def _cut_header(before: str, text: str) -> bool:
    """`before` holds the start of a header whose fields (or keyword) go on in `text`."""
    if "page" not in before and "vm" not in before:
        return False
    if not (_HEADER_PART_RE.search(before) or _HEADER_START_RE.search(before)):
        return False
    at = _keyword_at(before + " " + text)
    return 0 <= at < len(before) and _header(before) is None and _header(text) is None


_NODE_RE = re.compile(r"^Node \d+\b")
_MODE_NEXT_RE = re.compile(r"^,?\s*(?:mode:|nodemask=|cpuset=)")
_IDENTITY_RE = re.compile(r"(?:CPU:.*Comm:|Pid:.*comm:)")
_VERSION_NEXT_RE = re.compile(r"^#\d|\d+\.\d+\S*\s+#\d")


def _fragment(before: str, text: str) -> bool:
    """A free-area line that syslog split into one record per pr_cont() fragment."""
    return bool(before.startswith("Node") and _NODE_RE.match(before)
                and "kB" not in before.split()[-1:] and "=" not in before
                and "free:" not in before and "active" not in before and _FRAGMENT_RE.match(text))


def _continues(prev: LogLine, line: LogLine) -> bool:
    """Is `line` the rest of `prev`, cut by a mail client, a terminal or syslog?"""
    text, before = line.text.strip(), prev.text
    if line.caller and prev.caller and line.caller != prev.caller:
        return False
    if not before and prev.prefixed and text and not line.prefixed:
        return True     # "... kernel:" alone, the message wrapped onto the next line
    if not text or not before:
        return False
    if line.prefixed:
        # A record of its own: only pr_cont() fragments that syslog logged one per line.
        return _fragment(before, text) or bool(_MODE_NEXT_RE.match(text)
                                               and _cut_header(before, text))
    if _balance(before) or _CONTINUATION_RE.match(text) or _cut_header(before, text):
        return True
    if prev.prefixed and not (text.startswith("#") and not text[1:2].isdigit()) \
            and not _self_standing(text) and not tokens(before):
        return True     # the rest of a prefixed record, wrapped without its prefix
    if before.endswith((" from", "]", " ?", ",")) and _frame_in(before + " " + text) \
            and not _frame_in(before):
        return True
    if "omm:" in before and _IDENTITY_RE.search(before) and "#" not in before \
            and _VERSION_NEXT_RE.search(text):
        return True
    return _fragment(before, text)


def join_wrapped(lines: Iterable[LogLine]) -> Iterator[LogLine]:
    """Re-join lines wrapped by mail clients/terminals (a header with `mode:` on the next
    line, a frame cut inside its brackets, a CPU line cut before the version) and
    free-area lines that syslog split into one record per pr_cont() fragment."""
    prev: LogLine | None = None
    joins = 0
    for line in lines:
        if prev is not None and joins < _MAX_JOINS and len(prev.text) < _MAX_JOINED \
                and _continues(prev, line):
            joins += 1
            sep = "" if prev.text.endswith((" ", ",")) or line.text.startswith(("+", ",")) else " "
            prev = LogLine(prev.number, prev.text + sep + line.text.strip(), prev.timestamp,
                           prev.caller, prev.prefixed)
            continue
        if prev is not None:
            yield prev
        prev, joins = line, 0
    if prev is not None:
        yield prev


def _new_report(found: tuple[str, re.Match[str]], line: LogLine) -> Report:
    before, match = found
    groups = match.groupdict()
    is_page = "order" in groups
    kind = "page" if is_page else groups["kind"]
    detail = None if is_page else groups["detail"].strip().rstrip(",")
    problems: list[str] = []
    order: int | None = None
    if is_page:
        order_text = groups["order"].rstrip(",")
        order = int(order_text) if order_text.isdigit() and len(order_text) < 6 else None
        if order is None:
            problems.append(f"order '{order_text}' is not a number")
    elif detail and (m := re.search(r"order:\s*(\d{1,5})", detail)):
        order = int(m.group(1))
    mode = parse_mask(groups["mode"])
    if mode is None:
        problems.append(f"mode '{groups['mode']}' is not a hexadecimal mask: flags not decoded")
    comm = before.strip().rstrip(":").strip()
    comm = comm if 0 < len(comm) <= 40 else None
    report = Report(kind=kind, line=line.number, header=line.text.strip()[:_HEAD_LIMIT],
                    mode=mode, order=order, comm=comm, timestamp=line.timestamp,
                    detail=detail, period_separator=bool(is_page and groups.get("sep") == "."),
                    problems=problems, caller=line.caller)
    if groups.get("names") is not None:
        report.printed_flags = [n for n in groups["names"].split("|") if n]
    rest = groups.get("rest") or ""
    if m := re.search(r"nodemask=(\(null\)|[\d,-]{1,256})", rest):
        report.nodemask = m.group(1)
    if m := re.search(r"cpuset=([^,\s]{1,512})", rest):
        report.cpuset = m.group(1)
    if m := re.search(r"mems_allowed=([\d,-]{1,256})", rest):
        report.mems_allowed = m.group(1)
    return report


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

    def feed(self, text: str) -> None:
        if self.done:
            return
        if m := _TRACE_START_RE.match(text):
            if self.frames or self.address_only:
                self._finish()
                return
            self.started = True
            text = text[m.end():]
            if not text:
                return
        if self.started and _TRACE_END_RE.search(text):
            self._finish()
            return
        for token in tokens(text):
            self.started = True
            if token.kind == "marker":
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
        found = _header(line.text) if ("failure" in line.text or "vmalloc" in line.text) else None
        if found:
            report = _new_report(found, line)
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
