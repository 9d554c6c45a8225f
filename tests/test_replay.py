"""Decode -> aggregate -> every renderer, without root: the tracer driven by a
ReplaySession of raw records captured from real failures on a 6.18 kernel
(tests/data/replay/, made by scripts/capture-fixture)."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from paftrace.options import TraceOptions, comm_words
from paftrace.records import RawFailure
from paftrace.render.contract import check_record, markdown
from paftrace.render.jsonl import JsonRenderer
from paftrace.render.live import LiveRenderer
from paftrace.render.plain import PlainRenderer
from paftrace.replay import ReplaySession, load_capture
from paftrace.tracer import EXIT_SIGNAL, StopFlag, Tracer
from tests.helpers import DATA, interrupt_twice, needs_root, provoke, run_tracer

PROVOKE = DATA / "replay" / "provoke-o4-6.18.json"
ALL = DATA / "replay" / "all-o0+-6.18.json"
README = DATA.parent.parent / "README.md"


def replay(path, renderer, options: TraceOptions, per_poll: int = 4) -> tuple[Tracer, dict]:
    session = ReplaySession(load_capture(path), per_poll=per_poll)
    tracer = Tracer(session, options, renderer)
    summary = tracer.run(StopFlag(), None, 0.05, live_allocations=True,
                         until=lambda: session.exhausted)
    renderer.finish(summary)
    return tracer, summary


def json_lines(path, options: TraceOptions) -> list[dict]:
    out = io.StringIO()
    replay(path, JsonRenderer(out), options)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_stream_keeps_the_contract() -> None:
    capture = load_capture(PROVOKE)
    lines = json_lines(PROVOKE, TraceOptions(order_min=4, order_max=4))
    for obj in lines:
        assert check_record(obj) == [], obj
    assert [o["type"] for o in lines][0] == "attached" and lines[-1]["type"] == "summary"
    failures = [o for o in lines if o["type"] == "failure"]
    assert len(failures) == len(capture["failures"]) >= capture["provoked"]["failures"]
    for f in failures:
        assert f["order"] == 4 and f["context"] == "process"
        assert "__GFP_ACCOUNT" in f["gfp_flags"] or "GFP_KERNEL_ACCOUNT" in f["gfp_flags"]
        assert f["requester"] == "pipe_resize_ring" and f["stack"][0].startswith("__alloc")
    summary = lines[-1]
    assert summary["failures_reported"] == len(failures)
    assert summary["lost"] == {"records": 0, "unhandled": 0, "stack_errors": 0,
                               "aggregation_full": 0}
    assert summary["call_sites"][0]["requester"] == "pipe_resize_ring"
    assert summary["orders"]["4"]["failures"] >= len(failures)


def test_all_mode_aggregates_allocations_by_context_and_stack() -> None:
    lines = json_lines(ALL, TraceOptions(order_min=0, trace_all=True))
    for obj in lines:
        assert check_record(obj) == [], obj
    summary = lines[-1]
    allocations = summary["allocations"]
    assert allocations and all(row["count"] > 0 for row in allocations)
    assert any(row["context"] == "softirq" and row["softirq"] == "NET_RX"
               for row in allocations)  # loopback traffic during the capture
    assert summary["stack_sample_every"] >= 1
    assert summary["reclaim"]["type"] == "reclaim_summary"


def test_readme_json_contract_is_generated_from_the_contract_module() -> None:
    text = README.read_text()
    start = text.index("## JSON contract (`--json`)\n\n") + len("## JSON contract (`--json`)\n\n")
    section = text[start:text.index("\n## ", start)]
    assert section == markdown(), "run: python -m paftrace.render.contract"


def test_plain_renderer() -> None:
    out = io.StringIO()
    replay(PROVOKE, PlainRenderer(out), TraceOptions(order_min=4, order_max=4))
    text = out.getvalue()
    assert "pipe_resize_ring" in text and "order 4" in text
    assert text.count("\n") > len(load_capture(PROVOKE)["failures"])


def test_live_view_fits_80_columns() -> None:
    live = LiveRenderer(Console(width=80, file=io.StringIO(), force_terminal=True))
    session = ReplaySession(load_capture(ALL))
    tracer = Tracer(session, TraceOptions(order_min=0, trace_all=True), live)
    tracer.run(StopFlag(), None, 0.05, live_allocations=True, until=lambda: session.exhausted)
    live.tick(tracer.snapshot(with_allocations=True))
    screen = Console(record=True, width=80, file=io.StringIO(), force_terminal=True)
    screen.print(live.view())  # the frame the terminal shows, as it shows it
    live.close()
    lines = screen.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    text = "\n".join(lines)
    assert "pipe_resize_ring" in text and "FAIL" in text and "All allocations" in text


class FailingRenderer(JsonRenderer):
    def __init__(self, fail_at: int, exc: BaseException):
        super().__init__(io.StringIO())
        self.fail_at, self.exc, self.seen = fail_at, exc, 0

    def failure(self, failure) -> None:
        self.seen += 1
        if self.seen == self.fail_at:
            raise self.exc
        super().failure(failure)


def test_a_renderer_exception_surfaces_and_its_record_is_counted() -> None:
    session = ReplaySession(load_capture(PROVOKE), per_poll=100)
    renderer = FailingRenderer(2, ValueError("renderer bug"))
    tracer = Tracer(session, TraceOptions(order_min=4, order_max=4), renderer)
    with pytest.raises(ValueError, match="renderer bug"):
        tracer.run(StopFlag(), None, 1.0, live_allocations=False,
                   until=lambda: session.exhausted)
    assert tracer.lost()["unhandled"] == 1 and tracer.lost()["records"] == 1
    assert renderer.seen == 2  # the ring buffer stopped at the failed record
    assert not session.exhausted  # the rest stays in the buffer, not dropped


def test_a_second_signal_inside_a_callback_exits_at_once() -> None:
    class SignalTwice(FailingRenderer):
        def failure(self, failure) -> None:
            self.seen += 1
            interrupt_twice()

    session = ReplaySession(load_capture(PROVOKE), per_poll=100)
    renderer = SignalTwice(0, ValueError())
    tracer = Tracer(session, TraceOptions(order_min=4, order_max=4), renderer)
    stop = StopFlag()
    stop.install()
    try:
        with pytest.raises(SystemExit) as exc:
            tracer.run(stop, None, 1.0, live_allocations=False, until=lambda: False)
    finally:
        stop.restore()
    assert exc.value.code == EXIT_SIGNAL and renderer.seen == 1


MULTIBYTE = "ñ" * 9  # 18 bytes: the kernel keeps 15, cutting the 8th character in half


def test_comm_filter_cut_inside_a_multibyte_character() -> None:
    kernel_comm = MULTIBYTE.encode()[:15]  # what TASK_COMM_LEN leaves (strscpy_pad)
    lo, hi = comm_words(MULTIBYTE)
    raw = kernel_comm.ljust(16, b"\0")
    assert (lo, hi) == (int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little"))
    record = RawFailure(comm=kernel_comm)
    from paftrace.records import decode_comm  # noqa: PLC0415

    assert decode_comm(bytes(record.comm)) == "ñ" * 7 + "\ufffd"


@needs_root
def test_comm_filter_cut_inside_a_multibyte_character_real() -> None:
    run = run_tracer(["--order", "4", "--comm", MULTIBYTE],
                     lambda: provoke(3, 4, "--comm", MULTIBYTE))
    assert run.workload_result["failures"] == 3
    assert len(run.failures) == 3, run.stderr
    assert {f["comm"] for f in run.failures} == {"ñ" * 7 + "\ufffd"}
