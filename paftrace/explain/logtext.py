"""Kernel log text as pasted by people: strip what syslog, journald, dmesg,
Android loggers and mail clients add, line by line (streaming).

Order matters and is fixed: terminal colour sequences first (`dmesg
--color=always`, a journal copied from a terminal: ESC must not become '?'
before the prefix after it is stripped), then control characters are
neutralised (nothing read from a log may drive the terminal), then mail
quoting (`> `, `>>> `, `| `), then the log prefixes, which nest:
`Mar  3 12:00:01 host kernel: [ 12.3][ T1] msg`.

Every pattern here is anchored and bounded, so one line costs time linear in
its length; lines are read with a length cap, so memory does not grow with
the input (issue 12, items 4-6).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

# A kernel record is at most ~1 KiB (PRINTK_MESSAGE_MAX / LOG_LINE_MAX); pastes join a
# few. Longer lines are cut: their tail cannot be part of a report we can read.
MAX_LINE_CHARS = 16384
# ECMA-48 CSI (ESC [ params intermediates final: SGR colours, cursor moves) and OSC
# (ESC ] ... BEL | ESC \, window titles, hyperlinks), plus 8-bit CSI (0x9b).
_ANSI_RE = re.compile(r"(?:\x1b\[|\x9b)[0-?]{0,64}[ -/]{0,16}[@-~]"
                      r"|\x1b\][^\x07\x1b]{0,4096}(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Mail quoting: "> ", ">> ", "> > ", ">>> " (Outlook/lore), "| " (some clients, GitHub).
_QUOTE_RE = re.compile(r"^[ \t]{0,4}(?:[>|][ \t]?){1,12}")
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec|[A-Z][a-z]{2})"
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_PREFIX_RES = [
    # printk level: "<4>" (dmesg -r, Android last_kmsg), "<4>[" counted below too.
    re.compile(r"^<\d{1,3}>"),
    # syslog / journalctl short / short-precise / short-iso / logread (OpenWrt: with the
    # year and a "kern.warn" facility.level), with or without a host, then "kernel:".
    re.compile(r"^(?:" + _DAY + r"\s+)?(?:" + _MONTH + r"\s+\d{1,2}\s+\d\d:\d\d:\d\d(?:\.\d{1,9})?"
               r"(?:\s+\d{4})?|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?"
               r"(?:[+-]\d\d:?\d\d|Z)?)"
               r"(?:\s+[\w.@-]{1,255}){0,2}?\s+(?:kern\.\w{1,10}\s+)?kernel(?:\[\d{1,10}\])?:\s?"),
    re.compile(r"^(?:kern\.\w{1,10}\s+)?kernel:\s?"),
    # dmesg -T / --ctime: "[Mon Apr 20 15:08:07 2020]"
    re.compile(r"^\[\s*" + _DAY + r" " + _MONTH + r"\s+\d{1,2} \d\d:\d\d:\d\d \d{4}\]\s?"),
]
# journalctl -o short-monotonic: "[  123.456789] host kernel: msg"
_HOST_KERNEL_RE = re.compile(r"^[\w.@-]{1,64}\s+kernel:\s?")
_TIMESTAMP_RE = re.compile(r"^\[\s*(\d{1,12}\.\d{1,9})(?:@\d{1,4})?\]\s?")
# printk caller id (CONFIG_PRINTK_CALLER, v5.1+): "[ T1234]" from a task, "[  C3]" from
# interrupt context on CPU 3 (kernel/printk/printk.c printk_caller_id(): in_task() ?
# T<pid> : C<cpu>).
_CALLER_RE = re.compile(r"^\[\s{0,8}(?P<id>[TC]\d{1,10})\]\s?")
# Vendor/Android prefixes after the timestamp: Samsung "[1:  kworker/1:2:  123]",
# MediaTek "(1)[123:kworker/1:2]", Qualcomm/Android "[C3]"/"[ cpu3]"/"[3]".
_VENDOR_RES = [
    re.compile(r"^\[\s{0,4}\d{1,4}:\s{0,16}[^\]]{1,64}?:\s{0,8}\d{1,10}\]\s?"),
    re.compile(r"^\(\d{1,4}\)\[\d{1,10}:[^\]]{1,64}\]\s?"),
    re.compile(r"^\[\s{0,4}(?:cpu|CPU|c|C)?\d{1,4}\]\s?"),
]


@dataclass(frozen=True)
class LogLine:
    number: int            # 1-based line number in the input
    text: str              # message text, prefixes removed
    timestamp: float | None
    caller: str | None = None   # printk caller id ("T1234" task, "C3" interrupt on CPU 3)
    prefixed: bool = False      # the line carried a log prefix (timestamp, syslog, level)


def strip_ansi(text: str) -> str:
    return _ANSI_RE.sub("", text)


def neutralise(text: str) -> str:
    """Replace control characters (ESC, CSI, BEL...) by '?'; keep tabs."""
    return _CONTROL_RE.sub("?", text)


def _strip_once(text: str) -> tuple[str, float | None, str | None]:
    stamp = caller = None
    first = text[:1]
    if first == "<":
        text = _PREFIX_RES[0].sub("", text, count=1).lstrip()
        first = text[:1]
    if first != "[" and first not in "> |":
        for rx in _PREFIX_RES[1:3]:
            text = rx.sub("", text, count=1).lstrip()
    if text[:1] in ">|":
        text = _QUOTE_RE.sub("", text, count=1)   # a quoted paste inside a log, or the reverse
    if text[:1] != "[":
        return text, stamp, caller
    text = _PREFIX_RES[3].sub("", text, count=1).lstrip()
    if m := _TIMESTAMP_RE.match(text):
        stamp, text = float(m.group(1)), text[m.end():].lstrip()
        text = _HOST_KERNEL_RE.sub("", text, count=1)
        if m := _CALLER_RE.match(text):
            caller, text = m.group("id"), text[m.end():]
        else:
            for rx in _VENDOR_RES:
                if m := rx.match(text):
                    text = text[m.end():]
                    break
    elif m := _CALLER_RE.match(text):
        caller, text = m.group("id"), text[m.end():]
    return text, stamp, caller


def strip_prefixes(line: str) -> tuple[str, float | None, str | None]:
    """Message text, timestamp and caller id of one line ('prefixes nest')."""
    text = (_QUOTE_RE.sub("", line, count=1) if line.lstrip()[:1] in ">|" else line).strip()
    stamp: float | None = None
    caller: str | None = None
    for _ in range(3):
        before = text
        text, s, c = _strip_once(text)
        stamp = s if s is not None else stamp
        caller = c or caller
        if text == before:
            break
    return text, stamp, caller


def decode_input(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def looks_binary(text: str) -> bool:
    """More than 10 % NULs or replacement/control characters in the first 64 KiB."""
    sample = strip_ansi(text[:65536])
    if not sample:
        return False
    bad = sum(1 for ch in sample if ch in "\x00\ufffd" or (ord(ch) < 32 and ch not in "\t\r\n"))
    return bad * 10 > len(sample)


def clean_line(number: int, raw: str) -> Iterator[LogLine]:
    """One physical input line -> log lines (rsyslog writes embedded newlines as '#012')."""
    raw = raw[:MAX_LINE_CHARS].rstrip("\r\n")
    for piece in raw.split("#012") if "#012" in raw else (raw,):
        if "\x1b" in piece or "\x9b" in piece:
            piece = strip_ansi(piece)
        stripped = piece.strip()
        if stripped[:1] in ">|":
            stripped = _QUOTE_RE.sub("", stripped, count=1).strip()
        if not stripped.isprintable():
            stripped = neutralise(stripped)
        body, stamp, caller = strip_prefixes(stripped)
        yield LogLine(number, body, stamp, caller, prefixed=body != stripped)


def iter_log_lines(lines: Iterable[str]) -> Iterator[LogLine]:
    for number, raw in enumerate(lines, start=1):
        yield from clean_line(number, raw)


def log_lines(text: str) -> list[LogLine]:
    return list(iter_log_lines(text.replace("\r\n", "\n").split("\n")))


def read_text_lines(stream: IO[bytes], head: bytes = b"",
                    chunk: int = MAX_LINE_CHARS) -> Iterator[str]:
    """Decoded lines of `head` (bytes already read) then of a binary stream, each at most
    `chunk` bytes kept: the rest of an over-long line is read and dropped, so memory
    stays bounded for any input."""
    pending = b""
    for line in io.BytesIO(head):
        if line.endswith(b"\n"):
            yield decode_input(line[:chunk])
        else:
            pending = line[:chunk]
    while True:
        raw = stream.readline(chunk)
        ended = not raw or raw.endswith(b"\n")
        line, pending = (pending + raw)[:chunk] if pending else raw, b""
        if not line:
            return
        if not ended:
            while (more := stream.readline(chunk)) and not more.endswith(b"\n"):
                pass
        yield decode_input(line)
