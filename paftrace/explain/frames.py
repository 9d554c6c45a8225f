"""Call-trace lines of every architecture, as each kernel's unwinder prints them.

One line -> tokens: stack-section markers, frames, or address-only entries.
The formats, innermost frame first in every case:

x86 (arch/x86/kernel/dumpstack.c printk_stack_address, v2.6.2x-v6.x):
    ` [<ffffffff8112c207>] ? __alloc_pages_nodemask+0x757/0x8d0 [mod]` (addresses
    dropped in v4.13+), `?` = unreliable (found by scanning), `<IRQ>`/`<EOI>`/
    `</IRQ>`/`<NMI>`/`<TASK>` section markers, possibly on a frame's line.
x86-64 v2.6.9-2.6.1x (arch/x86_64/kernel/traps.c printk_address): several
    `<ffffffff8015f0f6>{__alloc_pages+789}` per line, `{:mod:sym+off}` for
    modules, decimal offsets, inline `<IRQ>`/`<EOI>`/`<EOE>`; nothing marks
    scanned (stale) entries.  RHEL 5 / 2.6.18 x86-64 prints
    ` [<ffffffff884a9aa0>] :ip_conntrack:alloc_hashtable+0x33/0x7a`.
arm (arch/arm/kernel/traps.c dump_backtrace_entry): `[<c009bf44>] (warn_alloc_failed+0xdc/0x124)
    from [<c009e194>] (__alloc_pages_nodemask+0x178/0x860)` (<= v4.x; offsets in the
    first bracket before v3.x), ` warn_alloc from __alloc_pages+0xef8/0x1044` (v5.16+
    without CONFIG_..._ADDRESSES), `Function entered at [<c0011e48>] from [<c03b1630>]`
    without CONFIG_KALLSYMS (addresses only).
arm64 (arch/arm64/kernel/stacktrace.c dump_backtrace_entry): `Call trace:` then
    ` warn_alloc+0x15c/0x1f4` (v4.1x: `[<ffff000008089e14>] dump_backtrace+0x0/0x1f0`).
powerpc (arch/powerpc/kernel/process.c show_stack): `[c0000000fffe3a90] [c000000000018a0c]
    .show_stack+0x6c/0x1b0 (unreliable)`, dot-prefixed names on ELFv1 ppc64 (big-endian
    before v5.x), `--- interrupt: 501 at .__do_softirq+0x..` for exception frames.
s390 (arch/s390/kernel/dumpstack.c show_stack, v5.2+; traps.c show_trace before):
    ` [<000000000011a3d2>] show_stack+0x8a/0xd0 ` and `([<...>] sym+0x../0x..)` for a
    frame the unwinder could not vouch for (unreliable / first frame of a stack).
mips (arch/mips/kernel/traps.c show_backtrace -> print_ip_sym): `[<800710f4>] show_stack+0x50/0x84`.
scripts/decode_stacktrace.sh: ` warn_alloc (mm/page_alloc.c:4240) [mod]`, or file:line
    appended after `sym+off/len`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SYM = r"\.?[A-Za-z_$][\w.$]*"
_OFF = r"(?:\+0x[0-9a-fA-F]+(?:/0x[0-9a-fA-F]+)?)"
# "[mod]", and "[mod buildid]" (CONFIG_STACKTRACE_BUILD_ID, v5.15+)
_MOD = r"\[(?P<mod>[\w-]+)(?:\s+[0-9a-f]{8,40})?\]"
_SRC = r"(?:\s+\((?:[\w./+-]+:\d+\s*)+\)|(?:\s+[\w./+-]+\.[chS]:\d+)+)"

_GENERIC_RE = re.compile(
    r"^(?P<paren>\()?(?:\[<(?P<addr>[0-9a-fA-F]{4,16})>\]\s*)?(?P<q>\?\s+)?"
    r"(?::(?P<pmod>[\w-]+):)?(?P<sym>" + _SYM + r")(?P<off>" + _OFF + r")"
    r"(?:\s+" + _MOD + r")?(?P<close>\))?" + _SRC + r"?(?:\s+\([A-Z]\))?(?:\s+#.*)?\s*$")
# decode_stacktrace.sh v5.x+: the offset is replaced by "(file:line ...)"
_DECODED_RE = re.compile(
    r"^(?:\[<[0-9a-fA-F]{4,16}>\]\s*)?(?P<q>\?\s+)?(?P<sym>" + _SYM + r")"
    r"\s+\((?:[\w./+-]+:\d+\s*)+\)(?:\s+(?:" + _MOD + r"|(?P<bmod>[\w-]+)))?\s*$")
_ARM_RE = re.compile(
    r"^(?:\[<[0-9a-fA-F]{4,16}>\]\s*\()?(?P<sym>" + _SYM + r")(?P<off>" + _OFF + r")?"
    r"(?:\s+" + _MOD + r")?\)?\s+from\s+(?:\[<[0-9a-fA-F]{4,16}>\]\s*\()?"
    r"(?P<fsym>" + _SYM + r")(?P<foff>" + _OFF + r")?"
    r"(?:\s+\[(?P<fmod>[\w-]+)(?:\s+[0-9a-f]{8,40})?\])?\)?\s*$")
_ARM_NOSYM_RE = re.compile(r"^Function entered at \[<[0-9a-fA-F]{4,16}>\] from "
                           r"\[<[0-9a-fA-F]{4,16}>\]\s*$")
_PPC_RE = re.compile(
    r"^\[(?P<sp>[0-9a-fA-F]{8,16})\]\s+\[(?P<ip>[0-9a-fA-F]{8,16})\]\s+"
    r"(?:(?P<sym>" + _SYM + r")(?P<off>" + _OFF + r")?(?:\s+" + _MOD + r")?|0x[0-9a-fA-F]+)?"
    r"(?P<tail>(?:\s+\([^()]{0,200}\))*)\s*$")
# "--- Exception: 501 at ..." up to v5.9, "--- interrupt: 501 at ..." since (process.c)
_PPC_TRAP_RE = re.compile(r"^---\s+(?:interrupt|Exception):\s*(?P<trap>[0-9a-fA-F]{1,5})\b")
_BRACE_RE = re.compile(r"<IRQ>|<EOI>|<EOE>|<(?P<addr>[0-9a-fA-F]{8,16})>\{(?::(?P<mod>[\w-]+):)?"
                       r"(?P<sym>" + _SYM + r")(?P<off>[+-]\d+)?\}")
_ADDR_ONLY_RE = re.compile(r"^(?:\[<[0-9a-fA-F]{4,16}>\]\s*)+(?:0x[0-9a-fA-F]+\s*)?$"
                           r"|^\[<[0-9a-fA-F]{4,16}>\]\s+\(0x[0-9a-fA-F]+\)")
_MARKER_RE = re.compile(r"^(?P<m></?(?:IRQ|NMI|TASK|SOFTIRQ)>|<EOI>|<EOE>|<#[A-Z]{2}>)\s*")


@dataclass(frozen=True)
class Token:
    kind: str                   # "marker" | "frame" | "address"
    name: str = ""              # marker text or symbol (ELFv1 leading dot removed)
    module: str | None = None
    reliable: bool = True
    offset: str = ""
    trap: int | None = None
    caller: str | None = None   # arm "X from Y": Y, the caller of X


def _symbol(sym: str) -> str:
    # ELFv1 ppc64 prints the text symbol of a function descriptor with a leading dot.
    return sym[1:] if sym.startswith(".") and len(sym) > 1 else sym


def _brace_tokens(line: str) -> list[Token]:
    out = []
    for m in _BRACE_RE.finditer(line):
        if m.group("sym") is None:
            out.append(Token("marker", m.group(0)))
        else:
            off = m.group("off") or ""
            out.append(Token("frame", _symbol(m.group("sym")), m.group("mod"), True, off))
    return out


def _ppc(m: re.Match[str]) -> Token:
    if m.group("sym") is None:
        return Token("address", m.group("ip"))
    unreliable = "unreliable" in (m.group("tail") or "")
    return Token("frame", _symbol(m.group("sym")), m.group("mod"), not unreliable,
                 m.group("off") or "")


def tokens(line: str) -> list[Token]:
    """Tokens of one message line (prefixes already stripped); [] if not a trace line."""
    text = line.strip()
    out: list[Token] = []
    if ">{" in text and (brace := _brace_tokens(text)):
        return brace
    while marker := _MARKER_RE.match(text):
        out.append(Token("marker", marker.group("m")))
        text = text[marker.end():]
    if not text:
        return out
    if m := _GENERIC_RE.match(text):
        pmod = m.group("pmod")
        reliable = not m.group("q") and not (m.group("paren") and m.group("close"))
        out.append(Token("frame", _symbol(m.group("sym")), m.group("mod") or pmod, reliable,
                         m.group("off")))
    elif m := _ARM_RE.match(text):
        out.append(Token("frame", _symbol(m.group("sym")), m.group("mod"), True,
                         m.group("off") or "", caller=_symbol(m.group("fsym"))))
    elif m := _PPC_RE.match(text):
        out.append(_ppc(m))
    elif m := _PPC_TRAP_RE.match(text):
        out.append(Token("frame", "", None, True, "", trap=int(m.group("trap"), 16)))
    elif m := _DECODED_RE.match(text):
        out.append(Token("frame", _symbol(m.group("sym")), m.group("mod") or m.group("bmod"),
                         not m.group("q")))
    elif _ARM_NOSYM_RE.match(text) or _ADDR_ONLY_RE.match(text):
        out.append(Token("address", text))
    return out
