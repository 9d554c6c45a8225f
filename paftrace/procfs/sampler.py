"""Sampling the memory state: buddyinfo + zoneinfo every interval, pagetypeinfo rarely.

`MemorySampler` is the only reader of the files. Time stamps are CLOCK_MONOTONIC
nanoseconds, the clock of bpf_ktime_get_ns(), so a sample can be matched to a
failure record's ts_ns. What is made of a sample lives in `procfs.report`.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from paftrace.procfs.buddyinfo import ProcFormatError, ZoneFree, parse_buddyinfo
from paftrace.procfs.files import KeptFile
from paftrace.procfs.pagetypeinfo import PageTypeInfo, parse_pagetypeinfo
from paftrace.procfs.zoneinfo import ZoneInfo, parse_zoneinfo

TUNABLES = ("min_free_kbytes", "watermark_scale_factor", "watermark_boost_factor",
            "extfrag_threshold")
# /proc/pagetypeinfo takes every zone lock and walks the free lists: never more often.
PAGETYPEINFO_MIN_PERIOD_S = 10.0

ZoneKey = tuple[int, str]


@dataclass
class ZoneSample:
    node: int
    zone: str
    free: tuple[int, ...]                    # /proc/buddyinfo counts per order
    info: ZoneInfo | None = None             # /proc/zoneinfo block of the zone
    pagetypes: dict[str, tuple[int, ...]] | None = None  # free per migratetype (root)
    pageblocks: dict[str, int] | None = None             # pageblocks per migratetype

    @property
    def key(self) -> ZoneKey:
        return (self.node, self.zone)


@dataclass
class MemorySample:
    ts_ns: int
    zones: list[ZoneSample]
    tunables: dict[str, int] = field(default_factory=dict)
    pageblock_order: int | None = None
    pagetypeinfo_ts_ns: int | None = None    # when the pagetypes were read, if ever
    notes: list[str] = field(default_factory=list)  # what could not be read, and why
    # The kernel's zone list (zone_idx order) as /proc/zoneinfo prints it for every node,
    # empty zones included; buddyinfo leaves unpopulated zones out.
    zone_order: tuple[str, ...] = ()

    def zone(self, node: int, zone: str) -> ZoneSample | None:
        return next((z for z in self.zones if z.node == node and z.zone == zone), None)


def build_sample(ts_ns: int, buddy: list[ZoneFree], zoneinfo: list[ZoneInfo] | None = None,
                 pagetypeinfo: PageTypeInfo | None = None,
                 tunables: dict[str, int] | None = None) -> MemorySample:
    """Join the parsed files by (node, zone); buddyinfo decides which zones exist."""
    infos = {z.key: z for z in zoneinfo or []}
    zones = []
    for b in buddy:
        z = ZoneSample(b.node, b.zone, b.free, infos.get(b.key))
        if pagetypeinfo is not None:
            z.pagetypes = pagetypeinfo.free.get(b.key)
            z.pageblocks = pagetypeinfo.blocks.get(b.key)
        zones.append(z)
    order = tuple(dict.fromkeys(z.zone for z in zoneinfo or []))
    return MemorySample(ts_ns, zones, dict(tunables or {}),
                        pagetypeinfo.pageblock_order if pagetypeinfo else None,
                        ts_ns if pagetypeinfo else None, zone_order=order)


class MemorySampler:
    """Reads the files at most once per `interval`; keeps a history for trends and lookups."""

    def __init__(self, interval: float = 1.0, pagetypeinfo_period: float | None = None,
                 proc: str = "/proc", history: int = 600):
        self.interval = interval
        self.pagetypeinfo_period = (None if pagetypeinfo_period is None
                                    else max(pagetypeinfo_period, PAGETYPEINFO_MIN_PERIOD_S))
        self.proc = Path(proc)
        self.history: deque[MemorySample] = deque(maxlen=history)
        self._pagetypeinfo: PageTypeInfo | None = None
        self._pagetypeinfo_ts = 0
        # Kept open: six files a second, and more in a storm (paftrace/procfs/files.py).
        self._files: dict[str, KeptFile] = {}

    def _read(self, name: str) -> str:
        kept = self._files.get(name)
        if kept is None:
            kept = self._files[name] = KeptFile(self.proc / name)
        return kept.read()

    def read_pagetypeinfo(self) -> PageTypeInfo:
        """On demand (root only on 4.14+): raises PermissionError / ProcFormatError."""
        info = parse_pagetypeinfo(self._read("pagetypeinfo"))
        self._pagetypeinfo, self._pagetypeinfo_ts = info, time.monotonic_ns()
        return info

    def _tunables(self) -> dict[str, int]:
        out = {}
        for name in TUNABLES:
            try:
                out[name] = int(self._read(f"sys/vm/{name}").split()[0])
            except (OSError, ValueError, IndexError):
                continue  # absent on this kernel (e.g. boost factor before 5.0)
        return out

    def sample(self, with_pagetypeinfo: bool = False) -> MemorySample:
        """Read now. Raises OSError / ProcFormatError only when buddyinfo itself fails."""
        ts = time.monotonic_ns()
        buddy = parse_buddyinfo(self._read("buddyinfo"))
        notes: list[str] = []
        try:
            zoneinfo = parse_zoneinfo(self._read("zoneinfo"))
        except (OSError, ProcFormatError) as exc:
            zoneinfo, _ = None, notes.append(f"no watermarks: /proc/zoneinfo: {exc}")
        due = (self.pagetypeinfo_period is not None
               and ts - self._pagetypeinfo_ts >= self.pagetypeinfo_period * 1e9)
        if with_pagetypeinfo or due:
            try:
                self.read_pagetypeinfo()
            except PermissionError:
                notes.append("migratetypes (HighAtomic reserve): /proc/pagetypeinfo "
                              "needs root")
                self.pagetypeinfo_period = None  # do not retry every interval
            except (OSError, ProcFormatError) as exc:
                notes.append(f"no migratetypes: /proc/pagetypeinfo: {exc}")
        out = build_sample(ts, buddy, zoneinfo, self._pagetypeinfo, self._tunables())
        if self._pagetypeinfo is not None:
            out.pagetypeinfo_ts_ns = self._pagetypeinfo_ts
        out.notes = notes
        self.history.append(out)
        return out

    def free_lists(self) -> list[ZoneFree]:
        """Only /proc/buddyinfo, read now: one small file, for callers that need the free
        lists fresh and the rest (zoneinfo: watermarks) only every `interval`."""
        return parse_buddyinfo(self._read("buddyinfo"))

    def latest(self) -> MemorySample:
        """The newest sample, read again only when older than `interval` (cheap to call)."""
        if self.history and time.monotonic_ns() - self.history[-1].ts_ns < self.interval * 1e9:
            return self.history[-1]
        return self.sample()

    def near(self, ts_ns: int) -> MemorySample | None:
        """The sample for an event at `ts_ns` (a failure): the nearest kept one, or one read
        now when the nearest is more than half an interval away and the newest is as old.

        A failure just before the next periodic read would otherwise be judged on the free
        lists of almost an interval earlier — the seed's NET_RX case showed room 887 ms
        before failures that found none. Reading at most once per half interval keeps a
        storm (or a backlog of old failures) from reading for every failure."""
        best = self.nearest(ts_ns)
        half = self.interval * 1e9 / 2
        stale = best is None or abs(best.ts_ns - ts_ns) > half
        if stale and (not self.history or time.monotonic_ns() - self.history[-1].ts_ns > half):
            self.sample()
            best = self.nearest(ts_ns)
        return best

    def previous(self) -> MemorySample | None:
        return self.history[-2] if len(self.history) >= 2 else None

    def nearest(self, ts_ns: int) -> MemorySample | None:
        """The kept sample closest in time to `ts_ns` (e.g. a failure's time stamp)."""
        # Samples are in time order and failures are near the newest: walk back
        # from it while the distance shrinks, not through the whole history (up to
        # 600 samples, for every failure of a storm).
        best = None
        for sample in reversed(self.history):
            if best is not None and abs(sample.ts_ns - ts_ns) >= abs(best.ts_ns - ts_ns):
                break
            best = sample
        return best

    def trend(self, key: ZoneKey, order: int, points: int = 8) -> list[int]:
        """Free blocks of one order in one zone over the last `points` samples."""
        out = []
        for s in list(self.history)[-points:]:
            z = s.zone(*key)
            if z is not None and order < len(z.free):
                out.append(z.free[order])
        return out
