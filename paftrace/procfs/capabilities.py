"""Effective capabilities of this process (/proc/self/status CapEff), for clear refusals.

Numbers from include/uapi/linux/capability.h (CAP_PERFMON 38 and CAP_BPF 39 since
v5.8, commit a17b53c4a4b5 "bpf, capability: Introduce CAP_BPF").
"""

from __future__ import annotations

from pathlib import Path

CAPABILITIES = {
    "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_SYS_ADMIN": 21,
    "CAP_SYS_RESOURCE": 24, "CAP_SYSLOG": 34, "CAP_PERFMON": 38, "CAP_BPF": 39,
}


def effective(status_text: str) -> set[str]:
    """Names (of those paftrace cares about) set in the CapEff line of a status file."""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            mask = int(line.split()[1], 16)
            return {name for name, bit in CAPABILITIES.items() if mask >> bit & 1}
    return set()


def missing_for_tracing(caps: set[str]) -> list[str]:
    """What loading the BPF program and attaching tracepoints lacks ([] = enough):
    CAP_BPF + CAP_PERFMON from 5.8, CAP_SYS_ADMIN (which implies both) before."""
    if "CAP_SYS_ADMIN" in caps:
        return []
    return [name for name in ("CAP_BPF", "CAP_PERFMON") if name not in caps]


def own_capabilities(status: Path = Path("/proc/self/status")) -> set[str]:
    try:
        return effective(status.read_text())
    except OSError:
        return set(CAPABILITIES)  # cannot tell: let the kernel decide
