"""Judge what paftrace printed inside a fresh root against what scripts/provoke did outside it.

    python3 scripts/fresh_root_check.py --provoked PROVOKE.json --json TRACE.jsonl
    python3 scripts/fresh_root_check.py --provoked PROVOKE.json --plain TRACE.log

PROVOKE.json is the last line scripts/provoke printed (worker pid, failures produced). The
chroot shares the host's pid namespace, so the worker's pid is the pid the tracer reports.
Every provoked failure must be reported exactly once with order, gfp flags, context and
stack of the pipe-ring method (paftrace/workloads/provoke.py); nothing may be lost. Prints
one line per check; exits 1 when any fails. Runs on the host's /usr/bin/python3 (standard
library only).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

# The pipe ring's kcalloc (fs/pipe.c), see paftrace/workloads/provoke.py.
REQUESTER = "pipe_resize_ring"
GFP_ACCOUNTED = {"GFP_KERNEL_ACCOUNT", "__GFP_ACCOUNT"}


def check_json(lines: list[str], provoked: dict) -> list[tuple[str, bool, str]]:
    records = [json.loads(line) for line in lines if line.strip()]
    pid, order, count = provoked["worker_pid"], provoked["order"], provoked["failures"]
    mine = [r for r in records if r.get("type") == "failure" and r["pid"] == pid]
    summary = next((r for r in records if r.get("type") == "summary"), None)
    lost = summary["lost"] if summary else {}
    return [
        ("attached", any(r.get("type") == "attached" for r in records), "attached record"),
        ("provoked", count == provoked["requested"] and count > 0,
         f"{count} of {provoked['requested']} order-{order} failures provoked outside"),
        ("seen", len(mine) == count, f"{len(mine)} failure records from pid {pid}"),
        ("order", bool(mine) and all(r["order"] == order for r in mine),
         f"orders {sorted({r['order'] for r in mine})}"),
        ("gfp", bool(mine) and all(GFP_ACCOUNTED & set(r["gfp_flags"]) for r in mine),
         "flags " + ("|".join(mine[0]["gfp_flags"]) if mine else "-")),
        ("context", bool(mine) and all(r["context"] == "process" for r in mine),
         f"contexts {sorted({r['context'] for r in mine})}"),
        ("stack", bool(mine) and all(
            r["requester"] == REQUESTER and any(REQUESTER in f for f in r["stack"])
            for r in mine), f"requesters {sorted({r['requester'] for r in mine})}"),
        ("summary", summary is not None and not any(lost.values()),
         f"summary lost={json.dumps(lost)}" if summary else "no summary record"),
    ]


def check_plain(lines: list[str], provoked: dict) -> list[tuple[str, bool, str]]:
    # One line per failure: "... COMM[PID/TID] order:N GFP(FLAGS) ... blame=COMM[PID] in FN"
    pid, order, count = provoked["worker_pid"], provoked["order"], provoked["failures"]
    line_re = re.compile(rf"\[{pid}/\d+\] order:(\d+) \S+\(([^)]*)\) \S+ (\S+) .* "
                         rf"blame=\S+\[{pid}\] in (\S+)")
    seen = [m for m in map(line_re.search, lines) if m]
    return [
        ("attached", any(line.startswith("Tracing page allocation failures") for line in lines),
         "attached line"),
        ("seen", len(seen) == count and count > 0, f"{len(seen)} lines for pid {pid}, "
         f"{count} provoked"),
        ("order", bool(seen) and all(int(m[1]) == order for m in seen), f"order {order}"),
        ("gfp", bool(seen) and all(GFP_ACCOUNTED & set(m[2].split("|")) for m in seen),
         seen[0][2] if seen else "-"),
        ("context", bool(seen) and all(m[3] == "process" for m in seen), "process"),
        ("stack", bool(seen) and all(m[4] == REQUESTER for m in seen), REQUESTER),
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provoked", type=Path, required=True)
    form = parser.add_mutually_exclusive_group(required=True)
    form.add_argument("--json", type=Path)
    form.add_argument("--plain", type=Path)
    args = parser.parse_args(argv)
    provoked = json.loads(args.provoked.read_text().strip().splitlines()[-1])
    if args.json:
        checks = check_json(args.json.read_text().splitlines(), provoked)
    else:
        checks = check_plain(args.plain.read_text().splitlines(), provoked)
    for name, ok, detail in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name:9} {detail}")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
