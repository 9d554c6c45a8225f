"""paftrace/bpf/paftrace.h is the one source of the kernel/user contract.

The pure tests check the parse; the root test compiles the real program and
compares every layout Python derives with the one clang gave the BPF side, so
the two cannot diverge without a failing test.
"""

from __future__ import annotations

import ctypes
import re

from paftrace import contract
from paftrace.context import CONTEXTS, SYSTEM_VECTOR_NAMES
from paftrace.loader import bpf_source_path
from paftrace.reclaim import COUNTERS, ENDS, KINDS, RawStall
from paftrace.records import STAT_NAMES, RawAllocKey, RawFailure
from tests.helpers import needs_root


def layout(cls: type[ctypes.Structure]) -> list[tuple[str, int, int]]:
    return [(name, getattr(cls, name).offset, getattr(cls, name).size)
            for name, *_ in cls._fields_]


def test_python_names_come_from_the_header() -> None:
    assert STAT_NAMES == ("lost_records", "stack_errors", "aggregation_full",
                          "matched_failures", "sampled_stacks", "coalesced")
    assert CONTEXTS == ("process", "softirq", "hardirq", "nmi")
    assert SYSTEM_VECTOR_NAMES[0] == "local_timer" and len(SYSTEM_VECTOR_NAMES) == 9
    assert COUNTERS[0] == "direct_compact" and COUNTERS[-1] == "extfrag_agg_full"
    assert KINDS == ("direct_reclaim", "direct_compaction")
    assert ENDS == ("page", "no_page", "then_reclaim", "then_recompact")
    assert contract.constants()["WARN_WINDOW_NS"] == 100_000_000
    assert RawFailure is contract.struct("failure_event")
    assert RawAllocKey is contract.struct("alloc_key") and RawStall is contract.struct(
        "stall_event")


def test_record_sizes() -> None:
    assert ctypes.sizeof(RawFailure) == 88  # 72 + the cgroup id + memcg_refused, padded
    assert RawFailure.cgroup_id.offset == 72 and RawFailure.cgroup_id.size == 8
    assert RawFailure.memcg_refused.offset == 80
    assert ctypes.sizeof(RawStall) == 80
    assert ctypes.sizeof(contract.struct("alloc_stack_key")) == 24


def test_the_programs_keep_no_twin_of_the_contract() -> None:
    """Constants and records are defined in paftrace.h only."""
    for name in ("pagealloc.c", "reclaim.c"):
        source = bpf_source_path(name).read_text()
        assert '#include "paftrace.h"' in source
        for struct in contract.structs():
            assert not re.search(rf"^struct {struct} \{{", source, re.M), (name, struct)
        for macro in contract.constants():
            assert not re.search(rf"^#define {macro}\b", source, re.M), (name, macro)


def test_enumerations_must_be_dense() -> None:
    import pytest  # noqa: PLC0415

    with pytest.raises(ValueError, match="not 0..n-1"):
        contract.enumeration("C_", exclude=())  # C_SLOTS = 16 leaves a gap after 12


@needs_root
def test_layouts_equal_what_clang_compiled() -> None:
    from paftrace.loader import compile_program, import_bcc, prepare, program_text  # noqa: PLC0415
    from paftrace.options import TraceOptions  # noqa: PLC0415

    options = TraceOptions(order_min=4, order_max=4, trace_all=True)
    prepared = prepare(options)
    assert prepared.plan.reclaim is not None and prepared.plan.ringbuf
    bpf = compile_program(import_bcc(), *program_text(options, prepared))
    try:
        compiled = {
            "order_stat": bpf["order_stats"].Leaf._type_,  # per-CPU: one leaf per CPU
            "alloc_key": bpf["alloc_counts"].Key,
            "alloc_stack_key": bpf["alloc_stacks"].Key,
            "proc_stall": bpf["per_process"].Leaf._type_,
        }
        for name, bcc_type in compiled.items():
            assert layout(contract.struct(name)) == layout(bcc_type), name
            assert ctypes.sizeof(contract.struct(name)) == ctypes.sizeof(bcc_type), name
        # Records: bcc decodes ring/perf buffer data with the type clang saw at
        # ringbuf_reserve()/perf_submit(); ours must read the same bytes alike.
        for table, cls in (("failures", RawFailure), ("stalls", RawStall)):
            raw = cls()
            ctypes.memmove(ctypes.addressof(raw), bytes(range(1, ctypes.sizeof(cls) + 1)),
                           ctypes.sizeof(cls))
            seen = bpf[table].event(ctypes.addressof(raw))
            for field, *_ in cls._fields_:
                ours, theirs = getattr(raw, field), getattr(seen, field)
                if isinstance(ours, ctypes.Array):
                    ours, theirs = bytes(ours), bytes(theirs)
                assert ours == theirs, (table, field)
        assert len(bpf["stats"]) == contract.constants()["STAT_SLOTS"]
        assert len(bpf["counters"]) == contract.constants()["C_SLOTS"]
        assert len(bpf["fail_by_ctx"]) == len(CONTEXTS)
    finally:
        bpf.cleanup()
