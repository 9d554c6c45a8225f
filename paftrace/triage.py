"""Triage of a failure: is it visible in dmesg, and is it noise or harm?

Rules are ordered; the first that applies decides and is reported with the
verdict, so on-call can see *why* paftrace called something harmless.
The gfp bits are looked up by name in the kernel's own table, so the same
rules serve the live tracer and `paftrace explain` on other kernels' logs.
"""

from __future__ import annotations

from dataclasses import dataclass

from paftrace.context import HARDIRQ, NMI, SOFTIRQ
from paftrace.gfp import GfpTable

SILENT, REPORTED, RATE_LIMITED = "silent", "reported", "rate-limited"
EXPECTED, HARMFUL = "expected", "harmful"
# Above this order the allocator does not retry hard (include/linux/mmzone.h).
PAGE_ALLOC_COSTLY_ORDER = 3


@dataclass(frozen=True)
class Verdict:
    visibility: str  # silent | reported | rate-limited
    severity: str    # expected | harmful
    rule: str        # the rule that decided `severity`, in words


def _has(table: GfpTable, mask: int, name: str) -> bool:
    return table.has(mask, name)


def visibility(table: GfpTable, mask: int, warned: bool | None = None,
               printed: bool | None = None) -> str:
    """silent: __GFP_NOWARN, dmesg never shows it; reported: warn_alloc prints it
    (subject to its rate limit: 10 s / burst 1 since 5.4). With the warn_alloc
    kprobe we know whether the rate limit swallowed it."""
    if _has(table, mask, "__GFP_NOWARN"):
        return SILENT
    if warned and printed is False:
        return RATE_LIMITED
    return REPORTED


def severity(table: GfpTable, mask: int, order: int, context: str) -> tuple[str, str]:
    names = set(table.decode(mask))
    # Before 4.4 the "may sleep/reclaim" bit was __GFP_WAIT (include/linux/gfp.h, 3.10
    # vs 4.4; docs/KERNEL-NOTES.md §3.1).
    atomic = not (_has(table, mask, "__GFP_DIRECT_RECLAIM") or _has(table, mask, "__GFP_WAIT"))
    if names & {"GFP_TRANSHUGE", "GFP_TRANSHUGE_LIGHT"}:
        return EXPECTED, "THP allocation: the fault falls back to small pages"
    if _has(table, mask, "__GFP_NOFAIL"):
        return HARMFUL, "__GFP_NOFAIL failed: the caller cannot handle failure"
    if _has(table, mask, "__GFP_RETRY_MAYFAIL"):
        return HARMFUL, ("__GFP_RETRY_MAYFAIL: the caller retried hard before failing; "
                         "memory is really short")
    nowarn = _has(table, mask, "__GFP_NOWARN")
    noretry = _has(table, mask, "__GFP_NORETRY")
    if nowarn and noretry:
        return EXPECTED, ("opportunistic (__GFP_NOWARN|__GFP_NORETRY): the caller has a "
                          "fallback (e.g. kvmalloc, slab, page-frag cache)")
    if context in (SOFTIRQ, HARDIRQ, NMI) and atomic:
        if nowarn:
            return EXPECTED, (f"atomic in {context} with __GFP_NOWARN: the caller tolerates "
                              "failure (usually drops or retries later)")
        return HARMFUL, (f"atomic allocation in {context} context: no reclaim possible and "
                         "no fallback; the work (e.g. a packet) is dropped")
    if nowarn:
        return EXPECTED, "__GFP_NOWARN: the caller handles failure and keeps quiet about it"
    if atomic:
        return HARMFUL, "atomic allocation without __GFP_NOWARN: no reclaim, no fallback"
    if order > PAGE_ALLOC_COSTLY_ORDER:
        return HARMFUL, (f"costly order {order} without __GFP_NOWARN: the caller did not plan "
                         "for failure (why it failed: see the cause)")
    return HARMFUL, "no __GFP_NOWARN/__GFP_NORETRY: the caller did not plan for failure"


def triage(table: GfpTable, mask: int, order: int, context: str,
           warned: bool | None = None, printed: bool | None = None) -> Verdict:
    sev, rule = severity(table, mask, order, context)
    return Verdict(visibility(table, mask, warned, printed), sev, rule)


def _human(n: int | None) -> str:
    from paftrace.render.memtext import human_bytes  # noqa: PLC0415 - triage stays light

    return "?" if n is None else human_bytes(n)


def _limit_command(unit: dict | None, path: str, new_limit: str) -> str:
    """How to raise the limit of what owns this cgroup."""
    kind = (unit or {}).get("kind")
    if kind in ("systemd-service", "systemd-scope"):
        return f"systemctl set-property {unit['name']} MemoryMax={new_limit}"  # type: ignore[index]
    if kind == "docker":
        return f"docker update --memory {new_limit} {unit['name']}"  # type: ignore[index]
    if kind == "podman":
        return f"podman update --memory {new_limit} {unit['name']}"  # type: ignore[index]
    if kind == "kubepods":
        return (f"raise resources.limits.memory of pod {unit.get('pod') or unit['name']} "  # type: ignore[union-attr]
                f"to {new_limit}")
    return f"write {new_limit} to memory.max (v2) / memory.limit_in_bytes (v1) of {path}"


def cause_advice(cause: str, evidence: dict, cgroup: dict | None = None
                 ) -> list[tuple[str, str]]:
    """What to do about a failure, by its cause: [(advice, evidence)]. memcg-limit is the
    container's limit and what fills its kernel memory, never vm.min_free_kbytes."""
    if cause == "memcg-limit":
        memcg = evidence.get("memcg") or {}
        b = memcg.get("binding") or {}
        usage, limit, kernel = b.get("usage"), b.get("limit"), b.get("kernel")
        path = b.get("path", "?")
        facts = (f"{path}: usage {_human(usage)} of limit {_human(limit)}"
                 + (f", {_human(kernel)} of it kernel memory" if kernel is not None else ""))
        new = _human(int(limit * 1.25)) if limit else "a higher limit"
        unit = (cgroup or {}).get("unit")
        return [
            (f"the container is at its memory limit: {_limit_command(unit, path, new)} "
             "(example: +25 %)", facts),
            ("or find what fills its kernel memory (pipes, socket buffers, dentries: "
             "memory.stat `kernel`/`slab`, v1 memory.kmem.slabinfo) and reduce it",
             f"__GFP_ACCOUNT charge refused; {facts}"),
            ("vm.min_free_kbytes and compaction do not help here: the page was free, the "
             "cgroup charge refused it", "the buddy lists had the block (see zones)"),
        ]
    if cause == "node-or-policy":
        nodes = evidence.get("nodes") or {}
        return [(f"the allowed node(s) {nodes.get('allowed')} are short while others are not: "
                 "widen the cpuset's cpuset.mems / the mempolicy, or drop __GFP_THISNODE in "
                 "the caller; `numastat -m` shows per-node free memory",
                 nodes.get("reason", ""))]
    if cause == "gave-up":
        return [(f"the request gives up early by design ({evidence.get('gives_up_early')}); "
                 "if its failure hurts, the caller should use a smaller order, kvmalloc(), or "
                 "__GFP_RETRY_MAYFAIL", "gfp flags " + "|".join(evidence.get("gfp_flags", []))),
                ("background compaction (vm.compaction_proactiveness, 5.9+) keeps more "
                 "high-order blocks ready", str(evidence.get("shortage") or "no shortage seen"))]
    if cause == "unknown":
        return [("collect what is missing: " + "; ".join(evidence.get("missing") or []),
                 "the evidence did not decide")]
    if cause == "no-free-block":
        return [("fragmentation: `echo 1 > /proc/sys/vm/compact_memory` once to confirm, then "
                 "vm.compaction_proactiveness (5.9+); for atomic bursts raise "
                 "vm.min_free_kbytes (`paftrace explain` on a report computes a value)",
                 f"no free block >= order {evidence.get('order')} in the allowed zones")]
    if cause == "watermark":
        rule = (evidence.get("watermark_rule") or {}).get("rule", "")
        return [("free memory is below the watermark this request must clear: kswapd is "
                 "behind; raise vm.watermark_scale_factor (kswapd starts earlier) or "
                 "vm.min_free_kbytes", rule)]
    return []
