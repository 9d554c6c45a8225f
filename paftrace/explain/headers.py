"""The header line of every report warn_alloc() and its predecessors print.

"failure. order:4, mode:0x20" (2.6.x), "failure: order:4, mode:0x2080020" (3.x-4.5),
"mode:0x...(NAMES)" (4.6+), ", nodemask=..." (4.11+), ",cpuset=..., mems_allowed=..."
(5.4+); vmalloc's "vmalloc: allocation failure: N bytes, mode:..." (mm/vmalloc.c,
v4.12-v5.12; ", allocated N of M bytes" v4.9-v4.11) and "vmalloc error: size N,
<reason>, mode:..." (v5.13+), which carry a size and no order; "vmemmap alloc failure:
order:N" (mm/sparse-vmemmap.c). The mask is printed "%#x" (4.6+), "0x%x" before: always
hexadecimal. Matching is linear: the keyword is found with str.find, then fields of
bounded length are matched there (issue 12 item 4).
"""

from __future__ import annotations

import re

from paftrace.explain.logtext import LogLine
from paftrace.explain.report import Report

PAGE_KEY = "page allocation failure"
OTHER_KEYS = ("vmalloc error:", "vmalloc: allocation failure", "vmemmap alloc failure")
HEAD_LIMIT = 2048   # a header's fields are within this many characters of its keyword
# "mode:%#x(%pGg)" and what follows (nodemask=, cpuset=, mems_allowed=)
_MASK_TAIL = (r"\s{0,4}mode:\s{0,4}(?P<mode>[^\s,(]{0,32})(?:\((?P<names>[^)]{0,1024})\))?"
              r"(?P<rest>.{0,2048})")
_PAGE_RE = re.compile(r"page allocation failure(?P<sep>[.:])?\s{0,4}"
                      r"order:\s{0,4}(?P<order>[^,\s]{0,32}),?" + _MASK_TAIL)
_OTHER_RE = re.compile(r"(?P<detail>(?P<kind>vmalloc|vmemmap)[^\n]{0,1024}?),?" + _MASK_TAIL)

def find_header(text: str) -> tuple[str, re.Match[str]] | None:
    """Linear: locate the keyword with str.find, then match bounded fields there."""
    at = text.find(PAGE_KEY)
    if at >= 0:
        m = _PAGE_RE.match(text, at, at + HEAD_LIMIT)
        return (text[:at], m) if m else None
    for key in OTHER_KEYS:
        at = text.find(key)
        if at >= 0:
            m = _OTHER_RE.match(text, at, at + HEAD_LIMIT)
            return (text[:at], m) if m else None
    return None


def parse_printed_mask(text: str) -> int | None:
    """The mask as the kernel printed it: "%#x" / "0x%x" / "%x" -> always hex
    ("mode:0123" is 0x123, "mode:08" is 0x8); None when it is not a number."""
    digits = text[2:] if text[:2].lower() == "0x" else text
    if not digits or len(digits) > 16 or not re.fullmatch(r"[0-9a-fA-F]+", digits):
        return None
    return int(digits, 16)


def new_report(found: tuple[str, re.Match[str]], line: LogLine) -> Report:
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
    mode = parse_printed_mask(groups["mode"])
    if mode is None:
        problems.append(f"mode '{groups['mode']}' is not a hexadecimal mask: flags not decoded")
    comm = before.strip().rstrip(":").strip()
    comm = comm if 0 < len(comm) <= 40 else None
    report = Report(kind=kind, line=line.number, header=line.text.strip()[:HEAD_LIMIT],
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
