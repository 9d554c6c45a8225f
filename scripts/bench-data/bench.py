"""scripts/bench: what watching kmem:mm_page_alloc costs, paftrace against its peers.

Every tracer runs in every round (rotated order, baseline included), each for all
workloads while attached, so slow drift and the other guests on this machine hit
all tracers alike. Prints, per tracer and workload, throughput as a ratio to the
baseline (median of the rounds, spread = (max - min) / median); --json writes it.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import benchstats as st
import click
import scrape as sc
import workloads as wl
from tracers import Running, Tracer, TracerError, all_tracers, before_tracers

from paftrace.tracefs import TraceFs

BPF_STATS = Path("/proc/sys/kernel/bpf_stats_enabled")
PROFILED = ("empty-bpf", "empty-raw-bpf", "paftrace -o 4", "paftrace -o 0+ --all",
            "paftrace exporter -o 4", "bpftrace")
PROFILE_WORKLOADS = ("fault", "fail")
SOAK_TRACER = "paftrace -o 0+ --all"
EXPORTER_ALL_ORDERS = "paftrace exporter -o 0+"
SCRAPES = 300  # back-to-back scrapes for the latency percentiles
# After attaching, bpftrace and perf still set up for a moment: start measuring later.
SETTLE_S = 0.5


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def paftrace_command() -> list[str]:
    # This checkout's paftrace (scripts/bench puts it first on PYTHONPATH), not
    # whichever `paftrace` is on PATH.
    return [sys.executable, "-m", "paftrace"]


def summary_of(run: Running) -> dict:
    for line in reversed(run.stdout_tail):
        if line.startswith('{"type":"summary"'):
            return json.loads(line)
    return {}


def failure_check(summary: dict, run: Running, storm_failures: int) -> dict:
    """Did paftrace see every failure of the storm, exactly, with nothing lost?
    The kernel's counter is system-wide: on a shared machine another process may
    fail order-4 allocations too (`others`); each of those needs its record as well."""
    counted = summary.get("orders", {}).get(str(wl.FAIL_ORDER), {}).get("failures", 0)
    lost = summary.get("lost", {})
    return {"storm_failures": storm_failures, "kernel_counted": counted,
            "others": counted - storm_failures,
            "records_received": run.failure_lines,
            "failures_received": run.failures,
            "reported_in_summary": summary.get("failures_reported"),
            "coalesced_in_summary": summary.get("failures_coalesced"),
            "lost_records": lost.get("records"),
            "exact": counted == run.failures and counted >= storm_failures
            and not lost.get("records")}


def prog_stats(run: Running) -> list[dict]:
    """`bpftool prog show --json` entries of the programs `run` holds."""
    ids = set(run.bpf_prog_ids())
    shown = subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True,
                           text=True).stdout
    return [p for p in json.loads(shown or "[]") if p.get("id") in ids]


def exporter_check(text: str, storm_failures: int) -> dict:
    """Did the exporter's counters see every failure of the storm, with nothing lost?"""
    counted = sc.order_failures(text, wl.FAIL_ORDER)
    lost = int(sum(sc.samples(text).get("paftrace_lost_records_total", {}).values()))
    return {"storm_failures": storm_failures, "exported": counted, "lost_records": lost,
            "exact": counted == storm_failures and not lost}


def exporter_all_orders() -> Tracer:
    return Tracer(EXPORTER_ALL_ORDERS, (*paftrace_command(), "exporter", "--order", "0+",
                                        "--listen", "127.0.0.1:0"),
                  "paftrace exporter: serving ", paftrace=True, exporter=True)


def preflight() -> list[str]:
    """Anything already watching mm_page_alloc would slow the baseline too."""
    found = []
    root = TraceFs().locate()
    for enable in root.glob("**/events/kmem/mm_page_alloc/enable") if root else ():
        if enable.read_text().strip() != "0":
            found.append(f"ftrace event enabled: {enable} (echo 0 > it)")
    shown = subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True,
                           text=True) if shutil.which("bpftool") else None
    for prog in json.loads(shown.stdout or "[]") if shown else ():
        if "mm_page_alloc" in prog.get("name", ""):
            found.append(f"BPF program {prog['id']} {prog['name']} already loaded "
                         f"(pids {[p.get('pid') for p in prog.get('pids', [])]})")
    return found


class FtraceState:
    """trace-cmd that fails to start (here: EPERM on ftrace_enabled) leaves ftrace
    options set; put back what the bench found."""

    FILES = ("events/kmem/mm_page_alloc/enable", "options/stacktrace")

    def __enter__(self) -> FtraceState:
        root = TraceFs().locate()
        self.saved = {root / f: (root / f).read_text() for f in self.FILES
                      if root and (root / f).exists()}
        return self

    def __exit__(self, *exc: object) -> None:
        for path, text in self.saved.items():
            if path.read_text() != text:
                path.write_text(text)


class Bench:
    def __init__(self, args: BenchArgs, exe: Path, scratch: Path):
        self.args = args
        self.exe = exe
        self.scratch = scratch
        candidates = all_tracers(sys.executable, paftrace_command())
        if args.before:
            candidates[4:4] = before_tracers(sys.executable, args.before)
        self.tracers = [t for t in candidates if not args.tracers or t.name in args.tracers
                        or t.pythonpath]
        self.unavailable: dict[str, str] = {}
        self.rates: dict[str, dict[str, list[float]]] = {}
        self.startup: dict[str, list[float]] = {}
        self.stop_s: dict[str, list[float]] = {}
        self.rss_kib: dict[str, list[int]] = {}
        self.failure_runs: dict[str, list[dict]] = {}
        self.user_us: dict[str, list[float]] = {}

    def start(self, tracer: Tracer) -> Running | None:
        if not shutil.which(tracer.command(self.scratch)[0]):
            self.unavailable[tracer.name] = f"{tracer.argv[0]} not installed"
            return None
        run = Running(tracer, self.scratch)
        try:
            seconds = run.wait_ready()
            time.sleep(SETTLE_S)
        except TracerError as exc:
            self.unavailable[tracer.name] = f"failed to start: {exc}"
            run.stop()
            return None
        except BaseException:  # interrupted while it starts: never leave it running
            run.stop()
            raise
        self.startup.setdefault(tracer.name, []).append(seconds)
        return run

    def stop(self, run: Running) -> None:
        run.stop()
        if run.stop_s is not None:
            self.stop_s.setdefault(run.tracer.name, []).append(run.stop_s)

    def start_stop(self) -> None:
        """Only start and stop each tracer, rounds times (rotated): no workload."""
        names = [t.name for t in self.tracers if t.name != "baseline"]
        by_name = {t.name: t for t in self.tracers}
        for r in range(self.args.rounds):
            for name in st.rotation(names, r):
                if name in self.unavailable:
                    continue
                run = self.start(by_name[name])
                if run is not None:
                    self.stop(run)
                    log(f"round {r + 1}/{self.args.rounds} {name:24} start "
                        f"{self.startup[name][-1]:.2f} s, stop {run.stop_s or 0:.2f} s")

    def one_pass(self, tracer: Tracer) -> None:
        run = None if tracer.name == "baseline" else self.start(tracer)
        if tracer.name != "baseline" and run is None:
            return
        fails = 0
        exported = None
        try:
            # An exporter is scraped every second meanwhile, as Prometheus would.
            with sc.Scraper(run.metrics_url()) if run and tracer.exporter \
                    else contextlib.nullcontext():
                for workload in self.args.workloads:
                    cpu_before = run.cpu_seconds() if run else 0.0
                    failures_before = run.failures if run else 0
                    result = wl.run(self.exe, workload, self.args.seconds)
                    self.rates.setdefault(tracer.name, {}).setdefault(workload, []).append(
                        result.rate)
                    fails += result.ops if workload == "fail" else 0
                    if run and tracer.paftrace and workload == "fail":
                        self.note_user_cost(tracer.name, run, cpu_before, failures_before)
            if run and tracer.paftrace:
                self.rss_kib.setdefault(tracer.name, []).append(run.rss_kib())
            if run and tracer.exporter:
                exported = sc.settled(run.metrics_url())
        finally:
            if run:
                self.stop(run)
                for leftover in self.scratch.iterdir():
                    leftover.unlink()
        if run and tracer.paftrace and "fail" in self.args.workloads:
            check = exporter_check(exported, fails) if exported is not None else \
                failure_check(summary_of(run), run, fails)
            self.failure_runs.setdefault(tracer.name, []).append(
                {**check, "failures_per_s": round(self.rates[tracer.name]["fail"][-1])})

    def note_user_cost(self, name: str, run: Running, cpu_before: float,
                       failures_before: int) -> None:
        """paftrace's CPU per failure during workload (c): per record before storm
        coalescing (a record's decoding and output is the only work its Python does per
        failure), per failure since (a coalesced record stands for many). Read after the
        records are out (the reader polls every 100 ms and reports coalesced failures
        every 0.5 s: tracer.COALESCED_EVERY_S)."""
        time.sleep(0.8)
        failures = run.failures - failures_before
        if failures > 0:
            self.user_us.setdefault(name, []).append(
                1e6 * (run.cpu_seconds() - cpu_before) / failures)

    def rounds(self) -> None:
        names = [t.name for t in self.tracers]
        by_name = {t.name: t for t in self.tracers}
        for r in range(self.args.rounds):
            for name in st.rotation(names, r):
                if name in self.unavailable:
                    continue
                t0 = time.monotonic()
                self.one_pass(by_name[name])
                log(f"round {r + 1}/{self.args.rounds} {name:24} {time.monotonic() - t0:5.1f} s"
                    + (f"  (unavailable: {self.unavailable[name]})"
                       if name in self.unavailable else ""))

    def profile(self) -> dict[str, dict]:
        """Kernel-side cost per program run (kernel.bpf_stats_enabled) during
        workloads (a) and (c), and for (c) the tracer's CPU per failure."""
        out: dict[str, dict] = {}
        if not shutil.which("bpftool"):
            log("bench: no bpftool (apt-get install bpftool): kernel-side profile skipped")
            return out
        old = BPF_STATS.read_text().strip()
        BPF_STATS.write_text("1")
        try:
            for tracer in self.tracers:
                if (tracer.name not in PROFILED and not tracer.pythonpath) \
                        or tracer.name in self.unavailable:
                    continue
                run = self.start(tracer)
                if run is None:
                    continue
                try:
                    out[tracer.name] = {w: self.profile_workload(run, w)
                                        for w in PROFILE_WORKLOADS if w in self.args.workloads}
                finally:
                    run.stop()
        finally:
            BPF_STATS.write_text(old)
        return out

    def profile_workload(self, run: Running, workload: str) -> dict:
        before = prog_stats(run)
        cpu = run.cpu_seconds()
        result = wl.run(self.exe, workload, self.args.seconds)
        time.sleep(0.3)  # the records of the last poll interval
        cpu = run.cpu_seconds() - cpu
        delta = st.delta_prog_stats(before, prog_stats(run))
        progs = st.parse_prog_stats(delta)
        return {"ops_per_s": round(result.rate), "ops": result.ops,
                "tracer_cpu_s": round(cpu, 6),
                "bpf_ms": round(sum(p.get("run_time_ns", 0) for p in delta) / 1e6, 3),
                "programs": [p for p in progs if p["runs"]]}

    def event_rates(self) -> dict[str, dict[str, float]]:
        """Allocator events per second in each workload, no tracer attached: counted
        by `perf stat -a`, enabled just around the workload's run."""
        if not shutil.which("perf"):
            log("bench: no perf (apt-get install linux-perf): event rates skipped")
            return {}
        if not perf_counts_reliably():
            log("bench: perf stat kept missing page allocations: event rates skipped")
            return {}
        out = {}
        for workload in self.args.workloads:
            with PerfCounts(st.RATE_EVENTS) as perf:
                result = wl.run(self.exe, workload, self.args.seconds)
            out[workload] = {"ops_per_s": round(result.rate),
                             **{e: round(n / self.args.seconds, 1)
                                for e, n in perf.counts.items()}}
        return out

    def soak(self, seconds: float, name: str = SOAK_TRACER) -> dict:
        """RSS of a tracer while the order-0 storm runs for `seconds`; an exporter is
        also scraped every second and sees an order-4 failure storm every half minute."""
        tracer = exporter_all_orders() if name == EXPORTER_ALL_ORDERS else next(
            t for t in all_tracers(sys.executable, paftrace_command()) if t.name == name)
        run = self.start(tracer)
        if run is None:
            return {"tracer": name, "error": self.unavailable.get(name)}
        samples = []
        scraper = sc.Scraper(run.metrics_url()) if tracer.exporter else None
        try:
            with scraper or contextlib.nullcontext():
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    wl.run(self.exe, "fault", min(25.0, max(1.0, end - time.monotonic())))
                    if tracer.exporter and time.monotonic() < end:
                        wl.run(self.exe, "fail", 5.0)
                    samples.append(run.rss_kib())
                    log(f"soak {seconds - (end - time.monotonic()):5.0f} s rss "
                        f"{samples[-1]} KiB")
        finally:
            run.stop()
        out = {"tracer": name, "seconds": seconds, "rss_kib_first": samples[0],
               "rss_kib_last": samples[-1], "rss_kib_max": max(samples)}
        if scraper is not None:
            out["scrape"] = sc.latency_summary(scraper.latencies)
            out["scrape_errors"] = len(scraper.errors)
            out["lost"] = sum(sc.samples(scraper.last_text).get(
                "paftrace_lost_records_total", {}).values())
        else:
            out["lost"] = summary_of(run).get("lost")
        return out

    def scrape_latency(self) -> dict:
        """Scrape latency of the exporter watching every order, all its series present
        (failure series from an order-4 storm first): back to back, then again during
        the page-fault storm (one core busy)."""
        run = self.start(exporter_all_orders())
        if run is None:
            return {"error": self.unavailable.get(EXPORTER_ALL_ORDERS)}
        try:
            url = run.metrics_url()
            wl.run(self.exe, "fail", 1.0)
            quiet = [sc.scrape(url)[0] for _ in range(SCRAPES)]
            busy = {}
            for workload in ("fault", "fail"):
                storm = threading.Thread(target=wl.run, args=(self.exe, workload, 20.0),
                                         daemon=True)
                storm.start()
                time.sleep(0.5)  # the fail storm sets up its cgroup first
                busy[workload] = [sc.scrape(url)[0] for _ in range(SCRAPES)
                                  if storm.is_alive()]
                storm.join()
            found = sc.samples(sc.scrape(url)[1])
        finally:
            run.stop()
        return {**sc.latency_summary(quiet),
                "during_fault_storm": sc.latency_summary(busy["fault"]),
                "during_failure_storm": sc.latency_summary(busy["fail"]),
                "series": sum(len(v) for v in found.values()),
                "failure_series": len(found.get("paftrace_page_alloc_failures_total", {})),
                "collect_ms": round(1000 * found["paftrace_scrape_duration_seconds"][()], 2)}

    def results(self) -> dict:
        base = {w: st.spread(v) for w, v in self.rates.get("baseline", {}).items()}
        cells: dict[str, dict[str, dict]] = {}
        for name, by_workload in self.rates.items():
            for w, values in by_workload.items():
                s = st.spread(values)
                r = st.ratio(s.median, base[w].median) if w in base else 0.0
                cells.setdefault(name, {})[w] = {
                    "median_ops_per_s": round(s.median), "min": round(s.low),
                    "max": round(s.high), "runs": s.runs, "spread_pct": round(s.spread_pct, 1),
                    "ratio": round(r, 4), "overhead_pct": round(100 * st.overhead(r), 1),
                    "added_ns_per_op": round(st.added_ns(s.median, base[w].median), 1)
                    if w in base else None}
        user_us = {n: st.spread(v).median for n, v in self.user_us.items()}
        return {"cells": cells, "targets": self.targets(cells),
                "storm": st.storm_verdicts(cells, user_us),
                "user_us_per_failure": {n: {"median": round(st.spread(v).median, 1),
                                           "min": round(min(v), 1), "max": round(max(v), 1)}
                                       for n, v in self.user_us.items()},
                "startup_s": {n: round(st.spread(v).median, 3) for n, v in self.startup.items()},
                "stop_to_exit_s": {n: round(st.spread(v).median, 3)
                                   for n, v in self.stop_s.items()},
                "rss_kib": {n: max(v) for n, v in self.rss_kib.items()},
                "failure_storm": self.failure_runs, "unavailable": self.unavailable}

    @staticmethod
    def targets(cells: dict[str, dict[str, dict]]) -> dict:
        def oh(name: str) -> float | None:
            cell = cells.get(name, {}).get("fault")
            return st.overhead(cell["ratio"]) if cell else None

        floor = oh("empty-bpf")
        raw_floor = oh("empty-raw-bpf")  # the cheaper hook paftrace uses since 4.17
        out = {}
        for name, limit in (("paftrace -o 4", st.TARGET_ORDER4_VS_FLOOR),
                            ("paftrace -o 0+ --all", st.TARGET_ALL_VS_FLOOR),
                            ("paftrace exporter -o 4", st.TARGET_ORDER4_VS_FLOOR),
                            ("bpftrace", None), ("perf record -g", None)):
            mine = oh(name)
            if mine is None or floor is None:
                continue
            times = st.versus_floor(mine, floor)
            out[name] = {"overhead_pct": round(100 * mine, 1),
                         "floor_overhead_pct": round(100 * floor, 1),
                         "times_floor": None if times is None else round(times, 2),
                         "target_times_floor": limit,
                         "met": None if limit is None or times is None else times <= limit}
            raw_times = None if raw_floor is None else st.versus_floor(mine, raw_floor)
            if raw_times is not None:
                out[name] |= {"raw_floor_overhead_pct": round(100 * raw_floor, 1),
                              "times_raw_floor": round(raw_times, 2)}
        return out


def stop_line(stops: dict[str, float]) -> str:
    """Ctrl-C to exit, side by side; paftrace's against its target."""
    return "Ctrl-C to exit (median s): " + ", ".join(
        f"{n} {v}" + ("" if not n.startswith("paftrace") else
                      f" ({'MET' if v <= st.TARGET_STOP_S else 'MISSED'} <= "
                      f"{st.TARGET_STOP_S} s)")
        for n, v in stops.items())


def release_side_by_side(rounds: int) -> dict[str, list[float]]:
    """Seconds to let go of paftrace's probes, bcc's cleanup (one tracepoint after the
    other, each waiting a grace period) against paftrace.release, alternated in this
    process. Tracepoints another tracer holds too are released without the wait, so
    other tracers running on the machine make bcc's numbers smaller."""
    from paftrace.loader import load  # noqa: PLC0415 - root and bcc only here
    from paftrace.options import TraceOptions  # noqa: PLC0415
    from paftrace.release import release  # noqa: PLC0415

    times: dict[str, list[float]] = {"bcc cleanup": [], "paftrace release": []}
    for _ in range(rounds):
        for way in times:
            _, program, _ = load(TraceOptions(order_min=4, order_max=4))
            t0 = time.monotonic()
            if way == "bcc cleanup":
                program.bpf.cleanup()
            else:
                release(program.bpf, program.bcc)
            times[way].append(time.monotonic() - t0)
    return times


def start_stop_report(bench: Bench) -> str:
    lines = [f"start and stop only, median of {bench.args.rounds} rotated rounds"]
    lines.append("start to attached (median s): " + ", ".join(
        f"{n} {round(st.spread(v).median, 3)}" for n, v in bench.startup.items()))
    lines.append(stop_line({n: round(st.spread(v).median, 3)
                            for n, v in bench.stop_s.items()}))
    lines += [f"unavailable: {n}: {why}" for n, why in bench.unavailable.items()]
    try:
        released = release_side_by_side(bench.args.rounds)
    except RuntimeError as exc:  # LoaderError: the tracers above said why already
        return "\n".join([*lines, f"releasing the probes: not measured ({exc})"])
    medians = {way: st.spread(v).median for way, v in released.items()}
    lines.append("releasing the probes (median s, alternated): " + ", ".join(
        f"{way} {m:.3f}" for way, m in medians.items()) +
        f" ({medians['bcc cleanup'] / max(medians['paftrace release'], 1e-6):.0f}x)")
    return "\n".join(lines)


class PerfCounts:
    """`perf stat -a` counting EVENTS only while the block runs: started disabled and
    switched through its control FIFO (perf 5.10+ `--control fifo:CTL,ACK`, `-D -1`),
    so neither its own start-up nor the wait for it is counted. `counts` after exit."""

    def __init__(self, events: tuple[str, ...]) -> None:
        self.events = events
        self.counts: dict[str, int] = {}

    def __enter__(self) -> PerfCounts:
        self.dir = tempfile.TemporaryDirectory(prefix="paftrace-bench-perf-")
        ctl, ack = (Path(self.dir.name) / n for n in ("ctl", "ack"))
        for fifo in (ctl, ack):
            os.mkfifo(fifo)
        # opened read-write, so that neither side blocks waiting for the other
        self.ctl, self.ack = os.open(ctl, os.O_RDWR), os.open(ack, os.O_RDWR)
        events = [arg for e in self.events for arg in ("-e", e)]
        self.proc = subprocess.Popen(
            ["perf", "stat", "-a", "-x,", "-D", "-1", "--control", f"fifo:{ctl},{ack}",
             *events],  # no command: it counts until SIGINT
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.command("enable")
        return self

    def command(self, word: str) -> None:
        os.write(self.ctl, f"{word}\n".encode())
        ready, _, _ = select.select([self.ack], [], [], 30)
        if not ready:
            self.proc.kill()
            raise OSError(f"perf stat did not acknowledge '{word}' in 30 s")
        os.read(self.ack, 64)

    def __exit__(self, *exc: object) -> None:
        try:
            if self.proc.poll() is None and exc[0] is None:
                self.command("disable")
        finally:
            self.proc.send_signal(signal.SIGINT)  # perf prints the counts and exits
            try:
                stderr = self.proc.communicate(timeout=60)[1]
            except subprocess.TimeoutExpired:
                self.proc.kill()
                stderr = self.proc.communicate()[1]
            os.close(self.ctl)
            os.close(self.ack)
            self.dir.cleanup()
        self.counts = st.parse_perf_stat_csv(stderr)


def touch_pages(nbytes: int = 4 << 20) -> int:
    """Fault in `nbytes` of fresh anonymous memory, a page at a time; returns the pages."""
    area = mmap.mmap(-1, nbytes)
    for offset in range(0, nbytes, mmap.PAGESIZE):
        area[offset] = 1
    area.close()
    return nbytes // mmap.PAGESIZE


def perf_counts_reliably(timeout: float = 30.0) -> bool:
    """Wait until `perf stat -a` counts every page allocation it is shown (a probe that
    faults in 1,024 pages). Right after a tracer on kmem:mm_page_alloc exits, new perf
    counters on that tracepoint counted nothing for ~0.6 s, then part, then all (~1.9 s
    here on 6.18, while the tracer's probes were still being released); not understood."""
    deadline = time.monotonic() + timeout
    while True:
        with PerfCounts(("kmem:mm_page_alloc",)) as probe:
            touched = touch_pages()
        if probe.counts.get("kmem:mm_page_alloc", 0) >= touched:
            return True
        if time.monotonic() > deadline:
            return False


def report(res: dict, args: BenchArgs, tracer_names: list[str]) -> str:
    lines = [f"throughput / baseline, median of {args.rounds} interleaved rounds of "
             f"{args.seconds:g} s (spread = (max-min)/median)"]
    for w in args.workloads:
        lines.append(f"  {w}: {wl.WORKLOADS[w]}")
    base = res["cells"].get("baseline", {})
    lines.append("  baseline: " + ", ".join(f"{w} {base[w]['median_ops_per_s']:,} ops/s"
                                             for w in args.workloads if w in base))
    lines.append(st.format_table(tracer_names, args.workloads, res["cells"]))
    for name, t in res["targets"].items():
        verdict = {True: "MET", False: "MISSED", None: "not decided by this run"}[t["met"]]
        goal = f", target <= {t['target_times_floor']}x: {verdict}" \
            if t["target_times_floor"] else ""
        raw = f"; {st.multiple(t['times_raw_floor'])} the empty raw tracepoint program's " \
            f"{t['raw_floor_overhead_pct']}%" if "times_raw_floor" in t else ""
        lines.append(f"(a) {name}: overhead {t['overhead_pct']}% = "
                     f"{st.multiple(t['times_floor'])} the empty program's "
                     f"{t['floor_overhead_pct']}%{goal}{raw}")
    lines.append("start to attached (median s): " + ", ".join(
        f"{n} {v}" + ("" if not n.startswith("paftrace") else
                      f" ({'MET' if v <= st.TARGET_STARTUP_S else 'MISSED'} <= "
                      f"{st.TARGET_STARTUP_S} s)")
        for n, v in res["startup_s"].items()))
    lines.append(stop_line(res["stop_to_exit_s"]))
    for name, v in res["storm"].items():
        peer = (f"{v['peer']} {v['peer_overhead_pct']}%: "
                f"{'MET' if v['met'] else 'MISSED'} (<= {v['peer']})"
                if v["peer_overhead_pct"] is not None else f"{v['peer']} not measured")
        user = "" if v["user_us_per_failure"] is None else (
            f"; user space {v['user_us_per_failure']} us/failure: "
            f"{'MET' if v['user_met'] else 'MISSED'} (<= {st.TARGET_USER_US_PER_FAILURE:g})")
        lines.append(f"(c) {name}: overhead {v['overhead_pct']}% vs {peer}{user}")
    for name, v in res.get("storm_cpu", {}).items():
        verdict = "" if v.get("met") is None else (
            f": {'MET' if v['met'] else 'MISSED'} (<= {v['peer']} {v['peer_total_us']} us)")
        lines.append(f"(c) {name}: CPU per failure {v['total_us']} us = BPF programs "
                     f"{v['bpf_us']} + tracer process {v['process_us']}{verdict}")
    for name, runs in res["failure_storm"].items():
        ok = [r["failures_per_s"] for r in runs if r["exact"]]
        lines.append(f"failure storm, {name}: {len(ok)}/{len(runs)} runs exact with 0 lost; "
                     f"highest exact rate {max(ok) if ok else 0:,} failures/s")
    lines += [f"rss {n}: {v / 1024:.1f} MiB" for n, v in res["rss_kib"].items()]
    lines += [f"unavailable: {n}: {why}" for n, why in res["unavailable"].items()]
    lines += [f"WARNING, disturbed: {d}" for d in res["disturbances"]]
    for name, prof in res.get("profile", {}).items():
        for w, p in prof.items():
            lines.append(f"profile {name}, ({w}) {p['ops_per_s']:,}/s, tracer CPU "
                         f"{p['tracer_cpu_s']} s: " +
                         "; ".join(f"{g['name']} {g['ns_per_run']} ns x {g['runs']:,}"
                                   for g in p["programs"][:5]))
    for w, rates in res.get("event_rates", {}).items():
        lines.append(f"event rates, ({w}) no tracer: " + ", ".join(
            f"{e.split(':')[1]} {rates[e]:,}/s" for e in st.RATE_EVENTS if e in rates))
    if "scrape" in res:
        sl = res["scrape"]
        if "error" in sl:
            lines.append(f"scrape latency, {EXPORTER_ALL_ORDERS}: unavailable: {sl['error']}")
        else:
            busy, fails = sl["during_fault_storm"], sl["during_failure_storm"]
            lines.append(f"scrape latency, {EXPORTER_ALL_ORDERS}, {sl['series']} series, "
                         f"{sl['scrapes']} back-to-back scrapes: p50 {sl['p50_ms']} ms, p99 "
                         f"{sl['p99_ms']} ms, max {sl['max_ms']} ms, target p99 < "
                         f"{sl['target_p99_ms']:g} ms: {'MET' if sl['met'] else 'MISSED'}; "
                         f"during the fault storm p50 {busy['p50_ms']} ms, p99 {busy['p99_ms']} "
                         f"ms; during the failure storm p50 {fails['p50_ms']} ms, p99 "
                         f"{fails['p99_ms']} ms; collect {sl['collect_ms']} ms in the exporter")
    if "soak" in res:
        lines.append(f"soak: {json.dumps(res['soak'])}")
    if args.markdown:
        lines += ["", st.format_markdown(tracer_names, args.workloads, res["cells"],
                                         res["startup_s"])]
    return "\n".join(lines)


@dataclass
class BenchArgs:
    rounds: int
    seconds: float
    workloads: list[str]
    tracers: set[str] | None
    no_profile: bool
    start_stop: bool
    soak: float | None
    markdown: bool
    json: str | None
    soak_tracer: str = SOAK_TRACER
    no_scrape: bool = False
    before: str | None = None


def _workloads(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    names = [w for w in value.split(",") if w]
    unknown = set(names) - wl.WORKLOADS.keys()
    if unknown:
        raise click.BadParameter(f"unknown workload(s) {', '.join(sorted(unknown))}: use "
                                 "fault, pipe, fail")
    return names


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--quick", is_flag=True, help="About a minute: 2 rounds of 1 s.")
@click.option("--rounds", type=click.IntRange(min=1), help="Interleaved rounds (default 5, "
              "--quick 2).")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True),
              help="Per workload run (default 2, --quick 1).")
@click.option("--workloads", default="fault,pipe,fail", show_default=True, callback=_workloads,
              help="Subset of fault,pipe,fail.")
@click.option("--tracers", help="Comma-separated subset of tracer names.")
@click.option("--no-profile", is_flag=True, help="Skip the bpf_stats pass.")
@click.option("--start-stop", is_flag=True,
              help="Only start and stop each tracer (--rounds times): start-up and "
                   "Ctrl-C-to-exit times side by side, then the probe release both ways.")
@click.option("--before", type=click.Path(exists=True, file_okay=False),
              help="Another paftrace source tree (e.g. a worktree of the previous commit): "
              "its -o 4 and --all run in the same rounds, as 'before: ...'.")
@click.option("--soak", type=float, is_flag=False, flag_value=600.0, metavar="[SECONDS]",
              help="Also: RSS of --soak-tracer after SECONDS (600) of the order-0 storm.")
@click.option("--soak-tracer", type=click.Choice([SOAK_TRACER, EXPORTER_ALL_ORDERS]),
              default=SOAK_TRACER, show_default=True,
              help="What --soak watches; the exporter is scraped every second and also sees "
                   "order-4 failure storms.")
@click.option("--no-scrape", is_flag=True, help="Skip the exporter's scrape-latency pass.")
@click.option("--markdown", is_flag=True, help="Also print the table of docs/PERFORMANCE.md.")
@click.option("--json", "json_path", is_flag=False, flag_value="-", metavar="[PATH]",
              help="Write the results as JSON to PATH (- or no value: stdout).")
def cli(quick: bool, rounds: int | None, seconds: float | None, workloads: list[str],
        tracers: str | None, no_profile: bool, start_stop: bool, soak: float | None,
        soak_tracer: str, no_scrape: bool, markdown: bool, json_path: str | None,
        before: str | None) -> None:
    """Overhead of paftrace against its peers, measured side by side (root)."""
    args = BenchArgs(rounds=rounds or (2 if quick else 5),
                     seconds=seconds or (1.0 if quick else 2.0), workloads=workloads,
                     tracers=set(tracers.split(",")) | {"baseline"} if tracers else None,
                     no_profile=no_profile, start_stop=start_stop, soak=soak,
                     markdown=markdown, json=json_path, soak_tracer=soak_tracer,
                     no_scrape=no_scrape,
                     before=str(Path(before).resolve()) if before else None)
    sys.exit(run(args, sys.argv[1:]))


def run(args: BenchArgs, argv: list[str]) -> int:
    if os.geteuid() != 0:
        log("bench: needs root (BPF, memory cgroups, fs.pipe-max-size): sudo scripts/bench")
        return 1
    TraceFs().ensure_mounted()
    for sig in (signal.SIGINT, signal.SIGTERM):  # also when started in the background
        signal.signal(sig, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="paftrace-bench-") as tmp:
        scratch = Path(tmp, "scratch")
        scratch.mkdir()
        try:
            exe = wl.build(Path(tmp))
            with wl.PipeMaxSize(max(wl.PIPE_STORM_BYTES,
                                    wl.pipe_size_for_order(wl.FAIL_ORDER))), FtraceState():
                bench = Bench(args, exe, scratch)
                if args.start_stop:
                    bench.start_stop()
                    print(start_stop_report(bench))
                    return 0
                disturbed = preflight()
                for line in disturbed:
                    log(f"bench: WARNING: {line}: the baseline would pay for it")
                bench.rounds()
                res = bench.results()
                if not args.no_profile:
                    res["profile"] = bench.profile()
                    res["storm_cpu"] = st.storm_cpu(res["profile"])
                    res["event_rates"] = bench.event_rates()
                if not args.no_scrape and (not args.tracers or any(
                        "exporter" in t for t in args.tracers)):
                    res["scrape"] = bench.scrape_latency()
                if args.soak:
                    res["soak"] = bench.soak(args.soak, args.soak_tracer)
        except (wl.WorkloadError, OSError) as exc:
            log(f"bench: {exc}")
            return 1
        except KeyboardInterrupt:
            log("bench: interrupted; tracers stopped, settings restored")
            return 130
    res["disturbances"] = disturbed
    res["command"] = "scripts/bench " + " ".join(argv)
    res["machine"] = {"kernel": os.uname().release, "cpus": os.cpu_count()}
    text = report(res, args, [t.name for t in bench.tracers])
    if args.json == "-":
        log(text)
        print(json.dumps(res, indent=1))
    else:
        print(text)
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    cli(prog_name="scripts/bench")
