"""Records crossing from BPF to user space, and the decoded failure.

The raw layouts and constants come from paftrace/bpf/paftrace.h through
`paftrace.contract`; this module decodes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from paftrace import contract
from paftrace.context import CONTEXTS

# Index i of the per-CPU `stats` array (paftrace.h STAT_*).
STAT_NAMES = contract.enumeration("STAT_")
ORDER_SLOTS = contract.constants()["ORDER_SLOTS"]

# include/linux/mmzone.h: the order changed when MIGRATE_HIGHATOMIC replaced
# MIGRATE_RESERVE (4.4); page-pointer kernels (< 4.1) have the old order.
MIGRATETYPES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA/Isolate", "Isolate")
MIGRATETYPES_OLD = ("Unmovable", "Reclaimable", "Movable", "Reserve", "CMA/Isolate", "Isolate")


RawFailure = contract.struct("failure_event")
RawAllocKey = contract.struct("alloc_key")
# A call site of the kernel's coalescing table (paftrace.h struct site_key):
# (gfp, stack_id, order, pid, context, softirq_vec).
SiteKey = tuple[int, int, int, int, int, int]


def migratetype_name(value: int, old_layout: bool = False) -> str:
    names = MIGRATETYPES_OLD if old_layout else MIGRATETYPES
    return names[value] if 0 <= value < len(names) else str(value)


def context_name(value: int) -> str:
    return CONTEXTS[value] if 0 <= value < len(CONTEXTS) else "unknown"


def decode_comm(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def comm_raw_hex(raw: bytes) -> str | None:
    """The kernel's exact bytes, hex, when they are not UTF-8 (`comm` then holds U+FFFD
    in their place): a task name is any bytes but NUL, and may be cut mid-character."""
    name = raw.split(b"\0", 1)[0]
    try:
        name.decode("utf-8")
    except UnicodeDecodeError:
        return name.hex()
    return None


@dataclass
class Failure:
    """One failed allocation, decoded; the JSON `failure` object is its dict."""

    ts_ns: int
    cpu: int
    pid: int
    tid: int
    comm: str
    order: int
    gfp: str
    gfp_flags: list[str]
    migratetype: str
    context: str
    softirq: str | None
    stack: list[str]
    irq: str | None = None
    context_source: str = "irq-tracepoints"
    requester: str | None = None
    blame: str = ""
    visibility: str = ""
    severity: str = ""
    rule: str = ""
    warned: bool | None = None
    printed: bool | None = None
    alloc_latency_us: float | None = None
    stack_id: int = -1
    buddyinfo: dict | None = None  # nearest /proc/buddyinfo sample of the eligible zones
    stall: dict | None = None      # direct reclaim/compaction of this task just before
    comm_raw: str | None = None    # hex of the kernel's bytes when comm is not valid UTF-8
    cause: str = "unknown"         # paftrace.cause.CAUSES
    cause_evidence: dict | None = None  # structured evidence + "sentence"
    cgroup: dict | None = None     # the task's cgroup: id, path, memory_path, unit
    # Failures this record stands for: 1, or a storm's failures the kernel coalesced
    # (paftrace.h, "Storm coalescing"), described by the latest of them.
    count: int = 1
    # cause_evidence less its sample_age_ms when the verdict is shared by the failures
    # of a storm (paftrace/attribution.py): the JSON renderer encodes it once.
    shared_evidence: dict | None = field(default=None, repr=False, compare=False)
    type: str = field(default="failure")

    @staticmethod
    def json_fields() -> tuple[str, ...]:
        """The JSON object's keys after "type" (and "comm_raw", when present)."""
        return _FAILURE_JSON_FIELDS

    def to_json(self, fields: tuple[str, ...] | None = None) -> dict:
        """The JSON object; `fields`: only these of json_fields() (the JSON renderer
        splices the others in from its caches)."""
        # Shallow on purpose: asdict() deep-copies and was 40% of a record's cost.
        out = {"type": self.type}
        out.update((name, getattr(self, name)) for name in fields or _FAILURE_JSON_FIELDS)
        if self.comm_raw is not None:
            out["comm_raw"] = self.comm_raw
        return out


# The JSON object's keys after "type", in field order (`stack_id` and
# `shared_evidence` are internal; `comm_raw` is there only when the name is not
# valid UTF-8).
_FAILURE_JSON_FIELDS = tuple(f.name for f in fields(Failure)
                             if f.name not in ("type", "stack_id", "comm_raw",
                                               "shared_evidence"))


def failures_in(record: dict) -> int:
    """Failures a JSON `failure` record stands for: its `count` (a storm's coalesced
    failures), 1 in records from a paftrace before `count`."""
    return record.get("count", 1)


def blame_for(context: str, softirq: str | None, irq: str | None, comm: str, pid: int,
              requester: str | None) -> str:
    """Who to blame: in interrupt context never the interrupted bystander task."""
    where = f" in {requester}" if requester else ""
    if context == "softirq":
        return f"softirq {softirq or '?'}{where}"
    if context == "hardirq":
        return f"hardirq {irq or '?'}{where}"
    if context == "nmi":
        return f"NMI{where}"
    return f"{comm}[{pid}]{where}"
