"""Who made order N impossible: fragmentation attributed to call sites and tasks.

Pure. Inputs are what reclaim.c aggregates in the kernel (paftrace/maps.py reads
them) and the memory samples of paftrace/procfs:

- kmem:mm_page_alloc_extfrag fires when an allocation found no free block of its
  own migratetype and fell back to another type's free list (mm/page_alloc.c,
  __rmqueue_fallback; the tracepoint is include/trace/events/kmem.h). A fallback
  smaller than a pageblock is *fragmenting*: it puts, say, an unmovable page inside
  a movable pageblock, which compaction can then no longer empty. When the kernel
  claims the whole pageblock for the new type it *changes ownership*.
- /proc/pagetypeinfo "Number of blocks type" shows the pageblock mix per zone;
  Unmovable/Reclaimable growth there is the lasting damage.
- compaction:mm_compaction_{end,suitable,deferred} say why compaction could not
  rebuild high-order blocks, per zone.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from paftrace import contract
from paftrace.aggregate import estimate_stack_counts
from paftrace.procfs import frag
from paftrace.procfs.sampler import MemorySample
from paftrace.stacks import is_allocator_frame, requester

# enum migratetype index -> name, v4.4+ (include/linux/mmzone.h; commit 016c13daa5c9
# "mm, page_alloc: use masks and shifts when converting GFP flags to migrate types"
# swapped Movable and Reclaimable, and 0aaa29a56e4f put HighAtomic where Reserve was).
# /proc/pagetypeinfo's "Number of blocks type" header lists the running kernel's
# names in index order (mm/vmstat.c, migratetype_names[]): that wins when readable.
MIGRATETYPES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate")

# Known classes of fragmenting call sites, matched on every frame of the stack,
# with the usual remedies. Evidence (counts, shares) always comes with them.
SITE_CLASSES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("network buffers", re.compile(r"(alloc_skb|skb_|sk_stream_alloc|tcp_|udp_|"
                                   r"page_pool|napi_alloc|netdev_alloc|__netif|sock_)"),
     "network buffers pin unmovable pages: raise vm.min_free_kbytes so atomic NIC "
     "allocations keep a reserve, and reduce socket buffer sizes (net.ipv4.tcp_rmem/wmem) "
     "or ring sizes (ethtool -G) if they are larger than needed"),
    ("pipe buffers", re.compile(r"(pipe_write|pipe_resize_ring|splice|pipe_)"),
     "pipe buffers are unmovable while held: find the task holding large pipes "
     "(fs.pipe-max-size, F_SETPIPE_SZ) and drain or shrink them"),
    ("page tables", re.compile(r"(pte_alloc|pmd_alloc|pud_alloc|p4d_alloc|pgd_alloc|"
                               r"__pte_alloc|pte_fragment_alloc)"),
     "page tables are unmovable: large sparse mappings create many; THP "
     "(transparent_hugepage=always) or fewer mapped regions reduce them"),
    ("slab caches", re.compile(r"(allocate_slab|new_slab|kmem_cache_alloc|__kmalloc|"
                               r"kmalloc|cache_grow)"),
     "slab pages are unmovable (reclaimable for dentries/inodes): check /proc/slabinfo "
     "for the growing cache; vm.vfs_cache_pressure for dentry/inode caches"),
)
# Remedies that address fragmentation itself, whatever the source (Documentation/
# admin-guide/sysctl/vm.rst: watermark_boost_factor 5.0+, compaction_proactiveness 5.9+).
GENERAL_REMEDIES = (
    "vm.watermark_boost_factor (5.0+): after a fragmenting event kswapd reclaims "
    "and compacts a little ahead; keep it at its default (15000) or raise it",
    "vm.compaction_proactiveness (5.9+): background compaction toward a lower "
    "fragmentation score; raise it (default 20) when high orders run out",
    "/sys/kernel/mm/transparent_hugepage/defrag: 'defer+madvise' avoids direct "
    "compaction stalls in applications while kcompactd rebuilds blocks",
)


def migratetype_name(index: int, names: tuple[str, ...] = MIGRATETYPES) -> str:
    return names[index] if 0 <= index < len(names) else f"type{index}"


def print_symbolic(print_fmt: str, field_name: str) -> dict[int, str]:
    """{value: name} of `__print_symbolic(REC->field, {v, "name"}, ...)` in a print fmt."""
    m = re.search(r"__print_symbolic\(\s*REC->" + re.escape(field_name) +
                  r"\s*,((?:\s*\{\s*-?\d+\s*,\s*\"[^\"]*\"\s*\}\s*,?)+)\)", print_fmt)
    if not m:
        return {}
    return {int(v): n for v, n in re.findall(r'\{\s*(-?\d+)\s*,\s*"([^"]*)"\s*\}',
                                             m.group(1))}


@dataclass(frozen=True)
class ExtfragKey:
    """One kind of fallback (paftrace.h struct extfrag_key, without the stack)."""

    alloc_order: int
    fallback_order: int
    alloc_migratetype: int
    fallback_migratetype: int
    fragmenting: bool
    change_ownership: bool
    comm: str


@dataclass
class Fragmenter:
    """A call site (requester frame) in one task name, with what its fallbacks did."""

    site: str
    comm: str
    events: float = 0.0
    fragmenting: float = 0.0
    steals: float = 0.0
    pairs: Counter = field(default_factory=Counter)  # "Unmovable<-Movable" -> events
    site_class: str | None = None
    stack: list[str] = field(default_factory=list)
    estimated: bool = False

    def to_json(self, total_fragmenting: int, total_events: int) -> dict:
        # The share of the damage: of fragmenting fallbacks when there are any, else of
        # all fallbacks (a host with plenty of free pageblocks falls back whole blocks).
        share = (self.fragmenting / total_fragmenting if total_fragmenting
                 else self.events / total_events if total_events else 0.0)
        return {"site": self.site, "comm": self.comm, "events": round(self.events, 1),
                "fragmenting": round(self.fragmenting, 1), "steals": round(self.steals, 1),
                "share": round(share, 4), "pairs": dict(self.pairs.most_common()),
                "class": self.site_class, "stack": self.stack,
                "estimated": self.estimated}


def site_class(frames: list[str]) -> str | None:
    for name, pattern, _ in SITE_CLASSES:
        if any(pattern.search(f) for f in frames):
            return name
    return None


def remedy(class_name: str | None) -> str | None:
    return next((r for n, _, r in SITE_CLASSES if n == class_name), None)


def via(frames: list[str]) -> str | None:
    """`requester via its caller`: one frame is rarely enough to tell the path."""
    site = requester(frames)
    if site is None:
        return None
    names = [f for f in frames if not is_allocator_frame(f)]
    caller = names[1].split("+")[0] if len(names) > 1 else None
    return f"{site} via {caller}" if caller else site


@dataclass
class ExtfragCounts:
    """reclaim.c's extfrag maps as read: exact counts per key, and the sampled
    events per key and symbolized stack (frames innermost first)."""

    exact: list[tuple[ExtfragKey, int]] = field(default_factory=list)
    sampled: list[tuple[ExtfragKey, tuple[str, ...], int]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(n for _, n in self.exact)

    @property
    def fragmenting(self) -> int:
        return sum(n for k, n in self.exact if k.fragmenting)

    @property
    def steals(self) -> int:
        return sum(n for k, n in self.exact if k.change_ownership)


def attribute(counts: ExtfragCounts, names: tuple[str, ...] = MIGRATETYPES
              ) -> list[Fragmenter]:
    """Fragmenters, most fragmenting first, from exact per-key counts and sampled stacks.

    A key none of whose events had its stack sampled is kept under the site
    "(stack not sampled)", so the totals always add up to the exact counts."""
    estimates = estimate_stack_counts(counts.exact, counts.sampled)
    sites: dict[tuple[str, str], Fragmenter] = {}
    for key, (exact, per_stack) in estimates.items():
        pair = (f"{migratetype_name(key.alloc_migratetype, names)}<-"
                f"{migratetype_name(key.fallback_migratetype, names)}")
        shares: list[tuple[tuple[str, ...], float]] = per_stack or [((), float(exact))]
        for frames, n in shares:
            site = via(list(frames)) or "(stack not sampled)"
            f = sites.setdefault((site, key.comm), Fragmenter(site=site, comm=key.comm))
            f.events += n
            f.fragmenting += n if key.fragmenting else 0
            f.steals += n if key.change_ownership else 0
            f.pairs[pair] += round(n, 1)
            # Per-stack numbers are estimates unless every event's stack was taken.
            f.estimated = f.estimated or not frames or n != exact
            if frames and not f.stack:
                f.stack = list(frames)
                f.site_class = site_class(f.stack)
    return sorted(sites.values(), key=lambda f: (-f.fragmenting, -f.events, f.site))


@dataclass
class ZoneTrend:
    """One zone between the first sample of the run and the latest."""

    node: int
    zone: str
    elapsed_s: float
    blocks_before: int
    blocks_now: int
    pageblocks_before: dict[str, int] | None
    pageblocks_now: dict[str, int] | None

    def to_json(self) -> dict:
        return {"node": self.node, "zone": self.zone, "elapsed_s": round(self.elapsed_s, 1),
                "blocks_at_or_above": [self.blocks_before, self.blocks_now],
                "pageblocks": ({t: [self.pageblocks_before.get(t, 0), n]
                                for t, n in self.pageblocks_now.items()}
                               if self.pageblocks_before and self.pageblocks_now else None)}


class PageblockHistory:
    """Keeps the first sample of the run (the sampler's history is bounded) and
    the first pageblock mix seen, to say how far each zone moved since."""

    def __init__(self, order: int):
        self.order = order
        self.first: MemorySample | None = None
        self.first_pageblocks: dict[tuple[int, str], dict[str, int]] = {}
        self.latest: MemorySample | None = None

    def add(self, sample: MemorySample) -> None:
        if self.first is None:
            self.first = sample
        self.latest = sample
        for z in sample.zones:
            if z.pageblocks and z.key not in self.first_pageblocks:
                self.first_pageblocks[z.key] = dict(z.pageblocks)

    @property
    def migratetype_names(self) -> tuple[str, ...]:
        """The running kernel's names in index order (pagetypeinfo lists them so),
        or the v4.4+ defaults before pagetypeinfo was read."""
        for blocks in self.first_pageblocks.values():
            return tuple(blocks)
        return MIGRATETYPES

    def trends(self) -> list[ZoneTrend]:
        if self.first is None or self.latest is None:
            return []
        out = []
        elapsed = (self.latest.ts_ns - self.first.ts_ns) / 1e9
        for z in self.latest.zones:
            before = self.first.zone(z.node, z.zone)
            if before is None:
                continue
            out.append(ZoneTrend(
                node=z.node, zone=z.zone, elapsed_s=elapsed,
                blocks_before=frag.blocks_at_or_above(before.free, self.order),
                blocks_now=frag.blocks_at_or_above(z.free, self.order),
                pageblocks_before=self.first_pageblocks.get(z.key),
                pageblocks_now=dict(z.pageblocks) if z.pageblocks else None))
        return out


# paftrace.h COMPACT_EV_* in value order.
COMPACT_EVENTS = contract.enumeration("COMPACT_EV_")


@dataclass(frozen=True)
class CompactionCount:
    """One entry of reclaim.c's compaction_zones map (paftrace.h)."""

    event: str          # end | suitable | deferred
    result: int
    count: int
    zone_start: int = 0
    nid: int = -1
    zone_idx: int = -1


def compaction_by_zone(entries: Iterable[CompactionCount],
                       zone_of_start: dict[int, tuple[int, str]],
                       zone_names: dict[int, str], statuses: dict[int, str]
                       ) -> dict[str, dict[str, dict[str, int]]]:
    """{"node 0 Normal": {"end": {"complete": 3}, "suitable": {...}, "deferred": {...}}}."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for e in entries:
        if e.event == "end":
            node, zone = zone_of_start.get(e.zone_start, (-1, f"pfn {e.zone_start:#x}"))
        else:
            node, zone = e.nid, zone_names.get(e.zone_idx, f"zone{e.zone_idx}")
        result = ("" if e.event == "deferred"
                  else statuses.get(e.result, str(e.result)))
        per = out.setdefault(f"node {node} {zone}", {}).setdefault(e.event, {})
        per[result or "deferred"] = per.get(result or "deferred", 0) + e.count
    return out


def headline(trends: list[ZoneTrend], fragmenters: list[Fragmenter], order: int,
             total_fragmenting: int, top: int = 3) -> list[str]:
    """The one answer: how each zone moved, and who fragmented it."""
    lines = []
    for t in trends:
        line = (f"node {t.node} {t.zone}: blocks >= order {order} "
                f"{'fell' if t.blocks_now < t.blocks_before else 'went'} "
                f"{t.blocks_before} -> {t.blocks_now} in {t.elapsed_s:.0f} s")
        if t.pageblocks_before and t.pageblocks_now:
            moved = [f"{name} pageblocks {t.pageblocks_before.get(name, 0)} -> {n}"
                     for name, n in t.pageblocks_now.items()
                     if n != t.pageblocks_before.get(name, 0)]
            if moved:
                line += "; " + ", ".join(moved)
        lines.append(line)
    if total_fragmenting and fragmenters:
        parts = [f"{f.fragmenting / total_fragmenting:.0%} {f.site} ({f.comm})"
                 for f in fragmenters[:top] if f.fragmenting]
        if parts:
            lines.append("top fragmenting call sites: " + ", ".join(parts))
    elif not total_fragmenting:
        lines.append("no fragmenting fallback seen")
    return lines


def advice(fragmenters: list[Fragmenter], total_fragmenting: int,
           trends: list[ZoneTrend]) -> list[str]:
    """Remedies with the numbers that justify them; none without evidence."""
    if not total_fragmenting:
        return []
    out = []
    by_class: Counter = Counter()
    for f in fragmenters:
        if f.site_class:
            by_class[f.site_class] += f.fragmenting
    for name, n in by_class.most_common():
        share = n / total_fragmenting
        if share >= 0.25:
            out.append(f"{share:.0%} of fragmenting fallbacks come from {name}: {remedy(name)}")
    shrinking = [t for t in trends if t.blocks_now < t.blocks_before]
    if shrinking:
        worst = min(shrinking, key=lambda t: t.blocks_now)
        out.append(f"node {worst.node} {worst.zone} lost high-order blocks "
                   f"({worst.blocks_before} -> {worst.blocks_now}) while "
                   f"{total_fragmenting} fragmenting fallbacks happened: "
                   + "; ".join(GENERAL_REMEDIES))
    return out


@dataclass
class Fragmentation:
    """What a session reads for the fragmenters view at one moment."""

    extfrag: ExtfragCounts
    compaction: list[CompactionCount] = field(default_factory=list)
    zone_names: dict[int, str] = field(default_factory=dict)   # mm_compaction_suitable idx
    statuses: dict[int, str] = field(default_factory=dict)     # compact_result names


def report(data: Fragmentation, history: PageblockHistory, top: int = 10) -> dict:
    """The `fragmenters` section of the summary, and what the views show."""
    sites = attribute(data.extfrag, history.migratetype_names)
    total_fragmenting = data.extfrag.fragmenting
    trends = history.trends()
    zone_of_start = {}
    if history.latest is not None:
        zone_of_start = {z.info.start_pfn: z.key for z in history.latest.zones
                         if z.info is not None and z.info.start_pfn is not None}
    return {
        "order": history.order,
        "fallbacks": data.extfrag.total, "fragmenting": total_fragmenting,
        "steals": data.extfrag.steals,
        "sites": [s.to_json(total_fragmenting, data.extfrag.total) for s in sites[:top]],
        "zones": [t.to_json() for t in trends],
        "compaction": compaction_by_zone(data.compaction, zone_of_start, data.zone_names,
                                         data.statuses),
        "headline": headline(trends, sites, history.order, total_fragmenting),
        "advice": advice(sites, total_fragmenting, trends),
        "stacks_estimated": any(s.estimated for s in sites),
    }


def fragmenter_records(section: dict, previous: dict[tuple[str, str], float],
                       ts_ns: int) -> list[dict]:
    """`{"type": "fragmenter"}` stream records: the sites whose counts moved since
    the last call (`previous` is updated), cumulative numbers."""
    out = []
    for site in section["sites"]:
        key = (site["site"], site["comm"])
        if previous.get(key) == site["events"]:
            continue
        previous[key] = site["events"]
        out.append({"type": "fragmenter", "ts_ns": ts_ns, "order": section["order"], **site})
    return out
