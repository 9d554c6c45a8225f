"""A real Prometheus scrapes the real exporter while real failures are provoked (root)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from tests.exporter_helpers import (
    Prometheus,
    parse_exposition,
    provoke_as,
    require_prometheus_client,
    running_exporter,
    wait_for,
)
from tests.helpers import needs_root

pytestmark = needs_root
require_prometheus_client()

from paftrace.procfs.buddyinfo import parse_buddyinfo  # noqa: E402

N = 7
FAILURES = 'sum(paftrace_page_alloc_failures_total{order="4",context="process"})'


class BuddyinfoReader:
    """/proc/buddyinfo read every 50 ms with wall-clock time stamps (Prometheus' clock)."""

    def __init__(self) -> None:
        self.reads: list[tuple[float, dict[tuple[str, str, str], int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with open("/proc/buddyinfo") as f:
                zones = parse_buddyinfo(f.read())
            self.reads.append((time.time(), {(str(z.node), z.zone, str(k)): n for z in zones
                                             for k, n in enumerate(z.free)}))
            self._stop.wait(0.05)

    def __enter__(self) -> BuddyinfoReader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def values_near(self, t: float, window: float) -> list[dict]:
        """Our reads within `window` of `t`; [] unless reads cover both sides of it."""
        if not self.reads or not self.reads[0][0] <= t - window < t + window <= \
                self.reads[-1][0]:
            return []
        return [v for ts, v in self.reads if abs(ts - t) <= window]


def test_prometheus_sees_exactly_the_provoked_failures_and_the_buddyinfo():
    comm = f"pafexp{os.getpid() % 100000}"
    with running_exporter("--order", "4", "--comm", comm) as exporter, \
            Prometheus([f"127.0.0.1:{exporter.port}"]) as prom:
        wait_for("the first scrape", lambda: prom.value(
            'paftrace_page_alloc_failures_matched_total{context="process"}') is not None, 30)
        assert prom.target_health() == "up"
        before = prom.value(FAILURES) or 0.0
        provoked = provoke_as(comm, N, order=4)
        assert provoked["failures"] == N, provoked
        wait_for(f"{FAILURES} to rise by {N}",
                 lambda: (prom.value(FAILURES) or 0) - before >= N, 30)
        time.sleep(3)  # three more scrapes: it must stay exactly N, no late extras
        assert prom.value(FAILURES) - before == N
        for row in prom.query('paftrace_page_alloc_failures_total{order="4"}'):
            labels = row["metric"]
            # pipe_resize_ring asks GFP_KERNEL_ACCOUNT; while any cgroup has cpusets the
            # allocator adds __GFP_HARDWALL before the tracepoint (mm/page_alloc.c
            # prepare_alloc_pages), and the kernel's table then names it GFP_USER first.
            assert labels["gfp"] in ("GFP_KERNEL_ACCOUNT", "GFP_USER"), labels
            assert "softirq" not in labels  # "" outside softirq context = no label
            assert labels["visibility"] == "silent" and labels["severity"] == "expected"
        site = prom.query('paftrace_page_alloc_failure_sites_total{order="4"}')
        assert [(s["metric"]["requester"], float(s["value"][1])) for s in site] == [
            ("pipe_resize_ring", before + N)]
        assert prom.value('paftrace_page_alloc_failures_matched_total{context="process"}') \
            == before + N
        assert prom.value('sum(paftrace_lost_records_total)') == 0

        with BuddyinfoReader() as buddy:
            time.sleep(6)
            end = time.time()
            rows = prom.query("paftrace_buddy_free_blocks[4s]", time=f"{end - 1:.3f}")
        assert rows, "no buddyinfo gauges in Prometheus"
        checked = exact = 0
        for row in rows:
            m = row["metric"]
            key = (m["node"], m["zone"], m["order"])
            for ts, value in row["values"]:
                # The scrape read /proc/buddyinfo within one scrape interval (1 s) of its
                # time stamp. Where the count held still over that second (most orders),
                # it must be that count; where other work churned it (low orders on this
                # shared machine move by hundreds in 50 ms), within what our reads saw.
                seen = [v[key] for v in buddy.values_near(float(ts), 1.0)]
                if not seen:
                    continue  # a scrape at the edge of our reading time
                assert min(seen) <= int(float(value)) <= max(seen), (key, value, seen)
                exact += min(seen) == max(seen)
                checked += 1
        files = parse_buddyinfo(Path("/proc/buddyinfo").read_text())
        assert len(rows) == sum(len(z.free) for z in files)
        assert checked >= 2 * len(rows)
        assert exact >= checked // 2, f"only {exact} of {checked} samples were steady"

        code, seconds, err = exporter.stop()
        assert code == 0, err
        assert seconds < 5, f"SIGTERM took {seconds:.1f} s"
        assert "Traceback" not in err
        wait_for("Prometheus to see the exporter down",
                 lambda: prom.target_health() == "down", 15)


def test_sigterm_detaches_within_five_seconds_during_a_failure_storm():
    comm = f"pafstorm{os.getpid() % 10000}"
    with running_exporter("--order", "4+", "--comm", comm) as exporter:
        worker = threading.Thread(target=provoke_as, args=(comm, 200, 4), daemon=True)
        worker.start()
        wait_for("failures in the exporter", lambda: parse_exposition(exporter.scrape()).get(
            "paftrace_page_alloc_failures_total"), 60, every=0.05)
        code, seconds, err = exporter.stop()
        worker.join(timeout=120)
    assert code == 0, err
    assert seconds < 5, f"SIGTERM took {seconds:.1f} s"
    assert "Traceback" not in err


def test_a_failure_storm_keeps_the_series_under_the_documented_bound():
    """Failures at five orders from ten processes, all orders traced, 3 named call sites."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    from paftrace.gfp import table_from_print_fmt  # noqa: PLC0415
    from paftrace.render.prometheus import OTHER, series_bound  # noqa: PLC0415
    from paftrace.tracefs import TraceFs  # noqa: PLC0415

    comm = f"pafcard{os.getpid() % 10000}"
    orders = [4, 5, 6, 7, 8] * 2
    with running_exporter("--order", "0+", "--max-sites", "3") as exporter:
        before = parse_exposition(exporter.scrape())
        with ThreadPoolExecutor(max_workers=len(orders)) as pool:
            results = list(pool.map(lambda o: provoke_as(comm, 5, o), orders))
        assert all(r["failures"] == 5 for r in results), results

        def storm_seen() -> dict:
            m = parse_exposition(exporter.scrape())
            got = {dict(k)["order"] for k in m.get("paftrace_page_alloc_failures_total", {})}
            return m if {str(o) for o in orders} <= got else {}

        metrics = wait_for("failures of every order", storm_seen, 60)
    table = table_from_print_fmt(TraceFs().read_format("kmem", "mm_page_alloc").print_fmt)
    zones = parse_buddyinfo(Path("/proc/buddyinfo").read_text())
    bound = series_bound(table, orders=len(zones[0].free), kernel_orders=len(zones[0].free),
                         zones=len(zones), max_sites=3,
                         probes=len(metrics["paftrace_probe_info"]))
    series = {name: len(v) for name, v in metrics.items()}
    assert sum(series.values()) <= bound.total, (series, bound)
    for name in ("paftrace_page_alloc_failures_total", "paftrace_page_alloc_failure_sites_total",
                 "paftrace_buddy_free_blocks"):
        assert series[name] <= bound.per_metric[name], name
    sites = metrics["paftrace_page_alloc_failure_sites_total"]
    named = {k for k in sites if dict(k)["requester"] != OTHER}
    assert len(named) == 3  # five order-N call sites, three named ...
    assert any(dict(k)["requester"] == OTHER for k in sites)  # ... the rest summed
    new = sum(metrics["paftrace_page_alloc_failures_total"].values()) - sum(
        before.get("paftrace_page_alloc_failures_total", {}).values())
    assert new >= 50  # ours, and maybe other failures on this shared machine
    assert sum(sites.values()) == sum(metrics["paftrace_page_alloc_failures_total"].values())


def _prog_tags(pid: int) -> list[str]:
    """Tags (hash of the instructions) of the BPF programs a process holds."""
    tags = []
    for info in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            text = info.read_text()
        except OSError:
            continue
        tags += [line.split()[1] for line in text.splitlines() if line.startswith("prog_tag:")]
    return sorted(tags)


def test_the_exporter_loads_exactly_the_tracers_bpf_programs():
    """One code path: `paftrace exporter -o 4` and `paftrace -o 4` hold the same programs."""
    import subprocess  # noqa: PLC0415

    from paftrace.workloads.childproc import read_line  # noqa: PLC0415
    from tests.helpers import paftrace_cmd  # noqa: PLC0415

    tracer = subprocess.Popen([*paftrace_cmd(), "--order", "4", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert read_line(tracer, 90, '{"type":"attached"'), "tracer did not attach"
        with running_exporter("--order", "4") as exporter:
            exported = _prog_tags(exporter.proc.pid)
        traced = _prog_tags(tracer.pid)
    finally:
        tracer.terminate()
        tracer.communicate(timeout=30)
    assert len(traced) >= 10  # mm_page_alloc, irq and softirq entry/exit, reclaim, ...
    assert exported == traced
