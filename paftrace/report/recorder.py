"""`paftrace record`: the tracer's JSON stream, plus what the report needs beside it.

The tracer runs exactly as for `--json` (same Tracer, same JsonRenderer, same records);
RecordRenderer only adds records, in time order, into a GzipLineSink:

- first `recording` (format, clocks, options), `system` (facts), `doctor` (checks);
- every interval a `buddyinfo` sample (the same object `paftrace buddyinfo --json`
  prints, pagetypeinfo every PAGETYPEINFO_PERIOD_S) and a `rates` record (the kernel's
  per-order attempt/failure totals);
- `kmsg` lines as the kernel prints them; at the end each page allocation failure report
  among them decoded by `paftrace explain` as a `kernel_report`;
- last `recording_end`, after the tracer's `summary`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from paftrace import __version__
from paftrace.explain.advice import VmSettings, read_vm_settings
from paftrace.explain.analyze import explain_text
from paftrace.kmsg import KmsgLine, KmsgReader
from paftrace.options import TraceOptions
from paftrace.procfs.report import sample_record
from paftrace.procfs.sampler import MemorySampler
from paftrace.procfs.system import system_facts
from paftrace.render import Snapshot
from paftrace.render.jsonl import JsonRenderer
from paftrace.report.recording import FORMAT, FORMAT_VERSION, GzipLineSink

# /proc/pagetypeinfo takes every zone lock: a low rate (procfs/sampler.py enforces >= 10 s).
PAGETYPEINFO_PERIOD_S = 30.0
# A chatty kernel log must not grow the file without bound; what is dropped is counted.
MAX_KMSG_LINES = 50_000
MAX_REPORT_LINES = 300  # raw text kept per report (a Mem-Info dump is ~100 lines)


def doctor_record() -> dict:
    """`paftrace doctor --no-load`: the recording's own attach is the load test."""
    from paftrace.commands.doctor import run_checks  # noqa: PLC0415 - imports bcc

    checks = run_checks(load_test=False)
    return {"type": "doctor", "ok": all(c.ok for c in checks if c.required),
            "checks": [vars(c) for c in checks]}


def decode_kernel_reports(lines: list[dict], kernel: str | None = None,
                          vm: VmSettings | None = None) -> list[dict]:
    """`kmsg` records -> one `kernel_report` per page allocation failure report printed,
    decoded by explain (ungrouped: each printed report is one incident on the timeline).
    Every report in /dev/kmsg was printed by the recorded machine, so its advice uses that
    machine's vm.* settings: `vm` (read live by the recorder, from the `system` record by
    `report`)."""
    text = "\n".join(KmsgLine(r["seq"], r["ts_us"], r["level"], r.get("facility", 0),
                              r["text"]).dmesg() for r in lines)
    all_lines = text.splitlines()
    found = explain_text(text, kernel=kernel, vm=vm, grouped=False)
    starts = [e.report.line - 1 for e in found] + [len(all_lines)]
    out = []
    for e, start, end in zip(found, starts, starts[1:]):
        rec = {"type": "kernel_report", **e.to_json()}
        rec["raw"] = all_lines[start:min(end, start + MAX_REPORT_LINES)]
        out.append(rec)
    return out


class RecordRenderer(JsonRenderer):
    """JsonRenderer into a gzip file, with the recorder's records added."""

    def __init__(self, sink: GzipLineSink, order: int, kmsg: KmsgReader | None,
                 head: list[dict]):
        super().__init__(sink)  # type: ignore[arg-type] - a write/flush text stream
        self.sink = sink
        self.order = order
        self.kmsg = kmsg
        self.kmsg_lines: list[dict] = []
        self.kmsg_dropped = 0
        self.samples_written: set[int] = set()
        self.pagetypeinfo_written: int | None = None
        self.counts = {"buddyinfo": 0, "failure": 0, "stall": 0, "kmsg": 0}
        for record in head:
            self._emit(record)

    def _emit(self, obj: dict) -> None:
        kind = obj.get("type")
        if kind in self.counts:
            self.counts[kind] += 1
        super()._emit(obj)

    def event(self, record: dict) -> None:
        if record.get("type") == "buddyinfo":
            if record["ts_ns"] in self.samples_written:
                return
            self.samples_written.add(record["ts_ns"])
            self._once_per_read(record)
        super().event(record)

    def _once_per_read(self, record: dict) -> None:
        """The sampler repeats its last pagetypeinfo in every sample; the file keeps each
        read once (PAGETYPEINFO_PERIOD_S), in the first sample that carries it."""
        read_at = record.get("pagetypeinfo_ts_ns")
        if read_at is None or read_at != self.pagetypeinfo_written:
            self.pagetypeinfo_written = read_at
            return
        for zone in record["zones"]:
            zone.pop("migratetypes", None)
            zone.pop("pageblocks", None)

    def tick(self, snapshot: Snapshot) -> None:
        sample = snapshot.memory
        if sample is not None:
            self.event(sample_record(sample, self.order))  # type: ignore[arg-type]
        self._emit({"type": "rates", "ts_ns": time.monotonic_ns(),
                    "orders": {str(o): list(v) for o, v in sorted(snapshot.orders.totals.items())},
                    "failures_by_context": snapshot.failures_by_context,
                    "lost": snapshot.stats})
        self._read_kmsg()
        self.sink.flush()

    def _read_kmsg(self) -> None:
        if self.kmsg is None:
            return
        for line in self.kmsg.read():
            if len(self.kmsg_lines) >= MAX_KMSG_LINES:
                self.kmsg_dropped += 1
                continue
            record = line.to_record()
            self.kmsg_lines.append(record)
            self._emit(record)

    def finish(self, summary: dict) -> None:
        self._read_kmsg()
        for report in decode_kernel_reports(self.kmsg_lines, vm=read_vm_settings()):
            self._emit(report)
        super().finish(summary)
        self._emit({"type": "recording_end", "ts_ns": time.monotonic_ns(),
                    "wall_ns": time.time_ns(), "records": dict(self.counts),
                    "kmsg_dropped": self.kmsg_dropped,
                    "kmsg_overwritten": self.kmsg.overwritten if self.kmsg else 0})
        self.close()

    def close(self) -> None:
        if self.kmsg is not None:
            self.kmsg.close()
            self.kmsg = None
        self.sink.close()


def header_record(options: TraceOptions, interval: float, argv: list[str],
                  kmsg_error: str | None) -> dict:
    return {"type": "recording", "format": FORMAT, "format_version": FORMAT_VERSION,
            "paftrace": __version__, "ts_ns": time.monotonic_ns(), "wall_ns": time.time_ns(),
            "argv": argv, "interval_s": interval, "order": options.order_label,
            "order_min": options.order_min, "order_max": options.order_max,
            "filters": {"pid": options.pid, "comm": options.comm,
                        "atomic_only": options.atomic_only, "warn_only": options.warn_only},
            "pagetypeinfo_period_s": PAGETYPEINFO_PERIOD_S,
            # /dev/kmsg time stamps are local_clock(); on x86 with a stable TSC that is
            # CLOCK_MONOTONIC give or take milliseconds (not across suspend).
            "kmsg": kmsg_error or "reading /dev/kmsg from the start of the recording"}


def open_kmsg() -> tuple[KmsgReader | None, str | None]:
    try:
        return KmsgReader(), None
    except OSError as exc:
        return None, f"kernel log not recorded: /dev/kmsg: {exc.strerror or exc}"


def record(options: TraceOptions, path: str, duration: float | None, interval: float,
           run: Callable[..., int] | None = None) -> tuple[int, RecordRenderer]:
    """Record into `path`; returns the tracer's exit status and the renderer (counts)."""
    if run is None:
        from paftrace.tracer import run_trace as run  # noqa: PLC0415 - imports bcc

    kmsg, kmsg_error = open_kmsg()
    head = [header_record(options, interval, list(sys.argv), kmsg_error), system_facts(),
            doctor_record()]
    sink = GzipLineSink(path)
    os.chmod(path, 0o640)  # kernel stacks and the kernel log: not for every user
    if os.environ.get("SUDO_UID", "").isdigit():  # `sudo paftrace record`: the user's file
        os.chown(path, int(os.environ["SUDO_UID"]), int(os.environ.get("SUDO_GID", "-1")))
    renderer = RecordRenderer(sink, options.order_min, kmsg, head)
    # A little under the tick interval, so every tick reads a fresh sample.
    memory = MemorySampler(interval=interval * 0.9, pagetypeinfo_period=PAGETYPEINFO_PERIOD_S)
    try:
        status = run(options, mode="json", duration=duration, interval=interval,
                     renderer=renderer, memory=memory)
    finally:  # an unexpected error still leaves a complete gzip file (without an end)
        renderer.close()
    return status, renderer
