"""Memory cgroup state of a task's cgroup and its ancestors, cgroup v1 or v2.

Pure readers of a cgroup tree under a root path (`/sys/fs/cgroup/memory` on v1,
the cgroup2 mount on v2), so they are tested on captured trees. What matters to
a failed ``__GFP_ACCOUNT`` allocation:

* v1 (mm/memcontrol-v1.c, 6.18; mm/memcontrol.c before 6.10): ``memory.usage_in_bytes``
  against ``memory.limit_in_bytes``; ``memory.failcnt`` counts charges the page
  counter refused (page_counter_try_charge, mm/page_counter.c); kernel memory is
  in ``memory.kmem.usage_in_bytes``; a separate kmem limit can no longer be set
  (commit 58056f77502f "memcg, kmem: further deprecate kmem.limit_in_bytes", then
  86327e8eb94c "memcg: drop kmem.limit_in_bytes"), so kernel memory meets memory.limit_in_bytes.
* v2 (Documentation/admin-guide/cgroup-v2.rst): ``memory.current`` against ``memory.max``
  ("max" = no limit); ``memory.events`` ``max`` counts the times usage was about to
  go over memory.max; ``memory.stat`` ``kernel`` (5.18+) / ``slab`` is kernel memory.

A limit binds at any level: the charge walks up the hierarchy (page_counter_try_charge
charges every ancestor), so `read_chain` returns the cgroup and its ancestors.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from paftrace.procfs.files import read_text

# v1 prints PAGE_COUNTER_MAX * PAGE_SIZE (9223372036854771712 with 4 KiB pages)
# for "no limit": anything this large is no limit.
UNLIMITED = 1 << 62


@dataclass(frozen=True)
class MemcgReading:
    """One cgroup's memory counters at one moment."""

    version: int                  # 1 or 2
    path: str                     # relative to the hierarchy root, "/" for the root
    usage: int | None             # bytes
    limit: int | None             # bytes; None = no limit
    limit_events: int | None      # v1 memory.failcnt, v2 memory.events `max`
    kernel: int | None = None     # kernel memory charged (v1 kmem.usage, v2 stat kernel/slab)
    oom_kills: int | None = None  # v1 oom_control oom_kill, v2 memory.events oom_kill
    ts_ns: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def headroom(self) -> int | None:
        if self.limit is None or self.usage is None:
            return None
        return self.limit - self.usage

    @property
    def events_name(self) -> str:
        return "memory.failcnt" if self.version == 1 else "memory.events max"

    def at_limit(self, need_bytes: int) -> bool:
        """A charge of `need_bytes` would not fit under the limit."""
        room = self.headroom
        return room is not None and room < need_bytes

    def to_json(self) -> dict:
        return {"version": self.version, "path": self.path, "usage": self.usage,
                "limit": self.limit, "limit_events": self.limit_events,
                "limit_events_name": self.events_name, "kernel": self.kernel,
                "oom_kills": self.oom_kills}


def _read(path: Path) -> str | None:
    try:
        return read_text(path)  # up to ten files per failure record in a storm
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


def parse_flat_keyed(text: str | None) -> dict[str, int]:
    """`key value` lines (memory.events, memory.stat, memory.oom_control)."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            with contextlib.suppress(ValueError):
                out[parts[0]] = int(parts[1])
    return out


def _limit(value: int | None) -> int | None:
    return None if value is None or value >= UNLIMITED else value


def read_memcg(root: Path, path: str, version: int, ts_ns: int = 0) -> MemcgReading | None:
    """The counters of one cgroup; None when its directory is gone (removed cgroup)."""
    rel = path.strip("/")
    d = root / rel if rel else root
    if not d.is_dir():
        return None
    shown = "/" + rel
    if version == 1:
        oom = parse_flat_keyed(_read(d / "memory.oom_control"))
        return MemcgReading(
            1, shown, _int(_read(d / "memory.usage_in_bytes")),
            _limit(_int(_read(d / "memory.limit_in_bytes"))),
            _int(_read(d / "memory.failcnt")),
            kernel=_int(_read(d / "memory.kmem.usage_in_bytes")),
            oom_kills=oom.get("oom_kill"), ts_ns=ts_ns)
    events = parse_flat_keyed(_read(d / "memory.events"))
    stat = parse_flat_keyed(_read(d / "memory.stat"))
    usage = _int(_read(d / "memory.current"))
    notes: tuple[str, ...] = ()
    if usage is None and not rel:
        notes = ("the cgroup v2 root has no memory.current or memory.max",)
    return MemcgReading(
        2, shown, usage, _limit(_int(_read(d / "memory.max"))), events.get("max"),
        kernel=stat.get("kernel", stat.get("slab")), oom_kills=events.get("oom_kill"),
        ts_ns=ts_ns, notes=notes)


def ancestors(path: str) -> list[str]:
    """'/a/b' -> ['/a/b', '/a', '/']."""
    parts = [p for p in path.split("/") if p]
    return ["/" + "/".join(parts[:i]) for i in range(len(parts), -1, -1)]


def read_chain(root: Path, path: str, version: int, ts_ns: int = 0) -> list[MemcgReading]:
    """The cgroup and its ancestors, leaf first; empty if the leaf is gone. The root is
    left out (unless it is the leaf): it cannot have a limit (v1 refuses one, v2 has no
    memory.max) and its v1 usage_in_bytes sums every cgroup's statistics."""
    out = []
    for p in ancestors(path)[:-1] or ["/"]:
        reading = read_memcg(root, p, version, ts_ns)
        if reading is None:
            if not out:
                return []
            continue
        out.append(reading)
    return out


def binding_limit(chain: list[MemcgReading]) -> MemcgReading | None:
    """The level with the least headroom under its limit (the one a charge hits first)."""
    limited = [r for r in chain if r.headroom is not None]
    return min(limited, key=lambda r: r.headroom, default=None)  # type: ignore[arg-type,return-value]


@dataclass(frozen=True)
class CgroupMounts:
    """Where the memory controller lives on this host."""

    v1_memory: Path | None = None  # cgroup v1 hierarchy with the memory controller
    v2: Path | None = None         # the cgroup2 mount (unified or hybrid)
    v2_memory: bool = False        # the memory controller is on cgroup2

    @property
    def memory_version(self) -> int | None:
        if self.v1_memory is not None:
            return 1
        return 2 if self.v2 is not None and self.v2_memory else None


def parse_mountinfo(text: str, read_controllers=None) -> CgroupMounts:
    """/proc/self/mountinfo -> the memory controller's hierarchy. `read_controllers(path)`
    returns the text of cgroup.controllers of the v2 root (injected for tests)."""
    v1 = v2 = None
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        mountpoint, fstype, options = fields[4], rest[0], rest[2].split(",")
        if fstype == "cgroup" and "memory" in options and v1 is None:
            v1 = Path(mountpoint)
        elif fstype == "cgroup2" and v2 is None:
            v2 = Path(mountpoint)
    v2_memory = False
    if v2 is not None and v1 is None:
        reader = read_controllers or (lambda p: _read(p / "cgroup.controllers"))
        v2_memory = "memory" in (reader(v2) or "").split()
    return CgroupMounts(v1, v2, v2_memory)


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/PID/cgroup -> {controller: path}; the v2 line `0::/path` is key ''."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            out[""] = path
        for c in controllers.split(","):
            if c:
                out[c] = path
    return out
