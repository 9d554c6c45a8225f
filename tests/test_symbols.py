"""Kernel symbolization: the pure formatting and cache, and the one bcc adapter."""

from __future__ import annotations

from paftrace.symbols import X86_64_MODULES_START, BccKernelSymbols, KernelSymbols
from tests.helpers import needs_root

CORE = 0xFFFFFFFF81000000


class FakeSymbols:
    """Two kernel functions and a module; counts lookups."""

    def __init__(self, table: dict[int, tuple[bytes | None, int, bytes | None]]):
        self.table = table
        self.lookups = 0

    def resolve(self, addr: int) -> tuple[bytes | None, int, bytes | None]:
        self.lookups += 1
        return self.table.get(addr, (None, addr, None))


def test_frames_are_named_like_the_kernel_prints_them() -> None:
    mod = X86_64_MODULES_START + 0x100
    source = FakeSymbols({CORE: (b"pipe_resize_ring", 0x30, b"kernel"),
                          mod: (b"ext4_fill_super", 0x1F, b"/lib/modules/x/ext4.ko")})
    symbols = KernelSymbols(lambda: source, modules=lambda: "ext4 1 0")
    assert symbols.frames([CORE, mod, CORE + 1]) == [
        "pipe_resize_ring+0x30", "ext4_fill_super+0x1f [ext4.ko]", "[unknown]"]
    symbols.frames([CORE])
    assert source.lookups == 3  # the second CORE came from the cache


def test_freed_module_text_is_not_named_after_a_neighbour() -> None:
    addr = X86_64_MODULES_START + 0x200
    source = FakeSymbols({addr: (b"ext4_exit_fs", 0xA4B64, b"ext4")})
    symbols = KernelSymbols(lambda: source, modules=lambda: "")
    assert symbols.frames([addr]) == [f"{addr:#x} [module text, symbol gone]"]


def test_a_new_module_list_gets_a_fresh_symbol_table() -> None:
    addr = X86_64_MODULES_START + 0x300
    tables = iter([FakeSymbols({addr: (b"old_neighbour", 0x10, b"a")}),
                   FakeSymbols({addr: (b"pafwarn_init", 0x60, b"pafwarn")})])
    modules = ["a 1 0"]
    symbols = KernelSymbols(lambda: next(tables), modules=lambda: modules[0])
    assert symbols.frames([addr]) == ["old_neighbour+0x10 [a]"]
    modules[0] = "a 1 0\npafwarn 1 0"  # insmod since
    assert symbols.frames([addr]) == ["pafwarn_init+0x60 [pafwarn]"]


@needs_root
def test_bcc_adapter_resolves_a_kernel_function() -> None:
    """Fails if bcc changes SymbolCache(pid) or resolve(addr, demangle)."""
    from paftrace.loader import import_bcc, prepare  # noqa: PLC0415
    from paftrace.options import TraceOptions  # noqa: PLC0415

    prepare(TraceOptions())  # tracefs mounted before bcc is imported
    bcc = import_bcc()
    addr = bcc.BPF.ksymname("do_sys_openat2")
    assert addr > 0
    name, offset, module = BccKernelSymbols(bcc).resolve(addr + 4)
    assert name == b"do_sys_openat2" and offset == 4
    symbols = KernelSymbols(lambda: BccKernelSymbols(bcc))
    assert symbols.frames([addr + 4]) == ["do_sys_openat2+0x4"]
