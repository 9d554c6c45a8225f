"""System facts for an incident file: what the next reader needs to know about the machine.

Kernel, command line, memory and NUMA layout, every vm.* sysctl, the THP settings and
the NIC MTUs, read once at the start of a recording. Each reader tolerates a missing
file (containers, old kernels): what could not be read is listed in `unreadable`.
Roots are parameters so tests can point them at a fixture tree.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

# /sys/kernel/mm/transparent_hugepage (Documentation/admin-guide/mm/transhuge.rst):
# "enabled" and "defrag" decide whether page faults try order-9 allocations and how hard.
THP_FILES = ("enabled", "defrag", "shmem_enabled", "khugepaged/defrag",
             "khugepaged/pages_to_scan", "khugepaged/max_ptes_none")
MEMINFO_FIELDS = ("MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapTotal",
                  "SwapFree", "AnonHugePages", "Slab", "SUnreclaim", "KernelStack",
                  "PageTables", "HugePages_Total", "Hugepagesize")
_SELECTED = re.compile(r"\[([^\]]+)\]")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def _meminfo(text: str) -> dict[str, int]:
    """`MemTotal:  7038752 kB` -> {"MemTotal": 7038752} (kB, or a count without unit)."""
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if name.strip() in MEMINFO_FIELDS and parts and parts[0].isdigit():
            out[name.strip()] = int(parts[0])
    return out


def _numa_nodes(sys_root: Path) -> list[dict]:
    nodes = []
    base = sys_root / "devices/system/node"
    for node_dir in sorted(base.glob("node[0-9]*"), key=lambda p: int(p.name[4:])):
        text = _read(node_dir / "meminfo") or ""
        # "Node 0 MemTotal:  7038752 kB": drop the "Node N" prefix, then as /proc/meminfo.
        info = _meminfo("\n".join(line.split(None, 2)[2] for line in text.splitlines()
                                  if len(line.split(None, 2)) == 3))
        nodes.append({"node": int(node_dir.name[4:]), "cpus": _read(node_dir / "cpulist"),
                      "mem_total_kb": info.get("MemTotal"), "mem_free_kb": info.get("MemFree")})
    return nodes


def _sysctls(proc_root: Path) -> dict[str, str]:
    out = {}
    base = proc_root / "sys/vm"
    for path in sorted(base.iterdir()) if base.is_dir() else []:
        if not path.is_file():
            continue
        value = _read(path)
        if value is not None:  # write-only (drop_caches, compact_memory) reads fail
            out[f"vm.{path.name}"] = " ".join(value.split())
    return out


def _thp(sys_root: Path) -> dict[str, str]:
    out = {}
    base = sys_root / "kernel/mm/transparent_hugepage"
    for name in THP_FILES:
        value = _read(base / name)
        if value is not None:
            chosen = _SELECTED.search(value)  # "always [madvise] never" -> "madvise"
            out[name] = chosen.group(1) if chosen else value
    return out


def _nics(sys_root: Path) -> list[dict]:
    nics = []
    for dev in sorted((sys_root / "class/net").glob("*")):
        mtu = _read(dev / "mtu")
        nics.append({"name": dev.name, "mtu": int(mtu) if mtu and mtu.isdigit() else None,
                     "driver": os.path.basename(os.readlink(dev / "device/driver"))
                     if (dev / "device/driver").is_symlink() else None})
    return nics


def system_facts(proc: str = "/proc", sys: str = "/sys") -> dict:
    """The `system` record of a recording."""
    proc_root, sys_root = Path(proc), Path(sys)
    unreadable = []

    def need(path: Path) -> str:
        value = _read(path)
        if value is None:
            unreadable.append(str(path))
        return value or ""

    uname = platform.uname()
    return {
        "type": "system",
        "hostname": uname.node, "kernel": uname.release, "kernel_version": uname.version,
        "machine": uname.machine, "cpus": os.cpu_count(),
        "page_size": os.sysconf("SC_PAGE_SIZE"),
        "cmdline": need(proc_root / "cmdline"),
        "meminfo_kb": _meminfo(need(proc_root / "meminfo")),
        "numa_nodes": _numa_nodes(sys_root),
        "sysctl_vm": _sysctls(proc_root),
        "thp": _thp(sys_root),
        "nics": _nics(sys_root),
        "unreadable": unreadable,
    }
