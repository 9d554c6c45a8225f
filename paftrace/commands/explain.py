"""`paftrace explain [FILE|-]` and `paftrace gfp MASK [--kernel VERSION]`."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console

from paftrace.explain.analyze import explain_text
from paftrace.explain.logtext import decode_input, looks_binary
from paftrace.explain.render import render_json, render_plain, render_rich
from paftrace.gfp import GfpTable, parse_mask, table_from_print_fmt
from paftrace.gfp_tables import era_for_kernel, newest_table, parse_version, table_for_kernel
from paftrace.tracefs import TraceFs

EXPLAIN_EXAMPLES = """\b
Examples:
  dmesg | paftrace explain              # every report in the kernel log
  journalctl -k -b -1 | paftrace explain --json
  paftrace explain messages.txt --kernel 3.10   # a paste without a version line
"""


def _check_kernel(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not parse_version(value):
        raise click.BadParameter(f"{value!r} is not a kernel version (e.g. 4.19 or 5.15.0-91)")
    return value


def _output_mode(as_json: bool, plain: bool) -> str:
    if as_json:
        return "json"
    return "plain" if plain or not sys.stdout.isatty() else "rich"


@click.command(epilog=EXPLAIN_EXAMPLES)
@click.argument("source", type=click.File("rb"), default="-")
@click.option("--kernel", callback=_check_kernel,
              help="Decode as this kernel version (overrides the report's own).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per (grouped) report.")
@click.option("--plain", is_flag=True, help="Plain text even on a terminal.")
@click.option("--no-group", is_flag=True, help="Do not merge repeated reports with one stack.")
def explain(source: click.utils.LazyFile, kernel: str | None, as_json: bool, plain: bool,
            no_group: bool) -> None:
    """Decode page allocation failure reports from kernel log text (FILE or stdin)."""
    data = source.read()
    name = getattr(source, "name", "input")
    if not data.strip():
        raise click.ClickException(f"{name} is empty: pipe in dmesg/journalctl -k output "
                                   "or give a log file")
    text = decode_input(data)
    if looks_binary(text):
        raise click.ClickException(f"{name} looks binary, not kernel log text "
                                   "(compressed? try zcat FILE | paftrace explain)")
    found = explain_text(text, kernel=kernel, grouped=not no_group)
    if not found:
        click.echo(f"no allocation failure report in {name} "
                   f"({text.count(chr(10)) + 1} lines searched)", err=True)
        sys.exit(1)
    mode = _output_mode(as_json, plain)
    if mode == "json":
        render_json(found, sys.stdout)
    elif mode == "plain":
        render_plain(found, sys.stdout)
    else:
        render_rich(found, Console())


def _running_table() -> tuple[GfpTable, str | None]:
    """The running kernel's own table; the newest built-in one when unreadable."""
    try:
        fmt = TraceFs().read_format("kmem", "mm_page_alloc")
        if fmt and fmt.print_fmt:
            return table_from_print_fmt(fmt.print_fmt, source="running kernel (tracefs "
                                        "kmem/mm_page_alloc format)"), None
    except (ValueError, OSError):
        pass
    return newest_table(), ("the running kernel's kmem/mm_page_alloc format is not readable "
                            "(tracefs not mounted, or not root): using the newest built-in table")


def _mask_from_names(text: str, table: GfpTable) -> int | None:
    names = [n.strip() for n in text.split("|") if n.strip()]
    values = [table.value_of(n) for n in names]
    if not names or any(v is None for v in values):
        return None
    total = 0
    for v in values:
        total |= v  # type: ignore[operator]
    return total


@click.command()
@click.argument("mask")
@click.option("--kernel", callback=_check_kernel,
              help="Kernel version whose bit values to use (default: the running kernel).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def gfp(mask: str, kernel: str | None, as_json: bool) -> None:
    """Decode a gfp MASK (0x2080020, 0x820(GFP_ATOMIC), or names like GFP_KERNEL|__GFP_NOWARN)."""
    note = None
    if kernel:
        table = table_for_kernel(kernel)
        note = f"Linux {era_for_kernel(kernel).label} table for {kernel}"
    else:
        table, note = _running_table()
    try:
        value = parse_mask(mask)
    except ValueError:
        named = _mask_from_names(mask, table)
        if named is None:
            raise click.ClickException(f"{mask!r} is neither a number nor flag names known "
                                       "to this table") from None
        value = named
    names = table.decode(value)
    singles = [(1 << bit, next((n for v, n in table.entries if v == 1 << bit and
                                n.startswith("__GFP")), None)) for bit in range(64)
               if value >> bit & 1]
    unknown = [hex(b) for b, n in singles if n is None and not any(
        v == b for v, _ in table.entries)]
    if as_json:
        click.echo(json.dumps({"mask": hex(value), "flags": names, "unknown_bits": unknown,
                               "table": table.source, "note": note}))
        return
    click.echo(f"{hex(value)} = {'|'.join(names)}")
    for bit, name in singles:
        label = name or next((n for v, n in table.entries if v == bit), "unknown bit")
        click.echo(f"  {hex(bit):>10}  {label}")
    if unknown:
        click.echo(f"unknown bits for this kernel: {', '.join(unknown)}")
    click.echo(f"table: {table.source}")
    if note:
        click.echo(f"note: {note}")
