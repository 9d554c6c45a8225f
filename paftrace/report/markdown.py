"""The report as Markdown for pasting into a ticket: the same model, tables, no plots.

Recorded text goes into table cells and code spans: `|`, backticks and newlines are
escaped so a task name or symbol cannot break the table or add markup.
"""

from __future__ import annotations

from paftrace.report.html import when


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return (text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")
            .replace("<", "&lt;").replace("\n", " ").replace("\r", " "))


def _table(headers: list[str], rows: list[list[object]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out + [""]


def _points(points: list[dict]) -> list[str]:
    return [f"- {_cell(p['text'])}  \n  evidence: {_cell(p['evidence'])}" for p in points]


def _zone_rows(model: dict) -> list[list[object]]:
    rows = []
    for z in model["zones"]:
        blocks = z["blocks_at_or_above"]
        mins = [v for v in z["min"] if v is not None]
        rows.append([f"N{z['node']} {z['zone']}", len(blocks), blocks[0], min(blocks),
                     blocks[-1], min(z["free_pages"]), mins[-1] if mins else "-"])
    return rows


def render_markdown(model: dict) -> str:
    m, f, v = model["meta"], model["failures"], model["verdict"]
    out = [f"# paftrace report: {_cell(m['hostname'] or 'capture')} ({_cell(m['kernel'])})", "",
           f"{when(model)}, {m['duration_s']:.0f} s, order {_cell(m['order'])}, "
           f"source `{_cell(m['source'])}`", ""]
    if m["cut_short"]:
        out += [f"**This recording was cut short**: {_cell('; '.join(m['problems']))}", ""]
    out += ["## Verdict", "", f"**{_cell(v['title'])}**", "", *_points(v["points"]), ""]
    if v["advice"]:
        out += ["### What to change", "", *_points(v["advice"]), ""]
    out += ["## Failures", ""]
    out += _table(["order", "attempts (kernel)", "failures (kernel)", "traced"], [
        [o["order"], o["attempts"], o["failures"], f["by_order"].get(str(o["order"]), 0)]
        for o in model["orders"]])
    out += _table(["context", "failures"], [[c, n] for c, n in f["by_context"].items()])
    out += ["## Memory state (free blocks >= the watched order)", ""]
    out += _table(["zone", "samples", "first", "lowest", "last", "lowest free pages",
                   "min watermark"], _zone_rows(model))
    s = model["stalls"]
    out += ["## Direct reclaim / compaction stalls", ""]
    out += _table(["kind", "count", "total ms"], [[k, n, s["total_ms"].get(k)]
                                                  for k, n in s["by_kind"].items()])
    out += ["## Call sites", ""]
    out += _table(["#", "count", "order", "gfp", "context", "verdict", "blame"], [
        [i, c["count"], c["order"], "|".join(c["gfp_flags"]), c["context"],
         c["judgement"]["verdict"], c["blame"]] for i, c in enumerate(model["call_sites"], 1)])
    for i, c in enumerate(model["call_sites"][:5], 1):
        out += [f"### #{i} {_cell(c['blame'])}", "", "```",
                *(frame.replace("```", "'''") for frame in c["stack"]), "```", ""]
    out += ["## Kernel reports", ""]
    out += _table(["first at (s)", "count", "comm", "order", "mode", "context", "verdict"], [
        [r.get("t"), r["count"], r.get("comm"), r.get("order"), r.get("mode"), r.get("context"),
         r.get("verdict")] for r in model["kernel_reports"]]) if model["kernel_reports"] else [
        "none printed during the recording", ""]
    sysf = model["system"]
    if sysf:
        out += ["## System", ""]
        out += _table(["fact", "value"], [
            ["kernel", sysf.get("kernel")], ["command line", sysf.get("cmdline")],
            ["MemTotal kB", sysf.get("meminfo_kb", {}).get("MemTotal")],
            ["NUMA nodes", len(sysf.get("numa_nodes", []))],
            ["THP", ", ".join(f"{k}={v}" for k, v in sysf.get("thp", {}).items())],
            ["MTUs", ", ".join(f"{n['name']}={n['mtu']}" for n in sysf.get("nics", []))],
            *[[k, val] for k, val in sysf.get("sysctl_vm", {}).items()
              if k in ("vm.min_free_kbytes", "vm.watermark_scale_factor",
                       "vm.watermark_boost_factor", "vm.compaction_proactiveness",
                       "vm.extfrag_threshold", "vm.percpu_pagelist_high_fraction")]])
    return "\n".join(out) + "\n"
