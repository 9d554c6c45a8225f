"""Reading small kernel files cheaply: the tracer reads some of them every second and
more during a failure storm, on the CPUs the storm wants.

`read_text` opens, reads and closes with three system calls and one more read at the end;
pathlib's `read_text` makes seven (openat, fstat, ioctl, lseek, read, read, close: strace
on 6.18). `KeptFile` opens once and reads again with one `pread` at offset 0. On this
2-CPU 6.18 guest, per read (CPU time, 500-1,000 reads): a `vm.*` sysctl 14.7 µs with
pathlib, 1.7 µs kept (two preads: the text, then the end); /proc/zoneinfo 78 µs and 27 µs.

A read at offset 0 regenerates the file's text:
- seq_file files (/proc/buddyinfo, zoneinfo, pagetypeinfo) restart their iterator when
  asked for an offset other than where the last read stopped (fs/seq_file.c
  seq_read_iter on 5.10+, seq_read before: "Don't assume ki_pos is where we left it"),
  and from its first record at offset 0;
- sysctl files format the current value for every read (fs/proc/proc_sysctl.c
  proc_sys_call_handler, with the read's position).
A seq_file read may return less than asked before the end (a record that did not fit),
so both readers read until a read returns nothing.
"""

from __future__ import annotations

import os

CHUNK = 4096  # a page: larger buffers cost more to allocate than the reads they save


def read_text(path: str | os.PathLike) -> str:
    """The whole file, any byte that is not UTF-8 replaced (its text is data). Raises
    OSError as open() does."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _read_all(fd, None)
    finally:
        os.close(fd)


def _read_all(fd: int, offset: int | None) -> str:
    chunks = []
    while True:
        chunk = os.read(fd, CHUNK) if offset is None else os.pread(fd, CHUNK, offset)
        if not chunk:
            return b"".join(chunks).decode(errors="replace")
        chunks.append(chunk)
        if offset is not None:
            offset += len(chunk)


class KeptFile:
    """A file kept open and read from its start at every `read()`. Opened at the first
    read; a file that could not be opened is tried again at the next read (a sysctl
    appears when its module loads). One reader at a time: two threads reading one
    seq_file in chunks could each get parts of two generations of its text (each
    MemorySampler, the exporter's included, has its own)."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._fd: int | None = None

    def read(self) -> str:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        return _read_all(self._fd, 0)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __del__(self) -> None:
        self.close()
