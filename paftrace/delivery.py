"""Record delivery from bcc's buffers without losing exceptions or records.

bcc calls our record handler through a ctypes callback. An exception raised
there never reaches the caller of `ring_buffer_poll`/`perf_buffer_poll`: ctypes
prints "Exception ignored on calling ctypes callback function" and carries on
(CPython Modules/_ctypes/callbacks.c). That would swallow a renderer bug, the
BrokenPipeError of `paftrace --json | head -1` and the SystemExit of a second
Ctrl-C. `GuardedHandler` catches everything in the callback, counts the record
as failed, stashes the first exception and re-raises it once poll has returned.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

# libbpf's ring_buffer__poll stops consuming when a callback returns < 0
# (tools/lib/bpf/ringbuf.c, ringbuf_process_ring(), since Linux v5.8): a
# pending exception then ends the poll at once. Perf buffers have no such stop;
# their remaining records are counted as failed without being handled.
STOP_CONSUMING = -1


# Sees each record's bytes before it is handled: (record type name, bytes).
Tap = Callable[[str, bytes], None]


class GuardedHandler:
    """Wraps `handle(record)` as a bcc buffer callback that never loses an exception.

    `failed` counts records whose handling raised or that arrived after an
    exception was stashed (they were not rendered); `delivered` counts the
    records handled without error.
    """

    def __init__(self, handle: Callable[[Any], None], record_type: type[ctypes.Structure],
                 tap: Tap | None = None):
        self._handle = handle
        self._pointer = ctypes.POINTER(record_type)
        self._name = record_type.__name__
        self._tap = tap
        self.delivered = 0
        self.failed = 0
        self.pending: BaseException | None = None

    def callback(self, _ctx_or_cpu: Any, data: Any, _size: int) -> int:
        """bcc's signature: (ctx, data, size) for ring buffers, (cpu, data, size) for perf."""
        if self.pending is not None:
            self.failed += 1
            return STOP_CONSUMING
        try:
            record = ctypes.cast(data, self._pointer).contents
            if self._tap is not None:  # scripts/capture-fixture: raw records for replay
                self._tap(self._name, bytes(record))
            self._handle(record)
        except BaseException as exc:  # noqa: BLE001 - re-raised by raise_pending()
            self.failed += 1
            self.pending = exc
            return STOP_CONSUMING
        self.delivered += 1
        return 0

    def raise_pending(self) -> None:
        """Re-raise what a callback stashed; call after every poll/consume."""
        exc, self.pending = self.pending, None
        if exc is not None:
            raise exc


def raise_all_pending(handlers: list[GuardedHandler]) -> None:
    """A stop request (SystemExit, KeyboardInterrupt) wins over an ordinary error."""
    pending = [h.pending for h in handlers if h.pending is not None]
    for handler in handlers:
        handler.pending = None
    if pending:
        pending.sort(key=lambda exc: isinstance(exc, Exception))
        raise pending[0]
