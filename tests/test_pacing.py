"""The tracer's poll pacing (paftrace/pacing.py) against a simulated ring buffer that
wakes its reader as pagealloc.c's ringbuf_wakeup_flag does."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from paftrace.pacing import IDLE_POLL_MS, POLL_MS, PollPacer

QUIET_S = POLL_MS / 1000  # RINGBUF_QUIET_NS, as the loader passes it
TICK_S = 1.0


def test_idle_waits_until_the_tick_at_most_the_idle_poll():
    pacer = PollPacer()
    assert pacer.timeout_ms(0.35) == 350
    assert pacer.timeout_ms(5.0) == IDLE_POLL_MS
    assert pacer.timeout_ms(0.0004) == 1  # rounded up: no spinning until the tick
    assert pacer.timeout_ms(-0.2) == 0  # the tick is overdue


def test_after_records_polls_stay_short_until_one_ends_a_poll_period_later():
    pacer = PollPacer()
    pacer.polled(10.0, got_records=True)
    assert pacer.timeout_ms(0.9) == POLL_MS
    pacer.polled(10.05, got_records=False)  # ended early (the tick): still short
    assert pacer.timeout_ms(0.9) == POLL_MS
    pacer.polled(10.1, got_records=False)
    assert pacer.timeout_ms(0.9) == 900


def test_selftest_polls_short_throughout():
    pacer = PollPacer(always_short=True)
    pacer.polled(10.0, got_records=False)
    assert pacer.timeout_ms(0.9) == POLL_MS


def wakes(records: list[tuple[float, int]]) -> list[bool]:
    """Which records wake the reader (pagealloc.c: a CPU's first record after
    RINGBUF_QUIET_NS without one). RINGBUF_WAKE_EVERY is left out: it only adds
    wakeups."""
    last: dict[int, float] = {}
    out = []
    for ts, cpu in records:
        out.append(cpu not in last or ts - last[cpu] >= QUIET_S)
        last[cpu] = ts
    return out


def read_times(records: list[tuple[float, int]], tick_phase: float) -> list[float]:
    """When the tracer's loop (tracer.Tracer.run) reads each record: a poll ends at its
    timeout or at the first waking record written while it waits, and its last read
    (ring_buffer_consume) takes every record written by then."""
    woke = wakes(records)
    pacer = PollPacer()
    read: list[float | None] = [None] * len(records)
    now, next_tick = 0.0, tick_phase
    end_of_records = records[-1][0] if records else 0.0
    while now <= end_of_records + 2 * TICK_S:
        if now >= next_tick:
            next_tick = now + TICK_S
        timeout = pacer.timeout_ms(next_tick - now) / 1000
        pending = [ts for (ts, _), r in zip(records, read) if r is None and ts <= now]
        waking = [ts for (ts, _), w, r in zip(records, woke, read)
                  if w and r is None and now < ts <= now + timeout]
        end = now if pending else min([now + timeout, *waking])
        got = False
        for i, (ts, _) in enumerate(records):
            if read[i] is None and ts <= end:
                read[i], got = end, True
        pacer.polled(end, got_records=got)
        now = end if end > now else now + 1e-6  # a poll that found data at once
    assert all(r is not None for r in read)
    return [r for r in read if r is not None]


record_times = st.lists(st.tuples(st.floats(0, 5), st.integers(0, 1)), max_size=40).map(
    lambda rs: sorted(rs))


@settings(max_examples=300, deadline=None)
@given(record_times, st.floats(0, TICK_S))
def test_no_record_waits_longer_than_a_short_poll(records, tick_phase):
    # A lone failure is read when it is written; one that did not wake the reader,
    # within one POLL_MS: an idle reader's second-long sleep never holds a record.
    for (ts, _), woke, read in zip(records, wakes(records), read_times(records, tick_phase)):
        assert read - ts <= (1e-6 if woke else QUIET_S + 1e-6)


def test_an_idle_reader_polls_once_a_tick():
    pacer = PollPacer()
    polls, now, next_tick = 0, 0.0, 0.0
    while now < 10.0:
        if now >= next_tick:
            next_tick = now + TICK_S
        now += pacer.timeout_ms(next_tick - now) / 1000
        pacer.polled(now, got_records=False)
        polls += 1
    assert polls == 10  # it was 100 with a poll every POLL_MS
