"""Command line: `paftrace [trace] OPTIONS` and its subcommands (paftrace/commands/)."""

from __future__ import annotations

import click

from paftrace import __version__
from paftrace.commands import register_all
from paftrace.commands.trace import TRACE_EXAMPLES


class DefaultGroup(click.Group):
    """`paftrace --order 4` means `paftrace trace --order 4`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h",
                                                                         "--version")):
            args = ["trace", *args]
        return super().parse_args(ctx, args)


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=TRACE_EXAMPLES)
@click.version_option(__version__, prog_name="paftrace")
def main() -> None:
    """Trace Linux page allocation failures live, with eBPF.

    With no command, runs `trace`: see `paftrace trace --help` for its options.
    """


register_all(main)
