"""Memory-state renderers: rich panel for the live views, plain text for pipes.

Both take a `MemorySample` (and the previous one, for changes) and show the same
figures as `procfs.report`. Nothing here reads /proc.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from paftrace.procfs.report import PAGE_SIZE, human_bytes, zone_figures
from paftrace.procfs.sampler import MemorySample, ZoneSample

SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[int]) -> str:
    if not values:
        return ""
    lo, hi = min(values), max(values)
    if hi == lo:
        return SPARKS[0] * len(values)
    return "".join(SPARKS[(v - lo) * (len(SPARKS) - 1) // (hi - lo)] for v in values)


def short_count(n: int) -> str:
    """At most four characters, so eleven order columns fit in 80 columns."""
    if n < 1000:
        return str(n)
    if n < 10_000:
        return f"{n // 100 / 10:.1f}k"
    for div, unit in ((1000, "k"), (1_000_000, "M"), (1_000_000_000, "G")):
        if n < div * 1000:
            return f"{n // div}{unit}"
    return f"{n // 1_000_000_000_000}T"


def _order_cell(count: int, change: int | None, trend: Sequence[int], wanted: bool) -> Text:
    cell = Text(short_count(count), style="bold" if wanted else "")
    if change:
        cell.append("▲" if change > 0 else "▼", style="green" if change > 0 else "red")
    if len(trend) > 1:
        cell.append("\n" + sparkline(trend), style="dim")
    return cell


def _free_cell(z: ZoneSample) -> Text:
    """Free pages, coloured by the lowest watermark they are under."""
    if z.info is None:
        return Text("-", style="dim")
    marks, free = z.info.watermarks(), z.info.free
    for name, style in (("min", "bold red"), ("low", "yellow"), ("high", "cyan")):
        if name in marks and free < marks[name]:
            return Text(f"{short_count(free)}<{name}", style=style)
    return Text(short_count(free), style="green")


def buddy_table(sample: MemorySample, order: int, previous: MemorySample | None = None,
                history: Sequence[MemorySample] = ()) -> Table:
    """Free blocks per order (change arrow, trend sparkline) and blocks >= `order`."""
    orders = max((len(z.free) for z in sample.zones), default=0)
    table = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold")
    table.add_column("zone", no_wrap=True)
    for k in range(orders):
        table.add_column(f"o{k}", justify="right", style="bold" if k >= order else "dim")
    table.add_column(f">=o{order}", justify="right")
    for z in sample.zones:
        before = previous.zone(z.node, z.zone) if previous else None
        cells: list[RenderableType] = [Text(f"N{z.node} {z.zone}")]
        for k in range(orders):
            count = z.free[k] if k < len(z.free) else 0
            change = (count - before.free[k]) if before and k < len(before.free) else None
            trend = [s_z.free[k] for s in history
                     if (s_z := s.zone(z.node, z.zone)) and k < len(s_z.free)]
            cells.append(_order_cell(count, change, trend[-4:], k >= order))
        at_or_above = sum(z.free[order:])
        cells.append(Text("NONE", style="bold red") if at_or_above == 0 else
                     Text(short_count(at_or_above), style="green"))
        table.add_row(*cells)
    return table


def watermark_table(sample: MemorySample, order: int) -> Table:
    """Per zone: what is usable for `order`, the kernel's indices, free vs. watermarks."""
    table = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold")
    for name in ("zone", f">=o{order}", "unusable", "fragidx", "free", "min", "low", "high",
                 "boost"):
        table.add_column(name, justify="left" if name == "zone" else "right", no_wrap=True,
                         min_width=max(len(name), 9 if name in ("zone", f">=o{order}") else 4))
    # lowmem_reserve[] gets what is left: it is also in the plain text and JSON
    table.add_column("protection", no_wrap=True, overflow="ellipsis")
    for z in sample.zones:
        fig = zone_figures(z, order)
        marks = z.info.watermarks() if z.info else {}
        table.add_row(
            f"N{z.node} {z.zone}", human_bytes(fig["pages_at_or_above"] * PAGE_SIZE),
            f"{fig['unusable_index']:.3f}", f"{fig['fragmentation_index']:.3f}",
            _free_cell(z),
            *(short_count(marks[k]) if k in marks else "-" for k in ("min", "low", "high",
                                                                      "boost")),
            ",".join(map(str, z.info.protection)) if z.info else "")
    return table


def migratetype_table(sample: MemorySample, order: int) -> Table | None:
    zones = [z for z in sample.zones if z.pagetypes]
    if not zones:
        return None
    types = list(dict.fromkeys(t for z in zones for t in z.pagetypes or {}))
    table = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold",
                  title=f"free blocks >= order {order} / pageblocks, per migratetype",
                  title_justify="left", title_style="dim")
    table.add_column("zone")
    for t in types:
        table.add_column(t, justify="right", style="magenta" if t == "HighAtomic" else "")
    for z in zones:
        row = [f"N{z.node} {z.zone}"]
        for t in types:
            counts = (z.pagetypes or {}).get(t)
            blocks = (z.pageblocks or {}).get(t)
            shown = "?" if blocks is None else str(blocks)
            row.append("-" if counts is None else f"{short_count(sum(counts[order:]))}/{shown}")
        table.add_row(*row)
    return table


def tunables_text(sample: MemorySample) -> Text:
    text = Text("vm: ", style="dim")
    text.append("  ".join(f"{k}={v}" for k, v in sample.tunables.items()))
    return text


def memory_panel(sample: MemorySample, order: int, previous: MemorySample | None = None,
                 history: Sequence[MemorySample] = (), title: str = "memory") -> Panel:
    """The live view's memory panel: buddy lists, watermarks, migratetypes if read."""
    parts: list[RenderableType] = [buddy_table(sample, order, previous, history),
                                   watermark_table(sample, order)]
    mt = migratetype_table(sample, order)
    if mt is not None:
        parts.append(mt)
    parts.append(tunables_text(sample))
    for note in sample.notes:
        parts.append(Text(note, style="yellow"))
    return Panel(Group(*parts), title=f"{title} (order {order})", title_align="left")


def memory_text(sample: MemorySample, order: int, previous: MemorySample | None = None) -> str:
    """Plain text of one sample (one block per sample, for pipes and --plain)."""
    lines = [f"memory at {sample.ts_ns / 1e9:.3f} s (order {order})"]
    for z in sample.zones:
        fig = zone_figures(z, order)
        before = previous.zone(z.node, z.zone) if previous else None
        counts = " ".join(
            f"{c}" + (f"({c - before.free[k]:+d})" if before and k < len(before.free)
                      and c != before.free[k] else "")
            for k, c in enumerate(z.free))
        flag = "  NONE >= order" if fig["blocks_at_or_above"] == 0 else ""
        lines.append(f"  N{z.node} {z.zone:<8} free/order: {counts}")
        lines.append(f"    >=o{order}: {fig['blocks_at_or_above']} blocks "
                     f"({human_bytes(fig['pages_at_or_above'] * PAGE_SIZE)}) of "
                     f"{human_bytes(fig['free_pages'] * PAGE_SIZE)} free; unusable "
                     f"{fig['unusable_index']:.3f} fragidx {fig['fragmentation_index']:.3f}"
                     f"{flag}")
        if z.info is not None:
            marks = z.info.watermarks()
            lines.append(f"    pages free {z.info.free} " + " ".join(
                f"{k} {v}" for k, v in marks.items()) +
                f" protection ({','.join(map(str, z.info.protection))})")
        if z.pagetypes:
            lines.append(f"    >=o{order} by type: " + " ".join(
                f"{t} {sum(c[order:])}" for t, c in z.pagetypes.items()))
    if sample.tunables:
        lines.append("  vm: " + " ".join(f"{k}={v}" for k, v in sample.tunables.items()))
    lines.extend(f"  note: {n}" for n in sample.notes)
    return "\n".join(lines)
