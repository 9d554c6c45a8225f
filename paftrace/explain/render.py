"""Explanations as plain text, rich (TTY) or JSON Lines. Log text is untrusted:
it is neutralised at parse time and only ever put into rich Text objects."""

from __future__ import annotations

import json
from typing import IO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from paftrace.explain.analyze import Explanation, order_note
from paftrace.explain.report import FreeArea


def _title(e: Explanation) -> str:
    r = e.report
    what = f"order {r.order}" if r.order is not None else "no order"
    repeat = f" (x{e.count}, lines {', '.join(map(str, e.lines[:8]))})" if e.count > 1 else ""
    return f"{r.comm or '?'} pid {r.pid if r.pid is not None else '?'}: {what} {r.kind} " \
           f"allocation failure at line {r.line}{repeat}"


def _facts(e: Explanation) -> list[tuple[str, str]]:
    r, reading = e.report, e.reading
    rows = [("kernel", f"{r.kernel or 'unknown'} — {e.choice.note}"),
            ("mode", "unreadable" if r.mode is None else f"{hex(r.mode)} = {'|'.join(e.flags)}"),
            ("table", e.choice.table.source)]
    if r.printed_flags is not None:
        agree = "agrees" if e.choice.agrees else "DISAGREES"
        rows.append(("printed", f"{'|'.join(r.printed_flags)} ({agree} with the decoding)"))
    if r.detail:
        rows.append(("message", r.detail))
    if note := order_note(r):
        rows.append(("order", note))
    context = reading.context or "unknown"
    if reading.softirq:
        context += f" ({reading.softirq})"
    rows.append(("context", f"{context} — {'; '.join(reading.evidence)}"))
    guess = " (guess: every frame is '?')" if reading.guessed else ""
    rows.append(("requester", f"{reading.requester or 'unknown'}{guess}"))
    for label, value in (("nodemask", r.nodemask), ("cpuset", r.cpuset),
                         ("mems_allowed", r.mems_allowed)):
        if value:
            rows.append((label, value))
    if e.cause is not None:
        rows.append(("cause", f"{e.cause.cause}: {e.cause.sentence}"))
    return rows


def _points(e: Explanation) -> list[tuple[str, str, str]]:
    a = e.assessment
    out = [("verdict", f"{a.verdict}: {p.text}", p.evidence) for p in a.reasons]
    out += [("finding", p.text, p.evidence) for p in a.findings]
    out += [("advice", p.text, p.evidence) for p in a.advice]
    return out


def _buddy_rows(areas: list[FreeArea], order: int) -> tuple[list[str], list[list[str]]]:
    top = max((max(a.blocks) for a in areas), default=0)
    header = ["zone"] + [f"{o}{'*' if o >= order else ''}" for o in range(top + 1)] + \
             [f">={order} blocks", f">={order} kB", "free kB"]
    rows = [[f"{a.node}/{a.zone}"] + [str(a.blocks.get(o, 0)) for o in range(top + 1)] +
            [str(a.blocks_at_least(order)), str(a.kb_at_least(order)), str(a.free_kb())]
            for a in areas]
    return header, rows


def render_plain(explanations: list[Explanation], out: IO[str]) -> None:
    for e in explanations:
        print(_title(e), file=out)
        for label, value in _facts(e):
            print(f"  {label:<10} {value}", file=out)
        if e.report.free_areas:
            header, rows = _buddy_rows(e.report.free_areas, e.report.order or 0)
            print("  free blocks per order (* = usable for this request):", file=out)
            widths = [max(len(c) for c in col) for col in zip(header, *rows)]
            for row in [header, *rows]:
                print("    " + " ".join(c.rjust(w) for c, w in zip(row, widths)), file=out)
        for kind, text, evidence in _points(e):
            print(f"  {kind:<10} {text}\n  {'':<10}   evidence: {evidence}", file=out)
        if e.report.partial:
            print(f"  PARTIAL    {'; '.join(e.report.problems)}", file=out)
        print(file=out)


def render_rich(explanations: list[Explanation], console: Console) -> None:
    for e in explanations:
        console.print(Text(_title(e), style="bold"))
        for label, value in _facts(e):
            console.print(Text.assemble(("  " + label.ljust(10), "cyan"), " ", value))
        if e.report.free_areas:
            header, rows = _buddy_rows(e.report.free_areas, e.report.order or 0)
            table = Table(title="free blocks per order (* = usable for this request)",
                          title_justify="left")
            for col in header:
                table.add_column(Text(col), justify="right")
            for row in rows:
                table.add_row(*(Text(c) for c in row))
            console.print(table)
        for kind, text, evidence in _points(e):
            style = {"verdict": "bold red" if e.assessment.verdict == "real" else "bold green",
                     "finding": "yellow", "advice": "green"}[kind]
            console.print(Text.assemble(("  " + kind.ljust(10), style), " ", text))
            console.print(Text("             evidence: " + evidence, style="dim"))
        if e.report.partial:
            console.print(Text("  PARTIAL    " + "; ".join(e.report.problems), style="magenta"))
        console.print()


def render_json(explanations: list[Explanation], out: IO[str]) -> None:
    for e in explanations:
        print(json.dumps(e.to_json(), sort_keys=False), file=out)
