"""What each step of paftrace's failure path costs in the kernel (failpath.c),
during the bench's failure storm, workload (c). Root. Prints ns per step.

    scripts/bench-data/failpath.py [SECONDS]      (docs/PERFORMANCE.md)
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

import workloads as wl

from paftrace.loader import bpf_dir
from paftrace.tracefs import TraceFs

HERE = Path(__file__).resolve().parent
STEPS = ("clock (two reads, subtracted below)", "per-CPU irq state read",
         "two per-CPU counters", "bpf_get_stackid (stack walk)", "ring buffer reserve",
         "fill (clock, ids, cpu, comm)", "per-task hash lookup + delete",
         "open-compaction count read", "submit, waking the reader",
         "submit, BPF_RB_NO_WAKEUP")


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    TraceFs().ensure_mounted()
    import bcc  # noqa: PLC0415 - after the tracefs mount, as the loader does

    prog = bcc.BPF(src_file=str(HERE / "failpath.c"), cflags=[f"-I{bpf_dir()}"])
    received = [0]

    def count(_ctx, _data, _size) -> int:
        received[0] += 1
        return 0

    prog["records"].open_ring_buffer(count)
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            prog.ring_buffer_poll(timeout=100)
            prog.ring_buffer_consume()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    with tempfile.TemporaryDirectory() as tmp, wl.PipeMaxSize(
            wl.pipe_size_for_order(wl.FAIL_ORDER)):
        result = wl.run(wl.build(Path(tmp)), "fail", seconds)
    stop.set()
    thread.join(2)
    ns = [sum(prog["step_ns"][prog["step_ns"].Key(i)]) for i in range(len(STEPS))]
    runs = [sum(prog["step_runs"][prog["step_runs"].Key(i)]) for i in range(len(STEPS))]
    clock = ns[0] / runs[0] if runs[0] else 0.0
    print(f"failure storm: {result.ops} failures, {result.rate:,.0f}/s; records read "
          f"{received[0]}")
    for name, total, n in zip(STEPS, ns, runs):
        if n:
            mean = total / n - (0 if name.startswith("clock") else clock)
            print(f"  {name:40} {mean:9.1f} ns  ({n} runs)")
    prog.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
