"""The one place that compiles, loads and attaches paftrace's BPF program.

Order matters: root check, tracefs mounted (before `import bcc`, which picks
its tracefs path at import time), the frozen probe plan, headers present,
compile with the plan's -D switches, attach the optional probes it chose.
Reading the maps (paftrace/maps.py), symbolizing (paftrace/symbols.py) and
delivering records (paftrace/session.py) are other modules' jobs.
"""

from __future__ import annotations

import ctypes
import os
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from paftrace import contract
from paftrace.gfp import GfpTable, table_from_print_fmt
from paftrace.options import TraceOptions, comm_words
from paftrace.pacing import POLL_MS
from paftrace.planner import LiveKernel, PlanError, ProbePlan, headers_dir, plan_probes
from paftrace.reclaim import BPF_SOURCE as RECLAIM_SOURCE
from paftrace.reclaim import pageblock_order
from paftrace.release import release
from paftrace.tracefs import TraceFs, TraceFsError

BPF_SOURCE = "pagealloc.c"
# --all adaptive stack sampling: at most about this many stack walks per second
# (the kernel adapts 1-in-N on each CPU, see next_sample_every in pagealloc.c).
STACK_SAMPLES_PER_S = 2000
# Besides a quiet CPU's first record (pagealloc.c, ringbuf_wakeup_flag), the ring buffer
# wakes its reader once this fraction of it may be full: three quarters stay free for
# the time the reader needs to be scheduled.
RINGBUF_WAKE_FRACTION = 4
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
RINGBUF_RECORD_HEADER = 8  # BPF_RINGBUF_HDR_SZ (include/uapi/linux/bpf.h)


class LoaderError(RuntimeError):
    """A condition the user can meet; printed as one line, never a traceback."""


def bpf_dir() -> Path:
    return Path(str(resources.files("paftrace") / "bpf"))


def bpf_source_path(name: str = BPF_SOURCE) -> Path:
    return bpf_dir() / name


def require_root(what: str = "tracing") -> None:
    if os.geteuid() != 0:
        raise LoaderError(f"{what} needs root (BPF and tracefs): run it with sudo, "
                          "e.g. sudo paftrace --order 4")


def headers_hint(release: str) -> str:
    return (f"no kernel headers for {release}: bcc compiles against them. "
            f"Install them (Debian/Ubuntu: apt-get install linux-headers-{release}); "
            "where the distribution has no package for this kernel, run scripts/setup, "
            f"which links the nearest headers as /lib/modules/{release}/build")


def import_bcc() -> Any:
    try:
        import bcc  # noqa: PLC0415 - must follow the tracefs mount
    except ImportError as exc:
        raise LoaderError(
            f"cannot import bcc ({exc}): install the distribution's bcc "
            "(apt-get install python3-bpfcc bpfcc-tools) and run paftrace with /usr/bin/python3 "
            "or a venv created with --system-site-packages (scripts/setup does this)") from exc
    if not hasattr(bcc, "BPF"):
        raise LoaderError("the 'bcc' module found is not BPF Compiler Collection (the PyPI "
                          "package 'bcc' is unrelated): pip uninstall bcc; use python3-bpfcc")
    return bcc


@dataclass(frozen=True)
class Prepared:
    kernel: LiveKernel
    plan: ProbePlan
    gfp_table: GfpTable


def prepare(options: TraceOptions) -> Prepared:
    """Checks and the probe plan, shared by the tracer, `--dry-run` and `doctor`."""
    require_root()
    tracefs = TraceFs()
    try:
        tracefs.ensure_mounted()
    except TraceFsError as exc:
        raise LoaderError(str(exc)) from exc
    kernel = LiveKernel(tracefs)
    try:
        plan = plan_probes(kernel, options.disabled, pageblock_order=pageblock_order())
    except PlanError as exc:
        raise LoaderError(str(exc)) from exc
    fmt = kernel.read_format("kmem", "mm_page_alloc")
    assert fmt is not None  # plan_probes checked it
    table = table_from_print_fmt(fmt.print_fmt, source=f"running kernel {kernel.release} "
                                 "(kmem:mm_page_alloc print fmt)")
    return Prepared(kernel, plan, table)


def kernel_cgroup_filter(options: TraceOptions, plan: ProbePlan) -> bool:
    """--cgroup filters in the kernel when the path is a cgroup2 directory (the run
    resolved its ids: options.cgroup_ids) and the kernel has the cgroup id helper."""
    return bool(options.cgroup_ids) and plan.cgroup_id


def ringbuf_wake_every(pages: int, cpus: int | None = None) -> int:
    """Records a CPU writes before it wakes the reader: all CPUs together leave at
    most 1/RINGBUF_WAKE_FRACTION of the ring buffer unannounced."""
    record = contract.struct("failure_event")
    size = -(-(ctypes.sizeof(record) + RINGBUF_RECORD_HEADER) // 8) * 8
    capacity = pages * PAGE_SIZE // size
    return max(1, capacity // (RINGBUF_WAKE_FRACTION * (cpus or os.cpu_count() or 1)))


def cflags_for(options: TraceOptions, plan: ProbePlan, table: GfpTable) -> list[str]:
    flags = [
        f"-I{bpf_dir()}",  # paftrace.h, the kernel/user contract
        f"-DORDER_MIN={options.order_min}",
        f"-DORDER_MAX={options.order_max}",
        f"-DSTACK_STORAGE_SIZE={options.stack_storage}",
        f"-DRINGBUF_PAGES={options.ringbuf_pages}",
        f"-DRINGBUF_WAKE_EVERY={ringbuf_wake_every(options.ringbuf_pages)}",
        f"-DRINGBUF_QUIET_NS={POLL_MS * 1_000_000}ULL",  # paftrace/pacing.py
        f"-DAGG_ENTRIES={options.agg_entries}",
        f"-DSITE_RECORDS={options.records_per_site}",
        f"-DSAMPLE_PERIOD_NS={(os.cpu_count() or 1) * 1_000_000_000 // STACK_SAMPLES_PER_S}ULL",
        f"-DGFP_DIRECT_RECLAIM={table.value_of('__GFP_DIRECT_RECLAIM') or 0}ULL",
        f"-DGFP_NOWARN={table.value_of('__GFP_NOWARN') or 0}ULL",
        "-Wno-macro-redefined",
    ]
    switches = {"-DHAVE_PFN": plan.failure_field == "pfn", "-DUSE_RINGBUF": plan.ringbuf,
                "-DUSE_RAW_TP": plan.raw_tracepoints,
                "-DHAVE_IRQ_TP": plan.irq_tracepoints,
                "-DHAVE_KPROBE_WARN": plan.warn_kprobe is not None,
                "-DHAVE_KPROBE_ALLOC": plan.alloc_kprobe is not None,
                "-DTRACE_ALL": options.trace_all, "-DATOMIC_ONLY": options.atomic_only,
                "-DWARN_ONLY": options.warn_only, "-DHAVE_CGROUP_ID": plan.cgroup_id,
                "-DHAVE_KPROBE_MEMCG": plan.memcg_kprobe is not None,
                "-DFILTER_CGROUP": kernel_cgroup_filter(options, plan)}
    flags += [flag for flag, on in switches.items() if on]
    if options.pid is not None:
        flags.append(f"-DFILTER_PID={options.pid}")
    if options.comm:
        lo, hi = comm_words(options.comm)
        flags += [f"-DFILTER_COMM_LO={lo}ULL", f"-DFILTER_COMM_HI={hi}ULL"]
    if plan.reclaim is not None:
        flags += [*plan.reclaim.cflags, "-DWITH_RECLAIM"]
    return flags


def program_source(plan: ProbePlan) -> str:
    """pagealloc.c, with reclaim.c in front when the plan traces reclaim: one
    object, so reclaim.c's allocation hook runs inside pagealloc.c's
    mm_page_alloc program (see the top of reclaim.c)."""
    source = bpf_source_path().read_text()
    if plan.reclaim is not None:
        source = bpf_source_path(RECLAIM_SOURCE).read_text() + "\n" + source
    return source


def program_text(options: TraceOptions, prepared: Prepared) -> tuple[str, list[str]]:
    """(source, clang flags) of the program for `options` on the prepared kernel: what
    the tracer compiles, `--ebpf` prints and the benchmarks load."""
    return (program_source(prepared.plan),
            cflags_for(options, prepared.plan, prepared.gfp_table))


def compile_program(bcc: Any, source: str, cflags: list[str]) -> Any:
    try:
        return bcc.BPF(text=source, cflags=cflags)
    except Exception as exc:  # bcc raises bare Exception on compile/load errors
        raise LoaderError(f"could not compile or load the BPF program: {exc} "
                          "(run 'paftrace doctor' to check headers and kernel support)"
                          ) from exc


class Program:
    """The compiled program with every probe of the plan attached (its tracepoint
    programs attach when bcc loads them; vectors and kprobes are attached here)."""

    def __init__(self, options: TraceOptions, prepared: Prepared):
        if headers_dir(prepared.kernel.release) is None:
            raise LoaderError(headers_hint(prepared.kernel.release))
        self.plan = prepared.plan
        self.bcc = import_bcc()
        source, self.cflags = program_text(options, prepared)
        self.bpf = compile_program(self.bcc, source, self.cflags)
        self.refused: list[str] = []  # planned, but the kernel said no
        self.printed_kprobe: str | None = None
        self.memcg_kprobe: str | None = None  # the memcg charge kretprobe, if it attached
        self._kprobes: list[str] = []
        self._kretprobes: list[str] = []
        try:
            self._attach_vectors()
            self._attach_kprobes()
        except Exception as exc:
            self.bpf.cleanup()
            raise LoaderError(f"could not attach probes: {exc}") from exc

    def _attach_vectors(self) -> None:
        for vector in self.plan.system_vectors:
            entry = f"irq_vectors:{vector}_entry"
            raw = self.plan.is_raw(entry)
            # bcc's calls for this kind: (attach, detach, what is attached)
            attach, detach, fds = ((self.bpf.attach_raw_tracepoint,
                                    self.bpf.detach_raw_tracepoint, self.bpf.raw_tracepoint_fds)
                                   if raw else (self.bpf.attach_tracepoint,
                                                self.bpf.detach_tracepoint,
                                                self.bpf.tracepoint_fds))
            try:
                for edge in ("entry", "exit"):
                    attach(tp=self.plan.attach_name(f"irq_vectors:{vector}_{edge}"),
                           fn_name=f"vector_{edge}_{vector}")
            except Exception:
                # Optional: context stays right through the stack cross-check.
                if self.plan.attach_name(entry).encode() in fds:
                    detach(tp=self.plan.attach_name(entry))
                self.refused.append(self.plan.probe_name(f"irq_vectors:{vector}"))

    def _attach_kprobes(self) -> None:
        for name, fn_name in ((self.plan.warn_kprobe, "on_warn_alloc"),
                              (self.plan.alloc_kprobe, "on_alloc_entry")):
            if name:
                self.bpf.attach_kprobe(event=name, fn_name=fn_name)
                self._kprobes.append(name)
        if self.plan.warn_kprobe:
            self.printed_kprobe = self._attach_first(self.plan.printed_kprobes,
                                                     "on_warn_printed")
        name = self.plan.memcg_kprobe
        if name:
            try:  # optional: without it memcg-limit is judged from the cgroup's counters
                self.bpf.attach_kretprobe(event=name, fn_name="on_memcg_charge_return")
                self._kretprobes.append(name)
                self.memcg_kprobe = name
            except Exception:
                self.refused.append(f"kretprobe:{name}")

    def _attach_first(self, names: tuple[str, ...], fn_name: str) -> str | None:
        """Kprobe the first function the kernel lets us probe; note the refusals."""
        for name in names:
            try:
                self.bpf.attach_kprobe(event=name, fn_name=fn_name)
                self._kprobes.append(name)
                return name
            except Exception:  # "not traceable" (EINVAL): NOKPROBE/notrace functions
                self.refused.append(f"kprobe:{name}")
        return None

    def attached(self) -> list[str]:
        """What is attached now, read back from bcc, in the plan's format."""
        def names(fds: dict) -> set[str]:
            return {tp.decode() if isinstance(tp, bytes) else tp for tp in fds}

        # Raw ones are named by event alone, classic ones "category:event": no clash.
        open_ = names(self.bpf.raw_tracepoint_fds) | names(self.bpf.tracepoint_fds)
        out = [self.plan.probe_name(tp) for tp in self.plan.tracepoints()
               if self.plan.attach_name(tp) in open_]
        out.append("ringbuf" if self.plan.ringbuf else "perfbuf")
        return (out + [f"kprobe:{k}" for k in self._kprobes]
                + [f"kretprobe:{k}" for k in self._kretprobes])

    def close(self) -> None:
        # Not bpf.cleanup() alone: it waits a grace period per tracepoint (see release.py).
        self.release_helper = release(self.bpf, self.bcc)


def load(options: TraceOptions) -> tuple[Prepared, Program, float]:
    """Plan, compile and attach: (the preparation, the program, seconds it took)."""
    t0 = time.monotonic()
    prepared = prepare(options)
    program = Program(options, prepared)
    return prepared, program, time.monotonic() - t0
