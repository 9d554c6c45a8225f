"""What issue 19 made cheaper on the failure path and under --all, checked for the
same results, not for speed (scripts/bench measures that): decoding cached per
stack id, mask and triage key; JSON of shared parts cached; the memory sample
found from the newest; the --all slots merged with the hash map; the ring-buffer
wakeup batch size; and, as root, exact --all counts through the slots."""

from __future__ import annotations

import ctypes
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paftrace.decode import FailureDecoder
from paftrace.gfp import GfpTable
from paftrace.loader import PAGE_SIZE, RINGBUF_WAKE_FRACTION, ringbuf_wake_every
from paftrace.maps import merge_alloc_counts
from paftrace.procfs.sampler import MemorySample, MemorySampler
from paftrace.reclaim import StallLog
from paftrace.records import Failure, RawAllocKey, RawFailure
from paftrace.render.jsonl import JsonRenderer
from tests.helpers import needs_root, run_tracer

TABLE = GfpTable(entries=[(0x400, "__GFP_DIRECT_RECLAIM"), (0x2000, "__GFP_NOWARN")],
                 source="test")
STACKS = {1: ["kmalloc_large+0x1", "pipe_resize_ring+0x30", "do_fcntl+0x19b"],
          2: ["__alloc_pages+0x1", "net_rx_action+0x2", "handle_softirqs+0x3"]}


def raw(stack_id: int, gfp: int = 0x2400, ts_ns: int = 10**9, comm: bytes = b"storm"
        ) -> RawFailure:
    return RawFailure(ts_ns=ts_ns, gfp=gfp, pid=7, tid=8, cpu=1, order=4, stack_id=stack_id,
                      context=0, softirq_vec=0xff, comm=comm)


def counting_decoder() -> tuple[FailureDecoder, list[int]]:
    asked: list[int] = []

    def stack_of(stack_id: int) -> list[str]:
        asked.append(stack_id)
        return list(STACKS.get(stack_id, []))

    return FailureDecoder(TABLE, stack_of), asked


def test_a_stack_id_is_read_and_decoded_once():
    decoder, asked = counting_decoder()
    first = [decoder.decode(raw(1)) for _ in range(3)]
    second = decoder.decode(raw(2))
    assert asked == [1, 2]
    assert {f.requester for f in first} == {"pipe_resize_ring"}
    assert second.context == "softirq" and second.softirq == "NET_RX"  # from the stack


def test_cached_decoding_equals_fresh_decoding():
    cached, _ = counting_decoder()
    for stack_id, gfp in [(1, 0x2400), (2, 0x400), (1, 0x400), (1, 0x2400)]:
        fresh, _ = counting_decoder()
        assert cached.decode(raw(stack_id, gfp)) == fresh.decode(raw(stack_id, gfp))


def test_unreadable_stack_is_asked_again():
    """An id the map does not return (yet) is not remembered as empty."""
    decoder, asked = counting_decoder()
    decoder.decode(raw(99))
    decoder.decode(raw(99))
    assert asked == [99, 99]


def failure(**changes) -> Failure:
    base = Failure(ts_ns=5, cpu=0, pid=7, tid=8, comm="x\x1b[31m\"", order=4, gfp="0x2400",
                   gfp_flags=["__GFP_NOWARN", "0x400"], migratetype="Unmovable",
                   context="process", softirq=None, stack=["a+0x1", "b+0x2"],
                   requester="a", blame="x[7] in a", visibility="silent",
                   severity="expected", rule="r", alloc_latency_us=1.5,
                   stall={"window_ms": 1000.0}, buddyinfo={
                       "sample_ts_ns": 1, "order": 4, "zones": [{"zone": "Normal"}],
                       "sample_age_ms": 2.0})
    return replace(base, **changes)


text_values = st.text(max_size=12)


@given(comm=text_values, requester=st.none() | text_values, ts=st.integers(0, 2**64 - 1),
       zones=st.none() | st.lists(st.dictionaries(text_values, st.integers(), max_size=2),
                                  max_size=2),
       stall=st.none() | st.dictionaries(text_values, st.integers(), max_size=2),
       evidence=st.none() | st.fixed_dictionaries(
           {"sentence": text_values, "gfp_flags": st.lists(text_values, max_size=3)},
           optional={"zones": st.lists(st.dictionaries(text_values, st.integers(),
                                                       max_size=2), max_size=2),
                     "stall": st.dictionaries(text_values, st.integers(), max_size=2),
                     "watermark_rule": st.none()}))
def test_json_of_a_failure_is_what_json_dumps_gives(comm, requester, ts, zones, stall,
                                                    evidence):
    renderer = JsonRenderer()
    snapshot = None if zones is None else {"sample_ts_ns": 1, "order": 4, "zones": zones}
    f = failure(comm=comm, requester=requester, ts_ns=ts, buddyinfo=snapshot, stall=stall,
                cause_evidence=evidence)
    for _ in range(2):  # the second time from the caches
        assert json.loads(renderer.encode_failure(f)) == f.to_json()


def test_json_cache_follows_changed_call_site_fields():
    renderer = JsonRenderer()
    a, b = failure(), failure(rule="other", severity="harmful", stack=["c+0x3"])
    for f in (a, b, a):
        assert json.loads(renderer.encode_failure(f)) == f.to_json()


def sample(ts_ns: int) -> MemorySample:
    return MemorySample(ts_ns=ts_ns, zones=[])


@given(st.lists(st.integers(0, 10**6), min_size=0, max_size=30, unique=True),
       st.integers(-10, 10**6 + 10))
def test_nearest_sample_is_the_closest_in_time(times, ts):
    sampler = MemorySampler(interval=1.0)
    sampler.history.extend(sample(t) for t in sorted(times))
    found = sampler.nearest(ts)
    if not times:
        assert found is None
    else:
        assert abs(found.ts_ns - ts) == min(abs(t - ts) for t in times)


def test_no_stall_answer_is_shared_and_equal_to_the_computed_one():
    log = StallLog()
    a, b = log.stall_info(1, 10**9), log.stall_info(2, 2 * 10**9)
    assert a is b and a == StallLog._info([], 1_000_000_000)
    assert a["direct_reclaim"] == {"count": 0, "total_ms": 0.0}


def key(gfp: int, order: int = 0, ctx: int = 0, vec: int = 0xff) -> RawAllocKey:
    return RawAllocKey(gfp=gfp, order=order, context=ctx, softirq_vec=vec)


def test_slots_and_hash_entries_of_one_key_are_added():
    slots = [(key(0x1), 5), (key(0x1), 7), (key(0x2, order=3), 1)]  # two CPUs' slots
    hashed = [(key(0x1), 100), (key(0x3), 2)]
    merged = {(k.gfp, k.order, k.context, k.softirq_vec): n
              for k, n in merge_alloc_counts(slots, hashed)}
    assert merged == {(0x1, 0, 0, 0xff): 112, (0x2, 3, 0, 0xff): 1, (0x3, 0, 0, 0xff): 2}


def test_slot_key_differs_in_context_and_vector():
    merged = merge_alloc_counts([(key(0x1, ctx=1, vec=3), 1), (key(0x1, ctx=1, vec=4), 1)])
    assert len(merged) == 2


@pytest.mark.parametrize("pages,cpus", [(64, 2), (64, 256), (1, 1024), (4096, 1)])
def test_unannounced_records_stay_within_a_fraction_of_the_ring(pages, cpus):
    every = ringbuf_wake_every(pages, cpus)
    record = -(-(ctypes.sizeof(RawFailure) + 8) // 8) * 8  # + BPF_RINGBUF_HDR_SZ, aligned
    capacity = pages * PAGE_SIZE // record
    assert every >= 1
    assert every == 1 or every * cpus <= capacity // RINGBUF_WAKE_FRACTION


@needs_root
def test_all_counts_through_the_slots_match_the_per_order_counter(tmp_path):
    """Every order-0 allocation is counted once in --all's slots or hash map: their
    merged sum is the kernel's own per-order attempt counter (read moments apart)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts" / "bench-data"))
    import workloads as wl  # noqa: PLC0415 - the bench's storm.c

    exe = wl.build(tmp_path)
    run = run_tracer(["--order", "0", "--all"], lambda: wl.run(exe, "fault", 1.0))
    summary = run.lines[-1]
    assert summary["type"] == "summary", run.stderr
    counted = sum(r["count"] for r in summary["allocations"] if r["order"] == 0)
    order0 = summary["orders"]["0"]
    assert counted == pytest.approx(order0["attempts"] - order0["failures"], rel=0.01)


@pytest.fixture
def fake_proc(tmp_path: Path) -> Path:
    (tmp_path / "buddyinfo").write_text(
        "Node 0, zone   Normal    100     50     25     12      6      3      1      0      0"
        "      0      0\n")
    return tmp_path


def test_a_failure_far_from_every_sample_gets_a_fresh_one(fake_proc: Path):
    sampler = MemorySampler(interval=1.0, proc=str(fake_proc))
    now = time.monotonic_ns()
    sampler.history.append(sample(now - 900_000_000))  # just before the next periodic read
    got = sampler.near(now)
    assert got is sampler.history[-1] and got.ts_ns >= now and len(sampler.history) == 2
    assert got.zones[0].free[4] == 6  # read from the files, not a copy of the old one


def test_a_failure_near_a_sample_reads_nothing(fake_proc: Path):
    sampler = MemorySampler(interval=1.0, proc=str(fake_proc))
    now = time.monotonic_ns()
    old = sample(now - 300_000_000)
    sampler.history.append(old)
    assert sampler.near(now) is old and len(sampler.history) == 1


def test_a_backlog_of_old_failures_reads_once_per_half_interval(fake_proc: Path):
    sampler = MemorySampler(interval=1.0, proc=str(fake_proc))
    now = time.monotonic_ns()
    sampler.history.append(sample(now - 5_000_000_000))
    for back in range(40):  # failures from 4 s ago, decoded late
        sampler.near(now - 4_000_000_000 + back * 1_000_000)
    assert len(sampler.history) == 2
