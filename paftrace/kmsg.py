"""The kernel log as it is written, from /dev/kmsg (what a recording keeps of it).

Format (Documentation/ABI/testing/dev-kmsg, kernel/printk/printk.c devkmsg_read):
each read() returns one record, `PRIO,SEQ,TS_USEC,FLAGS[,...];MESSAGE\\n`, then
optional ` KEY=VALUE\\n` dictionary lines. Non-printable bytes of the message are
already escaped by the kernel as \\xNN. TS_USEC is local_clock(), the clock of the
`[  123.456789]` dmesg prefix. A read that returns EPIPE means records were
overwritten in the ring buffer before we read them: counted, never hidden.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

KMSG = "/dev/kmsg"
READ_SIZE = 8192  # larger than any record (PRINTKRB_RECORD_MAX is 1 KiB of text)


@dataclass(frozen=True)
class KmsgLine:
    seq: int
    ts_us: int
    level: int
    facility: int  # 0 = the kernel; 1 = user space writing to /dev/kmsg (systemd, tests)
    text: str

    def dmesg(self) -> str:
        """As `dmesg` prints it, the form `paftrace explain` reads."""
        return f"[{self.ts_us // 1_000_000:5d}.{self.ts_us % 1_000_000:06d}] {self.text}"

    def to_record(self) -> dict:
        return {"type": "kmsg", "seq": self.seq, "ts_us": self.ts_us, "level": self.level,
                "facility": self.facility, "text": self.text}


def parse_record(raw: bytes) -> KmsgLine | None:
    """One /dev/kmsg record; None for a malformed one."""
    head, sep, rest = raw.decode("utf-8", errors="replace").partition(";")
    fields = head.split(",")
    if not sep or len(fields) < 3 or not all(f.isdigit() for f in fields[:3]):
        return None
    prio, seq, ts = (int(f) for f in fields[:3])
    message = rest.split("\n", 1)[0]  # dictionary lines follow, each starting with a space
    return KmsgLine(seq, ts, prio & 7, prio >> 3, message)


class KmsgReader:
    """Non-blocking reader that starts at the end: only what is printed from now on."""

    def __init__(self, path: str = KMSG, from_start: bool = False):
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        if not from_start:
            os.lseek(self.fd, 0, os.SEEK_END)
        self.overwritten = 0  # EPIPE: records lost to the ring buffer before we read them

    def read(self) -> list[KmsgLine]:
        out = []
        while True:
            try:
                raw = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                return out
            except OSError as exc:
                if exc.errno != errno.EPIPE:
                    raise
                self.overwritten += 1
                continue
            if not raw:
                return out
            line = parse_record(raw)
            if line is not None:
                out.append(line)

    def close(self) -> None:
        os.close(self.fd)
