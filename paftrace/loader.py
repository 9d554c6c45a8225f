"""The one place that compiles, loads and attaches paftrace's BPF program.

Order matters: root check, tracefs mounted (before `import bcc`, which picks
its tracefs path at import time), headers present, probe plan, compile with
-D switches, attach the optional probes the plan chose.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from paftrace.gfp import GfpTable, table_from_print_fmt
from paftrace.options import TraceOptions, comm_words
from paftrace.planner import (
    FeatureStatus,
    LiveKernel,
    PlanError,
    ProbePlan,
    headers_dir,
    plan_probes,
)
from paftrace.reclaim import BPF_SOURCE as RECLAIM_SOURCE
from paftrace.reclaim import (
    ReclaimPlan,
    ReclaimTracker,
    pageblock_order,
    plan_reclaim,
    statuses_for,
)
from paftrace.records import ORDER_SLOTS, STAT_NAMES, RawAllocKey, RawFailure
from paftrace.tracefs import TraceFs, TraceFsError

BPF_SOURCE = "pagealloc.c"
# x86-64 module mapping space (Documentation/arch/x86/x86_64/mm.rst: MODULES_VADDR).
X86_64_MODULES_START = 0xFFFFFFFFA0000000
# A module frame this far past its symbol lies in freed or unknown text (seen in the
# kernel matrix: "ext4_exit_fs+0xa4b64" for a freed init function of another module).
MAX_MODULE_SYMBOL_OFFSET = 0x4000
# --all adaptive stack sampling: at most about this many stack walks per second
# (the kernel adapts 1-in-N on each CPU, see next_sample_every in pagealloc.c).
STACK_SAMPLES_PER_S = 2000
SYMBOL_CACHE_MAX = 65536  # kernel return addresses remembered with their symbol


class LoaderError(RuntimeError):
    """A condition the user can meet; printed as one line, never a traceback."""


def bpf_source_path(name: str = BPF_SOURCE) -> Path:
    return Path(str(resources.files("paftrace") / "bpf" / name))


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


def prepare(options: TraceOptions) -> tuple[LiveKernel, ProbePlan, GfpTable]:
    """Checks and planning shared by the tracer and `doctor`/`--dry-run`."""
    require_root()
    tracefs = TraceFs()
    try:
        tracefs.ensure_mounted()
    except TraceFsError as exc:
        raise LoaderError(str(exc)) from exc
    kernel = LiveKernel(tracefs)
    try:
        plan = plan_probes(kernel, options.disabled)
    except PlanError as exc:
        raise LoaderError(str(exc)) from exc
    fmt = kernel.read_format("kmem", "mm_page_alloc")
    assert fmt is not None  # plan_probes checked it
    table = table_from_print_fmt(fmt.print_fmt, source=f"running kernel {kernel.release} "
                                 "(kmem:mm_page_alloc print fmt)")
    return kernel, plan, table


def cflags_for(options: TraceOptions, plan: ProbePlan, table: GfpTable) -> list[str]:
    flags = [
        f"-DORDER_MIN={options.order_min}",
        f"-DORDER_MAX={options.order_max}",
        f"-DSTACK_STORAGE_SIZE={options.stack_storage}",
        f"-DRINGBUF_PAGES={options.ringbuf_pages}",
        f"-DAGG_ENTRIES={options.agg_entries}",
        f"-DSAMPLE_PERIOD_NS={(os.cpu_count() or 1) * 1_000_000_000 // STACK_SAMPLES_PER_S}ULL",
        f"-DGFP_DIRECT_RECLAIM={table.value_of('__GFP_DIRECT_RECLAIM') or 0}ULL",
        f"-DGFP_NOWARN={table.value_of('__GFP_NOWARN') or 0}ULL",
        "-Wno-macro-redefined",
    ]
    if plan.failure_field == "pfn":
        flags.append("-DHAVE_PFN")
    if plan.ringbuf:
        flags.append("-DUSE_RINGBUF")
    if plan.irq_tracepoints:
        flags.append("-DHAVE_IRQ_TP")
    if plan.warn_kprobe:
        flags.append("-DHAVE_KPROBE_WARN")
    if plan.alloc_kprobe:
        flags.append("-DHAVE_KPROBE_ALLOC")
    if options.trace_all:
        flags.append("-DTRACE_ALL")
    if options.atomic_only:
        flags.append("-DATOMIC_ONLY")
    if options.warn_only:
        flags.append("-DWARN_ONLY")
    if options.pid is not None:
        flags.append(f"-DFILTER_PID={options.pid}")
    if options.comm:
        lo, hi = comm_words(options.comm)
        flags += [f"-DFILTER_COMM_LO={lo}ULL", f"-DFILTER_COMM_HI={hi}ULL"]
    return flags


class TraceSession:
    """A loaded and attached program; poll it, read its maps, close it."""

    def __init__(self, options: TraceOptions, on_failure: Callable[[RawFailure], None]):
        t0 = time.monotonic()
        self.options = options
        self.kernel, self.plan, self.gfp_table = prepare(options)
        if headers_dir(self.kernel.release) is None:
            raise LoaderError(headers_hint(self.kernel.release))
        bcc = import_bcc()
        self._bcc = bcc
        self.cflags = cflags_for(options, self.plan, self.gfp_table)
        source = bpf_source_path().read_text()
        self.reclaim_plan = self._plan_reclaim(options)
        if self.reclaim_plan is not None:
            # One object: reclaim.c's allocation hook runs inside pagealloc.c's
            # mm_page_alloc program (see the top of reclaim.c).
            source = bpf_source_path(RECLAIM_SOURCE).read_text() + "\n" + source
            self.cflags += [*self.reclaim_plan.cflags, "-DWITH_RECLAIM"]
        try:
            self.bpf = bcc.BPF(text=source, cflags=self.cflags)
        except Exception as exc:  # bcc raises bare Exception on compile/load errors
            raise LoaderError(f"could not compile or load the BPF program: {exc} "
                              "(run 'paftrace doctor' to check headers and kernel support)"
                              ) from exc
        self.perf_lost = 0
        self._symbols: dict[int, str] = {}
        self._modules_seen = ""
        self._on_failure = on_failure
        try:
            self._attach_optional()
            self._open_output()
        except Exception as exc:
            self.bpf.cleanup()
            raise LoaderError(f"could not attach probes: {exc}") from exc
        if options.trace_all:
            self.set_sample_every(options.sample_every)
        self.reclaim = None
        if self.reclaim_plan is not None:
            self.reclaim = ReclaimTracker(self.bpf, self.reclaim_plan,
                                          statuses_for(self.kernel))
        self.startup_s = time.monotonic() - t0

    def _plan_reclaim(self, options: TraceOptions) -> ReclaimPlan | None:
        if "reclaim" in options.disabled:
            self.plan.statuses.append(FeatureStatus("reclaim", False, "disabled by --no-feature"))
            return None
        plan = plan_reclaim(self.kernel, pageblock_order())
        if not plan.events:
            self.plan.statuses.append(FeatureStatus(
                "reclaim", False, "no compaction/vmscan tracepoints: no stall timeline"))
            return None
        self.plan.statuses.append(FeatureStatus(
            "reclaim", True, f"{len(plan.events)} compaction/vmscan/extfrag tracepoints"
            + (f"; missing {', '.join(plan.missing)}" if plan.missing else "")))
        self.plan.extra_probes += [f"tracepoint:{e}" for e in plan.events
                                   if e != "kmem:mm_page_alloc"]
        return plan

    # -- attach ------------------------------------------------------------
    def _attach_optional(self) -> None:
        for vector in list(self.plan.system_vectors):
            try:
                self.bpf.attach_tracepoint(tp=f"irq_vectors:{vector}_entry",
                                           fn_name=f"vector_entry_{vector}")
                self.bpf.attach_tracepoint(tp=f"irq_vectors:{vector}_exit",
                                           fn_name=f"vector_exit_{vector}")
            except Exception:
                # Optional: context stays right through the stack cross-check.
                self.bpf.detach_tracepoint(tp=f"irq_vectors:{vector}_entry")
                self.plan.system_vectors.remove(vector)
                self.plan.refused.append(f"tracepoint:irq_vectors:{vector}")
        if self.plan.warn_kprobe:
            self.bpf.attach_kprobe(event=self.plan.warn_kprobe, fn_name="on_warn_alloc")
            self.plan.printed_kprobe = self._attach_first(self.plan.printed_kprobes,
                                                          "on_warn_printed")
        if self.plan.alloc_kprobe:
            self.bpf.attach_kprobe(event=self.plan.alloc_kprobe, fn_name="on_alloc_entry")

    def _attach_first(self, names: list[str], fn_name: str) -> str | None:
        """Kprobe the first function the kernel lets us probe; note the refusals."""
        for name in names:
            try:
                self.bpf.attach_kprobe(event=name, fn_name=fn_name)
                return name
            except Exception:  # "not traceable" (EINVAL): NOKPROBE/notrace functions
                self.plan.refused.append(f"kprobe:{name}")
        return None

    def _open_output(self) -> None:
        table = self.bpf["failures"]

        def deliver(*args: Any) -> int:
            data = args[1]  # (cpu, data, size) for perf, (ctx, data, size) for ringbuf
            self._on_failure(ctypes.cast(data, ctypes.POINTER(RawFailure)).contents)
            return 0

        if self.plan.ringbuf:
            table.open_ring_buffer(deliver)
        else:
            table.open_perf_buffer(deliver, page_cnt=self.options.perfbuf_pages,
                                   lost_cb=self._count_perf_lost)

    def _count_perf_lost(self, lost: int) -> None:
        # Without a callback libbcc prints "Possibly lost N samples" over the view.
        self.perf_lost += lost

    # -- runtime -----------------------------------------------------------
    def poll(self, timeout_ms: int = 100) -> None:
        # perf_buffer_poll serves every perf buffer of the object (reclaim's too).
        if self.plan.ringbuf:
            self.bpf.ring_buffer_poll(timeout=timeout_ms)
            if self.reclaim is not None:
                self.bpf.perf_buffer_poll(timeout=0)
        else:
            self.bpf.perf_buffer_poll(timeout=timeout_ms)

    def drain(self) -> None:
        """Deliver what is already in the buffers (at exit)."""
        if self.plan.ringbuf:
            self.bpf.ring_buffer_consume()
        if self.reclaim is not None or not self.plan.ringbuf:
            self.bpf.perf_buffer_poll(timeout=0)

    def order_counts(self) -> dict[int, tuple[int, int]]:
        out: dict[int, tuple[int, int]] = {}
        for key, per_cpu in self.bpf["order_stats"].items():
            attempts = sum(v.attempts for v in per_cpu)
            failures = sum(v.failures for v in per_cpu)
            if attempts or failures:
                out[key.value if key.value < ORDER_SLOTS else ORDER_SLOTS - 1] = (attempts,
                                                                                   failures)
        return out

    def _percpu_sums(self, name: str) -> list[int]:
        table = self.bpf[name]
        return [sum(table[table.Key(i)]) for i in range(len(table))]

    def stats(self) -> dict[str, int]:
        values = self._percpu_sums("stats")
        out = {name: values[i] for i, name in enumerate(STAT_NAMES)}
        out["perf_lost"] = self.perf_lost
        return out

    def failures_by_context(self) -> list[int]:
        return self._percpu_sums("fail_by_ctx")

    def stack(self, stack_id: int) -> list[str]:
        if stack_id < 0:
            return []
        try:
            addrs = list(self.bpf["stacks"].walk(stack_id))
        except KeyError:
            return []
        if any(a >= X86_64_MODULES_START for a in addrs):
            self._refresh_symbols_if_modules_changed()
        return [self.symbolize(a) for a in addrs]

    def _refresh_symbols_if_modules_changed(self) -> None:
        """bcc reads /proc/kallsyms once: a module loaded since (a driver, a test
        module) would be named after its neighbour. Failures in modules are rare,
        so re-check the module list only for those."""
        try:
            modules = Path("/proc/modules").read_text()
        except OSError:
            return
        if modules != self._modules_seen:
            self._modules_seen = modules
            cache = self._bcc.BPF._sym_cache(-1)
            self._bcc.libbcc.lib.bcc_symcache_refresh(cache.cache)
            self._symbols.clear()

    def symbolize(self, addr: int) -> str:
        # A failure storm repeats the same few stacks: resolving each frame through
        # bcc was half of the per-record cost (py-spy, docs/PERFORMANCE.md).
        sym = self._symbols.get(addr)
        if sym is None:
            if len(self._symbols) >= SYMBOL_CACHE_MAX:
                self._symbols.clear()
            sym = self.bpf.ksym(addr, show_module=True, show_offset=True).decode("utf-8",
                                                                                "replace")
            sym = sym.replace(" [kernel]", "").replace(" [vmlinux]", "")
            if addr >= X86_64_MODULES_START and _offset(sym) > MAX_MODULE_SYMBOL_OFFSET:
                # Module text whose symbol is gone (a module's init code is freed
                # right after init): the nearest older symbol would be a lie.
                sym = f"{addr:#x} [module text, symbol gone]"
            self._symbols[addr] = sym
        return sym

    def set_sample_every(self, every: int) -> None:
        """Take 1 in `every` stacks; 0 lets the kernel adapt it."""
        cfg = self.bpf["sample_config"]
        cfg[cfg.Key(0)] = cfg.Leaf(max(0, every))

    def sample_every(self) -> int:
        """The largest 1-in-N stack sampling any CPU uses now (1 = every stack)."""
        per_cpu = self.bpf["sampler"][0]
        return max([s.every for s in per_cpu] + [1])

    def allocations(self) -> tuple[list[tuple[RawAllocKey, int]],
                                   list[tuple[RawAllocKey, int, int]]]:
        """(exact counts by key, sampled stack counts by key and stack id)."""
        counts = [(_to_key(k), sum(v)) for k, v in self.bpf["alloc_counts"].items()]
        stacks = [(_to_key(k.base), k.stack_id, sum(v))
                  for k, v in self.bpf["alloc_stacks"].items()]
        return counts, stacks

    def close(self) -> None:
        self.bpf.cleanup()


def _offset(symbol: str) -> int:
    """'name+0x1f [mod]' -> 0x1f; 0 when there is none."""
    _, plus, rest = symbol.partition("+0x")
    digits = rest.split(" ", 1)[0]
    return int(digits, 16) if plus and digits else 0


def _to_key(raw: Any) -> RawAllocKey:
    return RawAllocKey(gfp=raw.gfp, order=raw.order, context=raw.context,
                       softirq_vec=raw.softirq_vec)

