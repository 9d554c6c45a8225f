"""Command line: `paftrace [trace] OPTIONS` and its subcommands (paftrace/commands/)."""

from __future__ import annotations

import atexit
import os
import sys

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


def exit_status(exc: SystemExit) -> int:
    """The status sys.exit(code) would give the shell (a message means 1)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def run() -> None:
    """The `paftrace` program: `main`, then out without the interpreter's teardown.

    After a trace, tearing the interpreter down (module by module, then libbcc's and
    LLVM's static destructors) took 0.2-0.3 s more (0.04 s with os._exit, measured on
    6.18): the shell prompt came back that much later. The exit handlers still run
    (bcc's cleanup among them) and the output is flushed; only the teardown is skipped.
    """
    try:
        main()
        status = 0
    except SystemExit as exc:
        status = exit_status(exc)
    atexit._run_exitfuncs()  # noqa: SLF001 - what interpreter exit would run first
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # the reader is gone: the status `yes | head -1` gives
        status = status or 141
    os._exit(status)
