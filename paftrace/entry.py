"""The `paftrace` program (console script and `python -m paftrace`).

Two things the click group cannot do for itself:
- quiet signals while starting: until a command installs its own handling (the tracer's
  StopFlag, buddyinfo, selftest), Ctrl-C, SIGTERM and SIGHUP end the program at once
  with status 130 instead of a KeyboardInterrupt traceback from whatever was importing;
- a fast exit: after a trace, tearing the interpreter down (module by module, then
  libbcc's and LLVM's static destructors) took 0.2-0.3 s more (0.04 s with os._exit,
  measured on 6.18), so the prompt came back that much later. The exit handlers still
  run (bcc's cleanup among them) and the output is flushed; only the teardown is skipped.
This module imports nothing heavy, so the handlers are in place within milliseconds.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from types import FrameType

EXIT_SIGNAL = 130  # what the tracer returns for every stop signal (README, man page)
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _exit_while_starting(signum: int, frame: FrameType | None) -> None:
    os._exit(EXIT_SIGNAL)  # nothing to clean up yet, nothing worth a traceback


def exit_status(exc: SystemExit) -> int:
    """The status sys.exit(code) would give the shell (a message means 1)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def run() -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, _exit_while_starting)
    from paftrace.cli import main  # noqa: PLC0415 - after the handlers, on purpose

    try:
        main()
        status = 0
    except SystemExit as exc:
        status = exit_status(exc)
    except KeyboardInterrupt:  # a command that let Ctrl-C through: no traceback
        status = EXIT_SIGNAL
    atexit._run_exitfuncs()  # noqa: SLF001 - what interpreter exit would run first
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # the reader is gone: the status `yes | head -1` gives
        status = status or EXIT_BROKEN_PIPE
    os._exit(status)
