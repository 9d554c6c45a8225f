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
    optional: tuple[str, ...] = ()  # keys present only when they say something


# Task names are data (issue 12): a kernel task name is any bytes but NUL, cut at 15.
COMM_NOTE = (
    "`comm` is the task name decoded as UTF-8; when its bytes are not valid UTF-8 "
    "(any byte but NUL is allowed, and the kernel's 15-byte cut may split a character), "
    "`comm` shows U+FFFD for each bad byte and `comm_raw` holds the exact bytes as hex "
    "(`bytes.fromhex(obj[\"comm_raw\"])`); `comm_raw` is absent for UTF-8 names. Plain and "
    "live output escape control and format characters (bidi overrides such as U+202E, "
    "zero-width characters) and backslashes (`\\x1b`, `\\u202e`, `\\\\`) and never read "
    "a name as markup.")


RECORDS = (
    RecordType("attached", "first, as soon as the probes are attached", (
        "type", "ts_ns", "kernel", "order", "order_min", "order_max", "all", "probes",
        "refused", "features", "gfp_table", "startup_s", "pid"),
        "`probes` lists what is attached (the same list `--dry-run` prints as planned), "
        "`refused` what the kernel refused; `features` is `[{\"name\", \"used\", "
        "\"detail\"}]`."),
    RecordType("failure", "one per failed allocation; in a storm, also one per call site "
               "every 0.5 s for its coalesced failures", (
        "type", "ts_ns", "cpu", "pid", "tid", "comm", "order", "gfp", "gfp_flags",
        "migratetype", "context", "softirq", "stack", "irq", "context_source", "requester",
        "blame", "visibility", "severity", "rule", "warned", "printed", "alloc_latency_us",
        "buddyinfo", "stall", "cause", "cause_evidence", "cgroup", "count"),
        "`count` is how many failures the record stands for: 1, or, beyond "
        "the first `--records-per-site` records of a call site's storm on a CPU (failures "
        "less than a second apart), the failures of that "
        "call site the kernel counted since the last report (one record per call site "
        "every 0.5 s at most; every other field describes the latest of them, judged "
        "like a single failure). Add up `count`, not records. `ts_ns` is CLOCK_MONOTONIC. `gfp` is "
        "`\"0x...\"`, `gfp_flags` its names (composites "
        "first, as the kernel prints them). `context` is process|softirq|hardirq|nmi, "
        "`softirq` the vector or null, `stack` `[\"symbol+0xoff\", ...]` innermost first. "
        "`visibility` is silent|reported|rate-limited, `severity` expected|harmful. "
        "`warned`/`printed`/`alloc_latency_us` are null without kprobes. `buddyinfo` is "
        "`{\"sample_ts_ns\", \"sample_age_ms\", \"order\", \"zones\": [...]}`, where "
        "`sample_ts_ns` is the `ts_ns` of a `buddyinfo` record printed earlier. `stall` "
        "sums the task's direct reclaim and compaction in the second before the failure "
        "(null without reclaim tracing). `cause` is one of `paftrace.cause.CAUSES` "
        "(memcg-limit|no-free-block|watermark|node-or-policy|gave-up|unknown, docs/CAUSE.md); "
        "`cause_evidence` is `{\"sentence\", \"order\", \"gfp_flags\" (single __GFP_ bits), "
        "\"context\", \"watermark_rule\": {\"rule_set\", \"alloc_flags\", "
        "\"ignores_watermarks\", \"rule\"}, \"gives_up_early\", \"sample_age_ms\", "
        "\"zones\": [{\"node\", \"zone\", \"blocks_at_or_above\", \"free_pages\", "
        "\"pages_free\", \"min\", \"threshold\", \"lowmem_reserve\", \"usable_pages\", "
        "\"watermark_ok\"}], \"shortage\", \"memcg\": {\"levels\": [{\"version\", "
        "\"path\", \"usage\", \"limit\", \"limit_events\", \"limit_events_name\", "
        "\"kernel\", \"oom_kills\"}], \"need_bytes\", \"binding\", \"basis\"}, "
        "\"nodes\", \"stall\", \"missing\": [...], \"advice\": [{\"text\", "
        "\"evidence\"}]}` (sizes in bytes, zone figures in pages; keys without data are "
        "left out). `cgroup` is `{\"id\" (cgroup2 id read in the kernel, or null), \"path\" "
        "(cgroup2), \"memory_path\" (the memory controller's; v1 hosts: /proc/PID/cgroup), "
        "\"memory_version\", \"unit\": {\"kind\", \"name\", \"pod\", \"label\"} or null, "
        "\"missing\"?, \"note\"?}`. " + COMM_NOTE, ("comm_raw",)),
    RecordType("buddyinfo", "before the first failure that cites it", (
        "type", "ts_ns", "order", "zones", "tunables"),
        "The same object as `paftrace buddyinfo --json` prints."),
    RecordType("stall", "as each direct reclaim or direct compaction stall ends", (
        "type", "kind", "ts_ns", "start_ns", "duration_ms", "pid", "tid", "comm", "order",
        "gfp", "outcome", "compaction_status", "zones", "nr_reclaimed", "priority"),
        "`comm` and `comm_raw` as in `failure`.", ("comm_raw",)),
    RecordType("fragmenter", "at each interval, for each top fragmenting call site whose "
               "count moved", (
        "type", "ts_ns", "order", "site", "comm", "events", "fragmenting", "steals", "share",
        "pairs", "class", "stack", "estimated"),
        "A call site (`requester via caller`) in one task name whose allocations fell back "
        "to another migratetype's free list (kmem:mm_page_alloc_extfrag). Cumulative counts: "
        "`events` fallbacks, `fragmenting` those below pageblock order (they mix "
        "migratetypes inside a pageblock), `steals` those that claimed the pageblock, "
        "`share` of all fragmenting fallbacks, `pairs` `{\"Unmovable<-Movable\": n}`, "
        "`class` a known fragmenter class (network buffers, pipe buffers, page tables, slab "
        "caches) or null. Per-site numbers are estimates (`estimated`: stacks are sampled "
        "in the kernel); the totals in the summary are exact."),
    RecordType("summary", "last", (
        "type", "duration_s", "order", "orders", "failures_matched", "failures_reported",
        "failures_coalesced", "failures_by_context", "by_class", "by_cause", "by_cgroup",
        "cgroup_filter",
        "failures_filtered_by_cgroup", "call_sites", "lost", "allocations",
        "stack_sample_every", "reclaim", "fragmenters"),
        "`failures_matched` (counted in the kernel) = `failures_reported` (records "
        "received) + `failures_coalesced` (the coalesced records' `count`s) + "
        "`lost.records` less `lost.unhandled`. "
        "`orders` is `{\"4\": {\"attempts\", \"failures\"}, ...}`; "
        "`allocations` is filled with --all; `reclaim` is `{\"type\": \"reclaim_summary\", "
        "...}` or null. "
        "`by_cause` is `{cause: N}`, `by_cgroup` `{\"/path\": N}` (memory cgroup path, else "
        "cgroup2 path, else \"unknown\"); `cgroup_filter` is --cgroup or null, "
        "`failures_filtered_by_cgroup` the failures it dropped in user space; each call site "
        "has `cause` (of its latest failure), `causes` `{cause: N}` and `cgroup`. `lost` "
        "has the keys below: `records` counts every failure record not shown, buffer "
        "overruns plus `unhandled`, the records whose handling raised (that error ends the "
        "run with its traceback, never silently). `fragmenters` (null without reclaim tracing) is "
        "`{\"order\", \"fallbacks\", \"fragmenting\", \"steals\", \"sites\": [fragmenter "
        "objects without type/ts_ns], \"zones\": [{\"node\", \"zone\", \"elapsed_s\", "
        "\"blocks_at_or_above\": [first, now], \"pageblocks\": {type: [first, now]} or null}], "
        "\"compaction\": {\"node N Zone\": {\"end\"|\"suitable\"|\"deferred\": {result: n}}}, "
        "\"headline\": [...], \"advice\": [...], \"stacks_estimated\"}`."),
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
    extra = [k for k in obj if k not in kind.keys and k not in kind.optional]
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
        optional = "".join(f", `{k}` (optional)" for k in kind.optional)
        lines.append(f"{i}. `{kind.name}`, {kind.when}: {keys}{optional}.")
        if kind.notes:
            lines.append(f"   {kind.notes}")
    lines += ["", "`lost`: " + ", ".join(f"`{k}`" for k in LOST_KEYS) + ".", "", PIPE_NOTE]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
