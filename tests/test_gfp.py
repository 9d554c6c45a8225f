"""gfp decoding from the running kernel's own tracepoint format."""

from __future__ import annotations

import pytest

from paftrace.cexpr import CExprError, evaluate
from paftrace.gfp import GfpTable, parse_mask, table_from_print_fmt
from paftrace.tracefs import TraceFs, parse_format
from tests.helpers import DATA, needs_root

FMT_618 = parse_format((DATA / "formats" / "mm_page_alloc-6.18.format").read_text())


@pytest.fixture(scope="module")
def table() -> GfpTable:
    return table_from_print_fmt(FMT_618.print_fmt)


@pytest.mark.parametrize("expr,value", [
    ("( unsigned long)(( gfp_t)((((1UL))) << (10)))", 0x400),
    ("(( gfp_t)0x20u)|(( gfp_t)0x800u)", 0x820),
    ("~0UL", (1 << 64) - 1),
    ("(1 << 4) - 1", 15),
    ("0x10 & ~(( gfp_t)0x10)", 0),
    ("(__force gfp_t)0x400000u", 0x400000),
])
def test_c_expressions(expr, value):
    assert evaluate(expr) == value


@pytest.mark.parametrize("expr", ["___GFP_DMA_BIT", "foo(1)", "", "1 +", "(1"])
def test_unevaluable_expressions_raise(expr):
    with pytest.raises(CExprError):
        evaluate(expr)


def test_table_is_read_in_kernel_order(table):
    names = [name for _, name in table.entries]
    assert names[:3] == ["GFP_TRANSHUGE", "GFP_TRANSHUGE_LIGHT", "GFP_HIGHUSER_MOVABLE"]
    assert names.index("GFP_KERNEL_ACCOUNT") < names.index("GFP_KERNEL")
    assert table.skipped == [] and table.zero_name == "none"


@pytest.mark.parametrize("mask,names", [
    # Values as 6.18 prints them (docs/KERNEL-NOTES.md §3.3, 6.9-6.18 column).
    (0x400CC0, ["GFP_KERNEL_ACCOUNT"]),
    (0xCC0, ["GFP_KERNEL"]),
    (0x820, ["GFP_ATOMIC"]),
    (0x2800, ["GFP_NOWAIT"]),
    (0x1C24CA, ["GFP_TRANSHUGE"]),
    (0x442DC0, ["GFP_KERNEL_ACCOUNT", "__GFP_ZERO", "__GFP_NOWARN", "__GFP_COMP"]),
    (0x0, ["none"]),
    # Unknown bits are kept, as the kernel prints them.
    (0x8000CC0, ["GFP_KERNEL", "0x8000000"]),
])
def test_decode_matches_the_kernel(table, mask, names):
    assert table.decode(mask) == names


def test_flag_values_by_name(table):
    assert table.value_of("__GFP_NOWARN") == 0x2000
    assert table.value_of("GFP_NOWARN") == 0x2000  # 3.10-style name without underscores
    assert table.value_of("__GFP_DIRECT_RECLAIM") == 0x400
    assert table.has(0x442DC0, "__GFP_ACCOUNT")
    assert not table.has(0x820, "__GFP_DIRECT_RECLAIM")


@needs_root
def test_live_kernel_table_agrees_with_capture():
    fmt = TraceFs().read_format("kmem", "mm_page_alloc")
    assert fmt is not None, "tracefs is mounted by the test run (root)"
    live = table_from_print_fmt(fmt.print_fmt)
    assert live.decode(0x400CC0) == ["GFP_KERNEL_ACCOUNT"]
    assert len(live.entries) > 20


def test_parse_mask_forms():
    assert parse_mask("0x2080020") == 0x2080020
    assert parse_mask("0x400cc0(GFP_KERNEL_ACCOUNT)") == 0x400CC0
    assert parse_mask("32") == 32
    with pytest.raises(ValueError):
        parse_mask("GFP_KERNEL")


def test_table_requires_the_flag_table():
    with pytest.raises(ValueError):
        table_from_print_fmt('"order=%d", REC->order')
