"""The ctypes mirrors must match the C structs in paftrace/bpf/pagealloc.c."""

from __future__ import annotations

import ctypes
import re

from paftrace.loader import bpf_source_path
from paftrace.records import RawAllocKey, RawFailure

C_SIZES = {"u64": 8, "u32": 4, "s32": 4, "u16": 2, "u8": 1, "char": 1}


def c_struct_layout(name: str) -> list[tuple[str, int, int]]:
    """(field, offset, size) of a struct of plain scalars, with natural alignment."""
    source = bpf_source_path().read_text()
    body = re.search(rf"struct {name} \{{(.*?)\}};", source, re.S).group(1)
    layout, offset = [], 0
    for ctype, field, count in re.findall(r"^\s*(\w+)\s+(\w+)(?:\[(\d+)\])?;", body, re.M):
        size = C_SIZES[ctype]
        offset = (offset + size - 1) // size * size
        layout.append((field, offset, size * int(count or 1)))
        offset += size * int(count or 1)
    return layout


def ctypes_layout(cls: type[ctypes.Structure]) -> list[tuple[str, int, int]]:
    return [(name, getattr(cls, name).offset, getattr(cls, name).size)
            for name, *_ in cls._fields_]


def test_failure_record_layout():
    assert ctypes_layout(RawFailure) == c_struct_layout("failure_event")
    assert ctypes.sizeof(RawFailure) == 72


def test_alloc_key_layout():
    assert ctypes_layout(RawAllocKey) == c_struct_layout("alloc_key")


def test_symbol_offsets_are_parsed():
    from paftrace.loader import _offset

    assert _offset("ext4_exit_fs+0xa4b64 [ext4]") == 0xA4B64
    assert _offset("pipe_resize_ring+0x30") == 0x30
    assert _offset("[unknown]") == 0
