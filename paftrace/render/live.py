"""The rich live view for terminals."""

from __future__ import annotations

import time
from collections import deque

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from paftrace.records import Failure
from paftrace.render import Snapshot, inert, printable
from paftrace.render.frag import fragmenters_panel
from paftrace.render.memory import memory_panel
from paftrace.render.memtext import failure_line as buddy_line
from paftrace.render.plain import (
    cause_text,
    cgroup_text,
    context_label,
    stall_before,
    stall_detail,
    summary_lines,
    wall_clock,
)
from paftrace.render.trends import Trends

SEVERITY_STYLE = {"harmful": "bold red", "expected": "green"}


def _orders_table(s: Snapshot) -> Table:
    table = Table(title="Allocations per order (all orders, always counted in the kernel)",
                  title_justify="left", expand=False, box=None, padding=(0, 1))
    for col in ("order", "attempts/s", "failures/s", "attempts", "failures"):
        table.add_column(col, justify="right")
    for order in sorted(s.orders.totals):
        attempts, failures = s.orders.totals[order]
        a_rate, f_rate = s.orders.rates.get(order, (0.0, 0.0))
        style = "bold red" if failures else ""
        table.add_row(str(order), f"{a_rate:,.0f}", f"{f_rate:,.1f}", f"{attempts:,}",
                      inert(f"{failures:,}", style))
    return table


def _triage_line(s: Snapshot) -> Text:
    c = s.failures.by_class
    text = Text("Failures traced: ")
    text.append(f"{s.failures.total}", style="bold")
    text.append("  harmful ")
    text.append(str(c.get("harmful", 0)), style="bold red")
    text.append("  expected ")
    text.append(str(c.get("expected", 0)), style="green")
    text.append(f"  | silent {c.get('silent', 0)}  reported {c.get('reported', 0)}"
                f"  rate-limited {c.get('rate-limited', 0)}  | ")
    text.append(", ".join(f"{k} {v}" for k, v in s.failures_by_context.items() if v) or
                "no context yet")
    if s.failures.by_cause:
        text.append("  | cause: ")
        text.append(", ".join(f"{k} {v}" for k, v in s.failures.by_cause.most_common()),
                    style="bold")
    return text


def _sites_table(s: Snapshot, now_ns: int) -> Table:
    table = Table(title="Failing call sites", title_justify="left", box=None, padding=(0, 1))
    for col in ("count", "/s", "last", "ord", "gfp", "context", "verdict / cause",
                "blame / cgroup"):
        table.add_column(col, overflow="fold")
    for site in s.failures.top(8):
        f = site.sample
        causes = ", ".join(f"{c} {n}" for c, n in site.causes.most_common(2)) \
            if len(site.causes) > 1 else f.cause
        verdict = inert(f"{f.visibility}/{f.severity}", SEVERITY_STYLE.get(f.severity, ""))
        verdict.append("\n" + causes, style="bold")
        who = inert(f.blame)
        who.append("\n" + printable(cgroup_text(f)), style="dim")
        table.add_row(str(site.count), f"{site.rate(now_ns):.1f}", wall_clock(site.last_ns),
                      str(f.order), inert("|".join(f.gfp_flags)), inert(context_label(f)),
                      verdict, who)
    return table


def _top_stacks(s: Snapshot) -> list[RenderableType]:
    panels: list[RenderableType] = []
    for i, site in enumerate(s.failures.top(3), 1):
        f = site.sample
        body = Text()
        body.append(f"rule: {printable(f.rule)}\n", style="italic")
        body.append(printable(cause_text(f)) + "\n", style="bold")
        body.append(printable(f"cgroup: {cgroup_text(f)}") + "\n")
        for item in (f.cause_evidence or {}).get("advice", [])[:1]:
            body.append(printable(f"advice: {item['text']}") + "\n", style="green")
        if f.buddyinfo:  # the free lists when this call site last failed
            body.append(printable(buddy_line(f.buddyinfo)) + "\n", style="cyan")
        stalled = stall_before(f)
        if stalled:
            body.append(stalled + "\n", style="yellow")
        for frame in f.stack[:14]:
            body.append(printable(frame) + "\n")
        if len(f.stack) > 14:
            body.append(f"... {len(f.stack) - 14} more frames\n", style="dim")
        # A title string would be read as markup: a task named "[/red]" crashed the view.
        panels.append(Panel(body, title=inert(f"#{i} {site.count}x {f.blame}"),
                            title_align="left", expand=False))
    return panels


def _timeline(entries: list[tuple[int, Text, Text, Text]]) -> Table:
    """Failures and the reclaim/compaction stalls around them, in time order."""
    table = Table(title="Timeline: failures and direct reclaim/compaction stalls",
                  title_justify="left", box=None, padding=(0, 1))
    for col in ("time", "what", "task", "detail"):
        table.add_column(col, overflow="fold")
    for ts, what, task, detail in sorted(entries, key=lambda e: e[0])[-8:]:
        table.add_row(wall_clock(ts), what, task, detail)
    return table


def _allocations(s: Snapshot) -> Table:
    note = f", stacks sampled 1 in {s.sample_every}" if s.sample_every else ""
    table = Table(title=f"All allocations (--all{note}; stack counts are estimates)",
                  title_justify="left", box=None, padding=(0, 1))
    for col in ("count", "ord", "gfp", "context", "top requester (est.)"):
        table.add_column(col, overflow="fold")
    for row in s.allocations[:8]:
        ctx = row["context"] + (f":{row['softirq']}" if row["softirq"] else "")
        top = row["stacks"][0] if row["stacks"] else None
        table.add_row(f"{row['count']:,}", str(row["order"]),
                      inert("|".join(row["gfp_flags"])), inert(ctx),
                      inert(f"{top['requester']} (~{top['count']:,.0f})" if top else "-"))
    return table


class LiveRenderer:
    def __init__(self, console: Console | None = None):
        self.console = console or Console()
        self.live = Live(console=self.console, auto_refresh=False, transient=False,
                         vertical_overflow="crop")
        self.header = Text("attaching...")
        self.snapshot: Snapshot | None = None
        self.timeline: deque[tuple[int, Text, Text, Text]] = deque(maxlen=32)
        self._last_draw = 0.0
        self.trends = Trends()
        # The view of a tick, drawn again as failures arrive until the next tick: only
        # the timeline moves between ticks. Counts read from the aggregator between
        # ticks ran ahead of the kernel's per-order counts of the last tick in a storm
        # (15,834 failures traced beside 14,460 counted, in one frame).
        self._parts_of: Snapshot | None = None
        self._parts: tuple[list[RenderableType], list[RenderableType]] = ([], [])

    def attached(self, info: dict) -> None:
        self.header = Text(
            f"paftrace: order {info['order']} on {printable(info['kernel'])}, "
            f"{len(info['probes'])} probes "
            f"attached in {info['startup_s']:.2f}s. Ctrl-C to end.", style="bold")
        self.live.start()
        self._draw()

    def view(self) -> RenderableType:
        s = self.snapshot
        if s is None:
            return self.header
        if self._parts_of is not s:
            self._parts, self._parts_of = self._snapshot_parts(s), s
        before, after = self._parts
        timeline = [_timeline(list(self.timeline))] if self.timeline else []
        return Group(*before, *timeline, *after)

    def _snapshot_parts(self, s: Snapshot) -> tuple[list[RenderableType],
                                                    list[RenderableType]]:
        """What the view shows of one snapshot: the parts above the timeline and below."""
        lost = ", ".join(f"{k} {v}" for k, v in s.stats.items() if v) or "nothing"
        before: list[RenderableType] = [
            self.header, Text(f"{s.elapsed_s:.0f}s elapsed, lost: {lost}",
                              style="red" if lost != "nothing" else "dim"),
            _orders_table(s), _triage_line(s),
        ]
        if s.memory is not None:
            before.append(memory_panel(s.memory, s.order_min))
        before.append(self.trends.render(s.order_min))
        if s.fragmentation is not None and s.fragmentation["fallbacks"]:
            before.append(fragmenters_panel(s.fragmentation))
        if s.failures.total:
            before += [_sites_table(s, time.monotonic_ns()), *_top_stacks(s)]
        return before, [_allocations(s)] if s.allocations else []

    def _draw(self) -> None:
        self.live.update(self.view(), refresh=True)
        self._last_draw = time.monotonic()

    def failure(self, failure: Failure) -> None:
        detail = (f"order {failure.order} {context_label(failure)} {failure.requester or '?'} "
                  f"cause={failure.cause}")
        stalled = stall_before(failure)
        if stalled:
            detail += " " + stalled
        label = f"FAIL x{failure.count}" if failure.count > 1 else "FAIL"
        self.timeline.append((failure.ts_ns, Text(label, SEVERITY_STYLE.get(failure.severity,
                                                                            "")),
                              inert(f"{failure.comm}[{failure.pid}]"), inert(detail)))
        self._maybe_draw()

    def event(self, record: dict) -> None:
        if record.get("type") == "stall":
            self.timeline.append((record["ts_ns"], Text("stall", "yellow"),
                                  inert(f"{record['comm']}[{record['pid']}]"),
                                  inert(stall_detail(record))))
            self._maybe_draw()

    def _maybe_draw(self) -> None:
        if self.live.is_started and time.monotonic() - self._last_draw > 0.25:
            self._draw()  # a storm must not stall polling

    def tick(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.trends.update(snapshot)
        self._draw()

    def finish(self, summary: dict) -> None:
        self.close()
        for line in summary_lines(summary):
            self.console.print(Text(line))

    def close(self) -> None:
        if self.live.is_started:
            self.live.stop()
