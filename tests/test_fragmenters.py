"""Fragmentation attribution (paftrace/fragmenters.py): pure, on captured files."""

from __future__ import annotations

import json

from rich.console import Console

from paftrace.fragmenters import (
    CompactionCount,
    ExtfragCounts,
    ExtfragKey,
    Fragmentation,
    PageblockHistory,
    attribute,
    compaction_by_zone,
    fragmenter_records,
    print_symbolic,
    report,
    site_class,
)
from paftrace.procfs.buddyinfo import parse_buddyinfo
from paftrace.procfs.pagetypeinfo import parse_pagetypeinfo
from paftrace.procfs.sampler import build_sample
from paftrace.procfs.zoneinfo import parse_zoneinfo
from paftrace.render.contract import check_record
from paftrace.render.frag import fragmenter_lines, fragmenters_panel
from tests.helpers import DATA

PIPE_STACK = ("__rmqueue_pcplist+0x2a1", "get_page_from_freelist+0x35f",
              "__alloc_frozen_pages_noprof+0x19e", "alloc_pages_mpol+0x8d",
              "anon_pipe_write+0x1a5", "vfs_write+0x2a7", "ksys_write+0x6c")
SKB_STACK = ("__rmqueue_pcplist+0x2a1", "get_page_from_freelist+0x35f",
             "__alloc_pages_noprof+0x18c", "__kmalloc_node_track_caller_noprof+0x21b",
             "kmalloc_reserve+0x6c", "__alloc_skb+0x8a", "tcp_stream_alloc_skb+0x2e",
             "tcp_sendmsg_locked+0x3f0")


def key(comm: str, fragmenting: bool = True, owner: bool = False, alloc_mt: int = 0,
        fallback_mt: int = 1) -> ExtfragKey:
    return ExtfragKey(alloc_order=0, fallback_order=3 if fragmenting else 10,
                      alloc_migratetype=alloc_mt, fallback_migratetype=fallback_mt,
                      fragmenting=fragmenting, change_ownership=owner, comm=comm)


def test_stack_estimates_scale_to_the_exact_counts_and_top_is_the_biggest_fragmenter():
    pipes, nginx = key("pipes"), key("nginx")
    counts = ExtfragCounts(
        exact=[(pipes, 600), (nginx, 300), (key("kswapd0", fragmenting=False), 100)],
        # 30 of the pipe events had their stack walked, all in pipe_write; nginx's
        # 10 samples split 7/3 between the skb path and pipes.
        sampled=[(pipes, PIPE_STACK, 30), (nginx, SKB_STACK, 7), (nginx, PIPE_STACK, 3)])
    sites = attribute(counts)
    assert [(s.site, s.comm) for s in sites[:3]] == [
        ("anon_pipe_write via vfs_write", "pipes"),
        ("tcp_stream_alloc_skb via tcp_sendmsg_locked", "nginx"),
        ("anon_pipe_write via vfs_write", "nginx")]
    assert sites[0].fragmenting == 600 and not sites[0].estimated  # every stack the same
    assert round(sites[1].fragmenting) == 210 and sites[1].estimated
    assert round(sites[2].fragmenting) == 90
    unsampled = [s for s in sites if s.site == "(stack not sampled)"]
    assert [(s.comm, s.events, s.fragmenting) for s in unsampled] == [("kswapd0", 100, 0)]
    assert sum(s.events for s in sites) == counts.total == 1000
    assert sites[0].site_class == "pipe buffers" and sites[1].site_class == "network buffers"


def test_migratetype_pairs_use_the_kernels_names():
    counts = ExtfragCounts(exact=[(key("a", alloc_mt=0, fallback_mt=2), 5)],
                           sampled=[(key("a", alloc_mt=0, fallback_mt=2), PIPE_STACK, 5)])
    # before v4.4 (arm32 capture): Unmovable, Reclaimable, Movable, Reserve
    old = parse_pagetypeinfo((DATA / "procfs/pagetypeinfo.arm32-highmem").read_text())
    assert attribute(counts, old.block_types)[0].pairs == {"Unmovable<-Movable": 5}
    assert attribute(counts)[0].pairs == {"Unmovable<-Reclaimable": 5}


def test_zone_names_and_results_come_from_the_running_kernels_print_fmt():
    text = (DATA / "formats/mm_compaction_suitable-6.18.format").read_text()
    fmt = text.split("print fmt:", 1)[1]
    assert print_symbolic(fmt, "idx") == {0: "DMA", 1: "DMA32", 2: "Normal", 3: "Movable"}
    assert print_symbolic(fmt, "ret")[3] == "no_suitable_page"
    assert print_symbolic(fmt, "nonexistent") == {}


def samples(first_blocks: dict[str, int], now_blocks: dict[str, int]):
    buddy = parse_buddyinfo((DATA / "procfs/buddyinfo.live-6.18-x86").read_text())
    zoneinfo = parse_zoneinfo((DATA / "procfs/zoneinfo.live-6.18-x86").read_text())
    pti = parse_pagetypeinfo((DATA / "procfs/pagetypeinfo.live-6.18-x86").read_text())
    before = build_sample(1_000_000_000, buddy, zoneinfo, pti)
    pti.blocks[(0, "Normal")] = dict(first_blocks)
    before.zone(0, "Normal").pageblocks = dict(first_blocks)
    later_buddy = [type(b)(b.node, b.zone, tuple(0 if i >= 4 else n for i, n in
                                                  enumerate(b.free)) if b.zone == "Normal"
                            else b.free) for b in buddy]
    now = build_sample(91_000_000_000, later_buddy, zoneinfo, pti)
    now.zone(0, "Normal").pageblocks = dict(now_blocks)
    return before, now


def test_history_says_how_far_each_zone_moved_since_the_first_sample():
    first = {"Unmovable": 145, "Movable": 539, "Reclaimable": 50, "HighAtomic": 0,
             "Isolate": 0}
    before, now = samples(first, {**first, "Unmovable": 212, "Movable": 472})
    history = PageblockHistory(order=4)
    history.add(before)
    history.add(now)
    normal = next(t for t in history.trends() if t.zone == "Normal")
    assert normal.blocks_before > 0 and normal.blocks_now == 0
    assert normal.elapsed_s == 90
    section = report(Fragmentation(ExtfragCounts(
        exact=[(key("pipes"), 80), (key("x"), 20)],
        sampled=[(key("pipes"), PIPE_STACK, 8), (key("x"), SKB_STACK, 2)])), history)
    line = next(h for h in section["headline"] if "Normal" in h)
    assert f"fell {normal.blocks_before} -> 0 in 90 s" in line
    assert "Unmovable pageblocks 145 -> 212" in line and "Movable pageblocks 539 -> 472" in line
    assert section["headline"][-1].startswith("top fragmenting call sites: 80% anon_pipe_write")
    # advice names the class with its share, and the zone that lost its blocks
    assert any(a.startswith("80% of fragmenting fallbacks come from pipe buffers")
               for a in section["advice"])
    assert any("node 0 Normal lost high-order blocks" in a and "100 fragmenting" in a
               for a in section["advice"])
    json.dumps(section)  # the summary section is plain JSON


def test_no_advice_without_fragmenting_fallbacks():
    history = PageblockHistory(order=4)
    section = report(Fragmentation(ExtfragCounts(
        exact=[(key("a", fragmenting=False, owner=True), 50)],
        sampled=[(key("a", fragmenting=False, owner=True), PIPE_STACK, 5)])), history)
    assert section["advice"] == [] and section["fragmenting"] == 0
    assert section["steals"] == 50
    assert section["sites"][0]["share"] == 1.0  # of all fallbacks when none fragments
    assert section["headline"] == ["no fragmenting fallback seen"]


def test_compaction_verdicts_per_zone():
    zoneinfo = parse_zoneinfo((DATA / "procfs/zoneinfo.live-6.18-x86").read_text())
    starts = {z.start_pfn: z.key for z in zoneinfo}
    normal_start = next(s for s, k in starts.items() if k == (0, "Normal"))
    out = compaction_by_zone(
        [CompactionCount("end", 3, 4, zone_start=normal_start),
         CompactionCount("suitable", 0, 9, nid=0, zone_idx=2),
         CompactionCount("deferred", 0, 2, nid=0, zone_idx=1)],
        starts, {1: "DMA32", 2: "Normal"}, {3: "no_suitable_page", 0: "not_suitable_zone"})
    assert out == {"node 0 Normal": {"end": {"no_suitable_page": 4},
                                     "suitable": {"not_suitable_zone": 9}},
                   "node 0 DMA32": {"deferred": {"deferred": 2}}}


def test_fragmenter_records_keep_the_contract_and_only_repeat_what_moved():
    history = PageblockHistory(order=4)
    data = Fragmentation(ExtfragCounts(exact=[(key("pipes"), 3)],
                                       sampled=[(key("pipes"), PIPE_STACK, 3)]))
    sent: dict = {}
    first = fragmenter_records(report(data, history), sent, 1)
    assert len(first) == 1 and check_record(first[0]) == []
    assert fragmenter_records(report(data, history), sent, 2) == []
    data.extfrag.exact[0] = (key("pipes"), 4)
    assert len(fragmenter_records(report(data, history), sent, 3)) == 1


def test_site_classes():
    assert site_class(list(SKB_STACK)) == "network buffers"
    assert site_class(["__pte_alloc+0x1c", "do_anonymous_page+0x3"]) == "page tables"
    assert site_class(["allocate_slab+0x9", "___slab_alloc+0x1"]) == "slab caches"
    assert site_class(["foo+0x1"]) is None


def test_hostile_task_names_and_symbols_are_shown_as_data():
    hostile = "[red]x[/red][link=file:/x]\x1b[2J"
    frames = PIPE_STACK
    data = Fragmentation(ExtfragCounts(exact=[(key(hostile), 5)],
                                       sampled=[(key(hostile), frames, 5)]))
    section = report(data, PageblockHistory(order=4))
    text = "\n".join(fragmenter_lines(section))
    assert "\x1b" not in text and "[red]x[/red]" in text
    console = Console(record=True, width=80, force_terminal=True, color_system="truecolor")
    console.print(fragmenters_panel(section))
    out = console.export_text()
    assert "([red]x[/red]" in out and "\\x1b[2J" in out  # literal, escape made inert
    assert "\x1b]8;" not in console.export_text(styles=True)  # no hyperlink came from data
