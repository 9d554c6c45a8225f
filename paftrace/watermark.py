"""The watermark a failed request had to clear in a zone, and which rule lowered it.

A failure has been through the allocator's slow path, which checks each zone
against its `min` watermark (ALLOC_WMARK_MIN, mm/page_alloc.c gfp_to_alloc_flags)
lowered by what the gfp mask may dip into. The arithmetic is that of
mm/page_alloc.c __zone_watermark_ok:

* v4.4 .. v6.2: ``ALLOC_HIGH`` (= ``__GFP_HIGH``) -> ``min -= min / 2``; then
  ``ALLOC_HARDER`` (``__GFP_ATOMIC`` without ``__GFP_NOMEMALLOC``, or an RT task) ->
  ``min -= min / 4`` of what is left. Before 4.4 (``__GFP_WAIT`` kernels) ALLOC_HARDER
  was "no __GFP_WAIT" (3.x gfp_to_alloc_flags: ``atomic = !(gfp & __GFP_WAIT)``).
* v6.3+ (series "Discard __GFP_ATOMIC": 524c48072e56 renames ALLOC_HIGH to
  ``ALLOC_MIN_RESERVE``; 1ebbb21811b7 sets ``ALLOC_NON_BLOCK`` for requests without
  ``__GFP_DIRECT_RECLAIM`` and ``__GFP_NOMEMALLOC`` and nests its ``min -= min / 4``
  under ALLOC_MIN_RESERVE; 2973d8229b78 removes __GFP_ATOMIC): GFP_ATOMIC still gets
  3/8 of min, GFP_NOWAIT gets no reserve at all. Stable trees (5.15.y, 6.1.y) took
  parts of the series; the rule set is chosen by what the kernel's gfp table has
  (__GFP_ATOMIC present -> the older rules) and named in the evidence.
* ``__GFP_MEMALLOC`` (ALLOC_NO_WATERMARKS) ignores watermarks unless ``__GFP_NOMEMALLOC``.

Always: free pages minus ``2^order - 1`` must exceed the lowered min plus
``lowmem_reserve[highest zone the request may use]`` (/proc/zoneinfo `protection`),
and for order > 0 a free block of at least that order must exist.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

OLD_RULES = "v4.4-v6.2 (ALLOC_HIGH/ALLOC_HARDER)"
WAIT_RULES = "before v4.4 (ALLOC_HIGH/ALLOC_HARDER, __GFP_WAIT)"
NEW_RULES = "v6.3+ (ALLOC_MIN_RESERVE/ALLOC_NON_BLOCK)"


@dataclass(frozen=True)
class Reserve:
    """How far below `min` a request may go."""

    rule_set: str
    alloc_flags: tuple[str, ...]  # the ALLOC_* flags that lowered min
    ignores_watermarks: bool = False

    def threshold(self, min_pages: int) -> int:
        """The lowered min, with the kernel's integer arithmetic."""
        low = min_pages
        flags = set(self.alloc_flags)
        if flags & {"ALLOC_HIGH", "ALLOC_MIN_RESERVE"}:
            low -= low // 2
        if "ALLOC_HARDER" in flags or ("ALLOC_NON_BLOCK" in flags
                                       and "ALLOC_MIN_RESERVE" in flags):
            low -= low // 4
        return low

    def describe(self) -> str:
        if self.ignores_watermarks:
            return "ALLOC_NO_WATERMARKS (__GFP_MEMALLOC): watermarks do not apply"
        if not self.alloc_flags:
            return f"min watermark, no reserve access ({self.rule_set} rules)"
        fraction = {8: "min", 4: "min/2", 3: "3/8 of min", 6: "3/4 of min"}[self.threshold(8)]
        return f"{fraction}: {'|'.join(self.alloc_flags)} ({self.rule_set} rules)"

    def to_json(self) -> dict:
        return {"rule_set": self.rule_set, "alloc_flags": list(self.alloc_flags),
                "ignores_watermarks": self.ignores_watermarks, "rule": self.describe()}


def reserve_for(flags: Collection[str], table_names: Collection[str]) -> Reserve:
    """The reserve rule for single gfp flag names `flags` on a kernel whose gfp table
    has `table_names` (to tell the rule set)."""
    has = set(flags).__contains__
    known = set(table_names)
    if "__GFP_WAIT" in known:
        rule_set = WAIT_RULES
    elif "__GFP_ATOMIC" in known:
        rule_set = OLD_RULES
    else:
        rule_set = NEW_RULES
    nomemalloc = has("__GFP_NOMEMALLOC")
    if has("__GFP_MEMALLOC") and not nomemalloc:
        return Reserve(rule_set, ("ALLOC_NO_WATERMARKS",), ignores_watermarks=True)
    out: list[str] = []
    if rule_set == NEW_RULES:
        if has("__GFP_HIGH"):
            out.append("ALLOC_MIN_RESERVE")
        if not has("__GFP_DIRECT_RECLAIM") and not nomemalloc:
            out.append("ALLOC_NON_BLOCK")
    else:
        if has("__GFP_HIGH"):
            out.append("ALLOC_HIGH")
        harder = (not has("__GFP_WAIT")) if rule_set == WAIT_RULES else has("__GFP_ATOMIC")
        if harder and not nomemalloc:
            out.append("ALLOC_HARDER")
    return Reserve(rule_set, tuple(out))
