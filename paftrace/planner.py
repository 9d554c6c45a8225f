"""The one probe planner: what the running kernel offers, and the frozen plan chosen from it.

The plan is computed before anything is loaded and says everything the loader
will do: tracepoints, kprobes, reclaim/compaction events, the record transport,
each fallback and why. `--dry-run`, `doctor` and the loader all read it. Decisions
are made by probing (format files, kallsyms, a test map), never by comparing
version numbers. `KernelInfo` is a protocol so the planning logic is tested with
a fake kernel; `LiveKernel` reads this machine through bcc and tracefs.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import re
import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

from paftrace.context import SYSTEM_VECTOR_NAMES
from paftrace.tracefs import TraceFs, TracepointFormat

# Names accepted by --no-feature.
FEATURES = {
    "raw-tracepoint": "mm_page_alloc and the irq tracepoints as raw tracepoints (4.17+): "
                      "a fifth of a classic tracepoint's cost per event",
    "ringbuf": "BPF ring buffer for failure records (else the perf buffer)",
    "irq-tracepoints": "irq:* tracepoints that tell softirq/hardirq context",
    "irq-vectors": "x86 irq_vectors:* tracepoints for LAPIC timer / IPI hardirqs",
    "kprobes": "all kprobes (warn_alloc, show_mem, allocator entry)",
    "warn-kprobe": "kprobe on warn_alloc: which failures reached the dmesg warning",
    "alloc-kprobe": "kprobe on the allocator entry: time spent before failing",
    "memcg-kprobe": "kretprobe on the memcg kmem charge: refused charges seen in the kernel",
    "reclaim": "compaction/vmscan tracepoints: stalls before failures, kswapd, fallbacks",
    "cgroup-id": "bpf_get_current_cgroup_id(): each failure's cgroup2 id read in the kernel, "
                 "--cgroup filtered there",
}
# kernel/bpf/helpers.c: the helper is a BPF_CALL_0 function of this name (4.18, commit
# bf6fa2c893c5 "bpf: implement bpf_get_current_cgroup_id() helper"; CONFIG_CGROUPS).
CGROUP_ID_HELPER = "bpf_get_current_cgroup_id"
# Helper numbers (include/uapi/linux/bpf.h, __BPF_FUNC_MAPPER: fixed once released) of the
# helpers probed by loading a program that calls them.
HELPER_IDS = {CGROUP_ID_HELPER: 80}
# bpf(2) by number, for the helper probe (include/uapi/asm-generic/unistd.h and each
# architecture's syscall table); elsewhere the probe falls back to kallsyms.
BPF_SYSCALL = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "loongarch64": 280,
               "ppc64le": 361, "ppc64": 361, "s390x": 351, "armv7l": 386, "i686": 357}
BPF_PROG_LOAD = 5
# include/uapi/linux/bpf.h enum bpf_prog_type; RAW_TRACEPOINT is 4.17 (commit
# c4f6699dfcb8 "bpf: introduce BPF_RAW_TRACEPOINT").
BPF_PROG_TYPE_TRACEPOINT, BPF_PROG_TYPE_RAW_TRACEPOINT = 5, 17

# The allocator entry has been renamed several times; newest first. The one
# holding the mm_page_alloc tracepoint is wanted (mm/page_alloc.c: the function
# that calls trace_mm_page_alloc() in each version; docs/KERNEL-NOTES.md §1.1, §2.1).
ALLOC_ENTRY_NAMES = (
    "__alloc_frozen_pages_noprof",  # 6.14: real core; __alloc_pages_noprof wraps it
    "__alloc_pages_noprof",         # 6.10: memory allocation profiling adds _noprof
    "__alloc_pages",                # 5.13: __alloc_pages_nodemask renamed
    "__alloc_pages_nodemask",       # 2.6.32 .. 5.12
)
# warn_alloc_failed became warn_alloc in 4.9 (mm/page_alloc.c, 4.9).
WARN_NAMES = ("warn_alloc", "warn_alloc_failed")
# What warn_alloc() calls only once past its rate limit, to tell a printed warning
# from a rate-limited one: warn_alloc_show_mem() is inlined, but it calls
# __show_mem() (6.x; show_mem() before), which calls __show_free_areas() /
# show_free_areas(); dump_stack()/dump_stack_lvl() (5.13) come before them. Some of
# these live in lib/ and are not traceable, e.g. show_mem and dump_stack on 5.10,
# __show_mem on 6.1 (kernel matrix): the loader keeps the first that attaches.
PRINTED_MARKER_NAMES = ("__show_mem", "show_mem", "__show_free_areas", "show_free_areas",
                        "dump_stack_lvl", "dump_stack")

# The tracepoints attached raw when the kernel can (ProbePlan.is_raw): the allocation
# hook and every irq one. A raw tracepoint is found by the event's name alone
# (kernel/trace/bpf_trace.c, bpf_get_raw_tracepoint); the category is kept in what
# paftrace prints.
RAW_TRACEPOINT = "kmem:mm_page_alloc"
RAW_CATEGORIES = frozenset({"irq", "irq_vectors"})

# x86 system vectors paftrace brackets (paftrace.h SYSTEM_VECTORS, same order).
SYSTEM_VECTORS = SYSTEM_VECTOR_NAMES

# include/uapi/linux/bpf.h enum bpf_map_type (also bcc.table.BPF_MAP_TYPE_*).
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_RINGBUF = 27  # v5.8, commit 457f44363a88 ("bpf: Implement BPF ring buffer")


@dataclass(frozen=True)
class Tracepoint:
    """One tracepoint paftrace may attach: the single list of them (TRACEPOINTS)."""

    category: str
    event: str
    feature: str          # --no-feature name that turns it off ("core": cannot)
    why: str
    macro: str | None = None  # -D switch of reclaim.c compiled in when present

    @property
    def name(self) -> str:
        return f"{self.category}:{self.event}"


# reclaim.c's tracepoints: (category, event, its -D switch, why).
_RECLAIM_EVENTS = (
    ("vmscan", "mm_vmscan_direct_reclaim_begin", "HAVE_DIRECT_RECLAIM", "direct reclaim stalls"),
    ("compaction", "mm_compaction_try_to_compact_pages", "HAVE_TRY_COMPACT",
     "direct compaction stalls (4.4+)"),
    ("compaction", "mm_compaction_end", "HAVE_COMPACTION_END", "compaction outcomes (4.4+)"),
    ("compaction", "mm_compaction_migratepages", "HAVE_MIGRATEPAGES", "pages migrated"),
    ("vmscan", "mm_vmscan_wakeup_kswapd", "HAVE_WAKEUP_KSWAPD", "kswapd wakeup requests"),
    ("vmscan", "mm_vmscan_kswapd_wake", "HAVE_KSWAPD_WAKE", "kswapd wakes"),
    ("compaction", "mm_compaction_wakeup_kcompactd", "HAVE_WAKEUP_KCOMPACTD",
     "kcompactd wakeup requests (4.14+)"),
    ("compaction", "mm_compaction_kcompactd_wake", "HAVE_KCOMPACTD_WAKE",
     "kcompactd wakes (4.14+)"),
    ("kmem", "mm_page_alloc_extfrag", "HAVE_EXTFRAG", "migratetype fallbacks, attributed"),
    ("compaction", "mm_compaction_suitable", "HAVE_COMPACTION_SUITABLE",
     "why compaction skipped a zone"),
    ("compaction", "mm_compaction_deferred", "HAVE_COMPACTION_DEFERRED",
     "compaction deferred per zone"),
)
# The one list of tracepoints; field lists per kernel:
# include/trace/events/{kmem,irq,compaction,vmscan}.h and arch/x86/include/asm/trace/irq_vectors.h.
TRACEPOINTS = (
    Tracepoint("kmem", "mm_page_alloc", "core", "every allocation and its failure"),
    Tracepoint("irq", "irq_handler_entry", "irq-tracepoints", "hardirq context"),
    Tracepoint("irq", "irq_handler_exit", "irq-tracepoints", "hardirq context"),
    Tracepoint("irq", "softirq_entry", "irq-tracepoints", "softirq context and vector"),
    Tracepoint("irq", "softirq_exit", "irq-tracepoints", "softirq context and vector"),
    *(Tracepoint("irq_vectors", f"{vector}_{edge}", "irq-vectors",
                 f"x86 {vector} hardirqs (4.14+)")
      for vector in SYSTEM_VECTORS for edge in ("entry", "exit")),
    *(Tracepoint(category, event, "reclaim", why, macro)
      for category, event, macro, why in _RECLAIM_EVENTS),
    # Closes what _begin opened: attached whenever _begin is.
    Tracepoint("vmscan", "mm_vmscan_direct_reclaim_end", "reclaim", "direct reclaim stalls"),
)
IRQ_TRACEPOINTS = tuple(t for t in TRACEPOINTS if t.feature == "irq-tracepoints")
RECLAIM_TRACEPOINTS = tuple(t for t in TRACEPOINTS if t.macro is not None)


class KernelInfo(Protocol):
    release: str

    def has_event(self, category: str, event: str) -> bool: ...

    def read_format(self, category: str, event: str) -> TracepointFormat | None: ...

    def has_function(self, name: str) -> bool:
        """A kernel function kprobes can attach to (in kallsyms and traceable)."""

    def kprobes_available(self) -> bool: ...

    def ringbuf_supported(self) -> bool: ...

    def raw_tracepoints_supported(self) -> bool: ...

    def has_bpf_helper(self, name: str) -> bool:
        """The kernel implements this BPF helper (its function is in kallsyms)."""


# The page allocator's memcg kmem charge (mm/memcontrol.c), newest first; both return
# 0 or -ENOMEM: __memcg_kmem_charge_page (5.9+, the page-level charge after the
# obj_cgroup rework), __memcg_kmem_charge(page, gfp, order) before it.
MEMCG_CHARGE_NAMES = ("__memcg_kmem_charge_page", "__memcg_kmem_charge")

# Every function the planner may kprobe: bcc scans kallsyms once for all of them.
KPROBE_CANDIDATES = (*ALLOC_ENTRY_NAMES, *WARN_NAMES, *PRINTED_MARKER_NAMES,
                     *MEMCG_CHARGE_NAMES)


class LiveKernel:
    """The running kernel, read through bcc (tracepoints, kprobe-able functions, maps)
    and tracefs (format files). Create it after tracefs is mounted: bcc picks its
    tracefs path when imported."""

    def __init__(self, tracefs: TraceFs | None = None):
        self.tracefs = tracefs or TraceFs()
        self.release = platform.release()
        self._formats: dict[tuple[str, str], TracepointFormat | None] = {}

    @cached_property
    def _bpf(self):  # noqa: ANN202 - bcc.BPF, imported late on purpose
        from paftrace.loader import import_bcc  # noqa: PLC0415 - bcc only when planning

        return import_bcc().BPF

    def has_event(self, category: str, event: str) -> bool:
        return bool(self._bpf.tracepoint_exists(category, event))

    def read_format(self, category: str, event: str) -> TracepointFormat | None:
        # Planning and the gfp table both ask: read each file once.
        key = (category, event)
        if key not in self._formats:
            self._formats[key] = self.tracefs.read_format(category, event)
        return self._formats[key]

    @cached_property
    def _kprobe_functions(self) -> frozenset[str]:
        """bcc's list of kprobe-able functions (kallsyms minus the kprobe blacklist,
        init and irqentry text), narrowed to the candidates in one scan."""
        pattern = "^(" + "|".join(re.escape(n) for n in KPROBE_CANDIDATES) + ")$"
        try:
            found = self._bpf.get_kprobe_functions(pattern.encode())
        except OSError:
            # bcc reads debugfs's kprobes/blacklist and raises when debugfs is not
            # mounted: then take the candidates that kallsyms lists as text.
            return frozenset(kallsyms_text_symbols() & set(KPROBE_CANDIDATES))
        return frozenset(name.decode() for name in found)

    def has_function(self, name: str) -> bool:
        return name in self._kprobe_functions and self._traceable(name)

    @cached_property
    def _ftrace_functions(self) -> frozenset[str] | None:
        """Kprobe events refuse functions ftrace cannot trace (notrace, most of lib/)
        unless CONFIG_KPROBE_EVENTS_ON_NOTRACE; bcc does not check this list.
        None when it is unreadable."""
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

    def raw_tracepoints_supported(self) -> bool:
        loads = program_loads(BPF_PROG_TYPE_RAW_TRACEPOINT)
        return loads if loads is not None else bool(self._bpf.support_raw_tracepoint())

    @cached_property
    def _text_symbols(self) -> frozenset[str]:
        return frozenset(kallsyms_text_symbols())

    def has_bpf_helper(self, name: str) -> bool:
        # Loading a three-instruction program takes microseconds; parsing kallsyms took
        # 0.1 s, a sixth of start-up (6.18, 120,000 text symbols).
        loads = (program_loads(BPF_PROG_TYPE_TRACEPOINT, HELPER_IDS[name])
                 if name in HELPER_IDS else None)
        return loads if loads is not None else name in self._text_symbols


def program_loads(prog_type: int, helper_id: int | None = None) -> bool | None:
    """Whether the kernel loads a program of `prog_type` (that calls helper
    `helper_id`, if given). None: this architecture's bpf(2) number is unknown here,
    or bpf(2) itself failed for another reason than the program, e.g. EPERM."""
    number = BPF_SYSCALL.get(platform.machine())
    if number is None:
        return None
    # [call helper;] r0 = 0; exit (struct bpf_insn: code, dst/src registers, off, imm)
    steps = ((0x85, helper_id),) if helper_id is not None else ()
    insns = b"".join(struct.pack("=BBhi", code, 0, 0, imm)
                     for code, imm in (*steps, (0xb7, 0), (0x95, 0)))
    code = ctypes.create_string_buffer(insns, len(insns))
    license_ = ctypes.create_string_buffer(b"GPL")
    # union bpf_attr, BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, log_level,
    # log_size, log_buf, kern_version, prog_flags (older kernels take the zero tail).
    attr = struct.pack("=IIQQIIQII", prog_type, len(insns) // 8,
                       ctypes.addressof(code), ctypes.addressof(license_), 0, 0, 0, 0, 0)
    buf = ctypes.create_string_buffer(attr, len(attr))
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(ctypes.c_long(number), ctypes.c_int(BPF_PROG_LOAD), buf,
                      ctypes.c_uint(len(attr)))
    if fd >= 0:
        os.close(fd)
        return True
    # EINVAL: an unknown program type, or the verifier refused the call ("invalid func
    # unknown#80"); anything else (EPERM, ENOSYS) says nothing about either.
    return False if ctypes.get_errno() == errno.EINVAL else None


def kallsyms_text_symbols() -> set[str]:
    try:
        with open("/proc/kallsyms") as f:
            return {parts[2] for parts in map(str.split, f)
                    if len(parts) >= 3 and parts[1] in "tTwW"}
    except OSError:
        return set()


def can_create_map(map_type: int, max_entries: int, key_size: int = 0,
                   value_size: int = 0) -> bool:
    """Feature probe by trying: create (and close) a BPF map of a type through libbcc
    (bcc_create_map, src/cc/libbpf.c), on any architecture."""
    from paftrace.loader import LoaderError, import_bcc  # noqa: PLC0415

    try:
        lib = import_bcc().libbcc.lib
    except LoaderError:
        return False
    create = lib.bcc_create_map
    create.restype = ctypes.c_int
    create.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int]
    fd = create(map_type, b"paftrace_probe", key_size, value_size, max_entries, 0)
    if fd < 0:
        return False
    os.close(fd)
    return True


@dataclass(frozen=True)
class FeatureStatus:
    name: str
    used: bool
    detail: str


@dataclass(frozen=True)
class ReclaimPlan:
    """reclaim.c's part of the plan: its -D switches and tracepoints."""

    cflags: tuple[str, ...] = ()
    events: tuple[str, ...] = ()   # attached, "category:event"
    missing: tuple[str, ...] = ()  # absent on this kernel


@dataclass(frozen=True)
class ProbePlan:
    """Everything the loader compiles in and attaches, decided before loading;
    what `--dry-run` prints and `doctor` reports."""

    release: str = ""
    failure_field: str = "pfn"
    raw_tracepoints: bool = False  # the hot tracepoints attached raw (is_raw)
    ringbuf: bool = True
    irq_tracepoints: bool = True
    system_vectors: tuple[str, ...] = ()
    warn_kprobe: str | None = None
    printed_kprobes: tuple[str, ...] = ()  # candidates, in order: the first that attaches
    alloc_kprobe: str | None = None
    reclaim: ReclaimPlan | None = None
    cgroup_id: bool = False  # HAVE_CGROUP_ID: records carry bpf_get_current_cgroup_id()
    memcg_kprobe: str | None = None  # kretprobe on the memcg kmem charge
    statuses: tuple[FeatureStatus, ...] = ()

    def tracepoints(self) -> tuple[str, ...]:
        """Every tracepoint the program attaches, "category:event"."""
        out = ["kmem:mm_page_alloc"]
        if self.irq_tracepoints:
            out += [t.name for t in IRQ_TRACEPOINTS]
        out += [f"irq_vectors:{v}_{edge}" for v in self.system_vectors
                for edge in ("entry", "exit")]
        if self.reclaim is not None:
            out += self.reclaim.events
        return tuple(out)

    def is_raw(self, tracepoint: str) -> bool:
        """Attached as a raw tracepoint: with raw tracepoints, the hot ones (the
        allocation hook and the irq ones, on every allocation and interrupt); the
        reclaim tracepoints, rare and reading many fields, stay classic."""
        return self.raw_tracepoints and (tracepoint == RAW_TRACEPOINT
                                         or tracepoint.split(":")[0] in RAW_CATEGORIES)

    def attach_name(self, tracepoint: str) -> str:
        """The name bcc attaches `tracepoint` ("category:event") by: a raw one by
        its event name alone."""
        return tracepoint.split(":")[1] if self.is_raw(tracepoint) else tracepoint

    def probe_name(self, tracepoint: str) -> str:
        """`tracepoint` as the probe lists print it: its kind, then "category:event"."""
        return f"{'raw_' if self.is_raw(tracepoint) else ''}tracepoint:{tracepoint}"

    def kprobes(self) -> tuple[str, ...]:
        """Kprobes always attached (the printed marker is the first of
        `printed_kprobes` that the kernel accepts)."""
        return tuple(n for n in (self.warn_kprobe, self.alloc_kprobe) if n)

    def probes(self) -> list[str]:
        """What gets attached, as listed in `--dry-run` and the `attached` record."""
        out = [self.probe_name(t) for t in self.tracepoints()]
        out.append("ringbuf" if self.ringbuf else "perfbuf")
        out += [f"kprobe:{k}" for k in self.kprobes()]
        if self.printed_kprobes:
            out.append(f"kprobe:{self.printed_kprobes[0]}")
        if self.memcg_kprobe:
            out.append(f"kretprobe:{self.memcg_kprobe}")
        return out


class PlanError(RuntimeError):
    """The kernel lacks something paftrace cannot do without."""


def first_present(kernel: KernelInfo, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if kernel.has_function(n)), None)


def plan_probes(kernel: KernelInfo, disabled: frozenset[str] = frozenset(),
                want_alloc_kprobe: bool = True, pageblock_order: int = 9) -> ProbePlan:
    unknown = disabled - FEATURES.keys()
    if unknown:
        raise PlanError(f"unknown feature(s) for --no-feature: {', '.join(sorted(unknown))}; "
                        f"known: {', '.join(FEATURES)}")
    fmt = kernel.read_format("kmem", "mm_page_alloc")
    if fmt is None:
        raise PlanError("tracepoint kmem:mm_page_alloc is missing: the kernel needs "
                        "CONFIG_TRACEPOINTS/CONFIG_EVENT_TRACING (2.6.32+)")
    statuses: list[FeatureStatus] = []
    note = statuses.append
    # The pfn field replaced the page pointer in ~4.1 (Namhyung Kim, "tracing, mm:
    # Record pfn instead of pointer to struct page"): failure is -1UL, before NULL.
    if fmt.get("pfn"):
        failure_field = "pfn"
    elif fmt.get("page"):
        failure_field = "page"
    else:
        raise PlanError("kmem:mm_page_alloc has neither a pfn nor a page field")
    note(FeatureStatus("failure-field", True, f"failure detected by {failure_field} "
                       f"== {'-1' if failure_field == 'pfn' else 'NULL'}"))

    raw = _plan_raw_tracepoint(kernel, disabled, note)
    if "ringbuf" in disabled:
        ringbuf = False
        note(FeatureStatus("ringbuf", False, "disabled by --no-feature; perf buffer used"))
    else:
        ringbuf = kernel.ringbuf_supported()
        note(FeatureStatus("ringbuf", ringbuf, "BPF ring buffer" if ringbuf else
                           "no BPF ring buffer (needs 5.8); perf buffer used"))

    have_irq = all(kernel.has_event(t.category, t.event) for t in IRQ_TRACEPOINTS)
    irq_tracepoints = have_irq and "irq-tracepoints" not in disabled
    if "irq-tracepoints" in disabled:
        note(FeatureStatus("irq-tracepoints", False, "disabled by --no-feature; context from "
                           "the stack only"))
    else:
        note(FeatureStatus("irq-tracepoints", have_irq, "irq:* tracepoints for context" if
                           have_irq else "irq:* tracepoints missing; context from the stack only"))

    # irq_vectors:* exist on x86 since 4.14 (reschedule since 5.10).
    vectors: tuple[str, ...] = ()
    if irq_tracepoints and "irq-vectors" not in disabled:
        vectors = tuple(v for v in SYSTEM_VECTORS
                        if kernel.has_event("irq_vectors", f"{v}_entry")
                        and kernel.has_event("irq_vectors", f"{v}_exit"))
    note(FeatureStatus("irq-vectors", bool(vectors),
                       f"{len(vectors)} x86 system vectors bracketed"
                       if vectors else "no irq_vectors tracepoints used"))

    warn, printed, alloc = _plan_kprobes(kernel, disabled, want_alloc_kprobe, note)
    memcg = _plan_memcg_kprobe(kernel, disabled, note)
    reclaim = _plan_reclaim_part(kernel, disabled, pageblock_order, note)
    cgroup_id = "cgroup-id" not in disabled and kernel.has_bpf_helper(CGROUP_ID_HELPER)
    note(FeatureStatus("cgroup-id", cgroup_id,
                       "each failure's cgroup2 id read in the kernel; --cgroup filtered there"
                       if cgroup_id else "disabled by --no-feature" if "cgroup-id" in disabled
                       else f"no {CGROUP_ID_HELPER}() (4.18+, CONFIG_CGROUPS): the cgroup "
                       "comes from /proc/PID/cgroup, --cgroup filters in user space"))
    return ProbePlan(release=kernel.release, failure_field=failure_field,
                     raw_tracepoints=raw, ringbuf=ringbuf,
                     irq_tracepoints=irq_tracepoints, system_vectors=vectors,
                     warn_kprobe=warn, printed_kprobes=printed, alloc_kprobe=alloc,
                     reclaim=reclaim, cgroup_id=cgroup_id, memcg_kprobe=memcg,
                     statuses=tuple(statuses))


def _plan_raw_tracepoint(kernel: KernelInfo, disabled: frozenset[str], note) -> bool:
    if "raw-tracepoint" in disabled:
        note(FeatureStatus("raw-tracepoint", False, "disabled by --no-feature; "
                           "kmem:mm_page_alloc and the irq tracepoints attached as classic "
                           "tracepoints"))
        return False
    raw = kernel.raw_tracepoints_supported()
    note(FeatureStatus("raw-tracepoint", raw, "mm_page_alloc and the irq tracepoints "
                       "attached raw" if raw else "no raw tracepoints (needs 4.17): "
                       "kmem:mm_page_alloc and the irq tracepoints attached as classic "
                       "tracepoints"))
    return raw


def _plan_memcg_kprobe(kernel: KernelInfo, disabled: frozenset[str], note) -> str | None:
    """The memcg charge's kretprobe: a refused charge seen directly, so memcg-limit needs
    no user-space reading of the cgroup (which may be gone by then)."""
    if disabled & {"kprobes", "memcg-kprobe"}:
        note(FeatureStatus("memcg-kprobe", False, "disabled by --no-feature"))
        return None
    name = first_present(kernel, MEMCG_CHARGE_NAMES) if kernel.kprobes_available() else None
    note(FeatureStatus("memcg-kprobe", bool(name),
                       f"kretprobe:{name}: refused memcg charges seen in the kernel" if name
                       else "no kprobes or none of " + ", ".join(MEMCG_CHARGE_NAMES) +
                       ": memcg-limit judged from the cgroup's counters read in user space"))
    return name


def _plan_kprobes(kernel: KernelInfo, disabled: frozenset[str], want_alloc_kprobe: bool,
                  note) -> tuple[str | None, tuple[str, ...], str | None]:
    if "kprobes" in disabled:
        note(FeatureStatus("kprobes", False, "disabled by --no-feature"))
        return None, (), None
    if not kernel.kprobes_available():
        note(FeatureStatus("kprobes", False, "kernel has no kprobes (CONFIG_KPROBES / "
                           "CONFIG_KPROBE_EVENTS off): warn_alloc marking and allocation "
                           "latency unavailable; everything else works"))
        return None, (), None
    note(FeatureStatus("kprobes", True, "kprobes available"))
    warn, printed = None, ()
    if "warn-kprobe" not in disabled:
        warn = first_present(kernel, WARN_NAMES)
        if warn:
            printed = tuple(n for n in PRINTED_MARKER_NAMES if kernel.has_function(n))
    note(FeatureStatus("warn-kprobe", bool(warn),
                       f"kprobe:{warn}" if warn else
                       "disabled by --no-feature" if "warn-kprobe" in disabled else
                       f"none of {', '.join(WARN_NAMES)} in kallsyms"))
    alloc = None
    if "alloc-kprobe" not in disabled and want_alloc_kprobe:
        alloc = first_present(kernel, ALLOC_ENTRY_NAMES)
    note(FeatureStatus("alloc-kprobe", bool(alloc),
                       f"kprobe:{alloc}" if alloc else
                       "disabled" if "alloc-kprobe" in disabled or not want_alloc_kprobe else
                       f"none of {', '.join(ALLOC_ENTRY_NAMES)} in kallsyms"))
    return warn, printed, alloc


def _plan_reclaim_part(kernel: KernelInfo, disabled: frozenset[str], pageblock_order: int,
                       note) -> ReclaimPlan | None:
    if "reclaim" in disabled:
        note(FeatureStatus("reclaim", False, "disabled by --no-feature"))
        return None
    plan = plan_reclaim(kernel, pageblock_order)
    if not plan.events:
        note(FeatureStatus("reclaim", False,
                           "no compaction/vmscan tracepoints: no stall timeline"))
        return None
    note(FeatureStatus("reclaim", True, f"{len(plan.events)} compaction/vmscan/extfrag "
                       "tracepoints" + (f"; missing {', '.join(plan.missing)}"
                                        if plan.missing else "")))
    return plan


def plan_reclaim(kernel: KernelInfo, pageblock_order: int = 9) -> ReclaimPlan:
    """reclaim.c's switches: each tracepoint that exists, and the fields that vary."""
    cflags = [f"-DPAGEBLOCK_ORDER={pageblock_order}"]
    events: list[str] = []
    missing: list[str] = []
    for tp in RECLAIM_TRACEPOINTS:
        fmt = (kernel.read_format(tp.category, tp.event)
               if kernel.has_event(tp.category, tp.event) else None)
        if fmt is None:
            missing.append(tp.name)
            continue
        if tp.event == "mm_compaction_try_to_compact_pages":
            if not kernel.has_event("kmem", "mm_page_alloc"):
                # Without the allocation's result the stall cannot close.
                missing.append("kmem:mm_page_alloc")
                continue
            if fmt.get("prio"):  # `mode` (enum migrate_mode) in 4.4, `prio` from 4.14
                cflags.append("-DHAVE_COMPACT_PRIO")
        if tp.event == "mm_page_alloc_extfrag" and fmt.get("change_ownership"):
            cflags.append("-DHAVE_EXTFRAG_OWNERSHIP")
        cflags.append(f"-D{tp.macro}")
        events.append(tp.name)
    if "vmscan:mm_vmscan_direct_reclaim_begin" in events:
        events.append("vmscan:mm_vmscan_direct_reclaim_end")
    return ReclaimPlan(cflags=tuple(cflags), events=tuple(events), missing=tuple(missing))


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
