"""Trend lines for the live view: per zone, free blocks >= the watched order; traced
failures per second. Kept from one refresh to the next, so the trend is seen, not
computed. Pure: fed with the view's snapshots, rendered as rich Text (never markup).
"""

from __future__ import annotations

from collections import deque

from rich.text import Text

from paftrace.render import Snapshot
from paftrace.render.memory import short_count, sparkline

POINTS = 40  # refreshes shown (40 s at the default 1 s interval)


class Trends:
    def __init__(self, points: int = POINTS):
        self.points = points
        self.blocks: dict[str, deque[int]] = {}
        self.failures_per_s: deque[float] = deque(maxlen=points)
        self._sample_ts: int | None = None
        self._last: tuple[float, int] | None = None  # (elapsed_s, failures traced)

    def update(self, s: Snapshot) -> None:
        sample = s.memory
        if sample is not None and sample.ts_ns != self._sample_ts:  # type: ignore[attr-defined]
            self._sample_ts = sample.ts_ns  # type: ignore[attr-defined]
            for z in sample.zones:  # type: ignore[attr-defined]
                self.blocks.setdefault(f"N{z.node} {z.zone}", deque(maxlen=self.points)).append(
                    sum(z.free[s.order_min:]))
        if self._last is not None and s.elapsed_s > self._last[0]:
            self.failures_per_s.append((s.failures.total - self._last[1]) /
                                       (s.elapsed_s - self._last[0]))
        self._last = (s.elapsed_s, s.failures.total)

    def render(self, order: int) -> Text:
        text = Text(f"trends, last {self.points} refreshes\n", style="dim italic")
        width = max((len(k) for k in self.blocks), default=0)
        labels = {zone: f"{zone:<{width}}  blocks >= o{order}  " for zone in self.blocks}
        pad = max((len(v) for v in labels.values()), default=0)
        for zone, values in self.blocks.items():
            text.append(labels[zone], style="dim")
            text.append(sparkline(list(values)).ljust(self.points),
                        style="bold red" if values[-1] == 0 else "cyan")
            text.append(f" {short_count(values[-1])}\n")
        rates = list(self.failures_per_s)
        text.append("failures/s".ljust(pad), style="dim")
        # sparkline() takes integers: tenths of a failure per second keep its shape
        text.append(sparkline([round(r * 10) for r in rates]).ljust(self.points),
                    style="bold red" if any(rates) else "green")
        text.append(f" {rates[-1]:.1f}" if rates else " -")
        return text
