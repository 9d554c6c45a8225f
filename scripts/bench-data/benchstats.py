"""Pure parts of scripts/bench: statistics, targets, the printed table."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Targets (issues 5 and 19), as multiples of the empty program's overhead (workload a).
TARGET_ORDER4_VS_FLOOR = 1.2
TARGET_ALL_VS_FLOOR = 1.2
TARGET_STARTUP_S = 0.3
# Workload (c): paftrace may cost no more than this peer; its Python at most this
# much CPU per failure record.
STORM_PEER = "bpftrace"
TARGET_USER_US_PER_FAILURE = 50.0
TARGET_STOP_S = 0.5  # Ctrl-C to exit (issue 12 item 10)


@dataclass(frozen=True)
class Spread:
    """Median of a tracer's runs and how far the runs stray from it."""

    median: float
    low: float
    high: float
    runs: int

    @property
    def spread_pct(self) -> float:
        """(max - min) / median, in percent: honest for a handful of rounds."""
        return 100.0 * (self.high - self.low) / self.median if self.median else 0.0


def spread(values: Iterable[float]) -> Spread:
    vals = sorted(values)
    if not vals:
        raise ValueError("no values")
    return Spread(statistics.median(vals), vals[0], vals[-1], len(vals))


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile); one value is all three."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, median, q3 = statistics.quantiles(values, n=4)
    return q1, median, q3


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline else 0.0


def overhead(ratio_to_baseline: float) -> float:
    """Fraction of throughput lost: 0.10 means 10 % slower."""
    return 1.0 - ratio_to_baseline


def added_ns(rate: float, baseline_rate: float) -> float:
    """Extra time per operation a tracer adds, from two rates (ops/s)."""
    if not rate or not baseline_rate:
        return 0.0
    return (1.0 / rate - 1.0 / baseline_rate) * 1e9


def rotation(names: Sequence[str], round_index: int) -> list[str]:
    """Round r starts at a different tracer, so none always runs first or last."""
    k = round_index % len(names) if names else 0
    return list(names[k:]) + list(names[:k])


def multiple(times: float | None) -> str:
    """A multiple of a floor as printed before "the <floor>"; a floor that cost nothing
    measurable in the run (noise can make it <= 0) has none: "no multiple of the ..."."""
    return "no multiple of" if times is None else f"{times}x"


def versus_floor(tracer_overhead: float, floor_overhead: float) -> float | None:
    """How many times the empty program's overhead a tracer costs."""
    if floor_overhead <= 0:
        return None
    return tracer_overhead / floor_overhead


def parse_prog_stats(bpftool_json: list[dict]) -> list[dict]:
    """`bpftool prog show --json` entries -> name, runs, ns per run (bpf_stats on)."""
    out = []
    for prog in bpftool_json:
        runs = prog.get("run_cnt", 0)
        total = prog.get("run_time_ns", 0)
        out.append({"id": prog.get("id"), "name": prog.get("name", "?"), "runs": runs,
                    "ns_per_run": round(total / runs, 1) if runs else 0.0,
                    "total_ms": round(total / 1e6, 2)})
    return sorted(out, key=lambda p: -p["total_ms"])


def delta_prog_stats(before: list[dict], after: list[dict]) -> list[dict]:
    """Run counts and times between two `bpftool prog show --json` readings."""
    earlier = {p.get("id"): p for p in before}
    out = []
    for prog in after:
        old = earlier.get(prog.get("id"), {})
        out.append({**prog, "run_cnt": prog.get("run_cnt", 0) - old.get("run_cnt", 0),
                    "run_time_ns": prog.get("run_time_ns", 0) - old.get("run_time_ns", 0)})
    return out


def format_table(tracers: Sequence[str], workloads: Sequence[str],
                 cells: dict[str, dict[str, dict]]) -> str:
    """One row per tracer: ratio to baseline (spread %) for each workload."""
    head = f"{'tracer':24}" + "".join(f"{w:>22}" for w in workloads)
    lines = [head, "-" * len(head)]
    for name in tracers:
        row = f"{name:24}"
        for w in workloads:
            cell = cells.get(name, {}).get(w)
            if not cell:
                row += f"{'-':>22}"
                continue
            text = f"{cell['ratio']:.3f} ({cell['spread_pct']:.0f}%)"
            row += f"{text:>22}"
        lines.append(row)
    return "\n".join(lines)


def format_markdown(tracers: Sequence[str], workloads: Sequence[str],
                    cells: dict[str, dict[str, dict]], startup: dict[str, float]) -> str:
    """The table of docs/PERFORMANCE.md: ratio, spread and added ns per operation."""
    head = "| tracer | " + " | ".join(f"({w}) ratio · spread · +ns/op" for w in workloads) + \
        " | start s |"
    lines = [head, "|---" * (len(workloads) + 2) + "|"]
    for name in tracers:
        row = [name]
        for w in workloads:
            cell = cells.get(name, {}).get(w)
            row.append(f"{cell['ratio']:.3f} · {cell['spread_pct']:.0f}% · "
                       f"{cell['added_ns_per_op']:+.0f}" if cell else "–")
        row.append(f"{startup[name]:.2f}" if name in startup else "–")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def storm_verdicts(cells: dict[str, dict[str, dict]], user_us: dict[str, float],
                   peer: str = STORM_PEER) -> dict[str, dict]:
    """Workload (c) per paftrace configuration: its overhead against the peer's,
    and its user-space CPU per failure record (median over the rounds)."""
    peer_cell = cells.get(peer, {}).get("fail")
    out = {}
    for name, by_workload in cells.items():
        cell = by_workload.get("fail")
        if not name.startswith("paftrace") or cell is None:
            continue
        mine = overhead(cell["ratio"])
        theirs = overhead(peer_cell["ratio"]) if peer_cell else None
        us = user_us.get(name)
        out[name] = {"overhead_pct": round(100 * mine, 1),
                     "peer": peer, "peer_overhead_pct": None if theirs is None
                     else round(100 * theirs, 1),
                     "met": None if theirs is None else mine <= theirs,
                     "user_us_per_failure": None if us is None else round(us, 1),
                     "user_met": None if us is None else us <= TARGET_USER_US_PER_FAILURE}
    return out


def storm_cpu(profile: dict[str, dict], peer: str = STORM_PEER) -> dict[str, dict]:
    """Workload (c) as CPU instead of throughput: per failure, the run time of all of a
    tracer's BPF programs (bpf_stats) plus its own process's CPU, from the profile
    pass. Steadier than the storm's rate on a noisy machine, but it leaves out what no
    program's run time shows: for a classic tracepoint (bpftrace's) the record the
    kernel builds before the program runs, and cache effects on the workload."""
    out = {}
    for name, by_workload in profile.items():
        run = by_workload.get("fail")
        if not run or not run.get("ops") or "bpf_ms" not in run:
            continue
        bpf = run["bpf_ms"] * 1e3 / run["ops"]
        process = run["tracer_cpu_s"] * 1e6 / run["ops"]
        out[name] = {"bpf_us": round(bpf, 2), "process_us": round(process, 2),
                     "total_us": round(bpf + process, 2)}
    theirs = out.get(peer, {}).get("total_us")
    for name, mine in out.items():
        if name.startswith("paftrace") and theirs is not None:
            mine |= {"peer": peer, "peer_total_us": theirs, "met": mine["total_us"] <= theirs}
    return out


# The allocator events whose rates each workload produces (issue 16: extfrag events are
# far rarer than mm_page_alloc, which is why attribution is cheap). Counted by
# `perf stat -a -x,` while the workload runs with no tracer attached.
RATE_EVENTS = ("kmem:mm_page_alloc", "kmem:mm_page_alloc_extfrag")


def parse_perf_stat_csv(text: str) -> dict[str, int]:
    """`perf stat -x,` lines (count,unit,event,...) -> {event: count}; events perf
    could not count ("<not supported>", "<not counted>") are left out."""
    counts = {}
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) >= 3 and fields[0].strip().isdigit():
            counts[fields[2]] = int(fields[0])
    return counts
