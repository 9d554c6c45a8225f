"""Lines that belong together again: a header with `mode:` on the next line, a frame cut
inside its brackets, a CPU line cut before the version (mail clients, terminals), a
record whose log prefix stayed on the line before, and free-area lines that syslog split
into one record per pr_cont() fragment. Joins are capped, so a hostile input cannot make
one line grow without bound.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from paftrace.explain.frames import tokens
from paftrace.explain.headers import OTHER_KEYS, PAGE_KEY, find_header
from paftrace.explain.logtext import LogLine

_FRAGMENT_RE = re.compile(r"^(?:Node \d+ ?|\w+: ?|\d+\*\d+kB ?|\([A-Z]+\) ?|= ?\d+kB ?)$")
_CONTINUATION_RE = re.compile(r"^(?:mode:|nodemask=|cpuset=|mems_allowed=|\(GFP|,\s*mode:|"
                              r"\+0x[0-9a-fA-F]+/0x|\[[\w-]+\]\)?\s*(?:from\b|$)|"
                              r"\(unreliable\)|from\s)")
_HEADER_PART_RE = re.compile(r"(?:page allocation failure[.:]?|vmalloc error:|vmalloc: allocation"
                             r" failure:?)(?!.{0,2048}mode:)")
# A header cut by a mail client before its keyword was complete.
_HEADER_START_RE = re.compile(r"(?:\bpage|page allocation|vmalloc|vmalloc:|vmalloc: allocation|"
                              r"vmalloc error:|vmemmap alloc)\s*$")
_MAX_JOINS, _MAX_JOINED = 8, 4096   # a wrapped record is a few lines, never a whole file


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
    return bool(_LINE_START_RE.match(text) or tokens(text) or find_header(text)
                or "failure" in text or "vmalloc" in text)


def _keyword_at(text: str) -> int:
    found = [at for key in (PAGE_KEY, *OTHER_KEYS) if (at := text.find(key)) >= 0]
    return min(found, default=-1)


def _cut_header(before: str, text: str, logged: bool = False) -> bool:
    """`before` holds the start of a header whose fields (or keyword) go on in `text`,
    or only the task name ("comm:", of a log record or followed by a cut header) with the
    header's keyword starting `text`."""
    if before.endswith(":") and len(before) <= 42 and _keyword_at(text) == 0:
        return logged or find_header(text) is None
    if "page" not in before and "vm" not in before:
        return False
    if not (_HEADER_PART_RE.search(before) or _HEADER_START_RE.search(before)):
        return False
    at = _keyword_at(before + " " + text)
    return 0 <= at < len(before) and find_header(before) is None and find_header(text) is None


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
    if _balance(before) or _CONTINUATION_RE.match(text) or \
            _cut_header(before, text, prev.prefixed):
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
