"""Plain text: a header, one line per failure, a summary at the end."""

from __future__ import annotations

import time

from paftrace.reclaim import StallLog
from paftrace.records import Failure
from paftrace.render import Snapshot, printable
from paftrace.render.frag import fragmenter_lines
from paftrace.render.memtext import failure_line as buddy_line
from paftrace.render.output import TextSink, stdout_writer
from paftrace.render.text import text_table

_MONO_TO_WALL = time.time() - time.monotonic()  # bpf_ktime_get_ns is CLOCK_MONOTONIC


def wall_clock(ts_ns: int) -> str:
    t = ts_ns / 1e9 + _MONO_TO_WALL
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def context_label(f: Failure) -> str:
    if f.context == "softirq":
        return f"softirq:{f.softirq or '?'}"
    if f.context == "hardirq" and f.irq:
        return f"hardirq:{f.irq}"
    return f.context


def stall_before(f: Failure) -> str | None:
    """'after 40.2 ms direct compaction (...)' when the task stalled just before failing."""
    if f.stall and (f.stall["direct_compaction"]["count"] or f.stall["direct_reclaim"]["count"]):
        return StallLog.stall_line(f.stall)
    return None


def stall_detail(record: dict) -> str:
    """A `stall` record in words, for every renderer's timeline."""
    status = f"/{record['compaction_status']}" if record.get("compaction_status") else ""
    return (f"{record['kind']} {record['duration_ms']:.1f}ms order {record['order']} -> "
            f"{record['outcome']}{status}")


def cgroup_text(f: Failure) -> str:
    """'/system.slice/docker-1a2b.scope (docker 1a2b...)', or why it is unknown."""
    c = f.cgroup or {}
    path = c.get("memory_path") or c.get("path")
    if not path:
        return "?" + (f" ({c['missing']})" if c.get("missing") else "")
    unit = c.get("unit")
    return path + (f" ({unit['label']})" if unit else "")


def cause_text(f: Failure) -> str:
    sentence = (f.cause_evidence or {}).get("sentence")
    return f"cause={f.cause}" + (f": {sentence}" if sentence else "")


def failure_line(f: Failure) -> str:
    extra = f" in-allocator {f.alloc_latency_us / 1000:.1f}ms" if f.alloc_latency_us else ""
    stalled = stall_before(f)
    if stalled:
        extra += " " + stalled
    memory = f" | {buddy_line(f.buddyinfo)}" if f.buddyinfo else ""
    return (f"{wall_clock(f.ts_ns)}{coalesced_label(f)} cpu{f.cpu} "
            f"{printable(f.comm)}[{f.pid}/{f.tid}] "
            f"order:{f.order} {f.gfp}({'|'.join(f.gfp_flags)}) {f.migratetype} "
            f"{context_label(f)} {f.visibility}/{f.severity} "
            f"blame={printable(f.blame)} cgroup={printable(cgroup_text(f))}{extra}{memory}"
            f" | {printable(cause_text(f))}")


def coalesced_label(f: Failure) -> str:
    """' x1234 failures (...)' when the record stands for a storm's coalesced failures."""
    return f" x{f.count} failures (coalesced in the kernel; the last:)" if f.count > 1 else ""


def stall_line(record: dict) -> str:
    return (f"{wall_clock(record['ts_ns'])} stall {printable(record['comm'])}"
            f"[{record['pid']}] {stall_detail(record)}")


def attached_line(info: dict) -> str:
    return (f"Tracing page allocation failures of order {info['order']} on "
            f"{info['kernel']} ({len(info['probes'])} probes, attached in "
            f"{info['startup_s']:.2f}s). Ctrl-C to end.")


def summary_lines(summary: dict) -> list[str]:
    lines = [f"Summary after {summary['duration_s']:.1f}s:"]
    orders = [(order, f"{row['attempts']:,}", f"{row['failures']:,}")
              for order, row in sorted(summary["orders"].items(), key=lambda kv: int(kv[0]))]
    lines += text_table(("order", "attempts", "failures"), orders, indent=2,
                        right=(0, 1, 2)).splitlines()
    ctx = ", ".join(f"{k} {v}" for k, v in summary["failures_by_context"].items() if v)
    lines.append(f"  failures matching the filters: {summary['failures_matched']}"
                 f" ({ctx or 'none'})")
    classes = summary["by_class"]
    if classes:
        lines.append("  " + ", ".join(f"{k} {v}" for k, v in sorted(classes.items())))
    if summary.get("by_cause"):
        lines.append("  by cause: " + ", ".join(f"{k} {v}" for k, v in summary["by_cause"].items()))
    if summary.get("by_cgroup"):
        lines.append("  by cgroup: " + printable(", ".join(
            f"{k} {v}" for k, v in list(summary["by_cgroup"].items())[:8])))
    for site in summary["call_sites"][:5]:
        lines.append(f"  {site['count']:>6}x order {site['order']} {'|'.join(site['gfp_flags'])} "
                     f"{site['context']} {site['severity']} {site.get('cause', '')}: "
                     f"{printable(site['blame'])} in {printable(site.get('cgroup', '?'))}")
        lines.append(f"          rule: {printable(site['rule'])}")
    reclaim = summary.get("reclaim")
    if reclaim:
        dc, dr = reclaim["direct_compaction"], reclaim["direct_reclaim"]
        lines.append(f"  reclaim: direct compaction {dc['stalls']} stalls "
                     f"({dc['total_ms']:.1f} ms), direct reclaim {dr['stalls']} "
                     f"({dr['total_ms']:.1f} ms), kswapd wakeups "
                     f"{reclaim['kswapd']['wakeup_requests']}, fallbacks "
                     f"{reclaim['extfrag']['fallbacks']}")
    lines += fragmenter_lines(summary.get("fragmenters"))
    lost = summary["lost"]
    lines.append("  lost: " + ", ".join(f"{k} {v}" for k, v in lost.items()))
    if any(lost.values()):
        lines.append("  (records or stacks were lost: consider a larger --stack-storage-size "
                     "or fewer matching events)")
    return lines


class PlainRenderer:
    def __init__(self, out: TextSink | None = None):
        self.out = out or stdout_writer()

    def _print(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def attached(self, info: dict) -> None:
        self._print(attached_line(info))

    def failure(self, failure: Failure) -> None:
        self._print(failure_line(failure))

    def event(self, record: dict) -> None:
        if record.get("type") == "stall":  # samples are summed up in each failure line
            self._print(stall_line(record))

    def tick(self, snapshot: Snapshot) -> None:
        pass

    def finish(self, summary: dict) -> None:
        for line in summary_lines(summary):
            self._print(line)

    def close(self) -> None:
        pass
