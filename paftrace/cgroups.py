"""Which cgroup (container, unit) a failing task was in.

The kernel side records ``bpf_get_current_cgroup_id()``: the inode number of the
task's cgroup on the cgroup2 hierarchy (kernel/bpf/helpers.c, 4.18+; on hybrid
hosts the unified mount). `CgroupResolver` turns that id into a path by walking
the cgroup2 mount (cached), and on hosts whose memory controller is on cgroup v1
reads the memory path from /proc/PID/cgroup while the process still exists.
`unit_of` names the container or systemd unit a path shows; it is pure.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from paftrace.procfs.files import read_text
from paftrace.procfs.memcg import CgroupMounts, parse_mountinfo, parse_proc_cgroup

_HEX_ID = r"[0-9a-f]{12,64}"
# Container runtimes, as systemd scopes (systemd cgroup driver) or plain
# directories (cgroupfs driver): (kind, pattern with group `id`).
_CONTAINER_RES = (
    ("docker", re.compile(rf"^docker-(?P<id>{_HEX_ID})\.scope$")),
    ("podman", re.compile(rf"^libpod-(?:conmon-)?(?P<id>{_HEX_ID})\.scope$")),
    ("containerd", re.compile(rf"^cri-containerd-(?P<id>{_HEX_ID})\.scope$")),
    ("cri-o", re.compile(rf"^crio-(?:conmon-)?(?P<id>{_HEX_ID})\.scope$")),
)
_POD_RE = re.compile(r"^(?:kubepods-(?:besteffort-|burstable-)?)?pod(?P<uid>[0-9a-f_-]{32,36})"
                     r"(?:\.slice)?$")
_BARE_ID_RE = re.compile(rf"^(?P<id>{_HEX_ID})$")
_LXC_RE = re.compile(r"^lxc\.payload\.(?P<name>.+)$")
_MACHINE_RE = re.compile(r"^machine-(?P<name>.+)\.scope$")


@dataclass(frozen=True)
class Unit:
    """What a cgroup path says about its owner."""

    kind: str          # docker | podman | containerd | cri-o | kubepods | lxc | machine |
    #                    systemd-service | systemd-scope | systemd-slice
    name: str          # container id (12 hex), pod uid, unit name
    pod: str | None = None  # kubepods: the pod uid when a container id is known too

    def label(self) -> str:
        if self.kind == "kubepods":
            return f"pod {self.pod or self.name}" + (f" container {self.name}"
                                                     if self.pod else "")
        if self.kind.startswith("systemd-"):
            return self.name
        return f"{self.kind} {self.name}"

    def to_json(self) -> dict:
        return {"kind": self.kind, "name": self.name, "pod": self.pod, "label": self.label()}


def unit_of(path: str | None) -> Unit | None:
    """The innermost container or unit a cgroup path names, or None (root, plain dirs).

    `/system.slice/docker-<id>.scope` (systemd driver) and `/docker/<id>` (cgroupfs);
    `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/
    cri-containerd-<id>.scope` and `/kubepods/burstable/pod<uid>/<id>`; libpod, crio,
    lxc.payload.*, machine-*.scope; else the innermost `*.service` / `*.scope`.
    """
    parts = [p for p in (path or "").split("/") if p]
    pod: str | None = None
    found: Unit | None = None
    unit: Unit | None = None
    for i, part in enumerate(parts):
        m = _POD_RE.match(part)
        if m and (part.startswith("kubepods") or (i and parts[i - 1] in
                                                  ("kubepods", "besteffort", "burstable"))):
            pod = m.group("uid").replace("_", "-")
            found = Unit("kubepods", pod)
            continue
        for kind, regex in _CONTAINER_RES:
            m = regex.match(part)
            if m:
                found = _container(kind, m.group("id"), pod)
                break
        else:
            m = _BARE_ID_RE.match(part)
            parent = parts[i - 1] if i else ""
            if m and (pod or parent in ("docker", "libpod_parent", "crio")):
                found = _container("docker" if parent == "docker" else "container",
                                   m.group("id"), pod)
                continue
            m = _LXC_RE.match(part) or (re.match(r"^(?P<name>.+)$", part)
                                        if parent == "lxc" else None)
            if m:
                found = Unit("lxc", m.group("name"))
                continue
            m = _MACHINE_RE.match(part)
            if m:
                found = Unit("machine", m.group("name"))
            elif part.endswith(".service"):
                unit = Unit("systemd-service", part)
            elif part.endswith(".scope"):
                unit = Unit("systemd-scope", part)
    return found or unit


def _container(kind: str, cid: str, pod: str | None) -> Unit:
    if pod:
        return Unit("kubepods", cid[:12], pod=pod)
    return Unit(kind, cid[:12])


PF_EXITING = 0x4  # include/linux/sched.h


def task_exiting(stat: str) -> bool:
    """/proc/PID/stat: zombie/dead state or PF_EXITING in the flags (field 9). The task
    name (field 2) may hold spaces and parentheses: fields are counted after the last ')'."""
    rest = stat.rpartition(")")[2].split()
    if len(rest) < 7:
        return True
    try:
        return rest[0] in ("Z", "X", "x") or bool(int(rest[6]) & PF_EXITING)
    except ValueError:
        return True


class CgroupResolver:
    """cgroup2 id -> path (walk of the mount, cached); v1 memory path of a pid."""

    def __init__(self, mounts: CgroupMounts | None = None, proc: str = "/proc",
                 rescan_s: float = 1.0):
        if mounts is None:
            try:
                mounts = parse_mountinfo(Path(proc, "self/mountinfo").read_text(errors="replace"))
            except OSError:
                mounts = CgroupMounts()
        self.mounts = mounts
        self.proc = Path(proc)
        self.rescan_s = rescan_s
        self._by_id: dict[int, str] = {}
        self._scanned = 0.0

    def _scan(self) -> None:
        root = self.mounts.v2
        self._scanned = time.monotonic()
        if root is None:
            return
        found = {}
        for dirpath, _, _ in os.walk(root):
            try:
                found[os.stat(dirpath).st_ino] = "/" + os.path.relpath(dirpath, root).lstrip(".")
            except OSError:
                continue  # removed while walking
        self._by_id = {i: p.rstrip("/") or "/" for i, p in found.items()}

    def path_of_id(self, cgroup_id: int) -> str | None:
        """The cgroup2 path whose inode is `cgroup_id`; a miss rescans at most once per
        `rescan_s` (new containers appear, short-lived ones vanish)."""
        if not cgroup_id:
            return None
        if cgroup_id not in self._by_id and time.monotonic() - self._scanned >= self.rescan_s:
            self._scan()
        return self._by_id.get(cgroup_id)

    def id_of_path(self, path: str) -> int | None:
        if self.mounts.v2 is None:
            return None
        try:
            return os.stat(self.mounts.v2 / path.strip("/")).st_ino
        except OSError:
            return None

    def subtree_ids(self, path: str) -> set[int]:
        """Ids of a cgroup2 directory and everything below it (for the in-kernel filter)."""
        if self.mounts.v2 is None:
            return set()
        top = self.mounts.v2 / path.strip("/")
        out = set()
        for dirpath, _, _ in os.walk(top):
            try:
                out.add(os.stat(dirpath).st_ino)
            except OSError:
                continue
        return out

    def proc_cgroups(self, pid: int) -> dict[str, str] | None:
        """{controller: path} of a live process; None when it has exited or is exiting:
        an exiting task is moved to the root cgroup (kernel/cgroup/cgroup.c cgroup_exit),
        so its /proc/PID/cgroup no longer says where it failed."""
        base = self.proc / str(pid)
        try:
            found = parse_proc_cgroup(read_text(base / "cgroup"))
            # Read after the cgroup file: exiting is for good, so a task not exiting now
            # was not exiting when its cgroup was read.
            # any bytes may be in a task name or a cgroup path: they are data
            stat = read_text(base / "stat")
        except OSError:
            return None
        return None if task_exiting(stat) else found
