"""What paftrace's start-up is made of, part by part, side by side (issue 19's start
target: process start to attached <= 0.3 s). Each round measures every part once, in a
rotated order; printed are the medians with quartiles:

  interpreter          `python -c pass`, a child process, wall time
  CLI imports          `python -c "import paftrace.cli, paftrace.commands.trace"`,
                       less the interpreter
  prepare              loader.prepare(): tracefs, kernel probing, the probe plan and the
                       gfp table from the tracepoint's format
  bcc's kallsyms check what libbcc 0.26 does inside every compile, alone: it loads
                       /proc/kallsyms into a symbol cache to learn whether the kernel has
                       bpf_probe_read_kernel (b_frontend_action.cc, DoMiscWorkAround), then
                       frees it
  compile: ...         bcc.BPF() of a program: libbcc's compile (clang, LLVM and that
                       check: bpf_module_create_c_from_string) and the rest (loading and
                       attaching), for the empty raw tracepoint program and for paftrace's
                       program as the tracer builds it (-o 4 and --all)
  start to attached    a child process from exec to its "attached" line: the empty bcc
                       program (empty_tracer.py) and `paftrace -o 4 --json`

Root; about a minute per 5 rounds.

  scripts/bench --start-parts [--rounds 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import benchstats as st
from bench import paftrace_command
from tracers import Running, all_tracers

from paftrace.loader import import_bcc, prepare, program_text
from paftrace.options import TraceOptions
from paftrace.release import release
from paftrace.tracefs import TraceFs

HERE = Path(__file__).resolve().parent
CLI_IMPORTS = "import paftrace.cli, paftrace.commands.trace"
ORDER4 = TraceOptions(order_min=4, order_max=4)
ALL = TraceOptions(order_min=0, order_max=31, trace_all=True)


def child_seconds(code: str) -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.monotonic() - t0


def kallsyms_check(bcc) -> float:
    """The symbol-cache round trip libbcc makes in every compile, timed alone."""
    lib = bcc.lib
    t0 = time.monotonic()
    cache = lib.bcc_symcache_new(-1, None)
    addr = ctypes.c_uint64()
    lib.bcc_symcache_resolve_name(cache, None, b"bpf_probe_read_kernel", ctypes.byref(addr))
    lib.bcc_free_symcache(cache, -1)
    return time.monotonic() - t0


class CompileTimer:
    """bcc.BPF() split in two: libbcc's compile, then loading and attaching."""

    def __init__(self, bcc) -> None:
        self.bcc = bcc
        self.compile_s = 0.0
        self._create = bcc.lib.bpf_module_create_c_from_string

    def _timed_create(self, *args):
        t0 = time.monotonic()
        try:
            return self._create(*args)
        finally:
            self.compile_s = time.monotonic() - t0

    def run(self, source: str, cflags: list[str]) -> tuple[float, float]:
        """(compile s, load and attach s) of one program, released at once."""
        self.bcc.lib.bpf_module_create_c_from_string = self._timed_create
        try:
            t0 = time.monotonic()
            bpf = self.bcc.BPF(text=source, cflags=cflags)
            total = time.monotonic() - t0
        finally:
            self.bcc.lib.bpf_module_create_c_from_string = self._create
        helper = release(bpf, self.bcc)
        if helper is not None:
            helper.wait()
        return self.compile_s, total - self.compile_s


def started_seconds(name: str, scratch: Path) -> float:
    tracer = next(t for t in all_tracers(sys.executable, paftrace_command()) if t.name == name)
    run = Running(tracer, scratch)
    try:
        return run.wait_ready()
    finally:
        run.stop()


def parts(bcc, scratch: Path) -> dict[str, Callable[[], dict[str, float]]]:
    """Each part: a function measuring it once, returning {row: seconds}."""
    timer = CompileTimer(bcc)
    empty = (HERE / "empty_raw.c").read_text()

    def interpreter_and_imports() -> dict[str, float]:
        bare = child_seconds("pass")
        return {"interpreter": bare, "CLI imports": child_seconds(CLI_IMPORTS) - bare}

    def prepared() -> dict[str, float]:
        t0 = time.monotonic()
        prepare(ORDER4)
        return {"prepare": time.monotonic() - t0}

    def program(label: str, options: TraceOptions | None) -> Callable[[], dict[str, float]]:
        def measure() -> dict[str, float]:
            source, cflags = (empty, []) if options is None else \
                program_text(options, prepare(options))
            compiled, rest = timer.run(source, cflags)
            return {f"compile {label}: libbcc compile": compiled,
                    f"compile {label}: load and attach": rest}
        return measure

    return {
        "imports": interpreter_and_imports,
        "prepare": prepared,
        "kallsyms": lambda: {"bcc's kallsyms check": kallsyms_check(bcc)},
        "empty": program("empty raw program", None),
        "order4": program("paftrace -o 4", ORDER4),
        "all": program("paftrace --all", ALL),
        "start empty": lambda: {"start to attached: empty bcc program":
                                started_seconds("empty-raw-bpf", scratch)},
        "start paftrace": lambda: {"start to attached: paftrace -o 4":
                                   started_seconds("paftrace -o 4", scratch)},
    }


def main() -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench --start-parts",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", metavar="PATH", help="also write the seconds of every round")
    args = ap.parse_args()
    TraceFs().ensure_mounted()
    bcc = import_bcc()
    runs: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="paftrace-start-") as scratch:
        measures = parts(bcc, Path(scratch))
        for r in range(args.rounds):
            for name in st.rotation(list(measures), r):
                for row, seconds in measures[name]().items():
                    runs.setdefault(row, []).append(seconds)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print(f"start-up parts, median [quartiles] of {args.rounds} rounds, seconds:")
    for row, values in runs.items():
        q1, median, q3 = st.quartiles(values)
        print(f"  {row:55} {median:6.3f} [{q1:.3f}, {q3:.3f}]")
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
