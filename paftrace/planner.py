"""What the running kernel offers, and the probe plan chosen from it.

Decisions are made by probing (format files, kallsyms, a test map), never by
comparing version numbers. `KernelInfo` is a protocol so the planning logic is
tested with a fake kernel; `LiveKernel` reads this machine.
"""

from __future__ import annotations

import ctypes
import os
import platform
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Protocol

from paftrace.context import SYSTEM_VECTOR_NAMES
from paftrace.tracefs import TraceFs, TracepointFormat

# Names accepted by --no-feature.
FEATURES = {
    "ringbuf": "BPF ring buffer for failure records (else the perf buffer)",
    "irq-tracepoints": "irq:* tracepoints that tell softirq/hardirq context",
    "irq-vectors": "x86 irq_vectors:* tracepoints for LAPIC timer / IPI hardirqs",
    "kprobes": "all kprobes (warn_alloc, show_mem, allocator entry)",
    "warn-kprobe": "kprobe on warn_alloc: which failures reached the dmesg warning",
    "alloc-kprobe": "kprobe on the allocator entry: time spent before failing",
    "reclaim": "compaction/vmscan tracepoints: stalls before failures, kswapd, fallbacks",
}

# The allocator entry has been renamed several times; newest first. The one
# holding the mm_page_alloc tracepoint is wanted (KERNEL-FACTS 1.1, 2.1).
ALLOC_ENTRY_NAMES = (
    "__alloc_frozen_pages_noprof",  # 6.14: real core; __alloc_pages_noprof wraps it
    "__alloc_pages_noprof",         # 6.10: memory allocation profiling adds _noprof
    "__alloc_pages",                # 5.13: __alloc_pages_nodemask renamed
    "__alloc_pages_nodemask",       # 2.6.32 .. 5.12
)
# warn_alloc_failed became warn_alloc in 4.9 (KERNEL-FACTS 1.1).
WARN_NAMES = ("warn_alloc", "warn_alloc_failed")
# What warn_alloc() calls only once past its rate limit, to tell a printed warning
# from a rate-limited one: warn_alloc_show_mem() is inlined, but it calls
# __show_mem() (6.x; show_mem() before), which calls __show_free_areas() /
# show_free_areas(); dump_stack()/dump_stack_lvl() (5.13) come before them. Some of
# these live in lib/ and are not traceable, e.g. show_mem and dump_stack on 5.10,
# __show_mem on 6.1 (kernel matrix): the loader keeps the first that attaches.
PRINTED_MARKER_NAMES = ("__show_mem", "show_mem", "__show_free_areas", "show_free_areas",
                        "dump_stack_lvl", "dump_stack")

# x86 system vectors paftrace brackets (pagealloc.c SYSTEM_VECTOR, same order).
# Not irq_work: perf and the BPF ring buffer wake readers through irq_work, and
# the kernel refuses a perf/BPF attachment there (EPERM, seen on 6.18).
SYSTEM_VECTORS = SYSTEM_VECTOR_NAMES

BPF_MAP_CREATE = 0
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_RINGBUF = 27  # added in 5.8 (commit 457f44363a88)


class KernelInfo(Protocol):
    release: str

    def has_event(self, category: str, event: str) -> bool: ...

    def read_format(self, category: str, event: str) -> TracepointFormat | None: ...

    def has_function(self, name: str) -> bool:
        """A kernel function kprobes can attach to (in kallsyms and traceable)."""

    def kprobes_available(self) -> bool: ...

    def ringbuf_supported(self) -> bool: ...


class LiveKernel:
    """The running kernel, read through tracefs, /proc and the bpf() syscall."""

    def __init__(self, tracefs: TraceFs | None = None):
        self.tracefs = tracefs or TraceFs()
        self.release = platform.release()
        self._formats: dict[tuple[str, str], TracepointFormat | None] = {}

    def has_event(self, category: str, event: str) -> bool:
        return self.tracefs.has_event(category, event)

    def read_format(self, category: str, event: str) -> TracepointFormat | None:
        # Planning, the gfp table and reclaim's plan all ask: read each file once.
        key = (category, event)
        if key not in self._formats:
            self._formats[key] = self.tracefs.read_format(category, event)
        return self._formats[key]

    @cached_property
    def _functions(self) -> frozenset[str]:
        names = set()
        try:
            with open("/proc/kallsyms") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 3 and parts[1] in "tT":
                        names.add(parts[2])
        except OSError:
            pass
        return frozenset(names)

    def has_function(self, name: str) -> bool:
        return name in self._functions and self._traceable(name)

    @cached_property
    def _ftrace_functions(self) -> frozenset[str] | None:
        """Kprobe events refuse functions ftrace cannot trace (notrace, most of lib/)
        unless CONFIG_KPROBE_EVENTS_ON_NOTRACE; None when the list is unreadable."""
        root = self.tracefs.locate()
        try:
            with open(root / "available_filter_functions") as f:  # type: ignore[operator]
                return frozenset(line.split()[0] for line in f if line.strip())
        except (OSError, TypeError):
            return None

    def _traceable(self, name: str) -> bool:
        listed = self._ftrace_functions
        return listed is None or name in listed

    def kprobes_available(self) -> bool:
        # bcc uses the perf kprobe PMU (4.17+) or tracefs kprobe_events.
        root = self.tracefs.locate()
        return os.path.exists("/sys/bus/event_source/devices/kprobe/type") or bool(
            root and (root / "kprobe_events").exists()
        )

    def ringbuf_supported(self) -> bool:
        return can_create_map(BPF_MAP_TYPE_RINGBUF, max_entries=os.sysconf("SC_PAGE_SIZE"))


def can_create_map(map_type: int, max_entries: int, key_size: int = 0,
                   value_size: int = 0) -> bool:
    """Feature probe: try to create (and close) a BPF map of a type."""

    class MapAttr(ctypes.Structure):
        _fields_ = [("map_type", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
                    ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32),
                    ("pad", ctypes.c_uint8 * 112)]

    libc = ctypes.CDLL(None, use_errno=True)
    nr_bpf = {"x86_64": 321, "aarch64": 280}.get(platform.machine())
    if nr_bpf is None:
        return False
    attr = MapAttr(map_type=map_type, key_size=key_size, value_size=value_size,
                   max_entries=max_entries)
    fd = libc.syscall(nr_bpf, BPF_MAP_CREATE, ctypes.byref(attr), ctypes.sizeof(attr))
    if fd < 0:
        return False
    os.close(fd)
    return True


@dataclass
class FeatureStatus:
    name: str
    used: bool
    detail: str


@dataclass
class ProbePlan:
    """What the loader compiles in and attaches; also what `doctor` reports."""

    failure_field: str = "pfn"
    ringbuf: bool = True
    irq_tracepoints: bool = True
    system_vectors: list[str] = field(default_factory=list)
    warn_kprobe: str | None = None
    printed_kprobes: list[str] = field(default_factory=list)  # candidates, in order
    printed_kprobe: str | None = None  # the one that attached
    alloc_kprobe: str | None = None
    statuses: list[FeatureStatus] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # planned, but the kernel said no
    extra_probes: list[str] = field(default_factory=list)  # e.g. reclaim's tracepoints

    def probes(self) -> list[str]:
        """Names of what gets attached, for the `attached` record."""
        out = ["tracepoint:kmem:mm_page_alloc"]
        out.append("ringbuf" if self.ringbuf else "perfbuf")
        if self.irq_tracepoints:
            out += ["tracepoint:irq:irq_handler_entry/exit", "tracepoint:irq:softirq_entry/exit"]
        out += [f"tracepoint:irq_vectors:{v}_entry/exit" for v in self.system_vectors]
        for name in (self.warn_kprobe, self.printed_kprobe, self.alloc_kprobe):
            if name:
                out.append(f"kprobe:{name}")
        return out + self.extra_probes


class PlanError(RuntimeError):
    """The kernel lacks something paftrace cannot do without."""


def first_present(kernel: KernelInfo, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if kernel.has_function(n)), None)


def plan_probes(kernel: KernelInfo, disabled: frozenset[str] = frozenset(),
                want_alloc_kprobe: bool = True) -> ProbePlan:
    unknown = disabled - FEATURES.keys()
    if unknown:
        raise PlanError(f"unknown feature(s) for --no-feature: {', '.join(sorted(unknown))}; "
                        f"known: {', '.join(FEATURES)}")
    fmt = kernel.read_format("kmem", "mm_page_alloc")
    if fmt is None:
        raise PlanError("tracepoint kmem:mm_page_alloc is missing: the kernel needs "
                        "CONFIG_TRACEPOINTS/CONFIG_EVENT_TRACING (2.6.32+)")
    plan = ProbePlan()
    note = plan.statuses.append
    # The pfn field replaced the page pointer in ~4.1 (Namhyung Kim, "tracing, mm:
    # Record pfn instead of pointer to struct page"): failure is -1UL, before NULL.
    if fmt.get("pfn"):
        plan.failure_field = "pfn"
    elif fmt.get("page"):
        plan.failure_field = "page"
    else:
        raise PlanError("kmem:mm_page_alloc has neither a pfn nor a page field")
    note(FeatureStatus("failure-field", True, f"failure detected by {plan.failure_field} "
                       f"== {'-1' if plan.failure_field == 'pfn' else 'NULL'}"))

    # BPF ring buffer: 5.8 (commit 457f44363a88); older kernels use the perf buffer.
    if "ringbuf" in disabled:
        plan.ringbuf = False
        note(FeatureStatus("ringbuf", False, "disabled by --no-feature; perf buffer used"))
    else:
        plan.ringbuf = kernel.ringbuf_supported()
        note(FeatureStatus("ringbuf", plan.ringbuf, "BPF ring buffer" if plan.ringbuf else
                           "no BPF ring buffer (needs 5.8); perf buffer used"))

    irq_events = ("irq_handler_entry", "irq_handler_exit", "softirq_entry", "softirq_exit")
    have_irq = all(kernel.has_event("irq", e) for e in irq_events)
    plan.irq_tracepoints = have_irq and "irq-tracepoints" not in disabled
    if "irq-tracepoints" in disabled:
        note(FeatureStatus("irq-tracepoints", False, "disabled by --no-feature; context from "
                           "the stack only"))
    else:
        note(FeatureStatus("irq-tracepoints", have_irq, "irq:* tracepoints for context" if
                           have_irq else "irq:* tracepoints missing; context from the stack only"))

    # irq_vectors:* exist on x86 since 4.14 (reschedule since 5.10).
    if plan.irq_tracepoints and "irq-vectors" not in disabled:
        plan.system_vectors = [
            v for v in SYSTEM_VECTORS
            if kernel.has_event("irq_vectors", f"{v}_entry")
            and kernel.has_event("irq_vectors", f"{v}_exit")
        ]
    note(FeatureStatus("irq-vectors", bool(plan.system_vectors),
                       f"{len(plan.system_vectors)} x86 system vectors bracketed"
                       if plan.system_vectors else "no irq_vectors tracepoints used"))

    kprobes = kernel.kprobes_available()
    if "kprobes" in disabled:
        note(FeatureStatus("kprobes", False, "disabled by --no-feature"))
        return plan
    if not kprobes:
        note(FeatureStatus("kprobes", False, "kernel has no kprobes (CONFIG_KPROBES / "
                           "CONFIG_KPROBE_EVENTS off): warn_alloc marking and allocation "
                           "latency unavailable; everything else works"))
        return plan
    note(FeatureStatus("kprobes", True, "kprobes available"))
    if "warn-kprobe" not in disabled:
        plan.warn_kprobe = first_present(kernel, WARN_NAMES)
        if plan.warn_kprobe:
            plan.printed_kprobes = [n for n in PRINTED_MARKER_NAMES if kernel.has_function(n)]
    note(FeatureStatus("warn-kprobe", bool(plan.warn_kprobe),
                       f"kprobe:{plan.warn_kprobe}" if plan.warn_kprobe else
                       "disabled by --no-feature" if "warn-kprobe" in disabled else
                       f"none of {', '.join(WARN_NAMES)} in kallsyms"))
    if "alloc-kprobe" not in disabled and want_alloc_kprobe:
        plan.alloc_kprobe = first_present(kernel, ALLOC_ENTRY_NAMES)
    note(FeatureStatus("alloc-kprobe", bool(plan.alloc_kprobe),
                       f"kprobe:{plan.alloc_kprobe}" if plan.alloc_kprobe else
                       "disabled" if "alloc-kprobe" in disabled or not want_alloc_kprobe else
                       f"none of {', '.join(ALLOC_ENTRY_NAMES)} in kallsyms"))
    return plan


def headers_dir(release: str | None = None) -> Path | None:
    """Kernel headers bcc will compile against, or None."""
    env = os.environ.get("BCC_KERNEL_SOURCE")
    if env and Path(env, "include").is_dir():
        return Path(env)
    build = Path("/lib/modules", release or platform.release(), "build")
    if (build / "include").is_dir():
        return build
    if Path("/sys/kernel/kheaders.tar.xz").exists():
        return Path("/sys/kernel/kheaders.tar.xz")
    return None
