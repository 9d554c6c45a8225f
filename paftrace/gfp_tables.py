"""Built-in gfp flag tables for kernels whose format file we cannot read.

One table per era in which gfp bit values or the kernel's own flag table
changed (include/linux/gfp.h, gfp_types.h from 6.0, read in the kernel
trees listed in docs/KERNEL-NOTES.md §0; the values are in its §3).
Each table lists composite masks first, then single flags, in the order the
kernel's ``show_gfp_flags()`` / ``%pGg`` walks them, so greedy decoding gives
the same names the kernel prints. Bits the kernel table omits (2.6.32 lacks
__GFP_FS, for instance) are appended after the kernel's own entries so that
no known bit is shown as a bare number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from paftrace.gfp import GfpTable

# Single-flag values per era (docs/KERNEL-NOTES.md §3.1). "*" in a name's comment there
# means config-dependent; such bits are named here because if they are set the
# name is the right one for that version.
_COMMON = {"DMA": 0x1, "HIGHMEM": 0x2, "DMA32": 0x4, "MOVABLE": 0x8, "HIGH": 0x20,
           "IO": 0x40, "FS": 0x80}
_OLD = {**_COMMON, "WAIT": 0x10, "RECLAIMABLE": 0x80000, "COLD": 0x100, "ZERO": 0x8000,
        "NOWARN": 0x200, "REPEAT": 0x400, "NOFAIL": 0x800, "NORETRY": 0x1000, "COMP": 0x4000,
        "NOMEMALLOC": 0x10000, "HARDWALL": 0x20000, "THISNODE": 0x40000}
_V2_6_32 = {**_OLD, "NOTRACK": 0x200000}
_V3_10 = {**_OLD, "NOTRACK": 0x200000, "MEMALLOC": 0x2000, "WRITE": 0x1000000,
          "KMEMCG": 0x100000, "NO_KSWAPD": 0x400000, "OTHER_NODE": 0x800000}
_V4_4_BASE = {**_COMMON, "RECLAIMABLE": 0x10, "COLD": 0x100, "ZERO": 0x8000, "NOWARN": 0x200,
              "NOFAIL": 0x800, "NORETRY": 0x1000, "MEMALLOC": 0x2000, "COMP": 0x4000,
              "NOMEMALLOC": 0x10000, "HARDWALL": 0x20000, "THISNODE": 0x40000,
              "ATOMIC": 0x80000, "NOTRACK": 0x200000, "DIRECT_RECLAIM": 0x400000,
              "OTHER_NODE": 0x800000, "WRITE": 0x1000000, "KSWAPD_RECLAIM": 0x2000000,
              "REPEAT": 0x400}
_V4_4 = {**_V4_4_BASE, "NOACCOUNT": 0x100000}
_V4_9 = {**_V4_4_BASE, "ACCOUNT": 0x100000}
_V4_14 = {**_COMMON, "RECLAIMABLE": 0x10, "COLD": 0x100, "ZERO": 0x8000, "NOWARN": 0x200,
          "RETRY_MAYFAIL": 0x400, "NOFAIL": 0x800, "NORETRY": 0x1000, "MEMALLOC": 0x2000,
          "COMP": 0x4000, "NOMEMALLOC": 0x10000, "HARDWALL": 0x20000, "THISNODE": 0x40000,
          "ATOMIC": 0x80000, "ACCOUNT": 0x100000, "DIRECT_RECLAIM": 0x400000,
          "WRITE": 0x800000, "KSWAPD_RECLAIM": 0x1000000, "NOLOCKDEP": 0x2000000}
_V4_19 = {**{k: v for k, v in _V4_14.items() if k != "COLD"}, "WRITE": 0x100,
          "DIRECT_RECLAIM": 0x200000, "KSWAPD_RECLAIM": 0x400000, "NOLOCKDEP": 0x800000}
_V5_4 = {**_COMMON, "RECLAIMABLE": 0x10, "ZERO": 0x100, "ATOMIC": 0x200,
         "DIRECT_RECLAIM": 0x400, "KSWAPD_RECLAIM": 0x800, "WRITE": 0x1000, "NOWARN": 0x2000,
         "RETRY_MAYFAIL": 0x4000, "NOFAIL": 0x8000, "NORETRY": 0x10000, "MEMALLOC": 0x20000,
         "COMP": 0x40000, "NOMEMALLOC": 0x80000, "HARDWALL": 0x100000, "THISNODE": 0x200000,
         "ACCOUNT": 0x400000, "NOLOCKDEP": 0x800000}
_V5_14 = {**_V5_4, "ZEROTAGS": 0x800000, "SKIP_KASAN_POISON": 0x1000000,
          "NOLOCKDEP": 0x2000000}
_V5_19 = {**_V5_4, "ZEROTAGS": 0x800000, "SKIP_ZERO": 0x1000000,
          "SKIP_KASAN_UNPOISON": 0x2000000, "SKIP_KASAN_POISON": 0x4000000,
          "NOLOCKDEP": 0x8000000}
_V6_6 = {**{k: v for k, v in _V5_19.items() if not k.startswith(("ATOMIC", "SKIP_KASAN"))},
         "SKIP_KASAN": 0x2000000, "NOLOCKDEP": 0x4000000}
_V6_9 = {**{k: v for k, v in _V5_4.items() if k not in ("ATOMIC", "NOLOCKDEP")},
         "ZEROTAGS": 0x800000, "NOLOCKDEP": 0x1000000}  # bit 24 only with CONFIG_LOCKDEP
# 6.12+: MEMCG=y selects SLAB_OBJ_EXT, so a distro x86 kernel (no LOCKDEP, no
# KASAN_HW_TAGS) puts __GFP_NO_OBJ_EXT in bit 24 (include/linux/gfp_types.h and
# init/Kconfig, 6.12-6.18; docs/KERNEL-NOTES.md §3.2).
_V6_12 = {**{k: v for k, v in _V6_9.items() if k != "NOLOCKDEP"}, "NO_OBJ_EXT": 0x1000000}

# Composite masks, in the kernel's table order, as formulas over single flags.
_RECLAIM = ("DIRECT_RECLAIM", "KSWAPD_RECLAIM")


def _composites(flags: dict[str, int], era: str) -> list[tuple[str, int]]:
    def mask(*names: str) -> int:
        return sum(flags.get(n, 0) for n in set(names))

    old = era in ("2.6.32", "3.10")
    reclaim = ("WAIT",) if old else _RECLAIM
    user = mask(*reclaim, "IO", "FS", "HARDWALL")
    highuser_movable = mask(*reclaim, "IO", "FS", "HARDWALL", "HIGHMEM", "MOVABLE",
                            "SKIP_KASAN_POISON" if era == "5.14" else "")
    kernel = mask(*reclaim, "IO", "FS")
    atomic = mask("HIGH", *(() if old else ("ATOMIC", "KSWAPD_RECLAIM")))
    out: list[tuple[str, int]] = []
    if era == "3.10":
        out.append(("GFP_TRANSHUGE", highuser_movable | mask("COMP", "NOMEMALLOC", "NORETRY",
                                                             "NOWARN", "NO_KSWAPD")))
    elif era == "4.4":
        out.append(("GFP_TRANSHUGE", (highuser_movable | mask("COMP", "NOMEMALLOC", "NORETRY",
                                                              "NOWARN"))
                    & ~flags["KSWAPD_RECLAIM"]))
    elif not old:
        light = (highuser_movable | mask("COMP", "NOMEMALLOC", "NOWARN")) & ~mask(*_RECLAIM)
        out += [("GFP_TRANSHUGE", light | flags["DIRECT_RECLAIM"]),
                ("GFP_TRANSHUGE_LIGHT", light)]
    out += [("GFP_HIGHUSER_MOVABLE", highuser_movable),
            ("GFP_HIGHUSER", user | flags["HIGHMEM"]), ("GFP_USER", user)]
    if era in ("2.6.32", "3.10", "4.4", "4.9"):
        out.append(("GFP_TEMPORARY", kernel | flags["RECLAIMABLE"]))
    if "ACCOUNT" in flags:
        out.append(("GFP_KERNEL_ACCOUNT", kernel | flags["ACCOUNT"]))
    out += [("GFP_KERNEL", kernel), ("GFP_NOFS", mask(*reclaim, "IO")),
            ("GFP_ATOMIC", atomic), ("GFP_NOIO", mask(*reclaim))]
    if not old and era != "4.4":
        nowait = mask("KSWAPD_RECLAIM", "NOWARN" if era in ("6.9", "6.12") else "")
        out += [("GFP_NOWAIT", nowait), ("GFP_DMA", flags["DMA"]),
                ("GFP_DMA32", flags["DMA32"])]
    return out


# Single-flag order of each era's table (the kernel's own order, then extras).
_ORDER_2_6 = ["HIGH", "WAIT", "IO", "COLD", "NOWARN", "REPEAT", "NOFAIL", "NORETRY", "COMP",
              "ZERO", "NOMEMALLOC", "HARDWALL", "THISNODE", "RECLAIMABLE", "MOVABLE"]
_ORDER_3_10 = _ORDER_2_6 + ["NOTRACK", "NO_KSWAPD", "OTHER_NODE"]
_ORDER_4_4 = [n.replace("WAIT", "ATOMIC") for n in _ORDER_3_10 if n != "NO_KSWAPD"]
_ORDER_4_4 = _ORDER_4_4[:-1] + ["DIRECT_RECLAIM", "KSWAPD_RECLAIM", "OTHER_NODE"]
# include/trace/events/mmflags.h (4.9 → 6.6); 6.9+ moved to bit order but the
# decoded set is the same because single flags do not overlap.
_ORDER_MMFLAGS = ["HIGHMEM", "HIGH", "ATOMIC", "IO", "FS", "COLD", "NOWARN", "REPEAT",
                  "RETRY_MAYFAIL", "NOFAIL", "NORETRY", "COMP", "ZERO", "NOMEMALLOC", "MEMALLOC",
                  "HARDWALL", "THISNODE", "RECLAIMABLE", "MOVABLE", "ACCOUNT", "NOTRACK",
                  "WRITE", "RECLAIM", "DIRECT_RECLAIM", "KSWAPD_RECLAIM", "OTHER_NODE",
                  "NOLOCKDEP", "ZEROTAGS", "SKIP_ZERO", "SKIP_KASAN", "SKIP_KASAN_UNPOISON",
                  "SKIP_KASAN_POISON", "NO_OBJ_EXT"]
_EXTRAS = ["DMA", "HIGHMEM", "DMA32", "FS", "MEMALLOC", "KMEMCG", "WRITE", "NOACCOUNT"]


@dataclass(frozen=True)
class Era:
    version: tuple[int, int]    # first kernel this table is used for
    label: str
    flags: dict[str, int]
    order: list[str]
    prefix: str                 # "GFP_" in the 2.6.32-4.4 trace tables, "__GFP_" later
    zero_name: str
    source: str


_TREES = "bit values from include/linux/gfp.h of the {} source tree"
ERAS: list[Era] = [
    Era((2, 6), "2.6.32", _V2_6_32, _ORDER_2_6, "GFP_", "GFP_NOWAIT",
        "Linux 2.6.32 include/trace/events/kmem.h show_gfp_flags; " + _TREES.format("2.6.32.70")),
    Era((3, 0), "3.10", _V3_10, _ORDER_3_10, "GFP_", "GFP_NOWAIT",
        "Linux 3.10 include/trace/events/gfpflags.h; " + _TREES.format("3.10.105")),
    Era((4, 4), "4.4", _V4_4, _ORDER_4_4, "GFP_", "GFP_NOWAIT",
        "Linux 4.4 include/trace/events/gfpflags.h; " + _TREES.format("4.4.155")),
    Era((4, 9), "4.9", _V4_9, _ORDER_MMFLAGS, "__GFP_", "none",
        "Linux 4.9 include/trace/events/mmflags.h; " + _TREES.format("4.9.0")),
    Era((4, 14), "4.14", _V4_14, _ORDER_MMFLAGS, "__GFP_", "none",
        "Linux 4.14 include/trace/events/mmflags.h; " + _TREES.format("4.14.177")),
    Era((4, 19), "4.19", _V4_19, _ORDER_MMFLAGS, "__GFP_", "none",
        "Linux 4.19 include/trace/events/mmflags.h; " + _TREES.format("4.19.78")),
    Era((5, 4), "5.4", _V5_4, _ORDER_MMFLAGS, "__GFP_", "none",
        "Linux 5.4-5.11 include/linux/gfp.h; " + _TREES.format("5.4.286, 5.10.89, 5.11.0")),
    Era((5, 14), "5.14", _V5_14, _ORDER_MMFLAGS, "__GFP_", "none",
        "Linux 5.14/5.15 include/linux/gfp.h; " + _TREES.format("5.14-rc5, 5.15.85")),
    Era((5, 19), "5.19", _V5_19, _ORDER_MMFLAGS, "__GFP_", "none",
        "Linux 5.19/6.1 include/linux/gfp_types.h; " + _TREES.format("5.19.0, 6.1.20")),
    Era((6, 6), "6.6", _V6_6, _ORDER_MMFLAGS, "__GFP_", "none",
        "Linux 6.6 include/linux/gfp_types.h; " + _TREES.format("6.6.9")),
    Era((6, 9), "6.9", _V6_9, _ORDER_MMFLAGS, "__GFP_", "none",
        "Linux 6.9 include/linux/gfp_types.h (packed enum); " + _TREES.format("6.9.0")),
    Era((6, 12), "6.12", _V6_12, _ORDER_MMFLAGS, "__GFP_", "none",
        "Linux 6.12-6.18 include/linux/gfp_types.h, x86 distro config (SLAB_OBJ_EXT=y); "
        + _TREES.format("6.12.0, 6.14.0, 6.18.2")),
]


def build_table(era: Era) -> GfpTable:
    flags = dict(era.flags)
    if "DIRECT_RECLAIM" in flags:
        flags["RECLAIM"] = flags["DIRECT_RECLAIM"] | flags["KSWAPD_RECLAIM"]
    entries = [(value, name) for name, value in _composites(flags, era.label) if value]
    named = [n for n in era.order if n in flags]
    named += [n for n in _EXTRAS if n in flags and n not in named]
    entries += [(flags[n], era.prefix + n) for n in named]
    # 4.4 names the single __GFP_ATOMIC bit "GFP_ATOMIC", like the composite.
    return GfpTable(entries=entries, source=f"built-in table for Linux {era.label}+: "
                    f"{era.source}", zero_name=era.zero_name)


def parse_version(text: str) -> tuple[int, int, int] | None:
    """'4.19.0-6-amd64' -> (4, 19, 0); '2.6.32-358.el6' -> (2, 6, 32); junk -> None."""
    m = re.match(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def era_for_kernel(version: str | tuple[int, ...]) -> Era:
    """The newest era whose first version is not later than `version`."""
    parsed = parse_version(version) if isinstance(version, str) else tuple(version)
    if not parsed:
        raise ValueError(f"not a kernel version: {version!r}")
    chosen = ERAS[0]
    for era in ERAS:
        if parsed[:2] >= era.version:
            chosen = era
    return chosen


def table_for_kernel(version: str | tuple[int, ...]) -> GfpTable:
    """Built-in gfp table for a kernel version such as '5.15.0-91-generic'."""
    return build_table(era_for_kernel(version))


def newest_table() -> GfpTable:
    return build_table(ERAS[-1])

