"""The cause classifier on captured memory states, memcg trees and gfp tables."""

from __future__ import annotations

import dataclasses

import pytest

from paftrace.cause import (
    CAUSES,
    GAVE_UP,
    MEMCG_LIMIT,
    NO_FREE_BLOCK,
    NODE_OR_POLICY,
    UNKNOWN,
    WATERMARK,
    MemcgFacts,
    NodeRestriction,
    Request,
    ZoneChecks,
    classify,
    opportunistic,
)
from paftrace.gfp_tables import table_for_kernel
from paftrace.procfs.buddyinfo import parse_buddyinfo
from paftrace.procfs.memcg import read_chain
from paftrace.procfs.sampler import build_sample
from paftrace.procfs.zoneinfo import parse_zoneinfo
from tests.helpers import DATA, gfp_table_618

T618 = gfp_table_618()
T510 = table_for_kernel("5.10")
PROCFS = DATA / "procfs"
MEMCG = DATA / "memcg"

GFP_KERNEL_ACCOUNT_NOWARN = 0x402cc0 | 0x40000  # + __GFP_COMP, as pipe_resize_ring
GFP_KERNEL = 0xcc0
GFP_ATOMIC = 0xa20
GFP_NOWAIT = 0x800
RETRY_MAYFAIL = 0x4000
THISNODE = 0x200000


def sample(name: str, zoneinfo: str | None = None):
    buddy = parse_buddyinfo((PROCFS / f"buddyinfo.{name}").read_text())
    zones = parse_zoneinfo((PROCFS / f"zoneinfo.{zoneinfo or name}").read_text()) \
        if zoneinfo is not False else None
    return build_sample(1_000_000, buddy, zones)


LIVE = sample("live-6.18-x86")
SOS = sample("sosreport-x86")


def test_causes_are_a_bounded_tuple_for_the_exporter():
    assert CAUSES == ("memcg-limit", "no-free-block", "watermark", "node-or-policy", "gave-up",
                      "unknown")


def test_request_sees_single_bits_behind_composites():
    req = Request(4, GFP_KERNEL_ACCOUNT_NOWARN, T618)
    assert {"__GFP_ACCOUNT", "__GFP_DIRECT_RECLAIM", "__GFP_NOWARN", "__GFP_COMP"} <= req.flags
    assert req.need_bytes == 4096 << 4


def test_zone_checks_are_computed_once_per_sample_and_request():
    """A storm's failures share the zone checks of the sample they cite; a newer sample
    or another request gets its own, and the shared ones equal fresh ones."""
    checks = ZoneChecks()
    req, other = Request(4, GFP_KERNEL_ACCOUNT_NOWARN, T618), Request(10, GFP_ATOMIC, T618)
    first = classify(req, LIVE, 1.0, zone_checks=checks)
    again = classify(req, LIVE, 7.0, zone_checks=checks)
    assert again.evidence["zones"] is first.evidence["zones"]
    assert again.evidence["sample_age_ms"] == 7.0 and first.evidence["sample_age_ms"] == 1.0
    assert first.evidence == classify(req, LIVE, 1.0).evidence  # uncached
    atomic = classify(other, LIVE, 1.0, zone_checks=checks)
    assert atomic.evidence["zones"] == classify(other, LIVE, 1.0).evidence["zones"]
    assert atomic.evidence["zones"] != first.evidence["zones"]  # order 10 vs 4
    newer = classify(req, SOS, 1.0, zone_checks=checks)
    assert newer.evidence["zones"] is not first.evidence["zones"]
    assert newer.evidence == classify(req, SOS, 1.0).evidence


# -- memcg-limit ------------------------------------------------------------------------

def v1_provoke() -> list:
    return read_chain(MEMCG / "v1-provoke", "/paftrace-provoke", 1)


def test_v1_capture_reads_the_provokers_cgroup_not_the_limitless_root():
    [leaf] = v1_provoke()
    assert (leaf.path, leaf.usage, leaf.limit, leaf.limit_events) == (
        "/paftrace-provoke", 22921216, 23089152, 57)
    [root] = read_chain(MEMCG / "v1-provoke", "/", 1)
    assert root.path == "/" and root.limit is None  # 9223372036854771712 = no limit


def test_memcg_at_limit_is_the_cause_although_blocks_are_free():
    # Order 6 needs 256 KiB; the captured cgroup had 164 KiB left under its limit.
    got = classify(Request(6, GFP_KERNEL_ACCOUNT_NOWARN, T618), LIVE, 3.0,
                   MemcgFacts(v1_provoke()))
    assert got.cause == MEMCG_LIMIT
    ev = got.evidence["memcg"]
    assert ev["binding"]["path"] == "/paftrace-provoke"
    assert ev["binding"]["usage"] == 22921216 and ev["binding"]["limit"] == 23089152
    assert ev["basis"] == "usage within one block of the limit"
    assert "usage 21.9 MiB of 22.0 MiB" in got.sentence and "not fragmentation" in got.sentence
    assert "memory.failcnt 57" in got.sentence
    # The buddy lists are part of the evidence: blocks were there.
    assert sum(z["blocks_at_or_above"] for z in got.evidence["zones"]) > 0


def test_memcg_counter_rising_decides_even_with_headroom():
    chain = v1_provoke()
    before = dataclasses.replace(chain[0], limit_events=50)
    got = classify(Request(4, GFP_KERNEL_ACCOUNT_NOWARN, T618), LIVE, 3.0,
                   MemcgFacts(chain, {before.path: before}))
    assert got.cause == MEMCG_LIMIT
    assert got.evidence["memcg"]["basis"] == "memory.failcnt rose at /paftrace-provoke"
    levels = got.evidence["memcg"]["levels"]
    assert levels[0]["limit_events_before"] == 50 and levels[0]["limit_events"] == 57


def test_v2_container_memory_events_max_rising():
    chain = read_chain(MEMCG / "v2-postgres-384m", "/postgres", 2)
    assert chain[0].usage == 394907648 and chain[0].limit == 402653184
    assert chain[0].limit_events == 13693 and chain[0].events_name == "memory.events max"
    before = dataclasses.replace(chain[0], limit_events=13600)
    got = classify(Request(4, GFP_KERNEL_ACCOUNT_NOWARN, T618), LIVE, 1.0,
                   MemcgFacts(chain, {"/postgres": before}))
    assert got.cause == MEMCG_LIMIT and "memory.events max 13693" in got.sentence
    assert "of 384.0 MiB" in got.sentence


def test_memcg_limit_hit_before_and_free_memory_is_said_to_be_the_basis():
    got = classify(Request(4, GFP_KERNEL_ACCOUNT_NOWARN, T618), LIVE, 1.0,
                   MemcgFacts(read_chain(MEMCG / "v2-postgres-384m", "/postgres", 2)))
    assert got.cause == MEMCG_LIMIT
    assert "not seen rising" in got.evidence["memcg"]["basis"]
    assert "not seen rising" in got.sentence


def test_memcg_is_not_the_cause_without_gfp_account_or_in_interrupts():
    facts = MemcgFacts(v1_provoke())
    got = classify(Request(6, GFP_KERNEL, T618), LIVE, 1.0, facts)
    assert got.cause != MEMCG_LIMIT and "memcg" not in got.evidence
    irq = classify(Request(6, GFP_KERNEL_ACCOUNT_NOWARN, T618, context="softirq"), LIVE, 1.0,
                   facts)
    assert irq.cause != MEMCG_LIMIT and "interrupts charge" in irq.evidence["memcg"]["note"]


def test_gfp_account_with_room_but_no_memcg_state_is_unknown_and_says_why():
    got = classify(Request(2, GFP_KERNEL_ACCOUNT_NOWARN, T618), LIVE, 1.0,
                   MemcgFacts(missing="process 42 exited before its memory cgroup could be read"))
    assert got.cause == UNKNOWN
    assert "process 42 exited" in got.sentence
    assert any("process 42 exited" in m for m in got.evidence["missing"])


# -- zones: eligibility, blocks, watermarks -----------------------------------------------

def test_only_the_zones_the_gfp_mask_allows_count():
    # GFP_KERNEL|GFP_DMA|__GFP_NORETRY order 10: DMA has no order-10 block (SOS: 3 of them;
    # LIVE: 3), DMA32 and Normal do not count for a GFP_DMA request.
    req = Request(10, GFP_KERNEL | 0x1 | 0x10000, T618)
    zones = classify(req, LIVE).evidence["zones"]
    assert [z["zone"] for z in zones] == ["DMA"]


NUMA = sample("numa4-x86-3tb", zoneinfo=False)
NODE1_ONLY = build_sample(0, [z for z in parse_buddyinfo(
    (PROCFS / "buddyinfo.numa4-x86-3tb").read_text()) if z.node == 1])


def test_no_free_block_in_any_allowed_zone():
    # Node 1 of the 3 TB machine: Normal only, nothing of order 9 or 10 free.
    got = classify(Request(10, GFP_KERNEL | RETRY_MAYFAIL, T618), NODE1_ONLY)
    assert got.cause == NO_FREE_BLOCK and got.evidence["shortage"] == NO_FREE_BLOCK
    assert got.sentence.startswith("no free block >= order 10 in any allowed zone")
    assert "N1/Normal" in got.sentence


def test_node_restriction_when_other_nodes_had_room():
    # The whole machine: node 2 had 54266 and node 3 188034 order-10 blocks.
    cpuset = NodeRestriction(frozenset({1}), "cpuset mems_allowed of the task")
    got = classify(Request(10, GFP_KERNEL | RETRY_MAYFAIL, T618), NUMA, restriction=cpuset)
    assert got.cause == NODE_OR_POLICY
    assert "node(s) 1 by cpuset" in got.sentence and "N2/Normal 54266" in got.sentence
    assert got.evidence["nodes"] == {"allowed": [1], "reason": "cpuset mems_allowed of the task"}
    thisnode = NodeRestriction(frozenset({1}), "__GFP_THISNODE (node 1 of CPU 7)")
    got = classify(Request(10, GFP_ATOMIC | THISNODE, T618), NUMA, restriction=thisnode)
    assert got.cause == NODE_OR_POLICY and "__GFP_THISNODE" in got.sentence
    # Node 0 has DMA32 order-10 blocks: a restriction to node 0 leaves room.
    node0 = NodeRestriction(frozenset({0}), "__GFP_THISNODE (node 0 of CPU 0)")
    got = classify(Request(10, GFP_ATOMIC | THISNODE, T618), NUMA, restriction=node0)
    assert got.cause == UNKNOWN


def test_every_node_short_is_the_shortage_not_the_restriction():
    # Order 10 with GFP_DMA: only node 0 has a DMA zone, and it has 2 order-10 blocks;
    # the 64K-page arm64 machine's DMA zone has none of order 12.
    arm = sample("numa4-arm64-64k", zoneinfo=False)
    req = Request(12, GFP_KERNEL | 0x1 | RETRY_MAYFAIL, T618, page_size=65536)
    got = classify(req, arm, restriction=NodeRestriction(frozenset({0}), "cpuset"))
    assert got.cause == NO_FREE_BLOCK
    assert [z["zone"] for z in got.evidence["zones"]] == ["DMA"]


def test_watermark_when_blocks_exist_but_the_zone_is_below_min():
    # zoneinfo.sosreport-x86-belowmin: the sosreport capture with Normal's `pages free`
    # lowered below its min (SOURCES.md); buddyinfo of the same machine.
    normal_only = build_sample(0, [z for z in parse_buddyinfo(
        (PROCFS / "buddyinfo.sosreport-x86").read_text()) if z.zone == "Normal"],
        parse_zoneinfo((PROCFS / "zoneinfo.sosreport-x86-belowmin").read_text()))
    got = classify(Request(2, GFP_KERNEL | RETRY_MAYFAIL, T618), normal_only)
    assert got.cause == WATERMARK
    normal = got.evidence["zones"][0]
    assert normal["blocks_at_or_above"] > 0 and normal["watermark_ok"] is False
    assert normal["threshold"] == normal["min"] == 8684 and normal["usable_pages"] == 7997
    assert "min watermark, no reserve access" in got.sentence
    # GFP_ATOMIC may go down to 3/8 of min (6.3+: ALLOC_MIN_RESERVE then ALLOC_NON_BLOCK).
    atomic = classify(Request(2, GFP_ATOMIC, T618), normal_only)
    assert atomic.evidence["watermark_rule"]["alloc_flags"] == ["ALLOC_MIN_RESERVE",
                                                               "ALLOC_NON_BLOCK"]
    normal = atomic.evidence["zones"][0]
    assert normal["threshold"] == 8684 - 4342 - 1085 and normal["watermark_ok"] is True


def test_lowmem_reserve_of_the_highest_allowed_zone_counts():
    # DMA32 must keep protection[Normal] = 4065 pages for a request that may use Normal.
    dma32 = next(z for z in classify(Request(0, GFP_KERNEL, T618), SOS).evidence["zones"]
                 if z["zone"] == "DMA32")
    assert dma32["lowmem_reserve"] == 4065
    only_dma32 = classify(Request(0, GFP_KERNEL | 0x4, T618), SOS).evidence["zones"]
    assert next(z for z in only_dma32 if z["zone"] == "DMA32")["lowmem_reserve"] == 0


def test_watermark_rules_per_kernel_generation():
    old = classify(Request(0, GFP_ATOMIC, T510), LIVE).evidence["watermark_rule"]
    assert old["alloc_flags"] == ["ALLOC_HIGH", "ALLOC_HARDER"]
    assert old["rule_set"].startswith("v4.4-v6.2")
    new = classify(Request(0, GFP_NOWAIT, T618), LIVE).evidence["watermark_rule"]
    assert new["alloc_flags"] == ["ALLOC_NON_BLOCK"] and "no reserve access" not in new["rule"]
    assert new["rule"].startswith("min:")  # GFP_NOWAIT: no access to the min reserve (6.3+)


# -- gave-up ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mask,order,why", [
    (GFP_KERNEL | 0x10000, 2, "__GFP_NORETRY"),
    (GFP_NOWAIT, 0, "GFP_NOWAIT-like"),
    (GFP_KERNEL, 4, "costly order 4"),
])
def test_requests_that_give_up_early(mask, order, why):
    assert why in opportunistic(Request(order, mask, T618))


@pytest.mark.parametrize("mask,order", [(GFP_ATOMIC, 4), (GFP_KERNEL, 3),
                                        (GFP_KERNEL | RETRY_MAYFAIL, 4),
                                        (GFP_KERNEL | 0x8000, 4)])  # __GFP_NOFAIL
def test_requests_that_try_as_hard_as_they_may(mask, order):
    assert opportunistic(Request(order, mask, T618)) is None


def test_gave_up_carries_the_shortage_and_the_stall():
    stall = {"window_ms": 1000.0,
             "direct_compaction": {"count": 2, "total_ms": 40.2, "outcome": "no_page",
                                   "status": "complete", "priority": "async"},
             "direct_reclaim": {"count": 1, "total_ms": 3.1}}
    got = classify(Request(10, GFP_KERNEL, T618), NODE1_ONLY, stall=stall)
    assert got.cause == GAVE_UP
    assert got.evidence["shortage"] == NO_FREE_BLOCK
    assert "costly order 10" in got.sentence
    assert "40.2 ms direct compaction (2x, no_page/complete)" in got.sentence
    assert got.evidence["stall"]["direct_reclaim"]["total_ms"] == 3.1


def test_without_a_memory_sample_the_cause_is_unknown():
    got = classify(Request(4, GFP_ATOMIC, T618), None)
    assert got.cause == UNKNOWN and got.evidence["missing"]


def test_evidence_is_json_serialisable_with_the_sentence():
    import json

    got = classify(Request(6, GFP_KERNEL_ACCOUNT_NOWARN, T618), LIVE, 3.0,
                   MemcgFacts(v1_provoke()))
    out = json.loads(json.dumps(got.to_json()))
    assert out["sentence"] == got.sentence and out["order"] == 6


def test_memcg_advice_is_about_the_containers_limit_never_min_free_kbytes():
    from paftrace.triage import cause_advice

    got = classify(Request(6, GFP_KERNEL_ACCOUNT_NOWARN, T618), LIVE, 3.0,
                   MemcgFacts(v1_provoke()))
    unit = {"kind": "docker", "name": "4f1c3a9b2d7e", "pod": None}
    advice = cause_advice(got.cause, got.evidence, {"unit": unit})
    first, evidence = advice[0]
    assert first.startswith("the container is at its memory limit: docker update --memory "
                            "27.5 MiB 4f1c3a9b2d7e")
    assert "usage 21.9 MiB of limit 22.0 MiB, 232.0 KiB of it kernel memory" in evidence
    texts = " ".join(text for text, _ in advice)
    assert "raise vm.min_free_kbytes" not in texts and "do not help" in texts
    service = cause_advice(got.cause, got.evidence,
                           {"unit": {"kind": "systemd-service", "name": "a.service"}})
    assert "systemctl set-property a.service MemoryMax=" in service[0][0]


@pytest.mark.parametrize("cause,needle", [("no-free-block", "compact_memory"),
                                          ("watermark", "watermark_scale_factor"),
                                          ("gave-up", "gives up early by design"),
                                          ("node-or-policy", "cpuset.mems"),
                                          ("unknown", "collect what is missing")])
def test_every_cause_has_advice(cause, needle):
    from paftrace.triage import cause_advice

    assert needle in " ".join(t for t, _ in cause_advice(cause, {"missing": ["x"]}))


def _sample_from_record(rec: dict):
    """A `buddyinfo` JSON record (what the tracer printed) back into a sample."""
    from paftrace.procfs.sampler import MemorySample, ZoneSample
    from paftrace.procfs.zoneinfo import ZoneInfo

    zones = []
    for z in rec["zones"]:
        attrs = {"pages free": z["pages_free"], **z["watermarks"], "managed": z["managed"]}
        zones.append(ZoneSample(z["node"], z["zone"], tuple(z["free"]),
                                ZoneInfo(z["node"], z["zone"], attrs, tuple(z["protection"]))))
    return MemorySample(rec["ts_ns"], zones)


def test_a_real_guest_failure_reclassified_from_its_own_trace():
    # The 6.1 QEMU guest of the kernel matrix: pafwarn's GFP_KERNEL|GFP_DMA|__GFP_NORETRY
    # order-10 failure, after it had taken DMA's order-10 blocks; the tracer's samples
    # (1 s apart) bracket it, the nearer one 74 ms after it, when the blocks were back.
    import json

    from paftrace.gfp_tables import table_for_kernel

    lines = [json.loads(x) for x in (DATA / "kernel_matrix" / "guest-6.1-live" /
                                     "trace.out").read_text().splitlines() if x.strip()]
    failure = next(x for x in lines if x.get("type") == "failure" and x["order"] == 10)
    samples = [x for x in lines if x.get("type") == "buddyinfo"]
    nearest = min(samples, key=lambda s: abs(s["ts_ns"] - failure["ts_ns"]))
    req = Request(10, int(failure["gfp"], 16), table_for_kernel("6.1"))
    got = classify(req, _sample_from_record(nearest),
                   (failure["ts_ns"] - nearest["ts_ns"]) / 1e6, stall=failure["stall"])
    assert got.cause == GAVE_UP and "__GFP_NORETRY" in got.sentence
    assert [z["zone"] for z in got.evidence["zones"]] == ["DMA"]  # not DMA32
    assert got.evidence["shortage"] is None and "the shortage was brief" in got.sentence
    assert "7.6 ms direct compaction (1x, no_page)" in got.sentence


def test_lowmem_reserve_index_counts_zones_a_node_lacks():
    # Node 1 of a 2-node machine has only Normal; zoneinfo lists DMA, DMA32, Normal,
    # Movable, Device for every node, so Normal is zone_idx 2 there too.
    zoneinfo = parse_zoneinfo((PROCFS / "zoneinfo.sosreport-x86").read_text())
    live = build_sample(0, parse_buddyinfo((PROCFS / "buddyinfo.sosreport-x86").read_text()),
                        zoneinfo)
    assert live.zone_order == ("DMA", "DMA32", "Normal", "Movable", "Device")
    from paftrace.cause import _zone_index

    normal = live.zone(0, "Normal")
    assert _zone_index(live, normal) == 2


def test_a_refused_charge_seen_in_the_kernel_decides_without_the_cgroup():
    # The memcg charge kretprobe saw the refusal; the process and its cgroup were gone.
    got = classify(Request(4, GFP_KERNEL_ACCOUNT_NOWARN, T618), LIVE, 1.0,
                   MemcgFacts(missing="process 9 exited", charge_refused=True))
    assert got.cause == MEMCG_LIMIT
    assert got.evidence["memcg"]["charge_refused"] is True
    assert "refused the charge" in got.sentence and "could not be read" in got.sentence


def test_no_refused_charge_in_the_kernel_rules_the_cgroup_out():
    # At its limit by the counters, but the kernel saw the charge go through: the
    # allocator itself failed (here: a costly order that gave up).
    got = classify(Request(6, GFP_KERNEL_ACCOUNT_NOWARN, T618), LIVE, 1.0,
                   MemcgFacts(v1_provoke(), charge_refused=False))
    assert got.cause == GAVE_UP
    assert "saw no refused charge" in got.evidence["memcg"]["note"]
