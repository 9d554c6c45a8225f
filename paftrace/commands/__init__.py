"""The subcommands, one module each, loaded only when run (see paftrace/cli.py).

One line per command: its name, where it lives, and the one-line help that
`paftrace --help` lists without importing the module (tests/test_cli.py checks
that each line agrees with the command's own help).
"""

from __future__ import annotations

from typing import NamedTuple


class CommandSpec(NamedTuple):
    name: str
    target: str  # "module:attribute" of the click command
    short_help: str


COMMANDS = (
    CommandSpec("trace", "paftrace.commands.trace:trace",
                "Trace failing page allocations live (the default command)."),
    CommandSpec("doctor", "paftrace.commands.doctor:doctor",
                "Check what this machine supports and say how to fix what is missing."),
    CommandSpec("selftest", "paftrace.commands.selftest:selftest",
                "Provoke real page allocation failures and check paftrace sees each one."),
    CommandSpec("explain", "paftrace.commands.explain:explain",
                "Decode page allocation failure reports from kernel log text (FILE or stdin)."),
    CommandSpec("gfp", "paftrace.commands.explain:gfp",
                "Decode a gfp MASK (0x2080020, 0x820(GFP_ATOMIC), or names like "
                "GFP_KERNEL|__GFP_NOWARN)."),
    CommandSpec("buddyinfo", "paftrace.commands.buddyinfo:buddyinfo",
                "Free blocks per order and zone, watermarks and fragmentation, live."),
    CommandSpec("frag", "paftrace.commands.frag:frag",
                "Attribute fragmentation to call sites and tasks, live."),
    CommandSpec("record", "paftrace.commands.record:record",
                "Record failures, memory state, stalls and kernel reports into one file "
                "(root)."),
    CommandSpec("report", "paftrace.commands.report:report",
                "Build a report from a `paftrace record` file or a `--json` capture (no root)."),
    CommandSpec("exporter", "paftrace.commands.exporter:exporter",
                "Serve page allocation failures as Prometheus metrics (long-running, root)."),
)
DEFAULT_COMMAND = "trace"

TRACE_EXAMPLES = """\b
Examples:
  sudo paftrace --order 4            # live view of failing order-4 allocations
  sudo paftrace -o 4+ --atomic-only  # order >= 4, only atomic (no direct reclaim)
  sudo paftrace -o 2-5 -d 60 --json  # JSON Lines for 60 s, then a summary object
  sudo paftrace -o 0 --all           # also successful allocations, by context and stack
  sudo paftrace -p 1234 -o 3+        # one process
  sudo paftrace -o 4 --cgroup /system.slice/docker-<id>.scope   # one container
  sudo paftrace doctor               # what this kernel supports, and how to fix the rest
  sudo paftrace selftest             # provoke real failures and check they are seen
  paftrace explain dmesg.txt         # decode pasted page allocation failure reports
  paftrace gfp 0x400cc0              # decode a gfp mask
"""
