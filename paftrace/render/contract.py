"""The `--json` contract: every record type, its keys, and what they mean.

One module holds it: `check_record` validates objects against it (the replay
tests run every record paftrace prints through it), and README's "JSON
contract" section is generated from it (`python -m paftrace.render.contract`;
tests/test_replay.py fails when the README and this module differ). Adding a
key means adding it here: that is the point.
"""

from __future__ import annotations

from typing import NamedTuple


class RecordType(NamedTuple):
    name: str
    when: str
    keys: tuple[str, ...]
    notes: str = ""


RECORDS = (
    RecordType("attached", "first, as soon as the probes are attached", (
        "type", "ts_ns", "kernel", "order", "order_min", "order_max", "all", "probes",
        "refused", "features", "gfp_table", "startup_s", "pid"),
        "`probes` lists what is attached (the same list `--dry-run` prints as planned), "
        "`refused` what the kernel refused; `features` is `[{\"name\", \"used\", "
        "\"detail\"}]`."),
    RecordType("failure", "one per failed allocation", (
        "type", "ts_ns", "cpu", "pid", "tid", "comm", "order", "gfp", "gfp_flags",
        "migratetype", "context", "softirq", "stack", "irq", "context_source", "requester",
        "blame", "visibility", "severity", "rule", "warned", "printed", "alloc_latency_us",
        "buddyinfo", "stall"),
        "`ts_ns` is CLOCK_MONOTONIC. `gfp` is `\"0x...\"`, `gfp_flags` its names (composites "
        "first, as the kernel prints them). `context` is process|softirq|hardirq|nmi, "
        "`softirq` the vector or null, `stack` `[\"symbol+0xoff\", ...]` innermost first. "
        "`visibility` is silent|reported|rate-limited, `severity` expected|harmful. "
        "`warned`/`printed`/`alloc_latency_us` are null without kprobes. `buddyinfo` is "
        "`{\"sample_ts_ns\", \"sample_age_ms\", \"order\", \"zones\": [...]}`, where "
        "`sample_ts_ns` is the `ts_ns` of a `buddyinfo` record printed earlier. `stall` "
        "sums the task's direct reclaim and compaction in the second before the failure "
        "(null without reclaim tracing)."),
    RecordType("buddyinfo", "before the first failure that cites it", (
        "type", "ts_ns", "order", "zones", "tunables"),
        "The same object as `paftrace buddyinfo --json` prints."),
    RecordType("stall", "as each direct reclaim or direct compaction stall ends", (
        "type", "kind", "ts_ns", "start_ns", "duration_ms", "pid", "tid", "comm", "order",
        "gfp", "outcome", "compaction_status", "zones", "nr_reclaimed", "priority")),
    RecordType("summary", "last", (
        "type", "duration_s", "order", "orders", "failures_matched", "failures_reported",
        "failures_by_context", "by_class", "call_sites", "lost", "allocations",
        "stack_sample_every", "reclaim"),
        "`orders` is `{\"4\": {\"attempts\", \"failures\"}, ...}`; `allocations` is filled "
        "with --all; `reclaim` is `{\"type\": \"reclaim_summary\", ...}` or null. `lost` "
        "has the keys below: `records` counts every failure record not shown, buffer "
        "overruns plus `unhandled`, the records whose handling raised (that error ends the "
        "run with its traceback, never silently)."),
)
LOST_KEYS = ("records", "unhandled", "stack_errors", "aggregation_full")
BY_NAME = {r.name: r for r in RECORDS}

PIPE_NOTE = (
    "When the reader of `--json` goes away (`paftrace --json | head -1`), paftrace detaches "
    "its probes and exits quietly with status 141 (128 + SIGPIPE), the status a shell "
    "reports for a C tool killed by SIGPIPE, so `set -o pipefail` treats paftrace like "
    "`grep` or `yes`.")


def check_record(obj: dict) -> list[str]:
    """What is wrong with one JSON Lines object; [] when it keeps the contract."""
    kind = BY_NAME.get(obj.get("type", ""))
    if kind is None:
        return [f"unknown record type {obj.get('type')!r}"]
    problems = []
    missing = [k for k in kind.keys if k not in obj]
    extra = [k for k in obj if k not in kind.keys]
    if missing:
        problems.append(f"{kind.name}: missing {missing}")
    if extra:
        problems.append(f"{kind.name}: not in the contract {extra}")
    if kind.name == "summary" and set(obj.get("lost", {})) != set(LOST_KEYS):
        problems.append(f"summary.lost keys {sorted(obj.get('lost', {}))} != {LOST_KEYS}")
    return problems


def markdown() -> str:
    """README's "JSON contract" section body."""
    lines = ["One object per line. Tests and other tools rely on it; it is defined in",
             "`paftrace/render/contract.py` (this text is generated from it).", ""]
    for i, kind in enumerate(RECORDS, 1):
        keys = ", ".join(f"`{k}`" for k in kind.keys)
        lines.append(f"{i}. `{kind.name}`, {kind.when}: {keys}.")
        if kind.notes:
            lines.append(f"   {kind.notes}")
    lines += ["", "`lost`: " + ", ".join(f"`{k}`" for k in LOST_KEYS) + ".", "", PIPE_NOTE]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
