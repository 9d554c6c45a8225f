"""Text tables for plain (non-terminal) output, laid out by rich instead of by hand.

Cells are rich `Text`, never markup: task names, symbols and kernel text are data.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

PLAIN_WIDTH = 200  # a pipe or file has no width; long cells fold rather than truncate


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *,
               indent: int = 0, right: Sequence[int] = ()) -> str:
    """Columns aligned as a terminal table would be, without colour or box lines;
    the columns numbered in `right` are right-aligned (numbers)."""
    from rich.console import Console  # noqa: PLC0415 - rich stays out of `paftrace --help`
    from rich.padding import Padding  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    table = Table(box=None, show_header=any(headers), show_edge=False, pad_edge=False,
                  padding=(0, 2, 0, 0))
    for i, header in enumerate(headers):
        table.add_column(header, overflow="fold", justify="right" if i in right else "left")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    out = io.StringIO()
    console = Console(file=out, width=PLAIN_WIDTH, no_color=True, highlight=False,
                      emoji=False, markup=False, force_terminal=False)
    console.print(Padding(table, (0, 0, 0, indent)))
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines())
