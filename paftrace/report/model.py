"""Records -> the report's data: one dict, embedded in the HTML as its JSON data island
and read by the plots, printed as tables by the Markdown renderer. Pure.

Times are seconds since the start of the recording (the `recording` record, or
`attached` for a `--json` capture), on the tracer's CLOCK_MONOTONIC.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import fields

from paftrace.aggregate import FailureAggregator
from paftrace.records import Failure, failures_in
from paftrace.report.recorder import decode_kernel_reports
from paftrace.report.recording import Recording
from paftrace.report.verdict import judge, vm_settings

TOP_SITES = 20
MAX_BUCKETS = 1200         # failure histogram: at most this many bars per series
MAX_FAILURE_POINTS = 5000  # individual failures listed for hover; the histogram counts all
MAX_STALL_POINTS = 5000
MAX_REPORT_TIMES = 1000    # per distinct kernel report, for the timeline markers
WATERMARKS = ("min", "low", "high")
_FAILURE_FIELDS = {f.name for f in fields(Failure)}


def _seconds(ts_ns: int, t0_ns: int) -> float:
    """Milliseconds are enough for a plot, and keep the data island small."""
    return (ts_ns - t0_ns) // 1_000_000 / 1000


def _start(rec: Recording) -> tuple[int, int | None]:
    """(t0 in monotonic ns, wall-clock ns at t0 or None)."""
    head = rec.first("recording")
    if head is not None:
        return head["ts_ns"], head.get("wall_ns")
    attached = rec.first("attached")
    return (attached or rec.records[0]).get("ts_ns", 0), None


def _end_s(rec: Recording, t0: int) -> float:
    stamps = [r["ts_ns"] for r in rec.records if isinstance(r.get("ts_ns"), int)]
    summary = rec.first("summary")
    end = max(stamps, default=t0)
    if summary and rec.kind == "json":  # a capture's records may all be before the end
        attached = rec.first("attached") or {}
        end = max(end, attached.get("ts_ns", t0) + int(summary["duration_s"] * 1e9))
    return _seconds(end, t0)


def _weighted(failures: list[dict], key: str) -> dict:
    counts: Counter = Counter()
    for f in failures:
        counts[f[key]] += failures_in(f)
    return dict(counts)


def _failure_series(failures: list[dict], t0: int, duration: float) -> dict:
    bucket = max(1, math.ceil(duration / MAX_BUCKETS))
    count = max(1, math.ceil(duration / bucket) + 1)
    series: dict[tuple[int, str], list[int]] = {}
    for f in failures:
        key = (f["order"], f["context"] + (f":{f['softirq']}" if f.get("softirq") else ""))
        slot = min(count - 1, max(0, int(_seconds(f["ts_ns"], t0) // bucket)))
        series.setdefault(key, [0] * count)[slot] += failures_in(f)
    return {"bucket_s": bucket, "t": [i * bucket for i in range(count)],
            "series": [{"order": o, "context": c, "counts": v}
                       for (o, c), v in sorted(series.items())]}


def _zones(samples: list[dict], t0: int) -> list[dict]:
    """Per zone: blocks >= the watched order, free pages and the watermarks over time."""
    zones: dict[tuple[int, str], dict] = {}
    for s in samples:
        t = _seconds(s["ts_ns"], t0)
        for z in s["zones"]:
            row = zones.setdefault((z["node"], z["zone"]), {
                "node": z["node"], "zone": z["zone"], "order": s["order"], "t": [],
                "blocks_at_or_above": [], "free_pages": [], **{w: [] for w in WATERMARKS}})
            row["t"].append(t)
            row["blocks_at_or_above"].append(z["blocks_at_or_above"])
            row["free_pages"].append(z.get("pages_free", z["free_pages"]))
            marks = z.get("watermarks") or {}
            for w in WATERMARKS:
                row[w].append(marks.get(w))
    return list(zones.values())


def _orders(rec: Recording) -> list[dict]:
    """Attempts and failures per order, counted in the kernel: the summary, or the last
    `rates` record of a recording that was cut short."""
    summary = rec.first("summary")
    if summary is not None:
        totals = {int(o): (v["attempts"], v["failures"]) for o, v in summary["orders"].items()}
    else:
        rates = rec.of_type("rates")
        totals = {int(o): tuple(v) for o, v in rates[-1]["orders"].items()} if rates else {}
    return [{"order": o, "attempts": a, "failures": f} for o, (a, f) in sorted(totals.items())]


def _rates(rec: Recording, t0: int) -> dict:
    """Failures per second counted in the kernel (all orders), between `rates` records,
    each at the start of its interval (a step, like the histogram's buckets)."""
    rates = rec.of_type("rates")
    t, per_s = [], []
    for before, after in zip(rates, rates[1:]):
        dt = (after["ts_ns"] - before["ts_ns"]) / 1e9
        if dt <= 0:
            continue
        failed = sum(v[1] for v in after["orders"].values()) - sum(
            v[1] for v in before["orders"].values())
        t.append(_seconds(before["ts_ns"], t0))
        per_s.append(round(failed / dt, 2))
    return {"t": t, "failures_per_s": per_s}


def _stalls(stalls: list[dict], t0: int) -> dict:
    points = [[_seconds(s["ts_ns"], t0), s["duration_ms"], s["kind"], s.get("comm", ""),
               s.get("order"), s.get("outcome")] for s in stalls]
    by_kind = Counter(s["kind"] for s in stalls)
    total_ms = Counter()
    for s in stalls:
        total_ms[s["kind"]] += s["duration_ms"]
    return {"count": len(stalls), "by_kind": dict(by_kind),
            "total_ms": {k: round(v, 3) for k, v in total_ms.items()},
            "points": points[:MAX_STALL_POINTS], "points_dropped":
            max(0, len(points) - MAX_STALL_POINTS)}


def _call_sites(failures: list[dict], t0: int, context: dict) -> list[dict]:
    agg = FailureAggregator()
    for rec in failures:
        # Records carry exactly Failure's fields (records.Failure.to_json) unless written
        # by another paftrace version: then only the known ones.
        known = rec if rec.keys() <= _FAILURE_FIELDS else {
            k: v for k, v in rec.items() if k in _FAILURE_FIELDS}
        agg.add(Failure(**known))
    sites = []
    for site in agg.top(TOP_SITES):
        row = site.to_json()
        row["first_s"] = _seconds(site.first_ns, t0)
        row["last_s"] = _seconds(site.last_ns, t0)
        row["comm"], row["pid"] = site.sample.comm, site.sample.pid
        row["judgement"] = judge(site.sample, context)
        sites.append(row)
    return sites


def _kernel_reports(rec: Recording, kernel: str | None, t0: int, system: dict
                    ) -> tuple[list[dict], str]:
    reports = rec.of_type("kernel_report")
    how = "decoded by the recorder"
    if not reports and rec.of_type("kmsg"):  # cut short before the end: decode here
        reports = decode_kernel_reports(rec.of_type("kmsg"), kernel,
                                        vm_settings(system) if system else None)
        how = "decoded by the report (the recording ended before the recorder did it)"
    grouped: dict[tuple, dict] = {}
    for r in reports:
        # kmsg time stamps are local_clock(), ~CLOCK_MONOTONIC (see recorder.header_record)
        t = None if r.get("timestamp") is None else round(r["timestamp"] - t0 / 1e9, 3)
        key = (r.get("kind"), r.get("order"), r.get("mode"), tuple(r.get("stack") or ()))
        if key in grouped:  # the same report again: one entry, every time kept
            grouped[key]["count"] += 1
            grouped[key]["times"].append(t)
        else:
            grouped[key] = dict(r, count=1, t=t, times=[t])
    for r in grouped.values():
        r["times"] = r["times"][:MAX_REPORT_TIMES]
    return list(grouped.values()), how


def build_model(rec: Recording) -> dict:
    t0, wall0 = _start(rec)
    attached = rec.first("attached") or {}
    head = rec.first("recording") or {}
    system = rec.first("system") or {}
    summary = rec.first("summary")
    failures = rec.of_type("failure")
    kernel = attached.get("kernel") or system.get("kernel")
    duration = _end_s(rec, t0)
    context = {"kernel": kernel, "system": system, "samples": {
        s["ts_ns"]: s for s in rec.of_type("buddyinfo")}}
    sites = _call_sites(failures, t0, context)
    reports, reports_how = _kernel_reports(rec, kernel, t0, system)
    points = [[_seconds(f["ts_ns"], t0), f["order"], f["context"], f.get("softirq"),
               f.get("requester"), f["severity"], f.get("comm", "")] for f in failures]
    model = {
        "meta": {"source": rec.path, "kind": rec.kind, "cut_short": rec.cut_short,
                 "problems": rec.problems, "kernel": kernel,
                 "hostname": system.get("hostname"), "order": attached.get("order") or
                 head.get("order"), "order_min": attached.get("order_min", 0),
                 "start_wall_ns": wall0, "duration_s": duration,
                 "interval_s": head.get("interval_s"), "argv": head.get("argv"),
                 "filters": head.get("filters"), "probes": attached.get("probes", []),
                 "features": attached.get("features", []),
                 "summary_present": summary is not None},
        "failures": {"total": sum(failures_in(f) for f in failures),
                     "records": len(failures),
                     "by_order": {str(k): v for k, v in sorted(
                         _weighted(failures, "order").items())},
                     "by_context": _weighted(failures, "context"),
                     "by_severity": _weighted(failures, "severity"),
                     "kernel_counted": summary["failures_matched"] if summary else None,
                     "lost": summary["lost"] if summary else None},
        "failure_series": _failure_series(failures, t0, duration),
        "failure_points": points[:MAX_FAILURE_POINTS],
        "failure_points_dropped": max(0, len(points) - MAX_FAILURE_POINTS),
        "zones": _zones(rec.of_type("buddyinfo"), t0),
        "orders": _orders(rec),
        "rates": _rates(rec, t0),
        "stalls": _stalls(rec.of_type("stall"), t0),
        "call_sites": sites,
        "kernel_reports": reports, "kernel_reports_how": reports_how,
        "kernel_reports_total": sum(r["count"] for r in reports),
        "kmsg_lines": len(rec.of_type("kmsg")),
        "system": {k: v for k, v in system.items() if k != "type"},
        "doctor": rec.first("doctor"),
        "reclaim": summary.get("reclaim") if summary else None,
    }
    model["verdict"] = headline(model)
    return model


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def headline(model: dict) -> dict:
    """Harmful or expected, which orders/contexts/call sites, and the advice with evidence:
    harmful call sites and kernel reports first, each with the evidence explain gives."""
    f = model["failures"]
    sites = model["call_sites"]
    reports = model["kernel_reports"]
    order = model["meta"]["order"]
    if not f["total"] and not reports:
        return {"severity": "none", "title": f"No page allocation failure of order {order} "
                f"in {model['meta']['duration_s']:.0f} s", "points": [], "advice": []}
    harmful = [s for s in sites if s["judgement"]["verdict"] == "harmful"]
    harmful_reports = [r for r in reports if r.get("verdict") == "real"]
    severity = "harmful" if harmful or harmful_reports else "expected"
    parts = []
    if f["total"]:
        orders = ", ".join(f"order {o}: {n}" for o, n in f["by_order"].items())
        contexts = ", ".join(f"{c}: {n}" for c, n in sorted(f["by_context"].items()))
        bad = sum(s["count"] for s in harmful)
        parts.append(f"{_count(f['total'], 'failed allocation')} traced ({orders}; {contexts})"
                     f", {bad or 'none'} at harmful call sites")
    if reports:
        total = model["kernel_reports_total"]
        bad = sum(r["count"] for r in harmful_reports)
        parts.append(f"{_count(total, 'kernel report')} printed, {bad or 'none'} harmful")
    title = ("HARMFUL: " if severity == "harmful" else "Expected: ") + "; ".join(parts)
    points = []
    for s in (harmful or sites)[:3]:
        j = s["judgement"]
        points.append({"text": f"{j['verdict']}: {s['count']}x {s['blame']}, order "
                       f"{s['order']}, {'|'.join(s['gfp_flags'])}, {s['context']}",
                       "evidence": "; ".join(f"{p['text']} ({p['evidence']})"
                                             for p in j["reasons"])})
    for r in (harmful_reports or reports)[:3]:
        verdict = "harmful" if r.get("verdict") == "real" else "expected"
        points.append({"text": f"{verdict}: kernel report ({r['count']}x), {r.get('comm')} order "
                       f"{r.get('order')}, {'|'.join(r.get('gfp_flags') or [])}, "
                       f"{r.get('context') or 'unknown context'}",
                       "evidence": "; ".join(f"{p['text']} ({p['evidence']})"
                                             for p in r.get("verdict_evidence", []))})
    advice: dict[str, dict] = {}
    for s in harmful or sites:
        for p in s["judgement"]["findings"] + s["judgement"]["advice"]:
            advice.setdefault(p["text"], p)
    for r in harmful_reports or reports:
        for p in r.get("findings", []) + r.get("advice", []):
            advice.setdefault(p["text"], p)
    return {"severity": severity, "title": title, "points": points,
            "advice": list(advice.values())}
