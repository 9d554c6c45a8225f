"""Standard output for the JSON and plain renderers: a text stream that never loses
the rest of a write a signal cut short.

With unbuffered output (PYTHONUNBUFFERED=1, `python -u`: set on this machine, and in
many container images and service units) sys.stdout is a TextIOWrapper writing straight
to the file descriptor, and it ignores a short write: when Ctrl-C interrupted a write(2)
blocked on a full pipe after part of a record was written, `paftrace --json` lost the
rest of that record and glued the next one to it (Debian's CPython 3.11 on 6.18; strace:
write(1, ..., 4588) = 4096, SIGINT, then the next record's write; three runs of three).
Buffered, the BufferedWriter below it writes the rest. Here os.write() tells how much
went out and the rest is written again; a write interrupted before any byte went out
Python retries itself (EINTR, PEP 475).
"""

from __future__ import annotations

import os
import sys
from typing import Protocol

# Buffered text is written out at flush() (the tracer's, once per poll) or at this size.
FLUSH_AT = 1 << 16


class TextSink(Protocol):
    """What the renderers write to: sys.stdout-like (an FdWriter, a file, StringIO)."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class FdWriter:
    """Text written to a file descriptor whole, buffered until flush() or FLUSH_AT."""

    def __init__(self, fd: int, encoding: str = "utf-8", errors: str = "strict"):
        self.fd = fd
        self.encoding = encoding
        self.errors = errors
        self._parts: list[str] = []
        self._size = 0

    def write(self, text: str) -> int:
        self._parts.append(text)
        self._size += len(text)
        if self._size >= FLUSH_AT:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if not self._parts:
            return
        data = memoryview("".join(self._parts).encode(self.encoding, self.errors))
        self._parts.clear()
        self._size = 0
        while data:
            data = data[os.write(self.fd, data):]

    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        return os.isatty(self.fd)


def stdout_writer() -> FdWriter:
    """An FdWriter on standard output, after what sys.stdout still holds."""
    sys.stdout.flush()
    return FdWriter(sys.stdout.fileno(), sys.stdout.encoding or "utf-8",
                    sys.stdout.errors or "strict")
