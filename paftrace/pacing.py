"""How long each of the tracer's polls may wait (pure: tested with made-up clocks).

Each wait costs the tracer about 0.1 ms of CPU however short it is: the timer and the
wakeup (time.sleep measured on this 2-CPU 6.18 guest). Ten waits a second were most of
an idle tracer's 3.5 ms of CPU a second. So the reader polls every POLL_MS only while
records come; otherwise it sleeps until its next tick, at most IDLE_POLL_MS.

A failure need not wait for that. Each CPU wakes the reader for its first record
after RINGBUF_QUIET_NS (= POLL_MS) without one (pagealloc.c, ringbuf_wakeup_flag); a
perf buffer wakes it for every record. A CPU's record less than POLL_MS after its
previous one wakes nobody, so after a poll that got records the reader keeps polling
every POLL_MS until a poll has ended POLL_MS after that one: that poll's final read
takes it.

Only the stall buffer (reclaim.c's, read at each poll) and a signal caught by another
thread wait for an idle poll. Ctrl-C reaches the main thread, the one polling, and ends
its wait at once (EINTR).
"""

from __future__ import annotations

import math

POLL_MS = 100
IDLE_POLL_MS = 1000


class PollPacer:
    """The next poll's timeout, from when the polls that got records ended."""

    def __init__(self, always_short: bool = False) -> None:
        self.always_short = always_short  # selftest: it ends when its provoker does
        self.short_until = 0.0  # monotonic s: poll every POLL_MS until a poll ends after it
        self.last_end = 0.0

    def timeout_ms(self, until_tick_s: float) -> int:
        """Rounded up: a wait rounded down to 0 ms would spin until the tick."""
        short = self.always_short or self.last_end < self.short_until
        left_ms = max(0, math.ceil(until_tick_s * 1000))
        return min(POLL_MS if short else IDLE_POLL_MS, left_ms)

    def polled(self, ended: float, got_records: bool) -> None:
        """A poll ended at monotonic `ended` (after its last read of the buffers)."""
        self.last_end = ended
        if got_records:
            self.short_until = ended + POLL_MS / 1000
