"""Built-in gfp tables against docs/KERNEL-NOTES.md §3.3 and against the running kernel."""

from __future__ import annotations

import pytest

from paftrace.gfp import table_from_print_fmt
from paftrace.gfp_tables import ERAS, era_for_kernel, parse_version, table_for_kernel
from paftrace.tracefs import TraceFs
from tests.helpers import needs_root

# (kernel, composite, value) from docs/KERNEL-NOTES.md §3.3, read in the kernel trees listed there.
FACTS_COMPOSITES = [
    ("2.6.32", "GFP_ATOMIC", 0x20), ("2.6.32", "GFP_KERNEL", 0xd0),
    ("3.10", "GFP_TRANSHUGE", 0x4352da), ("4.4", "GFP_KERNEL", 0x24000c0),
    ("4.4", "GFP_TRANSHUGE", 0x4352ca), ("4.9", "GFP_KERNEL_ACCOUNT", 0x25000c0),
    ("4.9", "GFP_TRANSHUGE_LIGHT", 0x342ca), ("4.14", "GFP_ATOMIC", 0x1080020),
    ("4.14", "GFP_NOWAIT", 0x1000000), ("4.19", "GFP_ATOMIC", 0x480020),
    ("4.19", "GFP_TRANSHUGE", 0x2342ca), ("5.4", "GFP_ATOMIC", 0xa20),
    ("5.10", "GFP_KERNEL_ACCOUNT", 0x400cc0), ("5.15", "GFP_HIGHUSER_MOVABLE", 0x1100cca),
    ("5.15", "GFP_TRANSHUGE_LIGHT", 0x11c20ca), ("6.1", "GFP_HIGHUSER_MOVABLE", 0x100cca),
    ("6.6", "GFP_ATOMIC", 0x820), ("6.6", "GFP_NOWAIT", 0x800), ("6.9", "GFP_NOWAIT", 0x2800),
    ("6.18", "GFP_TRANSHUGE", 0x1c24ca),
]


@pytest.mark.parametrize("kernel,name,value", FACTS_COMPOSITES)
def test_composites_match_kernel_facts(kernel: str, name: str, value: int) -> None:
    table = table_for_kernel(kernel)
    assert any(v == value and n == name for v, n in table.entries)
    assert table.decode(value) == [name]


def test_every_table_cites_its_kernel_version() -> None:
    for era in ERAS:
        assert f"Linux {era.label}" in table_for_kernel(".".join(map(str, era.version))).source


@pytest.mark.parametrize("version,label", [("2.6.32-358.el6", "2.6.32"),
                                           ("3.10.0-1062.el7", "3.10"), ("4.12.0-rc3", "4.9"),
                                           ("5.15.0-91-generic", "5.14"),
                                           ("6.18.44", "6.12"), ("2.4.20", "2.6.32")])
def test_era_selection(version: str, label: str) -> None:
    assert era_for_kernel(version).label == label


def test_unknown_bits_are_kept() -> None:
    # bit 30 exists in no era: it must come back as hex, not vanish
    for kernel in ("2.6.32", "4.9", "6.12"):
        assert table_for_kernel(kernel).decode(0x40000000 | 0x20)[-1] == "0x40000000"


def test_old_kernels_reclaim_bit_is_wait() -> None:
    table = table_for_kernel("3.10")
    assert table.decode(0xd0) == ["GFP_KERNEL"] and table.has(0xd0, "__GFP_WAIT")


def test_parse_version_rejects_junk() -> None:
    assert parse_version("abc") is None and parse_version("4.19.0-6-amd64") == (4, 19, 0)


@needs_root
def test_builtin_newest_agrees_with_running_kernel() -> None:
    fmt = TraceFs().read_format("kmem", "mm_page_alloc")
    assert fmt is not None, "tracefs is mounted by the test run (root)"
    running = table_from_print_fmt(fmt.print_fmt)
    builtin = table_for_kernel("6.18")
    for mask in (0x820, 0xcc0, 0x400cc0, 0x1c24ca, 0x2800, 0x2a20, 0x140cca, 0x1000000):
        assert set(running.decode(mask)) == set(builtin.decode(mask)), hex(mask)
