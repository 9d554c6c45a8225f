"""`paftrace selftest`: provoke real failures while tracing and check they were seen.

The proof, on the user's own host, that the whole pipeline works there:
BPF load and attach, in-kernel filtering, failure records, stack capture and
symbolization, gfp decoding, context tracking and the summary counters.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from types import FrameType

import click

from paftrace.loader import LoaderError, require_root
from paftrace.options import TraceOptions
from paftrace.records import Failure
from paftrace.render.text import text_table
from paftrace.session import TraceSession
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


def run_with(tracer: Tracer, renderer: CollectingRenderer, workload) -> object:
    """Run `workload` in a thread while the tracer polls in this one."""
    result: dict[str, object] = {}

    def work() -> None:
        try:
            result["value"] = workload()
        except Exception as exc:  # reported as a failed check, not a traceback
            result["error"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()  # the probes are attached since the Tracer was made
    renderer.finish(tracer.run(INTERRUPTED, None, 1.0, live_allocations=False,
                               until=lambda: not thread.is_alive()))
    if INTERRUPTED.stopped:  # here, not in the signal handler: see _interrupt
        raise KeyboardInterrupt
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result.get("value")


EXIT_SIGNAL = 130
INTERRUPTED = StopFlag()  # set by the selftest command's signal handler (never installed)
# How long a provoke child may take to undo its cgroup and sysctl once told to stop.
CHILD_CLEANUP_S = 20.0
_children: set[subprocess.Popen[str]] = set()  # provoke children still running


def provoke_subprocess(count: int, order: int, *extra: str) -> dict:
    """Run scripts/provoke's method in a child; its JSON result."""
    proc = subprocess.Popen([sys.executable, "-m", "paftrace.workloads.provoke", "-n",
                             str(count), "-o", str(order), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=python_env())
    _children.add(proc)
    try:
        out, err = proc.communicate(timeout=120)
    except BaseException:
        stop_child(proc)  # never SIGKILL it first (subprocess.run would): it must clean up
        raise
    finally:
        _children.discard(proc)
    if proc.returncode not in (0, 1) or not out.strip():
        raise RuntimeError(f"provoke failed: {err.strip()}")
    return json.loads(out.strip().splitlines()[-1])


def stop_child(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, which provoke answers by removing its cgroup and restoring the sysctl;
    SIGKILL only if it does not end in time (its leftovers are then found by the next
    run, see paftrace/workloads/provoke.py)."""
    if proc.poll() is None:
        proc.terminate()
    try:  # wait(), not communicate(): the worker thread may be reading its pipes
        proc.wait(timeout=CHILD_CLEANUP_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def check_failures(order: int, count: int, disabled: frozenset[str]) -> tuple[
        list[SelftestCheck], dict]:
    renderer = CollectingRenderer()
    options = TraceOptions(order_min=order, order_max=order, disabled=disabled)
    tracer = Tracer(TraceSession(options), options, renderer)
    try:
        provoked = run_with(tracer, renderer, lambda: provoke_subprocess(count, order))
    finally:
        tracer.close()
    assert isinstance(provoked, dict)
    mine = [f for f in renderer.failures if f.pid == provoked["worker_pid"]]
    n = provoked["failures"]
    seen = sum(f.count for f in mine)  # a storm's coalesced failures come with a count
    summary = renderer.summary
    row = summary["orders"].get(str(order), {"attempts": 0, "failures": 0})
    checks = [
        SelftestCheck("attached", True, ", ".join(renderer.info["probes"])),
        SelftestCheck("provoked", n == count, f"{n} of {count} order-{order} failures "
                      "provoked (memory cgroup + pipe ring)"),
        SelftestCheck("seen", seen == n and n > 0,
                      f"{seen} failures in {len(mine)} records from the provoking task, "
                      f"{n} provoked"),
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
                      summary["failures_reported"] + summary["failures_coalesced"],
                      f"kernel counted {row['failures']} order-{order} failures, "
                      f"{summary['failures_matched']} matched, "
                      f"{summary['failures_reported']} records received, "
                      f"{summary['failures_coalesced']} coalesced"),
        SelftestCheck("lost", not any(summary["lost"].values()), json.dumps(summary["lost"])),
    ]
    return checks, {"provoked": n, "seen": seen, "probes": renderer.info["probes"],
                    "kernel": renderer.info["kernel"]}


def check_softirq(disabled: frozenset[str], seconds: float = 2.0) -> SelftestCheck:
    renderer = CollectingRenderer()
    options = TraceOptions(order_min=0, order_max=31, trace_all=True, disabled=disabled)
    tracer = Tracer(TraceSession(options), options, renderer)
    try:
        made = run_with(tracer, renderer, lambda: loopback_connections(seconds))
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
    if INTERRUPTED.stopped:
        raise KeyboardInterrupt
    if softirq:
        checks.append(check_softirq(disabled))
    ok = all(c.ok for c in checks)
    return {"selftest": "pass" if ok else "fail", "kernel": facts["kernel"],
            "probes": facts["probes"], "failures_provoked": facts["provoked"],
            "failures_seen": facts["seen"], "checks": [asdict(c) for c in checks]}


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """The first of SIGINT/SIGTERM/SIGHUP ends the tracer's loop, which then unwinds
    (probes closed on the way); later ones are ignored, so that the cleanup they would
    cut short finishes (in a second or so). Nothing is raised here: the handler may run
    inside bcc's record callback, where ctypes would swallow the exception."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    INTERRUPTED.signum = signum


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
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        result = run_selftest(order, count, not no_softirq, frozenset(disabled))
    except (LoaderError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"paftrace selftest: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        for child in list(_children):  # the worker thread's provoke, if it still runs
            stop_child(child)
        print("paftrace selftest: interrupted; probes detached, provoke's cgroup and "
              "fs.pipe-max-size cleaned up", file=sys.stderr)
        sys.exit(EXIT_SIGNAL)
    if as_json:
        print(json.dumps(result))
    else:
        print(text_table(("", "check", "detail"), [("PASS" if c["ok"] else "FAIL", c["name"],
                                                     c["detail"]) for c in result["checks"]]))
        print(f"selftest {result['selftest']} on {result['kernel']}")
    sys.exit(0 if result["selftest"] == "pass" else 1)
