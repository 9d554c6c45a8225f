"""`explain` gives each printed report a cause from its Mem-Info (and nearby memcg lines)."""

from __future__ import annotations

import pytest

from paftrace.explain.analyze import explain_text
from paftrace.explain.cause_read import memcg_from_lines, nodes_allowed, sample_from_report
from paftrace.explain.parse import parse_reports
from tests.helpers import DATA

HERE = sorted((DATA / "reports" / "here").glob("*.dmesg"))
OOM = (DATA / "memcg" / "oom-v1-6.18.dmesg").read_text()


@pytest.mark.parametrize("path", HERE, ids=lambda p: p.name)
def test_gfp_dma_noretry_order10_gave_up_with_no_block_in_dma(path):
    [e] = explain_text(path.read_text())
    assert e.cause.cause == "gave-up"
    ev = e.cause.evidence
    assert ev["shortage"] == "no-free-block"
    assert [z["zone"] for z in ev["zones"]] == ["DMA"]  # GFP_DMA: DMA only
    assert ev["zones"][0]["blocks_at_or_above"] == 0
    assert "__GFP_NORETRY" in e.cause.sentence
    out = e.to_json()
    assert out["cause"] == "gave-up" and out["cause_evidence"]["sentence"] == e.cause.sentence
    assert any("gives up early by design" in a["text"] for a in out["advice"])


def test_zones_the_mask_excludes_are_named_when_they_had_blocks():
    [e] = explain_text((DATA / "reports" / "here" /
                        "qemu-5.10.0-46-amd64-pafwarn.dmesg").read_text())
    assert "exclude N0/DMA32 167 blocks >= order 10" in e.cause.sentence


def test_report_free_lists_become_a_sample_in_pages():
    [r] = parse_reports((DATA / "reports" / "here" /
                         "qemu-5.10.0-46-amd64-pafwarn.dmesg").read_text())
    sample = sample_from_report(r)
    dma32 = next(z for z in sample.zones if z.zone == "DMA32")
    assert dma32.free[10] == 167 and dma32.free[0] == 1470
    assert dma32.info.attrs["min"] == 44320 // 4 and dma32.info.free == 769272 // 4


def test_cut_mem_info_is_unknown_and_says_what_is_missing():
    [e] = explain_text((DATA / "reports" / "4.18-rhel8-awsevent.txt").read_text())
    assert e.cause.cause == "unknown"
    assert "no free lists" in e.cause.sentence
    assert "free lists" in e.cause.evidence["missing"][0]


def test_memcg_oom_lines_are_read():
    [r] = memcg_from_lines(OOM.splitlines())
    assert r.path == "/paftrace-cause-oom-29158"
    assert (r.usage, r.limit, r.limit_events, r.kernel) == (24396 << 10, 24576 << 10, 35,
                                                            152 << 10)


def test_memcg_at_limit_near_a_printed_report_is_context_not_the_cause():
    # Two real captures side by side (this VM's memcg OOM, a guest's printed failure): a
    # printed report is never a refused charge, the cgroup's state is shown as context.
    text = OOM + (DATA / "reports" / "here" / "qemu-6.1.0-56-amd64-pafwarn.dmesg").read_text()
    [e] = explain_text(text)
    assert e.cause.cause == "gave-up"
    [near] = e.cause.evidence["memcg_nearby"]
    assert near["path"] == "/paftrace-cause-oom-29158" and near["limit"] == 24576 << 10
    assert "at its limit too" in e.cause.sentence


def test_mems_allowed_lists():
    [r] = parse_reports((DATA / "reports" / "here" /
                         "qemu-6.1.0-56-amd64-pafwarn.dmesg").read_text())
    assert nodes_allowed(r) == {0}


def test_reports_without_order_or_mode_get_no_cause():
    import dataclasses

    from paftrace.explain.cause_read import report_cause
    from paftrace.gfp_tables import table_for_kernel

    [r] = parse_reports((DATA / "reports" / "here" /
                         "qemu-6.1.0-56-amd64-pafwarn.dmesg").read_text())
    table = table_for_kernel("6.1")
    assert report_cause(dataclasses.replace(r, order=None), table, "process") is None
    assert report_cause(dataclasses.replace(r, kind="vmalloc"), table, "process") is None
    assert report_cause(r, table, "process").cause == "gave-up"
