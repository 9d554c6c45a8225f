"""Renderers of the tracer's output: rich live view, plain text, JSON Lines.

All three receive the same calls (`attached`, `failure`, `event`, `tick`, `finish`)
with the same data; only the presentation differs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

from paftrace.aggregate import FailureAggregator, OrderRates
from paftrace.records import Failure

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Untrusted text (task names can hold escape sequences) made inert."""
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


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
