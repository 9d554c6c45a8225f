"""No exception and no record vanishes in bcc's ctypes callbacks.

The pure tests call the guard through a real ctypes function pointer, the way
libbcc does; the root tests drive the real loader against provoked failures.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys
import threading
import time

import pytest

from paftrace.delivery import STOP_CONSUMING, GuardedHandler, raise_all_pending
from paftrace.options import TraceOptions
from paftrace.records import RawFailure
from paftrace.tracer import EXIT_BROKEN_PIPE, EXIT_SIGNAL, StopFlag
from tests.helpers import interrupt_twice, needs_root, paftrace_cmd, provoke

# bcc's ring buffer callback type (bcc/table.py: _RINGBUF_CB_TYPE)
RINGBUF_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)


def call_through_ctypes(callback, records: list[RawFailure]) -> list[int]:
    """What libbpf's ring_buffer__poll does: one C call per record, stop on < 0."""
    fn = RINGBUF_CB(callback)
    results = []
    for raw in records:
        results.append(fn(None, ctypes.addressof(raw), ctypes.sizeof(raw)))
        if results[-1] < 0:
            break
    return results


def records(n: int) -> list[RawFailure]:
    return [RawFailure(ts_ns=i, order=4, pid=100 + i) for i in range(n)]


def test_ctypes_swallows_exceptions_without_the_guard(monkeypatch) -> None:
    """The defect itself: why the guard exists."""
    swallowed = []
    monkeypatch.setattr(sys, "unraisablehook", swallowed.append)

    def handler(ctx, data, size):
        raise ValueError("renderer bug")

    call_through_ctypes(handler, records(1))  # returns: no exception reached us
    assert isinstance(swallowed[0].exc_value, ValueError)


def test_exception_in_a_handler_is_counted_and_reraised_after_poll() -> None:
    seen = []

    def handle(raw: RawFailure) -> None:
        if raw.ts_ns == 1:
            raise ValueError("renderer bug")
        seen.append(raw.pid)

    guard = GuardedHandler(handle, RawFailure)
    results = call_through_ctypes(guard.callback, records(3))
    assert results == [0, STOP_CONSUMING]  # the ring buffer stops at the failed record
    assert seen == [100] and guard.delivered == 1 and guard.failed == 1
    with pytest.raises(ValueError, match="renderer bug"):
        guard.raise_pending()
    guard.raise_pending()  # raised once, then cleared


def test_records_after_a_stashed_exception_are_counted_not_handled() -> None:
    """Perf buffers cannot stop mid-poll: what follows is counted as failed."""
    guard = GuardedHandler(lambda raw: (_ for _ in ()).throw(BrokenPipeError()), RawFailure)
    fn = RINGBUF_CB(guard.callback)
    for raw in records(4):
        fn(None, ctypes.addressof(raw), ctypes.sizeof(raw))
    assert guard.failed == 4 and guard.delivered == 0
    with pytest.raises(BrokenPipeError):
        guard.raise_pending()


def test_a_stop_request_wins_over_an_ordinary_error() -> None:
    broken = GuardedHandler(lambda raw: None, RawFailure)
    stopping = GuardedHandler(lambda raw: None, RawFailure)
    broken.pending, stopping.pending = ValueError("x"), SystemExit(EXIT_SIGNAL)
    with pytest.raises(SystemExit):
        raise_all_pending([broken, stopping])
    assert broken.pending is None and stopping.pending is None


def test_second_signal_inside_a_callback_exits_at_once() -> None:
    """Real signals, delivered while the ctypes callback runs Python code."""
    stop = StopFlag()
    stop.install()
    try:
        def handle(raw: RawFailure) -> None:
            interrupt_twice()

        guard = GuardedHandler(handle, RawFailure)
        assert call_through_ctypes(guard.callback, records(2)) == [STOP_CONSUMING]
    finally:
        stop.restore()
    assert stop.stopped and guard.failed == 1
    with pytest.raises(SystemExit) as exc:
        guard.raise_pending()
    assert exc.value.code == EXIT_SIGNAL


# -- the real loader, as root ------------------------------------------------

class RaisingRenderer:
    """A renderer with a bug in `failure()`."""

    def __init__(self, exc: BaseException):
        self.exc = exc
        self.calls = 0

    def attached(self, info: dict) -> None: ...

    def failure(self, failure) -> None:
        self.calls += 1
        raise self.exc

    def event(self, record: dict) -> None: ...

    def tick(self, snapshot) -> None: ...

    def finish(self, summary: dict) -> None: ...

    def close(self) -> None: ...


def run_real_tracer_with(renderer: RaisingRenderer, stop: StopFlag) -> tuple[object, dict]:
    from paftrace.session import TraceSession  # noqa: PLC0415
    from paftrace.tracer import Tracer  # noqa: PLC0415

    options = TraceOptions(order_min=4, order_max=4)
    session = TraceSession(options)
    try:
        tracer = Tracer(session, options, renderer)
        worker = threading.Thread(target=provoke, args=(3, 4), daemon=True)
        worker.start()
        try:
            tracer.run(stop, duration=60, interval=1.0, live_allocations=False)
        except BaseException as exc:  # noqa: BLE001 - the point of the test
            raised = exc
        else:
            raised = None
        worker.join(120)
        return raised, tracer.lost()
    finally:
        session.close()


@needs_root
def test_real_callback_exception_reaches_the_caller_and_is_counted() -> None:
    renderer = RaisingRenderer(RuntimeError("renderer bug"))
    raised, lost = run_real_tracer_with(renderer, StopFlag())
    assert isinstance(raised, RuntimeError) and str(raised) == "renderer bug"
    assert renderer.calls == 1
    assert lost["unhandled"] >= 1 and lost["records"] >= lost["unhandled"]


@needs_root
def test_real_second_signal_inside_a_callback_exits_at_once() -> None:
    class SignalTwice(RaisingRenderer):
        def failure(self, failure) -> None:
            self.calls += 1
            interrupt_twice()

    stop = StopFlag()
    stop.install()
    try:
        started = time.monotonic()
        raised, lost = run_real_tracer_with(SignalTwice(RuntimeError()), stop)
    finally:
        stop.restore()
    assert isinstance(raised, SystemExit) and raised.code == EXIT_SIGNAL
    assert lost["unhandled"] >= 1
    assert time.monotonic() - started < 60  # not the 60 s duration


@needs_root
def test_closed_stdout_ends_quietly_with_the_sigpipe_status() -> None:
    """`paftrace --json | head -1`: head reads `attached` and exits; the next
    record (a provoked failure) meets a closed pipe."""
    proc = subprocess.Popen([*paftrace_cmd(), "--json", "--order", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    assert first.startswith(b'{"type":"attached"'), proc.stderr.read()
    proc.stdout.close()  # what head does after one line
    provoke(2, 4)
    try:
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read().decode()
    assert rc == EXIT_BROKEN_PIPE == 141, err
    assert err == ""  # no traceback, no "Exception ignored"


def test_tap_sees_each_record_bytes_before_handling() -> None:
    """scripts/capture-fixture records what the kernel wrote, byte for byte."""
    tapped: list[tuple[str, bytes]] = []
    guard = GuardedHandler(lambda raw: None, RawFailure,
                           tap=lambda kind, data: tapped.append((kind, data)))
    sent = records(2)
    call_through_ctypes(guard.callback, sent)
    assert tapped == [("failure_event", bytes(r)) for r in sent]


@needs_root
def test_run_trace_says_what_an_error_cost_before_its_traceback(monkeypatch, capsys) -> None:
    import paftrace.tracer  # noqa: PLC0415

    monkeypatch.setattr(paftrace.tracer, "make_renderer",
                        lambda mode: RaisingRenderer(RuntimeError("renderer bug")))
    done = threading.Event()

    def provoke_until_done() -> None:
        # Failures provoked before the probes are attached (a slow compile on a busy
        # machine) are not seen: keep provoking until the run has ended.
        while not done.is_set():
            provoke(2, 4)
            done.wait(1.0)

    worker = threading.Thread(target=provoke_until_done, daemon=True)
    worker.start()
    try:
        with pytest.raises(RuntimeError, match="renderer bug"):
            # nice=0: in-process, --nice would lower the test runner's own priority
            paftrace.tracer.run_trace(TraceOptions(order_min=4, order_max=4, nice=0), "json",
                                      duration=60, interval=1.0)
    finally:
        done.set()
        worker.join(120)
    assert "1 failure record(s) could not be shown" in capsys.readouterr().err
