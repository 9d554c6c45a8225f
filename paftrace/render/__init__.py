"""Renderers of the tracer's output: rich live view, plain text, JSON Lines.

All three receive the same calls (`attached`, `failure`, `event`, `tick`, `finish`)
with the same data; only the presentation differs.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from paftrace.aggregate import FailureAggregator, OrderRates
from paftrace.records import Failure

if TYPE_CHECKING:
    from rich.text import Text

# C0/C1 controls and the backslash itself (so "\\x1b" typed by someone is not an escaped
# ESC), and any non-ASCII character, looked at more closely in _escape.
_SUSPECT = re.compile(r"[\x00-\x1f\x7f-\x9f\\]|[^\x00-\x7f]")
# Controls, format characters (bidi overrides U+202E, isolates U+2066, zero-width
# U+200B, BOM), lone surrogates, line and paragraph separators: none is drawn as itself.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    if code < 0x80 or unicodedata.category(char) in _HIDDEN_CATEGORIES:
        return (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF
                else f"\\U{code:08x}")
    return char


def printable(text: str) -> str:
    """Untrusted text (task names, symbols, log lines) made inert for a terminal:
    controls, format characters and backslashes are shown as escapes."""
    return _SUSPECT.sub(_escape, text)


def inert(text: str, style: str = "") -> Text:
    """Untrusted text for rich: escaped, and a Text, which never interprets markup."""
    from rich.text import Text  # noqa: PLC0415 - the plain and JSON paths need no rich

    return Text(printable(text), style=style)


@dataclass
class Snapshot:
    """What the view shows at one refresh."""

    elapsed_s: float
    orders: OrderRates
    failures: FailureAggregator
    stats: dict[str, int]
    failures_by_context: dict[str, int]
    order_label: str
    order_min: int = 0
    sample_every: int | None = None
    allocations: list[dict] = field(default_factory=list)
    memory: object | None = None  # paftrace.procfs sample, when available
    fragmentation: dict | None = None  # paftrace.fragmenters.report(), with reclaim tracing


class Renderer(Protocol):
    def attached(self, info: dict) -> None: ...

    def failure(self, failure: Failure) -> None: ...

    def event(self, record: dict) -> None:
        """Another timeline object: a `stall`, or the `buddyinfo` sample a failure cites."""

    def tick(self, snapshot: Snapshot) -> None: ...

    def finish(self, summary: dict) -> None: ...

    def close(self) -> None: ...


def make_renderer(mode: str) -> Renderer:
    if mode == "json":
        from paftrace.render.jsonl import JsonRenderer  # noqa: PLC0415

        return JsonRenderer()
    if mode == "live":
        from paftrace.render.live import LiveRenderer  # noqa: PLC0415

        return LiveRenderer()
    from paftrace.render.plain import PlainRenderer  # noqa: PLC0415

    return PlainRenderer()
