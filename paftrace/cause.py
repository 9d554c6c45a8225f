"""Why did an allocation fail? A pure classifier of one failure and the state around it.

Causes (bounded: the exporter uses them as a label):

* ``memcg-limit``: a ``__GFP_ACCOUNT`` request in process context whose memory cgroup
  (or an ancestor) is at its limit. Since the kmem charge moved into the page
  allocator (mm/page_alloc.c __alloc_pages: ``__memcg_kmem_charge_page`` after the page
  was found; 4.14+ in the tracepoint's view), a refused charge frees the page and
  kmem:mm_page_alloc reports the failure although the buddy lists had the block.
* ``node-or-policy``: __GFP_THISNODE / cpuset / mempolicy restrict the nodes, the
  allowed ones are short and another node was not.
* ``no-free-block``: no free block >= order in any zone the request may use (zones
  from the gfp zone bits, gfp_zone(); nodes as allowed).
* ``watermark``: blocks exist, but every zone that has them is below the watermark
  this request must clear (`paftrace.watermark`, with the rule that applied).
* ``gave-up``: a request that does not try hard (``__GFP_NORETRY``, GFP_NOWAIT-like:
  no direct reclaim and no ``__GFP_HIGH``, or a costly order > PAGE_ALLOC_COSTLY_ORDER
  without ``__GFP_RETRY_MAYFAIL``: mm/page_alloc.c __alloc_pages_slowpath ``goto nopage``)
  failed; the shortage it met and the stall it did are the evidence.
* ``unknown``: the evidence does not decide; ``missing`` says what would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property

from paftrace.gfp import GfpTable
from paftrace.procfs import frag
from paftrace.procfs.memcg import MemcgReading, binding_limit
from paftrace.procfs.report import eligible_zones
from paftrace.procfs.sampler import MemorySample, ZoneSample
from paftrace.reclaim import StallLog
from paftrace.render.memtext import human_bytes
from paftrace.triage import PAGE_ALLOC_COSTLY_ORDER
from paftrace.watermark import Reserve, reserve_for

MEMCG_LIMIT, NO_FREE_BLOCK, WATERMARK = "memcg-limit", "no-free-block", "watermark"
NODE_OR_POLICY, GAVE_UP, UNKNOWN = "node-or-policy", "gave-up", "unknown"
CAUSES = (MEMCG_LIMIT, NO_FREE_BLOCK, WATERMARK, NODE_OR_POLICY, GAVE_UP, UNKNOWN)
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Request:
    """The failed request, as the record and the kernel's gfp table describe it.
    Everything derived from it is computed once per object: the tracer keeps one
    Request per (order, mask, context), shared by a call site's failures."""

    order: int
    mask: int
    table: GfpTable
    context: str = "process"
    page_size: int = PAGE_SIZE

    @cached_property
    def flags(self) -> frozenset[str]:
        """Single __GFP_* bits set (composites such as GFP_KERNEL_ACCOUNT hide them)."""
        return frozenset(name for value, name in self.table.entries
                         if name.startswith("__GFP_") and value
                         and self.mask & value == value)

    @cached_property
    def zones_allowed(self) -> tuple[str, ...]:
        """The zones this request may use, from its gfp zone bits (single bits and the
        composites the table names)."""
        return eligible_zones(set(self.flags) | set(self.table.decode(self.mask)))

    @cached_property
    def reserve(self) -> Reserve:
        return reserve_for(self.flags, [n for _, n in self.table.entries])

    @cached_property
    def gives_up_early(self) -> str | None:
        return opportunistic(self)

    @cached_property
    def constant_evidence(self) -> dict:
        """The evidence that is the same for every failure of this request. Its values
        are shared between failures' evidence, so never changed."""
        return {"order": self.order, "gfp_flags": sorted(self.flags), "context": self.context,
                "watermark_rule": self.reserve.to_json(),
                "gives_up_early": self.gives_up_early}

    @property
    def need_bytes(self) -> int:
        return self.page_size << self.order


@dataclass(frozen=True)
class NodeRestriction:
    nodes: frozenset[int]
    reason: str  # "__GFP_THISNODE: node of CPU 3", "cpuset mems_allowed 0-1", ...


@dataclass
class MemcgFacts:
    """The task's memory cgroup chain when the failure was decoded, and earlier readings."""

    chain: list[MemcgReading] = field(default_factory=list)
    previous: dict[str, MemcgReading] = field(default_factory=dict)  # by path
    missing: str | None = None  # why there is no chain
    # What the kernel said: the memcg charge kretprobe saw this task's charge refused
    # (True) or not (False) just before the failure; None without that probe.
    charge_refused: bool | None = None


@dataclass
class Cause:
    cause: str
    sentence: str
    evidence: dict
    # The sentence cites the sample's age ("sampled 3 ms away"): it is this failure's
    # own, where other verdicts are shared by every failure in the same situation.
    cites_age: bool = False

    def to_json(self) -> dict:
        return {**self.evidence, "sentence": self.sentence}


def opportunistic(req: Request) -> str | None:
    """Why this request gives up early, or None when it tries as hard as it may."""
    f = req.flags
    if "__GFP_NOFAIL" in f:
        return None
    if "__GFP_NORETRY" in f:
        return "__GFP_NORETRY: one reclaim/compaction pass, no retry"
    blocking = "__GFP_DIRECT_RECLAIM" in f or "__GFP_WAIT" in f
    if not blocking and "__GFP_HIGH" not in f:
        return ("GFP_NOWAIT-like (no __GFP_DIRECT_RECLAIM, no __GFP_HIGH): no reclaim, "
                "no reserves, fails at once")
    if blocking and req.order > PAGE_ALLOC_COSTLY_ORDER and "__GFP_RETRY_MAYFAIL" not in f \
            and "__GFP_REPEAT" not in f:
        return (f"costly order {req.order} (> PAGE_ALLOC_COSTLY_ORDER {PAGE_ALLOC_COSTLY_ORDER})"
                " without __GFP_RETRY_MAYFAIL: not retried after reclaim/compaction")
    return None


def _zone_index(sample: MemorySample, z: ZoneSample) -> int:
    """The kernel's zone_idx of a zone: its place in zoneinfo's zone list (all zones, empty
    ones too); without zoneinfo, its place among the node's buddyinfo zones."""
    names = list(sample.zone_order) or [s.zone for s in sample.zones if s.node == z.node]
    return names.index(z.zone) if z.zone in names else 0


def zone_check(sample: MemorySample, z: ZoneSample, req: Request, reserve: Reserve,
               top_index: int) -> dict:
    """One zone's numbers for this request: blocks, and the watermark test if known."""
    out: dict = {"node": z.node, "zone": z.zone,
                 "blocks_at_or_above": frag.blocks_at_or_above(z.free, req.order),
                 "free_pages": frag.free_pages(z.free)}
    info = z.info
    if info is None or "min" not in info.attrs or reserve.ignores_watermarks:
        out["watermark_ok"] = None if not reserve.ignores_watermarks else True
        return out
    protection = info.protection[top_index] if top_index < len(info.protection) else 0
    threshold = reserve.threshold(info.attrs["min"])
    usable = info.free - ((1 << req.order) - 1)
    # Requests that may not use CMA (all but movable ones) cannot count free CMA pages.
    if "__GFP_MOVABLE" not in req.flags:
        usable -= info.counters.get("nr_free_cma", 0)
    out.update(pages_free=info.free, min=info.attrs["min"], threshold=threshold,
               lowmem_reserve=protection, usable_pages=usable,
               watermark_ok=usable > threshold + protection)
    return out


class ZoneChecks:
    """The zone checks of one sample per request, shared by the failures that cite the
    sample (in a storm, hundreds per sample; computing them was a third of a record's
    cost). Holds the newest sample's only. The lists are shared, so never changed."""

    def __init__(self) -> None:
        self._sample: MemorySample | None = None
        self._checks: dict[tuple[int, int], list[dict]] = {}

    def of(self, sample: MemorySample, req: Request) -> list[dict]:
        if sample is not self._sample:
            self._sample, self._checks = sample, {}
        key = (req.order, req.mask)
        checks = self._checks.get(key)
        if checks is None:
            checks = self._checks[key] = _zones(sample, req, req.reserve)
        return checks


def _zones(sample: MemorySample, req: Request, reserve: Reserve) -> list[dict]:
    allowed = req.zones_allowed
    top: dict[int, int] = {}  # per node: zone_idx of the highest zone the request may use
    for s in sample.zones:
        if s.zone in allowed:
            top[s.node] = max(top.get(s.node, 0), _zone_index(sample, s))
    out = []
    for z in sample.zones:
        if z.zone not in allowed or (z.info is not None and z.info.managed == 0):
            continue
        if z.info is None and not any(z.free):
            continue  # an empty zone (Movable without movablecore=)
        out.append(zone_check(sample, z, req, reserve, top[z.node]))
    return out


def _usable(z: dict) -> bool:
    return z["blocks_at_or_above"] > 0 and z["watermark_ok"] is not False


def _shortage(zones: list[dict]) -> str | None:
    if any(_usable(z) for z in zones):
        return None
    if not any(z["blocks_at_or_above"] for z in zones):
        return NO_FREE_BLOCK
    return WATERMARK


def _zone_words(z: dict, order: int) -> str:
    text = f"N{z['node']}/{z['zone']} {z['blocks_at_or_above']} blocks >= order {order}"
    if z.get("threshold") is not None:
        text += (f", free {z['usable_pages']} usable pages vs watermark {z['threshold']}"
                 f" + reserve {z['lowmem_reserve']}")
    return text


def _memcg_chain_evidence(req: Request, memcg: MemcgFacts) -> tuple[dict, MemcgReading | None]:
    """The chain's levels (with counters before, when read earlier) and the level whose
    limit-events counter rose, if one did."""
    bind = binding_limit(memcg.chain)
    levels = []
    rose = None
    for r in memcg.chain:
        before = memcg.previous.get(r.path)
        row = r.to_json()
        if before is not None and before.limit_events is not None \
                and r.limit_events is not None:
            row["limit_events_before"] = before.limit_events
            if r.limit_events > before.limit_events and r.limit is not None:
                rose = rose or r
        levels.append(row)
    return {"levels": levels, "need_bytes": req.need_bytes,
            "binding": bind.to_json() if bind else None}, rose


def _memcg_verdict(req: Request, memcg: MemcgFacts | None) -> tuple[str, dict]:
    """('strong'|'weak'|'no'|'n/a'|'missing', evidence)."""
    if "__GFP_ACCOUNT" not in req.flags:
        return "n/a", {}
    if req.context != "process":
        return "n/a", {"note": f"__GFP_ACCOUNT in {req.context} context: interrupts charge "
                               "no task's memory cgroup (mm/memcontrol.c current_obj_cgroup)"}
    if memcg is not None and memcg.charge_refused is not None:
        ev, _ = _memcg_chain_evidence(req, memcg)
        ev["charge_refused"] = memcg.charge_refused
        if memcg.charge_refused:
            ev["basis"] = "the kernel refused the charge (memcg charge kretprobe)"
            return "strong", ev
        ev["note"] = "the memcg charge kretprobe saw no refused charge: not the cgroup"
        return "no", ev
    if memcg is None or not memcg.chain:
        return "missing", {"missing": (memcg.missing if memcg else None)
                           or "the task's memory cgroup was not read"}
    ev, rose = _memcg_chain_evidence(req, memcg)
    bind = binding_limit(memcg.chain)
    if bind is None:
        return "no", {**ev, "note": "no memory limit on the cgroup or its ancestors"}
    if bind.at_limit(req.need_bytes) or rose is not None:
        ev["basis"] = ("usage within one block of the limit" if bind.at_limit(req.need_bytes)
                       else f"{rose.events_name} rose at {rose.path}")  # type: ignore[union-attr]
        return "strong", ev
    if any(r.limit is not None and r.limit_events for r in memcg.chain):
        ev["basis"] = "limit hit before (counter > 0, not seen rising) and memory was free"
        return "weak", ev
    return "no", ev


def _memcg_sentence(ev: dict, zones: list[dict], order: int) -> str:
    b = ev["binding"]
    if b is None:  # the kernel said so; the cgroup could not be read
        return (f"the memory cgroup refused the charge of this order-{order} block (seen in "
                "the kernel); its usage and limit could not be read")
    text = (f"memory cgroup {b['path']} at its limit: usage {human_bytes(b['usage'])} of "
            f"{human_bytes(b['limit'])} (headroom {human_bytes(b['limit'] - b['usage'])}, "
            f"order {order} needs {human_bytes(ev['need_bytes'])})")
    if b["limit_events"] is not None:
        text += f", {b['limit_events_name']} {b['limit_events']}"
    blocks = sum(z["blocks_at_or_above"] for z in zones)
    if zones:
        text += (f"; the buddy lists had {blocks} free blocks >= order {order}: "
                 "not fragmentation")
    return text


def classify(req: Request, sample: MemorySample | None, sample_age_ms: float | None = None,
             memcg: MemcgFacts | None = None,
             restriction: NodeRestriction | None = None, stall: dict | None = None,
             zone_checks: ZoneChecks | None = None) -> Cause:
    """`stall`: StallLog.stall_info of the task (process context only); `zone_checks`:
    the caller's cache of zone checks (one is made per call without)."""
    reserve = req.reserve
    early = req.gives_up_early
    evidence: dict = {**req.constant_evidence, "sample_age_ms": sample_age_ms, "missing": []}
    if stall is not None:
        evidence["stall"] = stall
    verdict, memcg_ev = _memcg_verdict(req, memcg)
    if memcg_ev:
        evidence["memcg"] = memcg_ev
    zones = (zone_checks or ZoneChecks()).of(sample, req) if sample is not None else []
    evidence["zones"] = zones
    if verdict == "strong":
        return Cause(MEMCG_LIMIT, _memcg_sentence(memcg_ev, zones, req.order), evidence)
    if sample is None:
        evidence["missing"].append("memory state (/proc/buddyinfo, /proc/zoneinfo sample)")
        if verdict == "missing":
            evidence["missing"].append(memcg_ev["missing"])
        return Cause(UNKNOWN, "no memory sample to judge the zones against", evidence)
    allowed = zones
    if restriction is not None:
        evidence["nodes"] = {"allowed": sorted(restriction.nodes), "reason": restriction.reason}
        allowed = [z for z in zones if z["node"] in restriction.nodes]
        outside = [z for z in zones if z["node"] not in restriction.nodes]
        if _shortage(allowed) and any(_usable(z) for z in outside):
            return Cause(NODE_OR_POLICY, _node_sentence(restriction, allowed, outside, req),
                         evidence)
    shortage = _shortage(allowed)
    evidence["shortage"] = shortage
    if shortage is not None:
        what = _shortage_sentence(shortage, allowed, req, reserve) + _elsewhere(sample, req)
        if early:
            return Cause(GAVE_UP, f"gave up: {early}; {what}{_stall_words(stall)}", evidence)
        return Cause(shortage, what + _stall_words(stall), evidence)
    if verdict == "weak":
        return Cause(MEMCG_LIMIT, _memcg_sentence(memcg_ev, zones, req.order)
                     + f" ({memcg_ev['basis']})", evidence)
    fine = "; ".join(_zone_words(z, req.order) for z in allowed if _usable(z))
    age = f" (sampled {abs(sample_age_ms):.0f} ms away)" if sample_age_ms is not None else ""
    if early and verdict != "missing":
        return Cause(GAVE_UP, f"gave up: {early}; the nearest sample{age} shows room "
                     f"({fine}): the shortage was brief{_stall_words(stall)}", evidence,
                     cites_age=bool(age))
    if verdict == "missing":
        evidence["missing"].append(memcg_ev["missing"])
        return Cause(UNKNOWN, f"__GFP_ACCOUNT and the zones had room{age} ({fine}): likely "
                     "the memory cgroup charge, but its state is missing: "
                     + memcg_ev["missing"], evidence, cites_age=bool(age))
    evidence["missing"].append("a memory sample closer to the failure, per-migratetype free "
                               "lists (/proc/pagetypeinfo) and the HighAtomic reserve")
    return Cause(UNKNOWN, f"the nearest sample{age} shows room ({fine}); the shortage was "
                 "brief or in lists paftrace does not see", evidence, cites_age=bool(age))


def _shortage_sentence(shortage: str, zones: list[dict], req: Request,
                       reserve: Reserve) -> str:
    if not zones:
        return "no zone the gfp mask allows exists on the allowed nodes"
    if shortage == NO_FREE_BLOCK:
        detail = ", ".join(f"N{z['node']}/{z['zone']} "
                           f"{human_bytes(z['free_pages'] * req.page_size)} free" for z in zones)
        return f"no free block >= order {req.order} in any allowed zone ({detail})"
    below = "; ".join(_zone_words(z, req.order) for z in zones if z["blocks_at_or_above"])
    return (f"blocks >= order {req.order} exist but every zone holding them is below the "
            f"watermark this request must clear, {reserve.describe()}: {below}")


def _elsewhere(sample: MemorySample, req: Request) -> str:
    """Zones the gfp mask does not allow that had the blocks (e.g. DMA32 for a GFP_DMA
    request): why "memory was free" is not the whole story."""
    allowed = req.zones_allowed
    other = [f"N{z.node}/{z.zone} {frag.blocks_at_or_above(z.free, req.order)}"
             for z in sample.zones
             if z.zone not in allowed and frag.blocks_at_or_above(z.free, req.order)]
    return (f" (the gfp zone bits exclude {', '.join(other)} blocks >= order {req.order})"
            if other else "")


def _node_sentence(r: NodeRestriction, allowed: list[dict], outside: list[dict],
                   req: Request) -> str:
    short = "; ".join(_zone_words(z, req.order) for z in allowed) or "no eligible zone"
    room = "; ".join(_zone_words(z, req.order) for z in outside if _usable(z))
    return (f"restricted to node(s) {','.join(map(str, sorted(r.nodes)))} by {r.reason}: "
            f"short there ({short}) while other nodes had room ({room})")


def _stall_words(stall: dict | None) -> str:
    if stall is None:
        return ""
    return "; " + StallLog.stall_line(stall)
