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
                         "for failure; compaction could not produce a block")
    return HARMFUL, "no __GFP_NOWARN/__GFP_NORETRY: the caller did not plan for failure"


def triage(table: GfpTable, mask: int, order: int, context: str,
           warned: bool | None = None, printed: bool | None = None) -> Verdict:
    sev, rule = severity(table, mask, order, context)
    return Verdict(visibility(table, mask, warned, printed), sev, rule)
