"""`paftrace selftest`: provoke real failures while tracing and check they were seen.

The proof, on the user's own host, that the whole pipeline works there:
BPF load and attach, in-kernel filtering, failure records, stack capture and
symbolization, gfp decoding, context tracking and the summary counters.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass

import click

from paftrace.loader import LoaderError, require_root
from paftrace.options import TraceOptions
from paftrace.records import Failure
from paftrace.tracer import StopFlag, Tracer
from paftrace.workloads.childproc import python_env
from paftrace.workloads.netload import loopback_connections


@dataclass
class SelftestCheck:
    name: str
    ok: bool
    detail: str


class CollectingRenderer:
    """A renderer that keeps everything, for checks instead of display."""

    def __init__(self) -> None:
        self.info: dict = {}
        self.failures: list[Failure] = []
        self.events: list[dict] = []
        self.summary: dict = {}

    def attached(self, info: dict) -> None:
        self.info = info

    def failure(self, failure: Failure) -> None:
        self.failures.append(failure)

    def event(self, record: dict) -> None:
        self.events.append(record)

    def tick(self, snapshot: object) -> None:
        pass

    def finish(self, summary: dict) -> None:
        self.summary = summary

    def close(self) -> None:
        pass


def _run_with(tracer: Tracer, renderer: CollectingRenderer, workload) -> object:
    """Run `workload` in a thread while the tracer polls in this one."""
    result: dict[str, object] = {}

    def work() -> None:
        try:
            result["value"] = workload()
        except Exception as exc:  # reported as a failed check, not a traceback
            result["error"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()  # the probes are attached since the Tracer was made
    renderer.finish(tracer.run(StopFlag(), None, 1.0, live_allocations=False,
                               until=lambda: not thread.is_alive()))
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result.get("value")


def provoke_subprocess(count: int, order: int, *extra: str) -> dict:
    """Run scripts/provoke's method in a child; its JSON result."""
    proc = subprocess.run([sys.executable, "-m", "paftrace.workloads.provoke", "-n", str(count),
                           "-o", str(order), *extra], capture_output=True, text=True,
                          timeout=120, env=python_env())
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        raise RuntimeError(f"provoke failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_failures(order: int, count: int, disabled: frozenset[str]) -> tuple[
        list[SelftestCheck], dict]:
    renderer = CollectingRenderer()
    tracer = Tracer(TraceOptions(order_min=order, order_max=order, disabled=disabled), renderer)
    try:
        provoked = _run_with(tracer, renderer, lambda: provoke_subprocess(count, order))
    finally:
        tracer.close()
    assert isinstance(provoked, dict)
    mine = [f for f in renderer.failures if f.pid == provoked["worker_pid"]]
    n = provoked["failures"]
    summary = renderer.summary
    row = summary["orders"].get(str(order), {"attempts": 0, "failures": 0})
    checks = [
        SelftestCheck("attached", True, ", ".join(renderer.info["probes"])),
        SelftestCheck("provoked", n == count, f"{n} of {count} order-{order} failures "
                      "provoked (memory cgroup + pipe ring)"),
        SelftestCheck("seen", len(mine) == n and n > 0,
                      f"{len(mine)} failure records from the provoking task, {n} provoked"),
        SelftestCheck("order", all(f.order == order for f in mine),
                      f"orders seen: {sorted({f.order for f in mine})}"),
        SelftestCheck("gfp", bool(mine) and all(
            {"GFP_KERNEL_ACCOUNT", "__GFP_ACCOUNT"} & set(f.gfp_flags) for f in mine),
            f"flags: {'|'.join(mine[0].gfp_flags) if mine else '-'}"),
        SelftestCheck("context", bool(mine) and all(f.context == "process" for f in mine),
                      f"contexts: {sorted({f.context for f in mine})}"),
        SelftestCheck("stack", bool(mine) and all(
            any("pipe_resize_ring" in fr for fr in f.stack) for f in mine),
            f"requester: {mine[0].requester if mine else '-'}"),
        SelftestCheck("counters", row["failures"] >= n and summary["failures_matched"] ==
                      summary["failures_reported"],
                      f"kernel counted {row['failures']} order-{order} failures, "
                      f"{summary['failures_matched']} matched, "
                      f"{summary['failures_reported']} records received"),
        SelftestCheck("lost", not any(summary["lost"].values()), json.dumps(summary["lost"])),
    ]
    return checks, {"provoked": n, "seen": len(mine), "probes": renderer.info["probes"],
                    "kernel": renderer.info["kernel"]}


def check_softirq(disabled: frozenset[str], seconds: float = 2.0) -> SelftestCheck:
    renderer = CollectingRenderer()
    tracer = Tracer(TraceOptions(order_min=0, order_max=31, trace_all=True, disabled=disabled),
                    renderer)
    try:
        made = _run_with(tracer, renderer, lambda: loopback_connections(seconds))
    finally:
        tracer.close()
    net_rx = sum(r["count"] for r in renderer.summary["allocations"]
                 if r["context"] == "softirq" and r["softirq"] == "NET_RX")
    return SelftestCheck("softirq", net_rx > 0, f"{net_rx} allocations seen in NET_RX softirq "
                         f"during {made} loopback connections")


def run_selftest(order: int = 4, count: int = 5, softirq: bool = True,
                 disabled: frozenset[str] = frozenset()) -> dict:
    require_root("selftest")
    checks, facts = check_failures(order, count, disabled)
    if softirq:
        checks.append(check_softirq(disabled))
    ok = all(c.ok for c in checks)
    return {"selftest": "pass" if ok else "fail", "kernel": facts["kernel"],
            "probes": facts["probes"], "failures_provoked": facts["provoked"],
            "failures_seen": facts["seen"], "checks": [asdict(c) for c in checks]}


@click.command()
@click.option("-o", "--order", type=click.IntRange(4, 10), default=4, show_default=True,
              help="Order of the failures to provoke.")
@click.option("-n", "--count", type=click.IntRange(1, 1000), default=5, show_default=True)
@click.option("--no-softirq", is_flag=True, help="Skip the NET_RX softirq context check.")
@click.option("--no-feature", "disabled", multiple=True, help="Force a fallback path.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def selftest(order: int, count: int, no_softirq: bool, disabled: tuple[str, ...],
             as_json: bool) -> None:
    """Provoke real page allocation failures and check paftrace sees each one."""
    try:
        result = run_selftest(order, count, not no_softirq, frozenset(disabled))
    except (LoaderError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"paftrace selftest: {exc}", file=sys.stderr)
        sys.exit(1)
    if as_json:
        print(json.dumps(result))
    else:
        for c in result["checks"]:
            print(f"{'PASS' if c['ok'] else 'FAIL'}  {c['name']:9} {c['detail']}")
        print(f"selftest {result['selftest']} on {result['kernel']}")
    sys.exit(0 if result["selftest"] == "pass" else 1)
