"""The report as one self-contained HTML file: no CDN, no fetch, opens offline.

The model is embedded as a JSON data island (<script type="application/json"
id="paftrace-data">); assets/report.js draws every plot from it with Plotly, whose
JavaScript is inlined from the `plotly` Python package (docs/REPORT.md says why).
Everything else (verdict, tables, stacks, kernel reports) is static HTML made here,
with every piece of recorded text escaped: task names, symbols and kernel log lines
are data, never markup.
"""

from __future__ import annotations

import json
import time
from html import escape
from importlib import resources

from paftrace import __version__

DATA_ID = "paftrace-data"
# Nothing may be fetched: inline scripts and styles only, images and fonts as data: URLs.
# (Plotly compiles a few functions at run time, hence 'unsafe-eval'.)
CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
       "style-src 'unsafe-inline'; img-src data:; font-src data:")
PLOT_IDS = ("plot-timeline", "plot-orders", "plot-sites")
SITES_PLOT = ('<div><h3>Top call sites (red: harmful, green: expected)</h3>'
              '<div class="plot" id="plot-sites"></div></div>')


class ReportAssetError(RuntimeError):
    """A piece the HTML report needs is not installed."""


def plotly_js() -> str:
    try:
        return (resources.files("plotly") / "package_data" / "plotly.min.js").read_text(
            encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ReportAssetError("the HTML report needs the `plotly` Python package "
                               "(pip install plotly; `--format md` works without it)") from exc


def _asset(name: str) -> str:
    return (resources.files("paftrace.report") / "assets" / name).read_text(encoding="utf-8")


def data_island(model: dict) -> str:
    """JSON that cannot end the <script> element: <, > and & as \\u escapes."""
    text = json.dumps(model, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _e(value: object) -> str:
    return escape("" if value is None else str(value))


def _table(headers: list[str], rows: list[list[object]], numeric: set[int] = frozenset()
           ) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(
        f"<td class='num'>{_e(c)}</td>" if i in numeric else f"<td>{_e(c)}</td>"
        for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _points(points: list[dict]) -> str:
    if not points:
        return ""
    return "<ul class='points'>" + "".join(
        f"<li>{_e(p['text'])}<br><span class='evidence'>evidence: {_e(p['evidence'])}</span>"
        "</li>" for p in points) + "</ul>"


def when(model: dict) -> str:
    wall = model["meta"]["start_wall_ns"]
    if wall is None:
        return "start time not recorded (a --json capture)"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(wall / 1e9))


def _verdict(model: dict) -> str:
    v = model["verdict"]
    out = [f"<div class='verdict {_e(v['severity'])}' id='verdict'>",
           f"<div class='title'>{_e(v['title'])}</div>", _points(v["points"])]
    if v["advice"]:
        out += ["<h3>What to change</h3>", _points(v["advice"])]
    elif v["severity"] == "expected":
        out.append("<p>Every failing call site asked for failure to be tolerated: "
                   "nothing to tune unless the callers' fallbacks are too slow.</p>")
    out.append("</div>")
    return "".join(out)


def _sites(model: dict) -> str:
    sites = model["call_sites"]
    if not sites:
        return "<p>No failing call site traced.</p>"
    rows = [[i, s["count"], s["order"], "|".join(s["gfp_flags"]),
             s["context"] + (f":{s['softirq']}" if s.get("softirq") else ""),
             s["judgement"]["verdict"], s["blame"], f"{s['first_s']:.1f}-{s['last_s']:.1f}"]
            for i, s in enumerate(sites, 1)]
    out = [_table(["#", "count", "order", "gfp", "context", "verdict", "blame", "seen (s)"],
                  rows, numeric={0, 1, 2})]
    for i, s in enumerate(sites, 1):
        j = s["judgement"]
        out.append(_judged(
            j["verdict"], f"#{i}", f"{s['count']}x {s['blame']}, order {s['order']}, {s['gfp']}",
            _points(j["reasons"] + j["findings"] + j["advice"]) +
            f"<p class='evidence'>tracer rule: {_e(s['rule'])}</p>"
            f"<pre>{_e(chr(10).join(s['stack']))}</pre>"))
    return "".join(out)


def _judged(verdict: str, label: str, what: str, body: str, is_open: bool = False) -> str:
    """A collapsible entry: verdict, what it is, then its evidence and stack (`body`)."""
    return (f"<details{' open' if is_open else ''}><summary>{_e(label)} "
            f"<span class='sev-{_e(verdict)}'>{_e(verdict)}</span> {_e(what)}</summary>"
            f"{body}</details>")


def _kernel_reports(model: dict) -> str:
    reports = model["kernel_reports"]
    if not reports:
        return (f"<p>No page allocation failure report in the kernel log during the "
                f"recording ({model['kmsg_lines']} kernel log line(s) recorded).</p>")
    out = [f"<p>{model['kernel_reports_total']} report(s), {len(reports)} distinct, "
           f"{_e(model['kernel_reports_how'])}.</p>"]
    for r in reports:
        verdict = {"real": "harmful", "benign": "expected"}.get(r.get("verdict"), "?")
        points = r.get("verdict_evidence", []) + r.get("findings", []) + r.get("advice", [])
        at = f" at {r['t']:.1f} s" if r.get("t") is not None else ""
        if r["count"] > 1:
            at = f" {r['count']}x, first{at}"
        raw = r.get("raw", [])
        out.append(_judged(
            verdict, "kernel report",
            f"{at}: {r.get('comm')} order {r.get('order')} mode {r.get('mode')} "
            f"({'|'.join(r.get('gfp_flags') or [])}), context {r.get('context')}",
            f"{_points(points)}<details><summary>raw kernel log ({len(raw)} lines)</summary>"
            f"<pre>{_e(chr(10).join(raw))}</pre></details>", is_open=True))
    return "".join(out)


def _system(model: dict) -> str:
    s = model["system"]
    if not s:
        return "<p>No system facts (a --json capture records none: use paftrace record).</p>"
    mem = s.get("meminfo_kb", {})
    out = [_table(["fact", "value"], [
        ["host", s.get("hostname")], ["kernel", f"{s.get('kernel')} {s.get('kernel_version')}"],
        ["machine", f"{s.get('machine')}, {s.get('cpus')} CPUs, page size {s.get('page_size')}"],
        ["command line", s.get("cmdline")],
        ["memory", ", ".join(f"{k} {v} kB" if k not in ("HugePages_Total",) else f"{k} {v}"
                             for k, v in mem.items())],
        ["THP", ", ".join(f"{k}={v}" for k, v in s.get("thp", {}).items())],
    ])]
    out.append("<h3>NUMA nodes</h3>" + _table(["node", "CPUs", "MemTotal kB", "MemFree kB"], [
        [n["node"], n["cpus"], n["mem_total_kb"], n["mem_free_kb"]]
        for n in s.get("numa_nodes", [])], numeric={0, 2, 3}))
    out.append("<h3>Network interfaces</h3>" + _table(["interface", "MTU", "driver"], [
        [n["name"], n["mtu"], n["driver"]] for n in s.get("nics", [])], numeric={1}))
    out.append("<details><summary>vm.* sysctls "
               f"({len(s.get('sysctl_vm', {}))})</summary>" + _table(
                   ["sysctl", "value"], [[k, v] for k, v in s.get("sysctl_vm", {}).items()]) +
               "</details>")
    if s.get("unreadable"):
        out.append(f"<p class='evidence'>not readable: {_e(', '.join(s['unreadable']))}</p>")
    return "".join(out)


def _doctor(model: dict) -> str:
    d = model["doctor"]
    if not d:
        return ""
    rows = [[c["name"], "ok" if c["ok"] else "MISSING" if c["required"] else "no", c["detail"]]
            for c in d["checks"]]
    return ("<details><summary>paftrace doctor: "
            f"{'everything required is there' if d['ok'] else 'something required is MISSING'}"
            f"</summary>{_table(['check', '', 'detail'], rows)}</details>")


def _recording(model: dict) -> str:
    m, f = model["meta"], model["failures"]
    rows = [["source", m["source"]], ["kind", m["kind"]], ["started", when(model)],
            ["duration", f"{m['duration_s']:.1f} s"], ["order", m["order"]],
            ["command", " ".join(m["argv"] or [])], ["filters", json.dumps(m["filters"])],
            ["failures traced / counted in the kernel", f"{f['total']} / {f['kernel_counted']}"],
            ["lost", json.dumps(f["lost"])],
            ["stalls", json.dumps(model["stalls"]["by_kind"])],
            ["probes", ", ".join(m["probes"])],
            ["memory samples", f"{len(model['zones'][0]['t']) if model['zones'] else 0}"]]
    return _table(["", ""], rows)


def render_html(model: dict) -> str:
    m = model["meta"]
    cut = ""
    if m["cut_short"]:
        cut = ("<div class='banner cut' id='cut-short'><b>This recording was cut short</b>: "
               "it ends at its last complete record. " + _e("; ".join(m["problems"])) + "</div>")
    title = f"paftrace report: {m['hostname'] or 'capture'} ({m['kernel']})"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>{_e(title)}</title><style>{_asset("report.css")}</style></head>
<body><main>
<h1>{_e(title)}</h1>
<p class="sub">{_e(when(model))}, {m['duration_s']:.0f} s, order {_e(m['order'])}
 &middot; {_e(m['source'])}</p>
{cut}
<h2>Verdict</h2>{_verdict(model)}
<h2>Timeline: failures against free blocks, watermarks and stalls</h2>
<div class="plot" id="plot-timeline"></div>
<div class="grid"><div><h3>Attempts vs failures per order (counted in the kernel)</h3>
<div class="plot" id="plot-orders"></div></div>
{SITES_PLOT if model["call_sites"] else ""}</div>
<h2>Call sites</h2>{_sites(model)}
<h2>Kernel reports (page allocation failure messages printed during the recording)</h2>
{_kernel_reports(model)}
<h2>System</h2>{_system(model)}{_doctor(model)}
<h2>Recording</h2>{_recording(model)}
<footer>paftrace {__version__} &middot; self-contained: plots drawn from the data island
below with the inlined Plotly library, no network access.</footer>
</main>
<script type="application/json" id="{DATA_ID}">{data_island(model)}</script>
<script>{plotly_js()}</script>
<script>{_asset("report.js")}</script>
</body></html>
"""
