"""Gathers, for one failure, what `paftrace.cause.classify` needs from the live system:
the task's cgroup (from the record's cgroup id, or /proc/PID/cgroup), its memory
cgroup readings, the node restriction (__GFP_THISNODE, cpuset), and runs it.

The memcg files are read when the record is decoded, milliseconds after the
failure; a process or cgroup that is gone by then is said so in the evidence.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from paftrace.cause import MemcgFacts, NodeRestriction, Request, ZoneChecks, classify
from paftrace.cgroups import CgroupResolver, unit_of
from paftrace.gfp import GfpTable
from paftrace.procfs.memcg import MemcgReading, read_chain
from paftrace.procfs.sampler import MemorySample
from paftrace.records import Failure
from paftrace.triage import cause_advice


def parse_cpulist(text: str) -> set[int]:
    """'0-3,8,10-11' -> {0, 1, 2, 3, 8, 10, 11}."""
    out: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        out.update(range(int(low), int(high or low) + 1))
    return out


def read_numa(sys_root: str = "/sys") -> tuple[dict[int, int], set[int]]:
    """(cpu -> node, nodes with memory) from /sys/devices/system/node."""
    base = Path(sys_root, "devices/system/node")
    cpu_node: dict[int, int] = {}
    try:
        for d in base.glob("node[0-9]*"):
            node = int(d.name[4:])
            for cpu in parse_cpulist((d / "cpulist").read_text()):
                cpu_node[cpu] = node
        memory = parse_cpulist((base / "has_memory").read_text())
    except (OSError, ValueError):
        memory = set(cpu_node.values()) or {0}
    return cpu_node, memory


def status_mems_allowed(text: str) -> set[int] | None:
    for line in text.splitlines():
        if line.startswith("Mems_allowed_list:"):
            return parse_cpulist(line.split(":", 1)[1])
    return None


class TtlCache:
    """Values kept `ttl_s`: a storm of failures from one task reads its files once per
    period, not once per record."""

    def __init__(self, ttl_s: float, size: int = 4096):
        self.ttl_ns = int(ttl_s * 1e9)
        self.size = size
        self._items: dict = {}

    def get(self, key, make):
        now = time.monotonic_ns()
        hit = self._items.get(key)
        if hit is not None and now - hit[0] < self.ttl_ns:
            return hit[1]
        if len(self._items) >= self.size:
            self._items.clear()
        value = make()
        self._items[key] = (now, value)
        return value


class Attributor:
    """Live cgroup/memcg/NUMA facts per failure, with readings kept to see counters rise."""

    def __init__(self, table: GfpTable, resolver: CgroupResolver | None = None,
                 proc: str = "/proc", sys_root: str = "/sys", cache_s: float = 0.1):
        self.table = table
        self.resolver = resolver or CgroupResolver(proc=proc)
        self.proc = Path(proc)
        self.cpu_node, self.memory_nodes = read_numa(sys_root)
        self._previous: dict[str, MemcgReading] = {}
        self._cgroups = TtlCache(cache_s)
        self._memcg = TtlCache(cache_s)
        self._requests: dict[tuple[int, int, str], Request] = {}
        self._zone_checks = ZoneChecks()
        self._verdicts: dict[tuple, tuple[tuple, str, dict]] = {}

    def _shared_cgroup(self, failure: Failure, cgroup_id: int) -> dict:
        """The `cgroup` object of a failure record (README JSON contract), cached and
        shared, so never changed: each record gets a copy (annotate)."""
        key = (failure.pid, cgroup_id, failure.context)
        return self._cgroups.get(key, lambda: self._cgroup_of(failure, cgroup_id))

    def _cgroup_of(self, failure: Failure, cgroup_id: int) -> dict:
        mounts = self.resolver.mounts
        out: dict = {"id": cgroup_id or None, "path": None, "memory_path": None,
                     "memory_version": mounts.memory_version, "unit": None}
        if cgroup_id:
            out["path"] = self.resolver.path_of_id(cgroup_id)
        if failure.context != "process":
            out["note"] = (f"{failure.context} context: the interrupted task's cgroup, not "
                           "the requester's")
        procs = None
        if mounts.memory_version == 1 or out["path"] is None:
            # Only then: with cgroup2 and the kernel's id resolved the process adds nothing,
            # and in a failure storm of short-lived tasks reading its cgroup and stat
            # files was a fifth of the tracer's CPU (py-spy, workload (c)).
            procs = self.resolver.proc_cgroups(failure.pid)
        if out["path"] is None and procs is not None:
            out["path"] = procs.get("")  # the cgroup2 line "0::/path", hybrid hosts too
        if mounts.memory_version == 1:
            if procs is None:
                out["missing"] = (f"process {failure.pid} exited before its memory cgroup "
                                  "could be read")
            else:
                out["memory_path"] = procs.get("memory")
        else:
            out["memory_path"] = out["path"]
            if out["path"] is None:
                out["missing"] = ("cgroup id not resolved and process "
                                  f"{failure.pid} has exited" if cgroup_id else
                                  f"no cgroup id in the record and process {failure.pid} "
                                  "has exited")
        unit = unit_of(out["memory_path"] or out["path"])
        out["unit"] = unit.to_json() if unit else None
        return out

    def memcg_facts(self, cgroup: dict) -> MemcgFacts:
        return self._memcg.get(cgroup.get("memory_path"), lambda: self._memcg_facts(cgroup))

    def _memcg_facts(self, cgroup: dict) -> MemcgFacts:
        mounts = self.resolver.mounts
        version = mounts.memory_version
        root = mounts.v1_memory if version == 1 else mounts.v2
        path = cgroup.get("memory_path")
        if version is None or root is None:
            return MemcgFacts(missing="no memory cgroup controller mounted")
        if path is None:
            return MemcgFacts(missing=cgroup.get("missing") or "the task's cgroup is unknown")
        chain = read_chain(root, path, version, time.monotonic_ns())
        if not chain:
            return MemcgFacts(missing=f"memory cgroup {path} was removed before it could be "
                                      "read")
        facts = MemcgFacts(chain, {r.path: self._previous[r.path] for r in chain
                                   if r.path in self._previous})
        for r in chain:
            self._previous[r.path] = r
        return facts

    def restriction(self, failure: Failure, flags: frozenset[str]) -> NodeRestriction | None:
        if len(self.memory_nodes) < 2:
            return None
        if "__GFP_THISNODE" in flags and failure.cpu in self.cpu_node:
            node = self.cpu_node[failure.cpu]
            return NodeRestriction(frozenset({node}),
                                   f"__GFP_THISNODE (node {node} of CPU {failure.cpu}, "
                                   "assumed: the record does not carry the target node)")
        if failure.context != "process":
            return None  # interrupts are not bound by the interrupted task's cpuset
        try:
            mems = status_mems_allowed((self.proc / str(failure.pid) / "status").read_text(
                errors="replace"))
        except OSError:
            return None
        if mems and not self.memory_nodes <= mems:
            return NodeRestriction(frozenset(mems & self.memory_nodes),
                                   "cpuset mems_allowed of the task")
        return None

    def request(self, order: int, mask: int, context: str) -> Request:
        """One Request per (order, mask, context): what is derived from it (flags,
        zones, watermark rule) is computed once, not once per failure."""
        key = (order, mask, context)
        req = self._requests.get(key)
        if req is None:
            if len(self._requests) >= 4096:
                self._requests.clear()
            req = self._requests[key] = Request(order, mask, self.table, context)
        return req

    def annotate(self, failure: Failure, mask: int, cgroup_id: int,
                 sample: MemorySample | None, charge_refused: bool | None = None) -> None:
        """Fill failure.cgroup, failure.cause and failure.cause_evidence. `charge_refused`:
        what the memcg charge kretprobe saw for this failure (None without it)."""
        cgroup = self._shared_cgroup(failure, cgroup_id)
        failure.cgroup = dict(cgroup)  # a copy, as records are rendered independently
        req = self.request(failure.order, mask, failure.context)
        memcg = self.memcg_facts(cgroup) if "__GFP_ACCOUNT" in req.flags and \
            failure.context == "process" else None
        restriction = self.restriction(failure, req.flags)
        age = None if sample is None else round((failure.ts_ns - sample.ts_ns) / 1e6, 1)
        # The failures of a storm meet the same situation: the same request, sample,
        # memcg reading, stall answer and cgroup (cached objects, compared by identity,
        # held by the entry so no id is reused). Their verdict is judged once; only
        # the sample's age is each failure's own.
        situation = (req, sample, memcg, failure.stall, cgroup)
        key = (tuple(map(id, situation)), charge_refused, restriction)
        hit = self._verdicts.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], situation)):
            failure.cause, shared = hit[1], hit[2]
        else:
            failure.cause, evidence, cites_age = self._judge(
                failure, req, sample, age, memcg, charge_refused, restriction, cgroup)
            if cites_age:  # this failure's own sentence
                failure.cause_evidence = evidence
                return
            shared = {k: v for k, v in evidence.items() if k != "sample_age_ms"}
            if len(self._verdicts) >= 256:
                self._verdicts.clear()
            self._verdicts[key] = (situation, failure.cause, shared)
        failure.shared_evidence = shared
        failure.cause_evidence = {**shared, "sample_age_ms": age}

    def _judge(self, failure: Failure, req: Request, sample: MemorySample | None,
               age: float | None, memcg: MemcgFacts | None, charge_refused: bool | None,
               restriction: NodeRestriction | None, cgroup: dict) -> tuple[str, dict, bool]:
        """(cause, evidence with advice, whether the sentence cites the sample's age:
        then it is this failure's own, not shared by failures in the same situation)."""
        if memcg is not None and charge_refused is not None:
            memcg = replace(memcg, charge_refused=charge_refused)
        result = classify(req, sample, age, memcg, restriction, failure.stall,
                          self._zone_checks)
        evidence = result.to_json()
        evidence["advice"] = [{"text": text, "evidence": ev} for text, ev in
                              cause_advice(result.cause, result.evidence, cgroup)]
        return result.cause, evidence, result.cites_age


class CgroupFilter:
    """`--cgroup PATH`: a cgroup and everything below it, matched against the memory
    cgroup path (v1 hosts) and the cgroup2 path. On cgroup2 the kernel also filters by
    id (`kernel_ids`), so most unrelated failures never leave the kernel."""

    def __init__(self, path: str | None, resolver: CgroupResolver):
        self.path = "/" + path.strip("/") if path is not None else None
        self.resolver = resolver

    def matches(self, cgroup: dict | None) -> bool:
        if self.path is None:
            return True
        if self.path == "/":
            return True
        for p in ((cgroup or {}).get("memory_path"), (cgroup or {}).get("path")):
            if p and (p == self.path or p.startswith(self.path + "/")):
                return True
        return False

    def kernel_ids(self) -> set[int]:
        """cgroup2 ids of the subtree, for the in-kernel filter map (empty: filter in
        user space only, e.g. a v1 memory cgroup path)."""
        if self.path is None or self.path == "/":
            return set()
        return self.resolver.subtree_ids(self.path)

    def describe(self) -> str | None:
        return self.path

    def missing(self) -> str | None:
        """Why the PATH cannot be a cgroup here (a typo must not silently match nothing)."""
        if self.path is None or self.path == "/":
            return None
        mounts = self.resolver.mounts
        roots = [r for r in (mounts.v2, mounts.v1_memory) if r is not None]
        if any((r / self.path.lstrip("/")).is_dir() for r in roots):
            return None
        where = " or ".join(str(r) for r in roots) or "no cgroup mount"
        return f"--cgroup {self.path}: no such cgroup under {where}"
