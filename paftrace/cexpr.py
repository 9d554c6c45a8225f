"""Evaluate the C constant expressions found in tracepoint `print fmt` tables.

The kernel writes flag tables as preprocessed C, e.g.
``( unsigned long)(( gfp_t)((((1UL))) << (10)))``. We evaluate them the way
libtraceevent's ``arg_eval()`` does (tools/lib/traceevent/event-parse.c,
5.15): casts are skipped, integer suffixes dropped, and the usual integer
operators folded. Anything else (an unresolved enum name, a function call)
raises ``CExprError`` so the caller can skip that entry rather than guess.
"""

from __future__ import annotations

import re

MASK64 = (1 << 64) - 1

_TYPE_WORDS = {
    "unsigned", "signed", "long", "int", "short", "char", "const", "volatile",
    "__force", "__bitwise", "u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64",
}
_CAST_RE = re.compile(r"\(\s*((?:[A-Za-z_]\w*\s*)+)\)")
_TOKEN_RE = re.compile(
    r"\s*(?:(?P<num>0[xX][0-9a-fA-F]+|\d+)(?:[uUlL]{0,3})\b|(?P<op><<|>>|[-+*/%|&^~!()])"
    r"|(?P<ident>[A-Za-z_]\w*))"
)


class CExprError(ValueError):
    """The expression is not a plain integer constant expression."""


def _strip_casts(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        words = m.group(1).split()
        if all(w in _TYPE_WORDS or w.endswith("_t") for w in words):
            return " "
        return m.group(0)

    previous = None
    while previous != text:
        previous, text = text, _CAST_RE.sub(repl, text)
    return text


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            raise CExprError(f"unexpected text at {text[pos:pos + 20]!r}")
        pos = m.end()
        if m.group("num"):
            tokens.append(("num", m.group("num")))
        elif m.group("op"):
            tokens.append(("op", m.group("op")))
        else:
            raise CExprError(f"unresolved name {m.group('ident')!r}")
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return tokens


# Binary operators by C precedence, loosest first.
_BINARY_LEVELS: list[dict[str, object]] = [
    {"|": lambda a, b: a | b},
    {"^": lambda a, b: a ^ b},
    {"&": lambda a, b: a & b},
    {"<<": lambda a, b: a << b, ">>": lambda a, b: a >> b},
    {"+": lambda a, b: a + b, "-": lambda a, b: a - b},
    {"*": lambda a, b: a * b, "/": lambda a, b: a // b if b else 0,
     "%": lambda a, b: a % b if b else 0},
]


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]):
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise CExprError("unexpected end of expression")
        self.pos += 1
        return tok

    def binary(self, level: int = 0) -> int:
        if level == len(_BINARY_LEVELS):
            return self.unary()
        ops = _BINARY_LEVELS[level]
        value = self.binary(level + 1)
        while (tok := self.peek()) and tok[0] == "op" and tok[1] in ops:
            self.pos += 1
            rhs = self.binary(level + 1)
            value = ops[tok[1]](value, rhs) & MASK64  # type: ignore[operator]
        return value

    def unary(self) -> int:
        kind, text = self.take()
        if kind == "num":
            return int(text, 0) & MASK64
        if text == "(":
            value = self.binary()
            if self.take() != ("op", ")"):
                raise CExprError("missing ')'")
            return value
        if text == "~":
            return ~self.unary() & MASK64
        if text == "-":
            return -self.unary() & MASK64
        if text == "+":
            return self.unary()
        if text == "!":
            return int(not self.unary())
        raise CExprError(f"unexpected {text!r}")


def evaluate(expr: str) -> int:
    """Value of a C integer constant expression, as an unsigned 64-bit number."""
    tokens = _tokenize(_strip_casts(expr))
    if not tokens:
        raise CExprError("empty expression")
    parser = _Parser(tokens)
    value = parser.binary()
    if parser.peek() is not None:
        raise CExprError(f"trailing tokens after position {parser.pos}")
    return value
