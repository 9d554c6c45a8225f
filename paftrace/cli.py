"""Command line: `paftrace [trace] OPTIONS` and its subcommands (paftrace/commands/).

Importing this module loads click and the command registry only: a command's
module (and bcc, rich, the loader, the tracer behind it) is imported when that
command runs, so `paftrace --help` stays fast (click's LazyGroup pattern,
https://click.palletsprojects.com/en/stable/complex/#lazily-loading-subcommands).
"""

from __future__ import annotations

import importlib

import click

from paftrace import __version__
from paftrace.commands import COMMANDS, DEFAULT_COMMAND, TRACE_EXAMPLES

GROUP_OPTIONS = ("--help", "-h", "--version")


class LazyGroup(click.Group):
    """Subcommands from the registry, imported on first use. `paftrace --order 4`
    means `paftrace trace --order 4`: an option-looking first argument (or none)
    runs the default command; an unknown word is "No such command"."""

    specs = {spec.name: spec for spec in COMMANDS}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.specs)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = self.specs.get(cmd_name)
        if spec is None:
            return None
        module, _, attr = spec.target.partition(":")
        command = getattr(importlib.import_module(module), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{spec.target} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The registry's one-line help: listing commands imports none of them.
        rows = [(name, self.specs[name].short_help) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0].startswith("-") and args[0] not in GROUP_OPTIONS):
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=TRACE_EXAMPLES)
@click.version_option(__version__, prog_name="paftrace")
def main() -> None:
    """Trace Linux page allocation failures live, with eBPF.

    With no command, or options only, runs `trace`: see `paftrace trace --help`.
    """
