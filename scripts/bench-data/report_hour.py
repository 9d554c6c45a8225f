"""A 1-hour recording made of a real one, and how long `paftrace report` takes on it.

The body of a real recording (memory samples, rates, failures, stalls, kernel log lines,
kernel reports) is repeated, shifted in time, until it covers `--seconds`; the kernel's
per-order counters keep growing across repeats as they would. Prints one JSON object:
records, file size, report seconds and HTML size (docs/REPORT.md quotes it).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from paftrace.report.recording import GzipLineSink, read_recording

HEAD = ("recording", "system", "doctor", "attached")
TAIL = ("summary", "recording_end")


def _shift(record: dict, offset_ns: int) -> dict:
    out = dict(record)
    for key in ("ts_ns", "start_ns"):
        if isinstance(out.get(key), int):
            out[key] += offset_ns
    if out.get("type") == "failure" and out.get("buddyinfo"):
        out["buddyinfo"] = dict(out["buddyinfo"], sample_ts_ns=out["buddyinfo"]["sample_ts_ns"]
                                + offset_ns)
    if out.get("type") == "kmsg":
        out["ts_us"] += offset_ns // 1000
    if out.get("type") == "kernel_report" and out.get("timestamp") is not None:
        out["timestamp"] += offset_ns / 1e9
    return out


def synthesize(source: Path, target: Path, seconds: float) -> dict:
    records = read_recording(source).records
    head = [r for r in records if r["type"] in HEAD]
    body = [r for r in records if r["type"] not in HEAD + TAIL]
    tail = {r["type"]: r for r in records if r["type"] in TAIL}
    stamps = [r["ts_ns"] for r in body if isinstance(r.get("ts_ns"), int)]
    span = max(stamps) - min(stamps) + 1_000_000_000
    start = head[0]["ts_ns"]
    last_rates = [r for r in body if r["type"] == "rates"][-1]["orders"]
    sink = GzipLineSink(target)
    counts: dict[str, int] = {}
    repeats = 0
    for rec in head:
        sink.write(json.dumps(rec) + "\n")
    def covered() -> int:  # ns from the start to the last record written so far
        return max(stamps) + (repeats - 1) * span - start

    while repeats == 0 or covered() < seconds * 1e9:
        offset = repeats * span
        for rec in body:
            out = _shift(rec, offset)
            if out["type"] == "rates":  # counters keep counting
                out["orders"] = {o: [v[0] + repeats * last_rates.get(o, [0, 0])[0],
                                     v[1] + repeats * last_rates.get(o, [0, 0])[1]]
                                 for o, v in out["orders"].items()}
            counts[out["type"]] = counts.get(out["type"], 0) + 1
            sink.write(json.dumps(out, separators=(",", ":")) + "\n")
        repeats += 1
    summary = dict(tail["summary"], duration_s=round(repeats * span / 1e9, 3))
    summary["orders"] = {o: {"attempts": v["attempts"] * repeats,
                             "failures": v["failures"] * repeats}
                         for o, v in summary["orders"].items()}
    summary["failures_matched"] = summary["failures_matched"] * repeats
    summary["failures_reported"] = counts.get("failure", 0)
    sink.write(json.dumps(summary) + "\n")
    sink.write(json.dumps(_shift(tail["recording_end"], (repeats - 1) * span)) + "\n")
    sink.close()
    return {"repeats": repeats, "records": counts, "seconds": round(covered() / 1e9, 1),
            "file_bytes": target.stat().st_size}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a real `paftrace record` file")
    parser.add_argument("--seconds", type=float, default=3600)
    parser.add_argument("--out", type=Path, default=Path("/tmp/paftrace-hour.paf"))
    args = parser.parse_args()
    made = synthesize(args.source, args.out, args.seconds)
    html = args.out.with_suffix(".html")
    t0, cpu0 = time.monotonic(), _children_cpu()
    proc = subprocess.run([sys.executable, "-m", "paftrace", "report", str(args.out), "-o",
                           str(html)], capture_output=True, text=True)
    elapsed, cpu = time.monotonic() - t0, _children_cpu() - cpu0
    if proc.returncode:
        print(proc.stderr, file=sys.stderr)
        return 1
    print(json.dumps({**made, "report_s": round(elapsed, 2), "report_cpu_s": round(cpu, 2),
                      "html_bytes": html.stat().st_size}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
