"""What slows the failure storm (workload (c)) while paftrace is attached: its BPF or
its Python? Root; about 3 minutes. Interleaved rounds, medians as ratios of no tracer:

  coalesced paftrace -o 4 --json (defaults: a storm's failures beyond its first 20
            records per call site and CPU counted in the kernel; output to /dev/null)
  every     the same with --records-per-site 0: a record for every failure
  bpf-only  paftrace -o 4 --records-per-site 0 attached, then stopped (SIGSTOP): its BPF
            runs, its Python does not (the ring buffer fills and the rest is counted lost)
  bpftrace  the stack-keyed one-liner of scripts/bench

  scripts/bench --storm-ab [--rounds 6] [--seconds 2] [--tree DIR]

`--tree`: the paftrace source tree to run (default: this checkout)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchstats as st
import workloads as wl
from tracers import BPFTRACE_ONE_LINER, process_cpu_seconds

SETTLE_S = 2.5  # attached, kallsyms read by the warm-up thread (paftrace/symbols.py)
REPORT_S = 0.8  # after a storm: paftrace reports coalesced failures every 0.5 s
VARIANTS = ("none", "coalesced", "every", "bpf-only", "bpftrace")


def start(variant: str, tree: str) -> subprocess.Popen | None:
    if variant == "none":
        return None
    if variant == "bpftrace":
        argv = ["bpftrace", "-e", BPFTRACE_ONE_LINER]
    else:
        argv = [sys.executable, "-m", "paftrace", "--order", "4", "--json"]
        if variant != "coalesced":
            argv += ["--records-per-site", "0"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": tree}, cwd=tempfile.gettempdir())
    time.sleep(SETTLE_S)
    if proc.poll() is not None:
        raise SystemExit(f"storm_ab: {variant} exited with {proc.returncode} while starting")
    if variant == "bpf-only":
        proc.send_signal(signal.SIGSTOP)
    return proc


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None:
        return
    proc.send_signal(signal.SIGCONT)
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--tree", default=str(Path(__file__).resolve().parents[2]))
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("storm_ab: run as root (BPF, memory cgroups)")
    with tempfile.TemporaryDirectory(prefix="paftrace-storm-ab-") as work:
        exe = wl.build(Path(work))
        rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
        cpu_us: dict[str, list[float]] = {v: [] for v in VARIANTS if v != "none"}
        for r in range(args.rounds):
            for variant in st.rotation(VARIANTS, r):
                proc = start(variant, args.tree)
                try:
                    before = process_cpu_seconds(proc.pid) if proc else 0.0
                    result = wl.run(exe, "fail", args.seconds)
                    rates[variant].append(result.rate)
                    if proc:
                        time.sleep(REPORT_S)
                        cpu_us[variant].append(
                            1e6 * (process_cpu_seconds(proc.pid) - before) / max(1, result.ops))
                finally:
                    stop(proc)
    base = st.spread(rates["none"]).median
    for variant, values in rates.items():
        runs = st.spread(values)
        cpu = (f"  tracer CPU {st.spread(cpu_us[variant]).median:.1f} us/failure"
               if variant in cpu_us else "")
        print(f"{variant:9} {runs.median:8.0f} failures/s  "
              f"ratio {st.ratio(runs.median, base):.3f}  spread {runs.spread_pct:.0f}%{cpu}  "
              f"runs {[round(v) for v in values]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
