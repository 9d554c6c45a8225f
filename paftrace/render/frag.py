"""The fragmenters view: how the zones moved and who fragmented them.

One text form (`fragmenter_lines`) serves the plain summary and the `frag` command's
plain output; `fragmenters_panel` is the live view's panel. Call sites, task names
and symbols are data: they reach rich only as Text, made printable first.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from paftrace.render import inert, printable


def site_label(site: dict) -> str:
    est = "~" if site["estimated"] else ""
    return (f"{est}{site['share']:.0%} {site['site']} ({site['comm']}): "
            f"{est}{site['fragmenting']:,.0f} fragmenting of {est}{site['events']:,.0f} "
            f"fallbacks, {', '.join(f'{k} {v:,.0f}' for k, v in site['pairs'].items())}")


def fragmenter_lines(section: dict | None, top: int = 5) -> list[str]:
    """Plain-text lines of a summary's `fragmenters` section (already printable)."""
    if not section:
        return []
    lines = [f"  fragmentation (order {section['order']}): {section['fallbacks']:,} fallbacks, "
             f"{section['fragmenting']:,} fragmenting, {section['steals']:,} pageblocks "
             f"claimed"]
    lines += [f"    {printable(line)}" for line in section["headline"]]
    for site in section["sites"][:top]:
        lines.append(f"    {printable(site_label(site))}")
    for zone, events in section["compaction"].items():
        told = "; ".join(f"{event} " + ", ".join(f"{k} {v}" for k, v in results.items())
                         for event, results in events.items())
        lines.append(f"    compaction {zone}: {told}")
    lines += [f"    advice: {printable(a)}" for a in section["advice"]]
    if section["stacks_estimated"]:
        lines.append("    (call-site numbers are estimates: stacks are sampled in the kernel)")
    return lines


def fragmenters_panel(section: dict, top: int = 5) -> RenderableType:
    """The live view's "fragmenters" panel."""
    head = Text()
    for line in section["headline"]:
        head.append(printable(line) + "\n")
    table = Table(box=None, padding=(0, 1), show_edge=False)
    for col, justify in (("share", "right"), ("fragmenting", "right"), ("fallbacks", "right"),
                         ("call site (task)", "left"), ("class", "left")):
        table.add_column(col, justify=justify, overflow="fold")
    for site in section["sites"][:top]:
        est = "~" if site["estimated"] else ""
        table.add_row(f"{site['share']:.0%}", f"{est}{site['fragmenting']:,.0f}",
                      f"{est}{site['events']:,.0f}",
                      inert(f"{site['site']} ({site['comm']})"), inert(site["class"] or "-"))
    parts: list[RenderableType] = [head]
    if section["sites"]:
        parts.append(table)
    for advice in section["advice"][:2]:
        parts.append(inert(advice, "yellow"))
    title = (f"Fragmenters: {section['fragmenting']:,} fragmenting of "
             f"{section['fallbacks']:,} migratetype fallbacks")
    return Panel(Group(*parts), title=Text(title), title_align="left", expand=False)


def pageblock_table(section: dict) -> Table:
    """Pageblocks per migratetype and zone: first sample -> now."""
    table = Table(title="Pageblocks per migratetype (first -> now; /proc/pagetypeinfo)",
                  title_justify="left", box=None, padding=(0, 1))
    zones = [z for z in section["zones"] if z["pageblocks"]]
    types = list(dict.fromkeys(t for z in zones for t in z["pageblocks"]))
    table.add_column("zone")
    for name in types:
        table.add_column(name, justify="right")
    for z in zones:
        cells = []
        for name in types:
            first, now = z["pageblocks"].get(name, [0, 0])
            cells.append(Text(f"{first} -> {now}" if first != now else str(now),
                              style="bold" if now > first and name != "Movable" else ""))
        table.add_row(f"node {z['node']} {z['zone']}", *cells)
    if not zones:
        table.add_row("not read yet (root only; every --pagetypeinfo-period seconds)")
    return table
