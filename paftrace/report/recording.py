"""The incident file: the tracer's JSON Lines plus recorder records, gzip-compressed.

Written as it happens: every record is a complete line, and at most every
FLUSH_EVERY_S the compressor is flushed with Z_SYNC_FLUSH (byte-aligned, every line
written so far decodable) and the file fsync'ed. A recorder that is killed, or a host
that panics, leaves a gzip stream without its trailer whose decodable part ends on a
record boundary at the last flush (or in the middle of a line written after it): the
reader keeps every complete line and says the recording was cut short.
"""

from __future__ import annotations

import gzip
import json
import os
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

FORMAT = "paftrace-recording"
FORMAT_VERSION = 1
FLUSH_EVERY_S = 1.0
GZIP_MAGIC = b"\x1f\x8b"
READ_CHUNK = 1 << 20


class RecordingError(ValueError):
    """The file is not something `paftrace report` can read."""


class GzipLineSink:
    """A write-only text stream for the JSON renderer: gzip on disk, flushed periodically.

    JsonRenderer calls flush() after every line; here that is a sync flush only when
    FLUSH_EVERY_S has passed, so a storm of failures does not cost a flush each."""

    def __init__(self, path: str | Path, flush_every: float = FLUSH_EVERY_S):
        self.path = Path(path)
        self._raw = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._gz = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=6)
        self.flush_every = flush_every
        self._flushed = time.monotonic()
        self.closed = False

    def write(self, text: str) -> int:
        self._gz.write(text.encode("utf-8"))
        return len(text)

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.closed or not force and now - self._flushed < self.flush_every:
            return
        self._gz.flush(zlib.Z_SYNC_FLUSH)
        os.fsync(self._raw.fileno())  # a panic must not lose what the page cache held
        self._flushed = now

    def close(self) -> None:
        if self.closed:
            return
        self._gz.close()  # writes the trailer: a complete gzip file
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        self.closed = True


@dataclass
class Recording:
    path: str
    records: list[dict]
    kind: str                      # "recording" (paftrace record) | "json" (paftrace --json)
    cut_short: bool
    problems: list[str] = field(default_factory=list)
    by_type: dict[str, list[dict]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for r in self.records:
            self.by_type.setdefault(r.get("type", ""), []).append(r)

    def of_type(self, kind: str) -> list[dict]:
        return self.by_type.get(kind, [])

    def first(self, kind: str) -> dict | None:
        found = self.by_type.get(kind)
        return found[0] if found else None


def _gunzip(data: bytes) -> tuple[str, str | None]:
    """Everything decodable, and why the stream ended early (None when it is complete)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    parts = []
    problem = None
    try:
        for start in range(0, len(data), READ_CHUNK):
            parts.append(inflater.decompress(data[start:start + READ_CHUNK]))
            if inflater.eof:
                break
        parts.append(inflater.flush())
    except zlib.error as exc:
        problem = f"the compressed data is damaged after {sum(map(len, parts))} bytes ({exc})"
    if problem is None and not inflater.eof:
        problem = "the gzip stream has no end (the recorder was killed or the host stopped)"
    return b"".join(parts).decode("utf-8", errors="replace"), problem


def parse_lines(text: str, path: str, ended: str | None = None) -> Recording:
    problems = [ended] if ended else []
    lines = text.split("\n")
    tail = lines.pop()  # "" when the text ends with a newline
    if tail.strip():
        problems.append(f"the last record is incomplete ({len(tail)} bytes dropped)")
    records = []
    bad = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(obj, dict):
            records.append(obj)
        else:
            bad += 1
    if bad:
        problems.append(f"{bad} line(s) are not JSON objects and were skipped")
    if not records:
        raise RecordingError(f"{path}: no paftrace records found")
    first = records[0]
    kind = "recording" if first.get("type") == "recording" else "json"
    if kind == "json" and first.get("type") != "attached":
        raise RecordingError(f"{path}: neither a `paftrace record` file nor a `paftrace "
                             f"--json` capture (first record has type {first.get('type')!r})")
    if kind == "recording" and first.get("format_version", 0) > FORMAT_VERSION:
        problems.append(f"written by a newer paftrace (format {first.get('format_version')}); "
                        "unknown records are ignored")
    end_type = "recording_end" if kind == "recording" else "summary"
    if not any(r.get("type") == end_type for r in records):
        problems.append(f"no `{end_type}` record: the run did not finish")
    return Recording(path, records, kind, cut_short=bool(problems), problems=problems)


def read_recording(path: str | Path) -> Recording:
    """A `paftrace record` file (gzip) or a `paftrace --json` capture (plain or gzip)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise RecordingError(f"{path}: {exc.strerror or exc}") from exc
    if data[:2] == GZIP_MAGIC:
        text, ended = _gunzip(data)
    else:
        text, ended = data.decode("utf-8", errors="replace"), None
    return parse_lines(text, str(path), ended)
