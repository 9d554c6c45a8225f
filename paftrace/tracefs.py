"""tracefs access: find or mount it, and parse tracepoint `format` files.

Pure parsing functions take text; only `TraceFs` touches the file system, so
everything above it can be tested with captured format files.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

# bcc checks /sys/kernel/debug/tracing first, then /sys/kernel/tracing
# (src/cc/common.cc); we prefer the dedicated mount point (tracefs, 4.1+).
TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


class TraceFsError(RuntimeError):
    """tracefs is missing and could not be mounted."""


@dataclass(frozen=True)
class Field:
    type: str
    name: str
    offset: int
    size: int
    signed: bool


@dataclass
class TracepointFormat:
    name: str
    fields: list[Field] = field(default_factory=list)
    print_fmt: str = ""

    def get(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


_FIELD_RE = re.compile(
    r"field:(?P<decl>[^;]+);\s*offset:(?P<offset>\d+);\s*size:(?P<size>\d+);"
    r"(?:\s*signed:(?P<signed>\d+);)?"
)


def parse_format(text: str) -> TracepointFormat:
    """Parse the text of events/<cat>/<event>/format (any kernel since 2.6.32)."""
    name_match = re.search(r"^name:\s*(\S+)", text, re.M)
    fmt = TracepointFormat(name=name_match.group(1) if name_match else "")
    for m in _FIELD_RE.finditer(text):
        decl = m.group("decl").strip()
        decl = re.sub(r"\[[^\]]*\]$", "", decl)  # char comm[16] -> char comm
        type_, _, fname = decl.rpartition(" ")
        fmt.fields.append(
            Field(
                type=type_.strip(),
                name=fname.strip(),
                offset=int(m.group("offset")),
                size=int(m.group("size")),
                signed=m.group("signed") == "1",
            )
        )
    pf = re.search(r"^print fmt:\s*(.*)$", text, re.M | re.S)
    if pf:
        fmt.print_fmt = pf.group(1).strip()
    return fmt


def _is_tracefs_dir(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "events"))


class TraceFs:
    """The tracefs mount of this machine."""

    def __init__(self, root: str | None = None):
        self.root = Path(root) if root else None

    def locate(self) -> Path | None:
        if self.root and _is_tracefs_dir(str(self.root)):
            return self.root
        for cand in TRACEFS_CANDIDATES:
            if _is_tracefs_dir(cand):
                return Path(cand)
        return None

    def ensure_mounted(self) -> Path:
        """Return the tracefs root, mounting it when we are root and it is missing.

        Must run before `import bcc`: bcc picks its tracefs path at import time.
        """
        found = self.locate()
        if found:
            self.root = found
            return found
        target = TRACEFS_CANDIDATES[0]
        if os.geteuid() != 0:
            raise TraceFsError(
                f"tracefs is not mounted; as root run: mount -t tracefs nodev {target}"
            )
        if not os.path.isdir(target):
            raise TraceFsError(
                f"{target} does not exist: this kernel lacks tracefs (CONFIG_TRACING)"
            )
        proc = subprocess.run(
            ["mount", "-t", "tracefs", "nodev", target], capture_output=True, text=True
        )
        if proc.returncode != 0 or not _is_tracefs_dir(target):
            raise TraceFsError(
                f"could not mount tracefs on {target}: {proc.stderr.strip() or 'no events/'}"
            )
        self.root = Path(target)
        return self.root

    def event_dir(self, category: str, event: str) -> Path | None:
        root = self.locate()
        if not root:
            return None
        path = root / "events" / category / event
        return path if path.is_dir() else None

    def read_format(self, category: str, event: str) -> TracepointFormat | None:
        path = self.event_dir(category, event)
        if not path:
            return None
        try:
            return parse_format((path / "format").read_text())
        except OSError:
            return None
