"""The kernel/user contract, read from paftrace/bpf/paftrace.h (its only source).

The BPF programs include that header; this module parses the same file into
constants and ctypes layouts, so there is no hand-kept Python twin to drift.
tests/test_contract.py checks the result against the layouts clang gives the
compiled program.
"""

from __future__ import annotations

import ctypes
import re
from functools import cache
from importlib import resources

HEADER_NAME = "paftrace.h"

_SCALARS: dict[str, type] = {
    "u8": ctypes.c_uint8, "u16": ctypes.c_uint16, "u32": ctypes.c_uint32,
    "u64": ctypes.c_uint64, "s32": ctypes.c_int32, "s64": ctypes.c_int64,
    "char": ctypes.c_char,
}
_DEFINE = re.compile(r"^#define\s+(\w+)\s+(0x[0-9a-fA-F]+|\d+)(?:U|ULL|UL)?\b", re.M)
_STRUCT = re.compile(r"^struct\s+(\w+)\s*\{(.*?)^\};", re.M | re.S)
_FIELD = re.compile(r"^\s*(?:struct\s+)?(\w+)\s+(\w+)(?:\[(\w+)\])?;", re.M)
_X_ENTRY = re.compile(r"X\((\w+),\s*(\d+)\)")


def header_text() -> str:
    return (resources.files("paftrace") / "bpf" / HEADER_NAME).read_text()


def _without_comments(text: str) -> str:
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


@cache
def constants() -> dict[str, int]:
    """Every integer #define of the header."""
    return {name: int(value, 0) for name, value in
            _DEFINE.findall(_without_comments(header_text()))}


def enumeration(prefix: str, exclude: tuple[str, ...] = ("SLOTS",)) -> tuple[str, ...]:
    """Names of `#define PREFIX_NAME value` in value order: STAT_LOST_RECORDS -> 'lost_records'.

    The values must be 0..n-1: they index arrays on both sides.
    """
    found = {value: name[len(prefix):].lower() for name, value in constants().items()
             if name.startswith(prefix) and name[len(prefix):] not in exclude}
    if sorted(found) != list(range(len(found))):
        raise ValueError(f"{prefix}* values in {HEADER_NAME} are not 0..n-1: {sorted(found)}")
    return tuple(found[i] for i in range(len(found)))


@cache
def system_vectors() -> tuple[str, ...]:
    """The SYSTEM_VECTORS(X) list, in index order."""
    text = _without_comments(header_text())
    body = text[text.index("#define SYSTEM_VECTORS(X)"):]
    body = body[:body.index("\n\n")]
    entries = {int(index): name for name, index in _X_ENTRY.findall(body)}
    return tuple(entries[i] for i in range(len(entries)))


@cache
def structs() -> dict[str, type[ctypes.Structure]]:
    """ctypes layouts of the header's structs, in declaration order."""
    out: dict[str, type[ctypes.Structure]] = {}
    for name, body in _STRUCT.findall(_without_comments(header_text())):
        fields = []
        for ctype, field_name, count in _FIELD.findall(body):
            base = _SCALARS.get(ctype) or out.get(ctype)
            if base is None:
                raise ValueError(f"struct {name}: type {ctype} unknown to {__name__}")
            if count:
                base = base * (int(count) if count.isdigit() else constants()[count])
            fields.append((field_name, base))
        out[name] = type(name, (ctypes.Structure,), {"_fields_": fields})
    return out


def struct(name: str) -> type[ctypes.Structure]:
    return structs()[name]
