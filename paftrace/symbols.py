"""Kernel addresses to `symbol+0xoff [module]`, cached, and honest about freed module text.

bcc resolves through a libbcc symbol cache that reads /proc/kallsyms once. The
public `bcc.SymbolCache` class is the one bcc piece used here, behind
`BccKernelSymbols` (tests/test_symbols.py fails if bcc changes it); paftrace
keeps its own instance instead of bcc's private per-process `BPF._sym_cache`,
and replaces it when the module list changes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

# x86-64 module mapping space (Documentation/arch/x86/x86_64/mm.rst: MODULES_VADDR).
X86_64_MODULES_START = 0xFFFFFFFFA0000000
# A module frame this far past its symbol lies in freed or unknown text (seen in the
# kernel matrix: "ext4_exit_fs+0xa4b64" for a freed init function of another module).
MAX_MODULE_SYMBOL_OFFSET = 0x4000
SYMBOL_CACHE_MAX = 65536  # kernel return addresses remembered with their symbol
KERNEL_PID = -1  # libbcc: a pid below zero selects the kernel's symbols
WARM_UP_ADDRESS = 0xFFFFFFFF81000000  # x86-64 kernel text start: any address loads the table


class SymbolSource(Protocol):
    def resolve(self, addr: int) -> tuple[bytes | None, int, bytes | None]:
        """(name or None, offset, module path or None), as bcc.SymbolCache.resolve."""


class BccKernelSymbols:
    """The adapter around bcc.SymbolCache (bcc/__init__.py): the only code that
    knows its constructor and `resolve(addr, demangle)` signature."""

    def __init__(self, bcc: Any):
        self._cache = bcc.SymbolCache(KERNEL_PID)

    def resolve(self, addr: int) -> tuple[bytes | None, int, bytes | None]:
        return self._cache.resolve(addr, False)


def read_modules() -> str:
    try:
        return Path("/proc/modules").read_text()
    except OSError:
        return ""


class KernelSymbols:
    """Symbol names for stack frames. A failure storm repeats the same few stacks:
    resolving each frame through bcc was half of the per-record cost (py-spy,
    docs/PERFORMANCE.md), hence the cache."""

    def __init__(self, new_source: Callable[[], SymbolSource],
                 modules: Callable[[], str] = read_modules):
        self._new_source = new_source
        self._source = new_source()
        self._modules = modules
        self._modules_seen = modules()
        self._names: dict[int, str] = {}
        self._lock = threading.Lock()  # libbcc's symbol cache is not thread-safe

    def warm_up(self, addr: int = WARM_UP_ADDRESS) -> None:
        """Make libbcc read the kernel's symbol table now. It does so at its first
        lookup (0.8 s on 6.18); that was the first failure's record, or with --all
        the summary after Ctrl-C (docs/PERFORMANCE.md). Safe in a thread: ctypes lets
        go of the GIL while libbcc reads."""
        with self._lock:
            self._source.resolve(addr)

    def frames(self, addrs: list[int]) -> list[str]:
        if any(a >= X86_64_MODULES_START for a in addrs):
            self._refresh_if_modules_changed()
        return [self.symbolize(a) for a in addrs]

    def _refresh_if_modules_changed(self) -> None:
        """The symbol table is read once: a module loaded since (a driver, a test
        module) would be named after its neighbour. Failures in modules are rare,
        so the module list is re-checked only for those."""
        modules = self._modules()
        if modules != self._modules_seen:
            self._modules_seen = modules
            with self._lock:
                self._source = self._new_source()
            self._names.clear()

    def symbolize(self, addr: int) -> str:
        name = self._names.get(addr)
        if name is None:
            if len(self._names) >= SYMBOL_CACHE_MAX:
                self._names.clear()
            name = self._format(addr)
            self._names[addr] = name
        return name

    def _format(self, addr: int) -> str:
        with self._lock:
            name, offset, module = self._source.resolve(addr)
        if name is None:
            return "[unknown]"
        text = f"{name.decode('utf-8', 'replace')}+{offset:#x}"
        if addr >= X86_64_MODULES_START and offset > MAX_MODULE_SYMBOL_OFFSET:
            # Module text whose symbol is gone (a module's init code is freed
            # right after init): the nearest older symbol would be a lie.
            return f"{addr:#x} [module text, symbol gone]"
        mod = os.path.basename(module.decode("utf-8", "replace")) if module else ""
        return text if mod in ("", "kernel", "vmlinux") else f"{text} [{mod}]"
