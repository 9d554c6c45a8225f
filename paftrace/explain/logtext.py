"""Kernel log text as pasted by people: strip what syslog, journald and dmesg add.

Handles `[ 123.456]` timestamps, `dmesg -T` dates, printk caller ids
(`[T123]`), `<4>` levels, syslog/journalctl prefixes (`Mar  3 12:00:01 host
kernel: `, ISO dates), rsyslog `#012` escapes, and terminal control bytes
(neutralised so that nothing read from a log can drive the terminal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_PREFIX_RES = [
    re.compile(r"^<\d>"),
    re.compile(r"^(?:[A-Z][a-z]{2}\s+\d{1,2}\s+\d\d:\d\d:\d\d|"
               r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:?\d\d|Z)?)"
               r"\s+\S+\s+kernel:\s?"),
    re.compile(r"^kernel:\s?"),
    re.compile(r"^\[\s*[A-Z][a-z]{2} [A-Z][a-z]{2}\s+\d+ \d\d:\d\d:\d\d \d{4}\]\s?"),
]
_TIMESTAMP_RE = re.compile(r"^\[\s*(\d+\.\d+)\]\s?")
_CALLER_RE = re.compile(r"^\[\s*[TC]\d+\]\s?")


@dataclass(frozen=True)
class LogLine:
    number: int            # 1-based line number in the input
    text: str              # message text, prefixes removed
    timestamp: float | None


def neutralise(text: str) -> str:
    """Replace control characters (ESC, CSI, BEL...) by '?'; keep tabs."""
    return _CONTROL_RE.sub("?", text)


def strip_prefixes(line: str) -> tuple[str, float | None]:
    text = line.strip()
    stamp: float | None = None
    for _ in range(3):  # prefixes nest: "Mar 3 ... kernel: [ 12.3] [T1] msg"
        before = text
        for rx in _PREFIX_RES:
            text = rx.sub("", text)
        m = _TIMESTAMP_RE.match(text)
        if m:
            stamp = float(m.group(1))
            text = text[m.end():]
        text = _CALLER_RE.sub("", text)
        if text == before:
            break
    return text, stamp


def decode_input(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def looks_binary(text: str) -> bool:
    """More than 10 % NULs or replacement/control characters in the first 64 KiB."""
    sample = text[:65536]
    if not sample:
        return False
    bad = sum(1 for ch in sample if ch in "\x00\ufffd" or (ord(ch) < 32 and ch not in "\t\r\n"))
    return bad * 10 > len(sample)


def log_lines(text: str) -> list[LogLine]:
    out: list[LogLine] = []
    # rsyslog escapes embedded newlines of multi-line records as "#012".
    for number, raw in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        for piece in raw.split("#012"):
            body, stamp = strip_prefixes(neutralise(piece))
            out.append(LogLine(number, body, stamp))
    return out
