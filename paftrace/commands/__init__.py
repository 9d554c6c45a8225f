"""The subcommands, one module each; `trace` is the default (see paftrace/cli.py)."""

from __future__ import annotations

import importlib

import click

# module:attribute of each click command; one line per command.
COMMANDS = [
    "paftrace.commands.trace:trace",
    "paftrace.commands.doctor:doctor",
    "paftrace.commands.selftest:selftest",
    "paftrace.commands.explain:explain",
    "paftrace.commands.explain:gfp",
    "paftrace.commands.buddyinfo:buddyinfo",
]


def register_all(group: click.Group) -> None:
    for spec in COMMANDS:
        module, _, attr = spec.partition(":")
        group.add_command(getattr(importlib.import_module(module), attr))
