"""Storm coalescing (paftrace.h, "Storm coalescing"): beyond the first --records-per-site
records of a call site's storm on a CPU, the kernel counts the storm's failures and
paftrace reports them as one record with a `count`. Nothing may be lost or counted twice
on the way."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

from paftrace.aggregate import FailureAggregator
from paftrace.cause import CAUSES
from paftrace.options import DEFAULT_RECORDS_PER_SITE, TraceOptions
from paftrace.records import Failure, RawFailure
from paftrace.render.contract import check_record
from paftrace.render.jsonl import JsonRenderer
from paftrace.render.plain import failure_line
from paftrace.render.prometheus import PrometheusSink
from paftrace.replay import ReplaySession, load_capture
from paftrace.report.model import build_model
from paftrace.report.recording import read_recording
from paftrace.tracer import StopFlag, Tracer
from tests.exporter_helpers import require_prometheus_client
from tests.helpers import DATA, needs_root, provoke, run_tracer

PROVOKE = DATA / "replay" / "provoke-o4-6.18.json"


def failure(ts_ns: int, count: int = 1, cause: str = "memcg-limit") -> Failure:
    return Failure(ts_ns=ts_ns, cpu=0, pid=7, tid=7, comm="w", order=4, gfp="0x1",
                   gfp_flags=["GFP_KERNEL"], migratetype="Unmovable", context="process",
                   softirq=None, stack=["a+0x1", "b+0x2"], visibility="silent",
                   severity="expected", cause=cause, count=count)


def test_a_coalesced_record_counts_as_its_failures_everywhere_in_the_aggregate() -> None:
    agg = FailureAggregator()
    agg.add(failure(1_000_000_000))
    agg.add(failure(2_000_000_000, count=480))
    agg.add(failure(2_500_000_000, count=19, cause="watermark"))
    assert agg.total == 500
    assert agg.by_context == {"process": 500}
    assert agg.by_cause == {"memcg-limit": 481, "watermark": 19}
    assert agg.by_class["silent"] == 500 and agg.by_class["expected"] == 500
    site = agg.top(1)[0]
    assert site.count == 500 and site.causes == {"memcg-limit": 481, "watermark": 19}
    assert site.first_ns == 1_000_000_000 and site.last_ns == 2_500_000_000
    assert site.rate(3_000_000_000) == 500 / 10  # failures, not records, per second


def test_the_json_record_carries_its_count_and_keeps_the_contract() -> None:
    out = io.StringIO()
    JsonRenderer(out).failure(failure(5, count=77))
    obj = json.loads(out.getvalue())
    assert obj["count"] == 77 and check_record(obj) == []
    assert json.loads(JsonRenderer().encode_failure(failure(5)))["count"] == 1


def test_plain_line_says_how_many_failures_a_record_stands_for() -> None:
    assert " x77 failures (coalesced in the kernel; the last:)" in failure_line(
        failure(5, count=77))
    assert "coalesced" not in failure_line(failure(5))


def test_prometheus_counts_every_coalesced_failure() -> None:
    require_prometheus_client()
    from prometheus_client import CollectorRegistry  # noqa: PLC0415 - installed above

    sink = PrometheusSink(CollectorRegistry())
    sink.failure(failure(5, count=300))
    sink.failure(failure(6))
    failures, sites = sink.copy()
    assert sum(failures.values()) == 301 and sum(sites.values()) == 301


def coalesced_capture(count: int) -> dict:
    """The provoke capture, its last record turned into a coalesced site of `count`."""
    capture = load_capture(PROVOKE)
    last = RawFailure.from_buffer_copy(bytes.fromhex(capture["failures"][-1]).ljust(
        len(bytes(RawFailure())), b"\0"))
    key = [last.gfp, last.stack_id, last.order, last.pid, last.context, last.softirq_vec]
    return {**capture, "coalesced": [[*key, count, bytes(last).hex()]]}


def test_replayed_coalesced_sites_are_reported_once_after_the_records() -> None:
    capture = coalesced_capture(480)
    out = io.StringIO()
    session = ReplaySession(capture, per_poll=2)
    tracer = Tracer(session, TraceOptions(order_min=4, order_max=4), JsonRenderer(out))
    summary = tracer.run(StopFlag(), None, 0.01, live_allocations=False,
                         until=lambda: session.exhausted)
    tracer._report_coalesced()  # a later interval: the same kernel count, nothing new
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    failures = [x for x in lines if x["type"] == "failure"]
    assert [f["count"] for f in failures] == [1] * len(capture["failures"]) + [480]
    assert failures[-1]["requester"] == "pipe_resize_ring"  # decoded like any record
    assert failures[-1]["cause"] == failures[-2]["cause"]
    assert summary["failures_reported"] == len(capture["failures"])
    assert summary["failures_coalesced"] == 480 == tracer.coalesced
    assert summary["call_sites"][0]["count"] == len(capture["failures"]) + 480
    assert check_record(summary) == []


def test_the_report_counts_failures_not_records(tmp_path) -> None:
    path = tmp_path / "storm.jsonl"
    session = ReplaySession(coalesced_capture(480), per_poll=8)
    with path.open("w") as out:
        renderer = JsonRenderer(out)
        tracer = Tracer(session, TraceOptions(order_min=4, order_max=4), renderer)
        renderer.finish(tracer.run(StopFlag(), None, 0.01, live_allocations=False,
                                   until=lambda: session.exhausted))
    model = build_model(read_recording(path))
    records = len(session.capture["failures"]) + 1
    assert model["failures"]["records"] == records
    assert model["failures"]["total"] == records - 1 + 480
    assert model["failures"]["by_order"] == {"4": records - 1 + 480}
    assert sum(sum(s["counts"]) for s in model["failure_series"]["series"]) == records + 479
    assert model["call_sites"][0]["count"] == records + 479


@needs_root
def test_a_storm_is_coalesced_in_the_kernel_and_every_failure_is_counted() -> None:
    run = run_tracer(["--order", "4"], lambda: provoke(400, 4))
    provoked = run.workload_result
    mine = [f for f in run.failures if f["pid"] == provoked["worker_pid"]]
    summary = run.summary
    assert run.returncode == 130, run.stderr
    assert sum(f["count"] for f in mine) == provoked["failures"] == 400
    coalesced = [f for f in mine if f["count"] > 1]
    assert coalesced, "400 failures in about a second from one call site: coalesced"
    # Each CPU sends the first DEFAULT_RECORDS_PER_SITE records of the call site's storm;
    # a pause of a second or more starts another storm.
    seconds = (max(f["ts_ns"] for f in mine) - min(f["ts_ns"] for f in mine)) / 1e9
    budget = DEFAULT_RECORDS_PER_SITE * (os.cpu_count() or 1) * (int(seconds) + 2)
    assert summary["failures_reported"] <= budget
    for f in coalesced:  # the latest coalesced failure, decoded and judged like any
        assert f["requester"] == "pipe_resize_ring" and f["cause"] in CAUSES
        assert f["cause_evidence"]["sentence"] and f["cgroup"] is not None
        assert f["buddyinfo"] is not None
    # Counted in the kernel = records received + coalesced = what the records add up to.
    assert summary["failures_matched"] == (summary["failures_reported"] +
                                           summary["failures_coalesced"]) == sum(
        f["count"] for f in run.failures)
    assert summary["failures_coalesced"] > 0
    assert summary["lost"]["records"] == 0
    sites = [s for s in summary["call_sites"] if s["requester"] == "pipe_resize_ring"]
    assert sites[0]["count"] >= 400


@needs_root
def test_a_long_storm_sends_records_at_its_start_and_again_after_a_quiet_second(
        tmp_path: Path) -> None:
    """Two storms of one process and call site (scripts/bench-data/storm.c, pinned to one
    CPU), 2.5 s each and 1.5 s apart: each sends its first records whole and is counted
    after that. Budgets renewed every second, as before, would have sent 3 per storm."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts" / "bench-data"))
    import workloads as wl  # noqa: PLC0415 - the bench's storm.c

    exe = wl.build(tmp_path)
    run = run_tracer(["--order", "4"], lambda: wl.run(exe, "fail", 2.5, pause=1.5))
    summary, storm = run.summary, run.workload_result
    assert run.returncode == 130, run.stderr
    mine = [f for f in run.failures if f["requester"] == "pipe_resize_ring"]
    assert sum(f["count"] for f in mine) == storm.ops > 4 * DEFAULT_RECORDS_PER_SITE
    others = len(run.failures) - len(mine)  # anything else failing meanwhile: one each
    sent = summary["failures_reported"] - others
    assert sent == 2 * DEFAULT_RECORDS_PER_SITE, (sent, summary)
    starts = sorted(f["ts_ns"] for f in mine)
    gap = max(range(1, len(starts)), key=lambda i: starts[i] - starts[i - 1])
    assert starts[gap] - starts[gap - 1] > 1e9  # the quiet second between the storms
    # After its first records each storm is reported every 0.5 s, with every failure.
    assert all(f["count"] >= 1 for f in mine) and summary["lost"]["records"] == 0
    assert summary["failures_matched"] == summary["failures_reported"] + summary[
        "failures_coalesced"]


@needs_root
def test_records_per_site_zero_sends_every_failure() -> None:
    run = run_tracer(["--order", "4", "--records-per-site", "0"], lambda: provoke(100, 4))
    mine = [f for f in run.failures if f["pid"] == run.workload_result["worker_pid"]]
    assert len(mine) == 100 and {f["count"] for f in mine} == {1}
    assert run.summary["failures_coalesced"] == 0
    assert run.summary["failures_matched"] == run.summary["failures_reported"]
