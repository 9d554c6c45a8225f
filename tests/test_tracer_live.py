"""The real tracer, as root, against real page allocation failures on this kernel."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from paftrace.stacks import is_allocator_frame
from paftrace.workloads.netload import loopback_connections
from tests.helpers import needs_root, paftrace_cmd, provoke, run_tracer

pytestmark = needs_root


def _mine(run, provoked: dict) -> list[dict]:
    return [f for f in run.failures if f["pid"] == provoked["worker_pid"]]


def test_ten_order4_failures_are_reported_exactly():
    run = run_tracer(["--order", "4"], lambda: provoke(10, 4))
    provoked = run.workload_result
    assert provoked["failures"] == 10
    assert run.returncode == 130, run.stderr
    assert run.attached["order"] == "4"
    assert run.attached["probes"][0] == "raw_tracepoint:kmem:mm_page_alloc"
    mine = _mine(run, provoked)
    assert len(mine) == 10
    for f in mine:
        assert f["order"] == 4
        assert {"GFP_KERNEL_ACCOUNT", "__GFP_ACCOUNT"} & set(f["gfp_flags"])
        assert f["context"] == "process" and f["softirq"] is None
        assert any(frame.startswith("pipe_resize_ring+0x") for frame in f["stack"])
        assert f["requester"] == "pipe_resize_ring"
        # The raw tracepoint's stack begins, as a classic one's, in the allocator.
        assert is_allocator_frame(f["stack"][0]), f["stack"][:3]
        assert f["visibility"] == "silent" and f["severity"] == "expected"
        assert re.fullmatch(r"0x[0-9a-f]+", f["gfp"])
        assert f["tid"] == f["pid"] and f["migratetype"] == "Unmovable"
    summary = run.summary
    # Only order 4 was asked for: every record is an order-4 failure, and the
    # kernel-side counters agree with the records received.
    assert summary["failures_reported"] == len(run.failures) == summary["failures_matched"]
    assert summary["orders"]["4"]["failures"] >= 10
    assert summary["failures_by_context"]["process"] == len(run.failures)
    assert summary["lost"] == {"records": 0, "unhandled": 0, "stack_errors": 0,
                               "aggregation_full": 0}
    sites = [s for s in summary["call_sites"] if s["requester"] == "pipe_resize_ring"]
    assert sites and sites[0]["count"] >= 10


def test_failures_carry_the_memory_state_and_stall_timeline():
    run = run_tracer(["--order", "4"], lambda: provoke(3, 4))
    samples = {o["ts_ns"]: o for o in run.of_type("buddyinfo")}
    mine = _mine(run, run.workload_result)
    assert len(mine) == 3
    for f in mine:
        snap = f["buddyinfo"]
        # The pointer leads to a buddyinfo record that came earlier in the stream.
        assert snap["sample_ts_ns"] in samples
        assert run.lines.index(samples[snap["sample_ts_ns"]]) < run.lines.index(f)
        assert snap["order"] == 4 and {z["zone"] for z in snap["zones"]} >= {"Normal"}
        normal = next(z for z in snap["zones"] if z["zone"] == "Normal")
        assert normal["blocks_at_or_above"] >= 0 and 0 <= normal["unusable_index"] <= 1
        assert abs(snap["sample_age_ms"]) < 2000
        # A memcg charge failure: no direct reclaim/compaction stall of its own.
        assert f["stall"]["direct_compaction"]["count"] == 0
    reclaim = run.summary["reclaim"]
    assert reclaim["type"] == "reclaim_summary" and reclaim["lost_stalls"] == 0
    assert "compaction:mm_compaction_end" in reclaim["events"]


def test_other_order_reports_none_of_them():
    run = run_tracer(["--order", "3"], lambda: provoke(5, 4))
    assert run.workload_result["failures"] == 5
    assert _mine(run, run.workload_result) == []
    # The per-order counters are always on, whatever the filter.
    assert run.summary["orders"]["4"]["failures"] >= 5


@pytest.mark.parametrize("order_arg", ["4+", "2-5"])
def test_order_ranges_include_order4(order_arg):
    run = run_tracer(["--order", order_arg], lambda: provoke(3, 4))
    assert len(_mine(run, run.workload_result)) == 3


def test_gfp_filters_drop_nowarn_and_reclaiming_failures():
    # The pipe ring is GFP_KERNEL_ACCOUNT|__GFP_NOWARN: it can reclaim and warns never.
    for flag in ("--warn-only", "--atomic-only"):
        run = run_tracer(["--order", "4", flag], lambda: provoke(3, 4))
        assert run.workload_result["failures"] == 3
        assert _mine(run, run.workload_result) == [], flag


def test_comm_and_pid_filters_run_in_the_kernel():
    run = run_tracer(["--order", "4", "--comm", "paf-provoke"],
                     lambda: provoke(3, 4, "--comm", "paf-provoke"))
    assert len(_mine(run, run.workload_result)) == 3
    assert all(f["comm"] == "paf-provoke" for f in run.failures)
    run = run_tracer(["--order", "4", "--pid", "1"], lambda: provoke(3, 4))
    assert run.failures == []


def test_loopback_load_shows_net_rx_softirq_allocations():
    run = run_tracer(["--all", "--order", "0"], lambda: loopback_connections(2.0))
    rows = run.summary["allocations"]
    assert rows and all(r["order"] == 0 for r in rows)
    net_rx = [r for r in rows if r["context"] == "softirq" and r["softirq"] == "NET_RX"]
    assert sum(r["count"] for r in net_rx) > 0
    # Sampled stacks of NET_RX rows go through the softirq machinery.
    frames = [fr for r in net_rx for s in r["stacks"] for fr in s["stack"]]
    assert any(fr.startswith(("net_rx_action", "__do_softirq", "handle_softirqs"))
               for fr in frames)


@pytest.mark.parametrize("feature", ["raw-tracepoint", "ringbuf", "irq-tracepoints",
                                     "irq-vectors", "kprobes", "reclaim"])
def test_every_fallback_path_still_sees_the_failures(feature):
    run = run_tracer(["--order", "4", "--no-feature", feature], lambda: provoke(4, 4))
    mine = _mine(run, run.workload_result)
    assert len(mine) == 4
    assert all(f["context"] == "process" for f in mine)
    assert all(f["requester"] == "pipe_resize_ring" and is_allocator_frame(f["stack"][0])
               for f in mine)
    probes = run.attached["probes"]
    if feature == "raw-tracepoint":  # kernels before 4.17 take this path
        assert probes[0] == "tracepoint:kmem:mm_page_alloc"
        assert not any(p.startswith("raw_tracepoint:") for p in probes)
    if feature == "ringbuf":
        assert "perfbuf" in probes and "ringbuf" not in probes
    if feature == "irq-tracepoints":
        assert not any(":irq" in p for p in probes)
    if feature == "reclaim":
        assert run.summary["reclaim"] is None
        assert not any("compaction" in p for p in probes)


def test_context_from_stack_when_irq_tracepoints_are_off():
    run = run_tracer(["--all", "--order", "0", "--no-feature", "irq-tracepoints"],
                     lambda: loopback_connections(2.0))
    stacks = [s for r in run.summary["allocations"] for s in r["stacks"]]
    assert any(s["context"] == "softirq" and s["softirq"] == "NET_RX" for s in stacks)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_each_stop_signal_ends_with_a_summary(sig):
    run = run_tracer(["--order", "4"], stop_signal=sig)
    assert run.returncode == 130
    assert run.summary["type"] == "summary"
    assert "Traceback" not in run.stderr


def test_duration_ends_cleanly_with_exit_zero():
    run = run_tracer(["--order", "4", "--duration", "1"])
    assert run.returncode == 0 and run.summary["duration_s"] >= 1.0


def test_hostile_comm_is_escaped_in_plain_output():
    proc = subprocess.Popen(paftrace_cmd() + ["--order", "4", "--plain", "--duration", "6"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert "Tracing page allocation failures" in first
    provoke(2, 4, "--comm", "[bold]\x1b[31mx")
    out, err = proc.communicate(timeout=30)
    lines = [x for x in out.splitlines() if "order:4" in x and "[bold]" in x]
    assert len(lines) == 2, out + err
    assert "\x1b" not in out and "\\x1b[31mx" in lines[0]


def test_not_root_gets_one_clear_line():
    proc = subprocess.run(paftrace_cmd() + ["--order", "4", "--duration", "1"],
                          capture_output=True, text=True, preexec_fn=lambda: os.setuid(65534),
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert "needs root" in proc.stderr and "sudo" in proc.stderr
    assert "Traceback" not in proc.stderr


def _main_thread_sleeps(pid: int) -> int:
    """Voluntary context switches of the process's main thread, the one that polls."""
    status = Path(f"/proc/{pid}/task/{pid}/status").read_text()
    return int(re.search(r"voluntary_ctxt_switches:\s+(\d+)", status).group(1))


def test_an_idle_tracer_sleeps_a_tick_at_a_time_and_a_lone_failure_wakes_it():
    proc = subprocess.Popen([*paftrace_cmd(), "--order", "4", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    arrivals: list[tuple[int, str]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            arrivals.append((time.monotonic_ns(), line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not arrivals and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert arrivals and arrivals[0][1].startswith('{"type":"attached"'), proc.stderr
        time.sleep(1.5)  # past start-up (the symbol table is read in a thread)
        before = _main_thread_sleeps(proc.pid)
        time.sleep(4)
        # One poll per one-second tick (pacing.py); it was ten a second.
        assert _main_thread_sleeps(proc.pid) - before <= 16
        pids = set()
        for _ in range(3):  # lone failures, each after more than POLL_MS of quiet
            time.sleep(1.2)
            pids.add(provoke(1, 4)["worker_pid"])
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        reader.join(5)
    delays = sorted((at - json.loads(line)["ts_ns"]) / 1e9 for at, line in arrivals
                    if line.startswith('{"type":"failure"') and json.loads(line)["pid"] in pids)
    assert len(delays) == 3, delays
    # Each failure woke the reader (its CPU's first record in POLL_MS): milliseconds
    # here, not up to the idle second (the records' ts_ns is CLOCK_MONOTONIC).
    assert delays[1] < 0.15, delays
