"""`paftrace report FILE`: a self-contained HTML (or Markdown) report of a recording."""

from __future__ import annotations

import click


@click.command()
def report() -> None:
    """placeholder"""
