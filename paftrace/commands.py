"""Registry of the subcommands beside `trace`, each defined in its own module."""

from __future__ import annotations

import importlib

import click

# module:attribute of each click command; one line per command.
COMMANDS = [
    "paftrace.doctor:doctor",
    "paftrace.selftest:selftest",
    "paftrace.explain_cli:explain",
    "paftrace.explain_cli:gfp",
    "paftrace.buddyinfo_cli:buddyinfo",
]


def register_all(group: click.Group) -> None:
    for spec in COMMANDS:
        module, _, attr = spec.partition(":")
        group.add_command(getattr(importlib.import_module(module), attr))
