"""What each program on mm_page_alloc costs an allocation, A/B in short windows.

The page-fault storm's throughput strays by 20-40 % from one 2 s run to the next on
this shared machine (docs/PERFORMANCE.md), more than the differences that decide the
floor targets. Here every program is loaded once, in this one process, and only its
mm_page_alloc hook is attached and detached between windows of a fraction of a second;
each round runs every variant once, in a rotated order, beside its own no-hook window,
so slow spells hit a round's variants alike. Per round: the time each variant adds to
one page fault against that round's no-hook window; printed: the median over the
rounds with the quartiles, and the multiples of the floors.

  empty tracepoint      scripts/bench-data/empty.c, classic kmem:mm_page_alloc
  empty raw tracepoint  scripts/bench-data/empty_raw.c
  paftrace -o 4, paftrace --all
                        paftrace's program as the tracer compiles it (paftrace/loader.py)
  ... (classic)         the same with --no-feature raw-tracepoint

Only the allocation hook is switched: paftrace's irq and reclaim programs stay attached
throughout (equal in every window), and no paftrace user space runs (in workload (a) it
only reads maps once a second). Root; about 2 minutes.

  scripts/bench --hook-ab [--rounds 40] [--window 0.3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import benchstats as st
import workloads as wl

from paftrace.loader import compile_program, import_bcc, prepare, program_text
from paftrace.options import TraceOptions
from paftrace.tracefs import TraceFs

HERE = Path(__file__).resolve().parent
RAW_FN, CLASSIC_FN = b"raw_tracepoint__mm_page_alloc", b"tracepoint__kmem__mm_page_alloc"
RAW_TP, CLASSIC_TP = b"mm_page_alloc", b"kmem:mm_page_alloc"
FLOOR, RAW_FLOOR = "empty tracepoint", "empty raw tracepoint"


@dataclass
class Hook:
    """One loaded program whose mm_page_alloc attachment is switched on and off."""

    name: str
    bpf: object
    raw: bool

    def attach(self) -> None:
        if self.raw:
            self.bpf.attach_raw_tracepoint(tp=RAW_TP, fn_name=RAW_FN)
        else:
            self.bpf.attach_tracepoint(tp=CLASSIC_TP, fn_name=CLASSIC_FN)

    def detach(self) -> None:
        if self.raw:
            self.bpf.detach_raw_tracepoint(tp=RAW_TP)
        else:
            self.bpf.detach_tracepoint(tp=CLASSIC_TP)


def load_hooks(bcc) -> list[Hook]:  # noqa: ANN001 - the bcc module
    def empty(name: str, source: str, raw: bool) -> Hook:
        return Hook(name, bcc.BPF(src_file=str(HERE / source)), raw)

    def paftrace(name: str, options: TraceOptions) -> Hook:
        prepared = prepare(options)
        bpf = compile_program(bcc, *program_text(options, prepared))
        return Hook(name, bpf, prepared.plan.raw_tracepoints)

    classic = frozenset({"raw-tracepoint"})
    hooks = [empty(FLOOR, "empty.c", False), empty(RAW_FLOOR, "empty_raw.c", True),
             paftrace("paftrace -o 4", TraceOptions(order_min=4, order_max=4)),
             paftrace("paftrace --all", TraceOptions(trace_all=True)),
             paftrace("paftrace -o 4 (classic)",
                      TraceOptions(order_min=4, order_max=4, disabled=classic)),
             paftrace("paftrace --all (classic)", TraceOptions(trace_all=True, disabled=classic))]
    for hook in hooks:
        hook.detach()  # bcc attached it when loading
    return hooks


def measure(hooks: list[Hook], run: Callable[[], float], rounds: int) -> dict[str, list[float]]:
    """ns each hook adds per operation, per round, against that round's no-hook window."""
    added: dict[str, list[float]] = {h.name: [] for h in hooks}
    names = ["none", *(h.name for h in hooks)]
    by_name = {h.name: h for h in hooks}
    for r in range(rounds):
        rates: dict[str, float] = {}
        for name in st.rotation(names, r):
            hook = by_name.get(name)
            if hook:
                hook.attach()
            try:
                rates[name] = run()
            finally:
                if hook:
                    hook.detach()
        for hook in hooks:
            added[hook.name].append(st.added_ns(rates[hook.name], rates["none"]))
        print(f"round {r + 1}/{rounds}: " + ", ".join(
            f"{n} {added[n][-1]:+.0f}" for n in added), file=sys.stderr, flush=True)
    return added


def summary(added: dict[str, list[float]]) -> dict[str, dict]:
    spreads = {n: st.quartiles(v) for n, v in added.items()}
    floor, raw_floor = spreads[FLOOR][1], spreads[RAW_FLOOR][1]
    return {name: {"added_ns_median": round(q2, 1), "added_ns_q1": round(q1, 1),
                   "added_ns_q3": round(q3, 1), "rounds": len(added[name]),
                   "times_floor": _times(q2, floor), "times_raw_floor": _times(q2, raw_floor)}
            for name, (q1, q2, q3) in spreads.items()}


def _times(mine: float, floor: float) -> float | None:
    return round(mine / floor, 2) if floor > 0 else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--window", type=float, default=0.3, help="seconds per window")
    parser.add_argument("--json", help="write the results as JSON to this path")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("hook_ab: run as root (BPF)")
    TraceFs().ensure_mounted()  # before `import bcc`, as paftrace's loader does
    bcc = import_bcc()
    with tempfile.TemporaryDirectory(prefix="paftrace-hook-ab-") as work:
        exe = wl.build(Path(work))
        hooks = load_hooks(bcc)
        added = measure(hooks, lambda: wl.run(exe, "fault", args.window).rate, args.rounds)
    result = summary(added)
    print(f"ns added per page fault (workload (a)), median of {args.rounds} rounds "
          f"[quartiles], each against its round's no-hook window of {args.window:g} s:")
    for name, s in result.items():
        print(f"  {name:26} {s['added_ns_median']:+7.1f} ns [{s['added_ns_q1']:+.1f}, "
              f"{s['added_ns_q3']:+.1f}]  {st.multiple(s['times_floor'])} the empty tracepoint, "
              f"{st.multiple(s['times_raw_floor'])} the empty raw tracepoint")
    if args.json:
        Path(args.json).write_text(json.dumps({"window_s": args.window, "hooks": result,
                                               "added_ns": added}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
