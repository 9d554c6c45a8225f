"""`paftrace buddyinfo`: records, snapshots, renderers, and the command on real memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from paftrace.procfs.buddyinfo import parse_buddyinfo
from paftrace.procfs.frag import free_pages
from paftrace.procfs.pagetypeinfo import parse_pagetypeinfo
from paftrace.procfs.report import eligible_zones, failure_snapshot, sample_record
from paftrace.procfs.sampler import build_sample
from paftrace.procfs.zoneinfo import parse_zoneinfo
from paftrace.render.memory import memory_panel, memory_text, short_count
from paftrace.render.memtext import failure_line
from paftrace.workloads.scenarios.common import fragmenting, small_pcp_lists

DATA = Path(__file__).parent / "data" / "procfs"
CLI = [sys.executable, "-m", "paftrace.commands.buddyinfo"]


def sos_sample(ts: int = 1_000, normal: tuple[int, ...] | None = None):
    buddy = parse_buddyinfo((DATA / "buddyinfo.sosreport-x86").read_text())
    if normal is not None:
        buddy[2] = type(buddy[2])(0, "Normal", normal)
    return build_sample(ts, buddy, parse_zoneinfo((DATA / "zoneinfo.sosreport-x86").read_text()),
                        parse_pagetypeinfo((DATA / "pagetypeinfo.sosreport-x86").read_text()),
                        {"min_free_kbytes": 67584})


def test_sample_record_matches_spec() -> None:
    before = sos_sample(1_000)
    after = sos_sample(2_000, normal=(400, 154, 571, 302, 0, 0, 0, 0, 0, 0, 0))
    rec = sample_record(after, 4, before)
    assert rec["type"] == "buddyinfo" and rec["ts_ns"] == 2_000 and rec["order"] == 4
    normal = next(z for z in rec["zones"] if z["zone"] == "Normal")
    assert normal["free"] == [400, 154, 571, 302, 0, 0, 0, 0, 0, 0, 0]
    assert normal["blocks_at_or_above"] == 0 and normal["none_at_or_above"] is True
    assert normal["change"][0] == 44 and normal["change"][4] == -143
    assert normal["unusable_index"] == 1.0
    # 2^4 = 16; free pages 400+308+2284+2416 = 5408; 1000 - (1000 + 338000)//1427
    assert normal["fragmentation_index"] == round((1000 - (1000 + 5408 * 1000 // 16) // 1427)
                                                  / 1000, 3)
    assert normal["watermarks"] == {"min": 8684, "low": 10855, "high": 13026}
    assert normal["protection"] == [0, 0, 0, 0, 0]
    assert normal["migratetypes"]["Movable"]["blocks_at_or_above"] == 137
    assert normal["pageblocks"]["Unmovable"] == 1557
    json.dumps(rec)  # serialisable


def test_failure_snapshot_and_line() -> None:
    sample = sos_sample(1_000, normal=(300000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
    snap = failure_snapshot(sample, 4, ["GFP_KERNEL"], failure_ts_ns=6_001_000)
    assert [z["zone"] for z in snap["zones"]] == ["DMA", "DMA32", "Normal"]
    normal = snap["zones"][2]
    assert normal["blocks_at_or_above"] == 0 and normal["order0_pages"] == 300000
    assert snap["sample_age_ms"] == 6.0
    line = failure_line(snap, page_size=4096)
    assert "N0/Normal: 0 blocks >= order 4, 1.1 GiB free (1.1 GiB in order-0)" in line
    assert "sampled 6 ms before" in line
    dma_only = failure_snapshot(sample, 4, ["__GFP_DMA", "__GFP_HIGH"])
    assert [z["zone"] for z in dma_only["zones"]] == ["DMA"]


def test_eligible_zones_follow_gfp_zone() -> None:
    assert eligible_zones(["__GFP_DMA32"]) == ("DMA", "DMA32")
    assert eligible_zones(["GFP_HIGHUSER_MOVABLE"])[-1] == "Movable"
    assert eligible_zones([])[-1] == "Normal"


def test_renderers_show_the_same_figures() -> None:
    before = sos_sample(1_000)
    after = sos_sample(2_000, normal=(400, 154, 571, 302, 0, 0, 0, 0, 0, 0, 0))
    text = memory_text(after, 4, before)
    assert "N0 Normal" in text and "400(+44)" in text and "NONE >= order" in text
    console = Console(width=80, record=True, color_system=None)
    console.print(memory_panel(after, 4, before, [before, after]))
    out = console.export_text()
    assert "NONE" in out and "HighAtomic" in out and "8.6k" in out  # min watermark
    assert max(len(line) for line in out.splitlines()) <= 80
    assert [short_count(n) for n in (999, 5706, 123456, 8662816)] == ["999", "5.7k", "123k",
                                                                      "8M"]


def run_cli(*args: str, user: str | None = None) -> subprocess.CompletedProcess:
    cmd = [*CLI, *args]
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          cwd=str(Path(__file__).parent.parent))


def test_cli_json_count() -> None:
    proc = run_cli("--json", "-n", "2", "-i", "0.1", "-o", "3")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 2 and lines[1]["ts_ns"] > lines[0]["ts_ns"]
    assert all(rec["order"] == 3 for rec in lines)
    live = {z.key for z in parse_buddyinfo(Path("/proc/buddyinfo").read_text())}
    assert {(z["node"], z["zone"]) for z in lines[0]["zones"]} == live
    assert "change" in lines[1]["zones"][0] and "change" not in lines[0]["zones"][0]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_cli_as_normal_user_says_what_needs_root() -> None:
    proc = run_cli("--plain", "-n", "1", "--pagetypeinfo", user="nobody")
    assert proc.returncode == 0, proc.stderr
    assert "free/order" in proc.stdout and "pagetypeinfo needs root" in proc.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="migratetypes need root")
def test_cli_pagetypeinfo_as_root() -> None:
    rec = json.loads(run_cli("--json", "-n", "1", "--pagetypeinfo").stdout)
    assert rec["pageblock_order"] >= 1
    assert all("HighAtomic" in z["migratetypes"] for z in rec["zones"])


def order0_and_free_pages() -> tuple[int, int]:
    """(free order-0 blocks, free pages in all orders), all zones, one
    `paftrace buddyinfo --json` sample."""
    [rec] = [json.loads(line) for line in run_cli("--json", "-n", "1", "-o", "4")
             .stdout.splitlines()]
    return (sum(z["free"][0] for z in rec["zones"]),
            sum(free_pages(z["free"]) for z in rec["zones"]))


@pytest.mark.skipif(os.geteuid() != 0, reason="shrinking the per-CPU lists needs root")
def test_fragmenting_child_shows_in_samples() -> None:
    """A child touches 300 MiB, then frees every other page: in `paftrace buddyinfo
    --json`, order-0 blocks rise (freed pages whose buddies stay busy cannot merge)
    and the free pages fall by about the half it holds (and rise when it exits).

    Where the memory came from is not asserted: __rmqueue_smallest() (mm/page_alloc.c)
    serves an allocation from the smallest order that has a block, so after other tests
    have left enough order-1..3 blocks the child never splits an order >= 4 block (CI
    saw the pages in blocks >= order 4 unchanged, 3299040 before and after), and while
    it does split them the count of blocks >= 4 can even rise (one order-10 block leaves
    one block of each order 9..0 behind).

    The per-CPU lists are shrunk meanwhile: on 6.x they would absorb a few hundred MiB
    of freed pages before any reaches the buddy lists."""
    with small_pcp_lists():
        order0_before, free_before = order0_and_free_pages()
        with fragmenting(300, hold=30) as ready:
            order0_after, free_after = order0_and_free_pages()
        _, free_released = order0_and_free_pages()  # the child has exited
    held = 300 * 256 - ready["freed_pages"]
    assert ready["freed_pages"] == 300 * 256 // 2
    assert order0_after - order0_before > ready["freed_pages"] // 4
    # The held half left the free lists, and came back when the child exited. Other tasks
    # allocate and free meanwhile: in a cold-cache scripts/test, with the background builds
    # running, the fall was 9,740 pages of 38,400 held. One of the two windows must show it.
    assert max(free_before - free_after, free_released - free_after) > held // 2, (
        free_before, free_after, free_released, held)
