"""scripts/bench: its pure parts (statistics, parsing) and its workloads for real.

No timing assertions: the bench prints ratios, these tests check the arithmetic
and that each workload really does what it counts.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import DATA, needs_root, run_tracer

BENCH_DATA = Path(__file__).resolve().parent.parent / "scripts" / "bench-data"
sys.path.insert(0, str(BENCH_DATA))

import bench  # noqa: E402
import benchstats as st  # noqa: E402
import hook_ab  # noqa: E402
import workloads as wl  # noqa: E402


def test_spread_is_median_and_range():
    s = st.spread([10.0, 14.0, 11.0, 9.0, 12.0])
    assert (s.median, s.low, s.high, s.runs) == (11.0, 9.0, 14.0, 5)
    assert s.spread_pct == pytest.approx(100 * 5 / 11)


def test_spread_of_even_count_averages_the_middle_pair():
    assert st.spread([4.0, 1.0, 3.0, 2.0]).median == 2.5


def test_spread_needs_values():
    with pytest.raises(ValueError):
        st.spread([])


def test_ratio_overhead_and_added_time_per_operation():
    r = st.ratio(450_000, 500_000)
    assert r == pytest.approx(0.9)
    assert st.overhead(r) == pytest.approx(0.1)
    # 1/450k - 1/500k seconds = 222.2 ns more per operation
    assert st.added_ns(450_000, 500_000) == pytest.approx(222.22, abs=0.01)
    assert st.ratio(1.0, 0.0) == 0.0 and st.added_ns(0.0, 1.0) == 0.0


def test_rotation_puts_every_tracer_first_once():
    names = ["baseline", "a", "b", "c"]
    firsts = [st.rotation(names, r)[0] for r in range(len(names))]
    assert sorted(firsts) == sorted(names)
    assert all(sorted(st.rotation(names, r)) == sorted(names) for r in range(7))


def test_versus_floor():
    assert st.versus_floor(0.12, 0.10) == pytest.approx(1.2)
    assert st.versus_floor(0.12, 0.0) is None  # no measurable floor: no verdict


def test_prog_stats_from_real_bpftool_output():
    shown = json.loads((DATA / "bench" / "bpftool-prog-show.json").read_text())
    progs = st.parse_prog_stats(shown)
    assert progs, "the sample holds programs with run-time stats"
    by_total = [p["total_ms"] for p in progs]
    assert by_total == sorted(by_total, reverse=True)
    for raw in shown:
        mine = next(p for p in progs if p["id"] == raw["id"])
        runs = raw.get("run_cnt", 0)
        assert mine["runs"] == runs
        if runs:
            assert mine["ns_per_run"] == pytest.approx(raw["run_time_ns"] / runs, abs=0.05)


def test_table_has_a_row_per_tracer_and_dashes_for_missing_cells():
    cells = {"baseline": {"fault": {"ratio": 1.0, "spread_pct": 3.0}},
             "paftrace": {"fault": {"ratio": 0.9123, "spread_pct": 4.4}}}
    text = st.format_table(["baseline", "paftrace", "trace-cmd"], ["fault", "pipe"], cells)
    rows = text.splitlines()
    assert len(rows) == 5
    assert "0.912 (4%)" in rows[3] and rows[4].split() == ["trace-cmd", "-", "-"]


def test_storm_output_parsing():
    assert wl.parse_output("ready\n1254400 2.001047\n") == (1254400, 2.001047)
    with pytest.raises(wl.WorkloadError):
        wl.parse_output("")
    with pytest.raises(wl.WorkloadError):
        wl.parse_output("mmap: Cannot allocate memory\n")


def test_targets_compare_with_the_empty_program():
    cells = {"empty-bpf": {"fault": {"ratio": 0.90}},
             "paftrace -o 4": {"fault": {"ratio": 0.89}},
             "paftrace -o 0+ --all": {"fault": {"ratio": 0.70}}}
    targets = bench.Bench.targets(cells)
    assert targets["paftrace -o 4"]["times_floor"] == pytest.approx(1.1)
    assert targets["paftrace -o 4"]["met"] is True
    assert targets["paftrace -o 0+ --all"]["times_floor"] == pytest.approx(3.0)
    assert targets["paftrace -o 0+ --all"]["met"] is False
    assert "times_raw_floor" not in targets["paftrace -o 4"]  # not measured: not shown
    cells["empty-raw-bpf"] = {"fault": {"ratio": 0.95}}
    raw = bench.Bench.targets(cells)["paftrace -o 4"]
    assert raw["times_raw_floor"] == pytest.approx(2.2)
    assert raw["raw_floor_overhead_pct"] == pytest.approx(5.0)
    assert raw["met"] is True  # the target stays the issue's: the classic empty program


def test_storm_cpu_adds_every_program_and_the_process_per_failure():
    # The numbers of a real profile pass (2 s storms, 3 December): paftrace's programs
    # take less per failure than bpftrace's one, its process more.
    profile = {
        "paftrace -o 4": {"fail": {"ops": 4688, "tracer_cpu_s": 0.0171, "bpf_ms": 16.36}},
        "bpftrace": {"fail": {"ops": 4160, "tracer_cpu_s": 0.0, "bpf_ms": 21.74}},
        "paftrace -o 0+ --all": {"fault": {"ops": 1, "tracer_cpu_s": 0.1, "bpf_ms": 1.0}},
    }
    out = st.storm_cpu(profile)
    mine, theirs = out["paftrace -o 4"], out["bpftrace"]
    assert mine["bpf_us"] == pytest.approx(3.49, abs=0.01)
    assert mine["process_us"] == pytest.approx(3.65, abs=0.01)
    assert mine["total_us"] == pytest.approx(7.14, abs=0.01)
    assert theirs == {"bpf_us": 5.23, "process_us": 0.0, "total_us": 5.23}
    assert mine["met"] is False and mine["peer_total_us"] == 5.23
    assert "paftrace -o 0+ --all" not in out  # no storm in its profile: nothing to judge
    profile["paftrace -o 4"]["fail"]["tracer_cpu_s"] = 0.005
    assert st.storm_cpu(profile)["paftrace -o 4"]["met"] is True
    del profile["bpftrace"]
    assert "met" not in st.storm_cpu(profile)["paftrace -o 4"]  # no peer, no verdict


@needs_root
@pytest.mark.parametrize("workload", sorted(wl.WORKLOADS))
def test_each_workload_runs_and_counts(tmp_path, workload):
    exe = wl.build(tmp_path)
    with wl.PipeMaxSize(wl.PIPE_STORM_BYTES):
        result = wl.run(exe, workload, 0.3)
    assert result.workload == workload
    assert result.ops > 0 and result.seconds >= 0.3


def test_markdown_table_rows_and_missing_tracer():
    cells = {"baseline": {"fault": {"ratio": 1.0, "spread_pct": 2.0, "added_ns_per_op": 0.0}},
             "bpftrace": {"fault": {"ratio": 0.452, "spread_pct": 6.4,
                                    "added_ns_per_op": 1943.6}}}
    text = st.format_markdown(["baseline", "bpftrace", "trace-cmd"], ["fault"], cells,
                              {"bpftrace": 0.099})
    rows = text.splitlines()
    assert rows[1] == "|---|---|---|"
    assert rows[3] == "| bpftrace | 0.452 · 6% · +1944 | 0.10 |"
    assert rows[4] == "| trace-cmd | – | – |"


@needs_root
@pytest.mark.parametrize("fixed", [None, 1])
def test_all_samples_stacks_in_the_kernel_under_the_fault_storm(tmp_path, fixed):
    """Adaptive: the kernel raises 1-in-N as soon as the storm starts (any rate above one
    walk per CPU per period gives N > 1) and marks stack counts as estimates; a fixed
    --stack-sample 1 keeps every stack and exact counts."""
    exe = wl.build(tmp_path)
    args = ["--order", "0", "--all"] + (["--stack-sample", str(fixed)] if fixed else [])
    run = run_tracer(args, lambda: wl.run(exe, "fault", 1.0))
    assert run.returncode == 130, run.stderr
    summary = run.lines[-1]
    assert summary["type"] == "summary" and summary["lost"]["records"] == 0
    rows = summary["allocations"]
    assert sum(r["count"] for r in rows) >= run.workload_result.ops  # every fault counted
    top = max(rows, key=lambda r: r["count"])
    if fixed:
        assert summary["stack_sample_every"] == 1 and not top["stacks_estimated"]
    else:
        assert summary["stack_sample_every"] > 1 and top["stacks_estimated"]
    # Estimates are scaled to the exact count of their key; the summary shows the top 5,
    # so their sum reaches the count only when there are fewer than 5 stacks.
    shown = sum(s["count"] for s in top["stacks"])
    assert top["stacks"] and 0 < shown <= top["count"] * 1.02
    assert len(top["stacks"]) == 5 or shown == pytest.approx(top["count"], rel=0.02)


def test_stop_line_judges_paftrace_against_the_target_only():
    line = bench.stop_line({"paftrace -o 4": 0.09, "paftrace -o 0+ --all": 0.7,
                            "bpftrace": 0.31})
    assert "paftrace -o 4 0.09 (MET <= 0.5 s)" in line
    assert "paftrace -o 0+ --all 0.7 (MISSED <= 0.5 s)" in line
    assert line.endswith("bpftrace 0.31")


def test_perf_stat_counts_parsed_and_uncounted_events_left_out():
    # lines as perf 6.1 prints them here with -x, (count,unit,event,run time,percent,,)
    text = ("0,,kmem:mm_page_alloc_extfrag,2010408878,100.00,,\n"
            "1554,,kmem:mm_page_alloc,2010410504,100.00,,\n"
            "<not supported>,,kmem:mm_compaction_end,0,100.00,,\n")
    assert st.parse_perf_stat_csv(text) == {"kmem:mm_page_alloc_extfrag": 0,
                                            "kmem:mm_page_alloc": 1554}


@needs_root
def test_event_rates_count_each_workloads_page_allocations(tmp_path):
    """perf stat around a real fault storm: it allocates pages, so mm_page_alloc counts."""
    exe = wl.build(tmp_path)
    args = type("Args", (), {"workloads": ["fault"], "seconds": 1.0})()
    bench_ = bench.Bench.__new__(bench.Bench)
    bench_.args, bench_.exe = args, exe
    rates = bench_.event_rates()["fault"]
    assert rates["ops_per_s"] > 0
    assert rates["kmem:mm_page_alloc"] > rates["ops_per_s"] / 2  # a page per fault, at least
    assert rates["kmem:mm_page_alloc_extfrag"] >= 0


def test_before_runs_the_other_tree_even_from_a_checkout(tmp_path, monkeypatch):
    """`--before TREE` runs TREE's paftrace although the bench is started in a checkout
    (whose own paftrace `python -m` would find first): measured, it had compared the
    checkout with itself."""
    import tracers

    tree = tmp_path / "tree"
    (tree / "paftrace").mkdir(parents=True)
    (tree / "paftrace" / "__init__.py").write_text("")
    (tree / "paftrace" / "__main__.py").write_text(
        "import sys, time\n"
        "print('{\"type\":\"attached\"}', flush=True)\n"
        "print('from', __file__, flush=True)\n"
        "time.sleep(30)\n")
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)  # a checkout with paftrace/
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    run = tracers.Running(tracers.before_tracers(sys.executable, str(tree))[0], scratch)
    try:
        run.wait_ready(timeout=30)
        for _ in range(100):
            if len(run.stdout_tail) == 2:
                break
            time.sleep(0.05)
        assert run.stdout_tail[-1] == f"from {tree / 'paftrace' / '__main__.py'}"
    finally:
        run.proc.kill()
        run.proc.wait()


@pytest.mark.parametrize(("flag", "option"), [("--storm-ab", "--tree"),
                                              ("--hook-ab", "--window"),
                                              ("--start-parts", "--json")])
def test_side_by_side_scripts_are_reachable_from_the_bench_command(flag, option):
    import subprocess

    out = subprocess.run([str(BENCH_DATA.parent / "bench"), flag, "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--rounds" in out.stdout and option in out.stdout


@needs_root
def test_start_parts_times_every_part_of_a_real_start(tmp_path):
    import subprocess

    out = tmp_path / "parts.json"
    done = subprocess.run([str(BENCH_DATA.parent / "bench"), "--start-parts", "--rounds", "1",
                           "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    parts = {row: values[0] for row, values in json.loads(out.read_text()).items()}
    assert len(parts) == 12 and all(seconds > 0 for seconds in parts.values()), parts
    # The same compiler, a bigger program (0.23 and 0.44 s here): the timer is on clang.
    assert parts["compile empty raw program: libbcc compile"] < \
        parts["compile paftrace -o 4: libbcc compile"]
    assert "start to attached: paftrace -o 4" in done.stdout


def test_failure_count_comes_from_the_record_and_a_task_name_cannot_fake_it():
    import tracers  # noqa: PLC0415 - bench-data is on sys.path above

    from paftrace.render.jsonl import JsonRenderer  # noqa: PLC0415
    from tests.test_coalescing import failure  # noqa: PLC0415

    storm = failure(5, count=480)
    storm.comm = '"count":999'  # task names are any bytes but NUL
    assert tracers.failures_in_line(JsonRenderer().encode_failure(storm)) == 480
    assert tracers.failures_in_line(JsonRenderer().encode_failure(failure(5))) == 1
    # Before `count`; the stall object's own counts are not the record's.
    old = ('{"type":"failure","ts_ns":5,"comm":"w","order":4,'
           '"stall":{"direct_reclaim":{"count":0,"total_ms":0}}}')
    assert tracers.failures_in_line(old) == 1
    with_stall = failure(5, count=7)
    with_stall.stall = {"direct_reclaim": {"count": 3, "total_ms": 1.0}}
    assert tracers.failures_in_line(JsonRenderer().encode_failure(with_stall)) == 7


class FakeHook:
    """A hook whose attachment makes an operation `cost_ns` slower."""

    def __init__(self, name: str, cost_ns: float, attached: list):
        self.name, self.cost_ns, self._attached = name, cost_ns, attached

    def attach(self) -> None:
        assert not self._attached, "two hooks attached at once"
        self._attached.append(self)

    def detach(self) -> None:
        self._attached.remove(self)


def test_hook_ab_pairs_each_window_with_its_rounds_no_hook_window():
    attached: list = []
    costs = {hook_ab.FLOOR: 170.0, hook_ab.RAW_FLOOR: 35.0, "paftrace --all": 60.0}
    hooks = [FakeHook(n, c, attached) for n, c in costs.items()]
    base_ns = iter([1000.0, 3000.0, 1500.0] * 20)  # the machine's speed, per round
    state = {"round_ns": 0.0, "left": 0}

    def run() -> float:
        if state["left"] == 0:  # a new round: every window of it runs at this speed
            state["round_ns"], state["left"] = next(base_ns), len(hooks) + 1
        state["left"] -= 1
        extra = attached[0].cost_ns if attached else 0.0
        return 1e9 / (state["round_ns"] + extra)

    added = hook_ab.measure(hooks, run, rounds=6)
    assert not attached  # every hook detached again
    result = hook_ab.summary(added)
    # A round three times slower than the next does not leak into the added time.
    for name, cost in costs.items():
        assert result[name]["added_ns_median"] == pytest.approx(cost)
        assert result[name]["rounds"] == 6
    assert result["paftrace --all"]["times_floor"] == pytest.approx(60 / 170, abs=0.01)
    assert result["paftrace --all"]["times_raw_floor"] == pytest.approx(60 / 35, abs=0.01)


def test_tracer_cpu_is_read_to_the_nanosecond_from_the_process_clock():
    import subprocess

    from tracers import process_cpu_seconds

    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.process_time()\n"
                             "while time.process_time() - t < 0.03: pass\ninput()"],
                            stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while process_cpu_seconds(busy.pid) < 0.03 and time.monotonic() < deadline:
            time.sleep(0.01)
        used = process_cpu_seconds(busy.pid)
        assert 0.03 <= used < 5 and used != round(used, 2)  # not in 10 ms clock ticks
    finally:
        busy.communicate(b"\n")
    assert process_cpu_seconds(busy.pid) == 0.0  # reaped: no such process


def test_a_floor_that_cost_nothing_gives_no_multiple_and_no_verdict():
    cells = {"empty-bpf": {"fault": {"ratio": 1.0, "spread_pct": 9.0}},
             "paftrace -o 4": {"fault": {"ratio": 0.99, "spread_pct": 9.0}}}
    target = bench.Bench.targets(cells)["paftrace -o 4"]
    assert target["times_floor"] is None and target["met"] is None
    assert st.multiple(None) == "no multiple of" and st.multiple(1.4) == "1.4x"
    args = bench.BenchArgs(rounds=1, seconds=1, workloads=["fault"], tracers=None,
                           no_profile=True, start_stop=False, soak=None, markdown=False,
                           json=None)
    res = {"cells": cells, "targets": {"paftrace -o 4": target}, "startup_s": {},
           "stop_to_exit_s": {}, "storm": {}, "failure_storm": {}, "rss_kib": {},
           "unavailable": {}, "disturbances": []}
    line = next(x for x in bench.report(res, args, list(cells)).splitlines()
                if x.startswith("(a)"))
    assert "None" not in line and "no multiple of the empty program's" in line
    assert line.endswith("not decided by this run")
