"""Renderers: hostile task names stay inert; JSON is one object per line."""

from __future__ import annotations

import io
import json

from rich.console import Console

from paftrace.aggregate import FailureAggregator, OrderRates
from paftrace.records import Failure
from paftrace.render import Snapshot, printable
from paftrace.render.jsonl import JsonRenderer
from paftrace.render.live import LiveRenderer
from paftrace.render.plain import PlainRenderer, summary_lines

HOSTILE = "[bold red]x\x1b[2J"


def sample_failure() -> Failure:
    return Failure(ts_ns=10**9, cpu=1, pid=7, tid=8, comm=HOSTILE, order=4, gfp="0x820",
                   gfp_flags=["GFP_ATOMIC"], migratetype="Unmovable", context="softirq",
                   softirq="NET_RX", stack=["a+0x1", "net_rx_action+0x2"], requester="a",
                   blame="softirq NET_RX in a", visibility="reported", severity="harmful",
                   rule="atomic allocation in softirq context")


SUMMARY = {"duration_s": 1.0, "orders": {"4": {"attempts": 10, "failures": 1}},
           "failures_matched": 1, "failures_by_context": {"softirq": 1},
           "by_class": {"harmful": 1}, "call_sites": [], "lost": {"records": 2}}


def live_view_with(failure: Failure, width: int
                   ) -> tuple[Console, LiveRenderer, FailureAggregator, OrderRates]:
    """A live view on a recording console, attached, that has seen one failure."""
    console = Console(record=True, width=width, file=io.StringIO(), force_terminal=True)
    live = LiveRenderer(console)
    live.attached({"order": "4", "kernel": "6.18", "probes": ["p"], "startup_s": 0.2})
    agg = FailureAggregator()
    agg.add(failure)
    live.failure(failure)
    return console, live, agg, OrderRates()


def tick(live: LiveRenderer, agg: FailureAggregator, orders: OrderRates, elapsed_s: float,
         attempts: int, failures: int) -> None:
    """The tracer's tick: the kernel's order-4 counts (all failures in softirq) read now."""
    orders.update({4: (attempts, failures)}, elapsed_s)
    live.tick(Snapshot(elapsed_s=elapsed_s, orders=orders, failures=agg, stats={"records": 0},
                       failures_by_context={"softirq": failures}, order_label="4"))


def test_printable_neutralises_control_characters():
    assert printable("a\x1b[2Jb\x07") == "a\\x1b[2Jb\\x07"
    assert printable("plain [bold]") == "plain [bold]"


def test_json_lines():
    out = io.StringIO()
    r = JsonRenderer(out)
    r.failure(sample_failure())
    obj = json.loads(out.getvalue())
    assert obj["type"] == "failure" and obj["comm"] == HOSTILE  # JSON escapes it itself
    assert "\x1b" not in out.getvalue()
    assert "stack_id" not in obj


def test_plain_line_and_summary():
    out = io.StringIO()
    PlainRenderer(out).failure(sample_failure())
    line = out.getvalue()
    assert "\x1b" not in line and "[bold red]x\\x1b[2J[7/8]" in line
    assert "softirq:NET_RX" in line and "reported/harmful" in line
    text = "\n".join(summary_lines(SUMMARY))
    assert "  order  attempts  failures\n      4        10         1\n" in text
    assert "larger --stack-storage-size" in text


def test_live_view_renders_hostile_comm_as_text():
    failure = sample_failure()
    failure.buddyinfo = {"order": 4, "sample_age_ms": 12.0, "zones": [
        {"node": 0, "zone": "Normal", "blocks_at_or_above": 0, "free_pages": 300000,
         "order0_pages": 290000, "unusable_index": 1.0}]}
    console, live, agg, orders = live_view_with(failure, 120)
    live.event({"type": "stall", "ts_ns": 2 * 10**9, "kind": "direct_compaction",
                "duration_ms": 40.5, "comm": "kworker", "pid": 9, "order": 4,
                "outcome": "no_page"})
    tick(live, agg, orders, 1.0, 10, 1)
    live.finish(SUMMARY)
    text = console.export_text()
    assert "[bold red]x\\x1b[2J" in text  # shown literally, not as markup or escape
    assert "net_rx_action+0x2" in text and "softirq NET_RX in a" in text
    assert "direct_compaction 40.5ms order 4 -> no_page" in text  # the timeline
    assert "N0/Normal: 0 blocks >= order 4" in text  # the memory state at the failure


def with_cause(f: Failure) -> Failure:
    f.cause = "memcg-limit"
    f.cause_evidence = {"sentence": f"memory cgroup /{HOSTILE} at its limit",
                        "advice": [{"text": "the container is at its memory limit: x",
                                    "evidence": "usage"}]}
    f.cgroup = {"id": 5, "path": None, "memory_path": f"/system.slice/{HOSTILE}.service",
                "memory_version": 1, "unit": {"kind": "systemd-service",
                                              "name": f"{HOSTILE}.service", "pod": None,
                                              "label": f"{HOSTILE}.service"}}
    return f


def test_plain_and_json_show_cause_and_cgroup_inert():
    out = io.StringIO()
    PlainRenderer(out).failure(with_cause(sample_failure()))
    line = out.getvalue()
    assert "\x1b" not in line
    assert "cgroup=/system.slice/[bold red]x\\x1b[2J.service ([bold red]x\\x1b[2J.service)" in line
    assert "cause=memcg-limit: memory cgroup /[bold red]x\\x1b[2J at its limit" in line
    out = io.StringIO()
    JsonRenderer(out).failure(with_cause(sample_failure()))
    obj = json.loads(out.getvalue())
    assert obj["cause"] == "memcg-limit" and obj["cgroup"]["id"] == 5
    assert obj["cause_evidence"]["advice"][0]["text"].startswith("the container")
    summary = dict(SUMMARY, by_cause={"memcg-limit": 3, "gave-up": 1},
                   by_cgroup={f"/{HOSTILE}": 4})
    text = "\n".join(summary_lines(summary))
    assert "by cause: memcg-limit 3, gave-up 1" in text
    assert "by cgroup: /[bold red]x\\x1b[2J 4" in text and "\x1b" not in text


def test_plain_says_why_the_cgroup_is_unknown():
    f = sample_failure()
    f.cgroup = {"memory_path": None, "path": None, "missing": "process 7 exited"}
    out = io.StringIO()
    PlainRenderer(out).failure(f)
    assert "cgroup=? (process 7 exited)" in out.getvalue()


def test_live_view_shows_cause_cgroup_and_advice():
    console, live, agg, orders = live_view_with(with_cause(sample_failure()), 200)
    tick(live, agg, orders, 1.0, 10, 1)
    text = console.export_text()
    live.close()
    assert "cause: memcg-limit 1" in text  # the triage line
    assert "cause=memcg-limit: memory cgroup /[bold red]x\\x1b[2J at its limit" in text
    assert "advice: the container is at its memory limit: x" in text
    assert "cgroup: /system.slice/[bold red]x\\x1b[2J.service" in text


def test_text_table_aligns_columns_and_keeps_markup_literal():
    from paftrace.render.text import text_table  # noqa: PLC0415

    text = text_table(("", "check", "detail"), [("ok", "root", "[bold]x[/bold]"),
                                                ("MISSING", "headers", "none found")])
    lines = text.splitlines()
    assert lines[1].startswith("ok       root     [bold]x[/bold]")
    assert lines[2].startswith("MISSING  headers  none found")


def test_between_ticks_only_the_timeline_moves_so_one_frame_agrees_with_itself():
    """A coalesced storm report arriving between ticks shows in the timeline at once; the
    counts it adds wait for the next tick, where the kernel's per-order counts are read
    too (otherwise a frame showed more failures traced than the kernel had counted)."""
    console, live, agg, orders = live_view_with(sample_failure(), 160)
    tick(live, agg, orders, 1.0, 10, 1)
    storm = sample_failure()
    storm.ts_ns, storm.count = 2 * 10**9, 500
    agg.add(storm)  # the tracer adds to the aggregator, then hands it to the renderer
    live._last_draw = 0.0  # noqa: SLF001 - as if the last draw were long ago
    live.failure(storm)
    between = console.export_text()
    assert "FAIL x500" in between  # the timeline shows the report at once
    assert "Failures traced: 1 " in between and "Failures traced: 501" not in between
    tick(live, agg, orders, 2.0, 600, 501)
    live.close()
    assert "Failures traced: 501 " in console.export_text()
