"""The tracing run: load, poll, aggregate, render, stop cleanly, summarize."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from types import FrameType

from paftrace.aggregate import FailureAggregator, OrderRates, estimate_stack_counts
from paftrace.attribution import Attributor, CgroupFilter
from paftrace.cause import CAUSES
from paftrace.cgroups import CgroupResolver
from paftrace.context import CONTEXTS, classify_stack, softirq_name
from paftrace.contract import constants
from paftrace.decode import FailureDecoder
from paftrace.fragmenters import PageblockHistory, fragmenter_records
from paftrace.fragmenters import report as fragmentation_report
from paftrace.loader import LoaderError, prepare, program_text
from paftrace.options import TraceOptions
from paftrace.pacing import PollPacer
from paftrace.procfs.report import failure_snapshot, sample_record
from paftrace.procfs.sampler import MemorySample, MemorySampler
from paftrace.reclaim import Stall
from paftrace.records import Failure, RawFailure, context_name
from paftrace.render import Renderer, Snapshot, make_renderer
from paftrace.render.text import text_table
from paftrace.session import Session, TraceSession
from paftrace.stacks import requester

CGROUP_FILTER_ENTRIES = constants()["CGROUP_FILTER_ENTRIES"]
EXIT_SIGNAL = 130
# The reader of our stdout went away (`paftrace --json | head -1`): end quietly with
# the status a tool killed by SIGPIPE reports in a shell (128 + 13), as `yes | head -1`
# does, so `set -o pipefail` scripts see the same thing for paftrace as for C tools.
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
# How often a storm's coalesced failures are reported (paftrace.h, "Storm coalescing").
# Each report decodes and judges one failure per call site, with a fresh memory sample
# when the last is old: after every poll it cost the tracer about 10 ms of CPU a second
# during a failure storm (5 us per failure at 2,000/s), every 0.5 s about 2.
COALESCED_EVERY_S = 0.5
# The live trace's pageblock mix (its fragmenters panel): rarely, /proc/pagetypeinfo
# takes every zone lock.
TRACE_PAGETYPEINFO_PERIOD_S = 30.0


class StopFlag:
    """SIGINT, SIGTERM and SIGHUP all land here: the first asks for a clean stop,
    a second one exits at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.closing = False  # releasing the probes (fast): a second signal must wait
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            if self.closing:  # exiting anyway; interrupting bcc would leave it half done
                return
            raise SystemExit(EXIT_SIGNAL)
        self.signum = signum

    @property
    def stopped(self) -> bool:
        return self.signum is not None


def error(message: str) -> int:
    print(f"paftrace: {message}", file=sys.stderr)
    return 1


class Tracer:
    """One run of the tracer; separate from the CLI so selftest can drive it."""

    def __init__(self, session: Session, options: TraceOptions, renderer: Renderer,
                 memory: MemorySampler | None = None, attributor: Attributor | None = None):
        self.options = options
        self.renderer = renderer
        self.aggregator = FailureAggregator()
        self.orders = OrderRates()
        self.memory = memory
        self._samples_sent: set[int] = set()
        self._snapshots: dict[tuple[int, int, str], dict] = {}
        self.records = 0     # failure records received from the kernel
        self.coalesced = 0   # failures the kernel counted per call site instead
        self._coalesced_seen: dict[tuple, int] = {}  # per site: its count last reported
        self.sample_every = options.sample_every or 1
        self.stacks_estimated = self.sample_every != 1
        self.session = session
        resolver = attributor.resolver if attributor is not None else CgroupResolver()
        self.cgroup_filter = CgroupFilter(options.cgroup, resolver)
        self.attributor = attributor or Attributor(session.gfp_table, resolver)
        self.filtered_out = 0
        plan = session.plan
        self.decoder = FailureDecoder(session.gfp_table, session.stack,
                                      old_migratetypes=plan.failure_field == "page",
                                      kprobe_warn=plan.warn_kprobe is not None,
                                      kprobe_printed=session.printed_kprobe is not None)
        self.pageblocks = PageblockHistory(options.order_min)
        self._fragmenters_sent: dict[tuple[str, str], float] = {}
        session.start(self._on_raw, self._on_stall)
        self.started = time.monotonic()

    def attached_info(self) -> dict:
        plan = self.session.plan
        return {
            "type": "attached", "ts_ns": time.monotonic_ns(), "kernel": self.session.kernel_release,
            "order": self.options.order_label, "order_min": self.options.order_min,
            "order_max": self.options.order_max, "all": self.options.trace_all,
            "probes": self.session.attached(), "refused": self.session.refused,
            "features": [vars(s) for s in plan.statuses],
            "gfp_table": self.session.gfp_table.source,
            "startup_s": round(self.session.startup_s, 3), "pid": os.getpid(),
        }

    def _on_raw(self, raw: RawFailure) -> None:
        self.records += 1
        self._handle(raw, 1)

    def _report_coalesced(self) -> None:
        """A storm's failures the kernel counted instead of sending (paftrace.h, "Storm
        coalescing"): for each call site whose count moved since the last report, one
        record standing for those failures, described by the latest of them."""
        for key, total, last in self.session.coalesced_sites():
            count = total - self._coalesced_seen.get(key, 0)
            if count > 0:
                self._coalesced_seen[key] = total
                self.coalesced += count
                self._handle(last, count)

    def _handle(self, raw: RawFailure, count: int) -> None:
        failure = self.decoder.decode(raw)
        failure.count = count
        sample = self._nearest_sample(failure) if self.memory is not None else None
        if failure.context == "process":
            failure.stall = self.session.stall_info(failure.tid, failure.ts_ns)
        refused = bool(raw.memcg_refused) if self.session.memcg_kprobe else None
        self.attributor.annotate(failure, raw.gfp, raw.cgroup_id, sample, refused)
        if not self.cgroup_filter.matches(failure.cgroup):
            self.filtered_out += count
            return
        if sample is not None:
            self._send_sample(sample)
            failure.buddyinfo = self._snapshot(sample, failure)
        self.aggregator.add(failure)
        self.renderer.failure(failure)

    def _nearest_sample(self, failure: Failure) -> MemorySample | None:
        """The free lists when it failed."""
        assert self.memory is not None
        try:
            self.memory.latest()  # re-reads at most once per interval
            return self.memory.near(failure.ts_ns)
        except OSError:
            return None

    def _send_sample(self, sample: MemorySample) -> None:
        """Each sample goes into the stream once, so a failure's `sample_ts_ns` points at
        a `buddyinfo` record."""
        if sample.ts_ns not in self._samples_sent:
            self._samples_sent.add(sample.ts_ns)
            self.renderer.event(sample_record(sample, self.options.order_min))

    def _snapshot(self, sample: MemorySample, failure: Failure) -> dict:
        # One snapshot per sample, order and mask, shared by the failures that cite
        # it (computing it was a third of a record's cost in a storm); only the
        # sample's age is the failure's own.
        key = (sample.ts_ns, failure.order, failure.gfp)
        snap = self._snapshots.get(key)
        if snap is None:
            if self._snapshots and next(iter(self._snapshots))[0] != sample.ts_ns:
                self._snapshots.clear()  # a newer sample: the old ones are cited no more
            snap = failure_snapshot(sample, failure.order, failure.gfp_flags)
            self._snapshots[key] = snap
        return {**snap, "sample_age_ms": round((failure.ts_ns - sample.ts_ns) / 1e6, 1)}

    def _on_stall(self, stall: Stall) -> None:
        self.renderer.event(stall.to_record())

    def _allocations(self) -> list[dict]:
        counts, stacks = self.session.allocations()

        def key_of(k) -> tuple:
            return (k.order, k.gfp, k.context, k.softirq_vec)

        estimates = estimate_stack_counts(((key_of(k), n) for k, n in counts),
                                          ((key_of(k), sid, n) for k, sid, n in stacks))
        rows = []
        table = self.session.gfp_table
        for (order, gfp, ctx, vec), (count, est) in sorted(estimates.items(),
                                                          key=lambda kv: -kv[1][0]):
            top = []
            for sid, n in est[:5]:
                frames = self.session.stack(sid)
                # The stack's own context: right even without the irq tracepoints.
                seen = classify_stack(frames)
                top.append({"count": round(n, 1), "requester": requester(frames),
                            "context": seen.context or "process", "softirq": seen.softirq,
                            "stack": frames})
            rows.append({"order": order, "gfp": hex(gfp), "gfp_flags": table.decode(gfp),
                         "context": context_name(ctx), "softirq": softirq_name(vec),
                         "count": count, "stacks": top,
                         "stacks_estimated": self.stacks_estimated})
        return rows

    def _read_sampling(self) -> None:
        """--all adaptive sampling runs in the kernel; show the rate it chose."""
        if not self.options.trace_all or self.options.sample_every:
            return
        self.sample_every = self.session.sample_every()
        self.stacks_estimated = self.stacks_estimated or self.sample_every != 1

    def snapshot(self, with_allocations: bool) -> Snapshot:
        now = time.monotonic()
        if self.options.cgroup_ids:  # new containers below --cgroup since the last tick
            self.session.filter_cgroups(self.cgroup_filter.kernel_ids())
        self.orders.update(self.session.order_counts(), now)
        self._read_sampling()
        return Snapshot(
            elapsed_s=now - self.started, orders=self.orders, failures=self.aggregator,
            stats=self.lost(), failures_by_context=self.failures_by_context(),
            order_label=self.options.order_label, order_min=self.options.order_min,
            sample_every=self.sample_every if self.options.trace_all else None,
            allocations=self._allocations() if with_allocations and self.options.trace_all
            else [],
            memory=self._latest_memory(),
            fragmentation=self.fragmentation(),
        )

    def _latest_memory(self) -> MemorySample | None:
        if self.memory is None:
            return None
        try:
            sample = self.memory.latest()
        except OSError:
            return None
        self.pageblocks.add(sample)
        return sample

    def fragmentation(self) -> dict | None:
        """The fragmenters section: who fragmented memory, and how the zones moved."""
        data = self.session.fragmentation()
        if data is None:
            return None
        return fragmentation_report(data, self.pageblocks)

    def _send_fragmenters(self, section: dict | None) -> None:
        if section is None:
            return
        for record in fragmenter_records(section, self._fragmenters_sent,
                                         time.monotonic_ns()):
            self.renderer.event(record)

    def failures_by_context(self) -> dict[str, int]:
        return dict(zip(CONTEXTS, self.session.failures_by_context()))

    def lost(self) -> dict[str, int]:
        st = self.session.stats()
        # A record whose handling raised (a renderer bug, a closed pipe) was not
        # shown: it counts as lost, and `unhandled` tells it from buffer overruns.
        return {"records": st["lost_records"] + st["perf_lost"] + st["unhandled"],
                "unhandled": st["unhandled"], "stack_errors": st["stack_errors"],
                "aggregation_full": st["aggregation_full"]}

    def summary(self) -> dict:
        self.orders.update(self.session.order_counts(), time.monotonic())
        self._read_sampling()
        stats = self.session.stats()
        return {
            "type": "summary", "duration_s": round(time.monotonic() - self.started, 3),
            "order": self.options.order_label,
            "orders": {str(o): {"attempts": a, "failures": f}
                       for o, (a, f) in sorted(self.orders.totals.items())},
            "failures_matched": stats["matched_failures"],
            "failures_reported": self.records,
            "failures_coalesced": self.coalesced,
            "failures_by_context": self.failures_by_context(),
            "by_class": dict(self.aggregator.by_class),
            "by_cause": {c: self.aggregator.by_cause[c] for c in CAUSES
                         if self.aggregator.by_cause[c]},
            "by_cgroup": dict(self.aggregator.by_cgroup.most_common(50)),
            "cgroup_filter": self.cgroup_filter.describe(),
            "failures_filtered_by_cgroup": self.filtered_out,
            "call_sites": [site.to_json() for site in self.aggregator.top(20)],
            "lost": self.lost(),
            "allocations": self._allocations() if self.options.trace_all else [],
            "stack_sample_every": self.sample_every if self.options.trace_all else None,
            "reclaim": self.session.reclaim_summary(),
            "fragmenters": self.fragmentation(),
        }

    def run(self, stop: StopFlag, duration: float | None, interval: float,
            live_allocations: bool, until: Callable[[], bool] | None = None) -> dict:
        """Poll and render until a signal, the duration, or `until()` (selftest) ends it."""
        self.renderer.attached(self.attached_info())
        deadline = self.started + duration if duration else None
        next_tick = next_coalesced = time.monotonic()
        pacer = PollPacer(always_short=until is not None)
        coalescing = False  # the last report had counts: a storm goes on, or just ended
        while not stop.stopped and not (until and until()):
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if now >= next_tick:
                snapshot = self.snapshot(live_allocations)
                self._send_fragmenters(snapshot.fragmentation)
                self.renderer.tick(snapshot)
                next_tick = now + interval
            wake = min(next_tick, deadline or next_tick,
                       next_coalesced if coalescing else next_tick)
            seen = self.records
            self.session.poll(pacer.timeout_ms(wake - time.monotonic()))
            polled = time.monotonic()
            pacer.polled(polled, got_records=self.records != seen)
            if polled >= next_coalesced:
                # Judged while the storm goes on (its cgroup, memory state).
                counted = self.coalesced
                self._report_coalesced()
                coalescing = self.coalesced != counted
                next_coalesced = time.monotonic() + COALESCED_EVERY_S
            self._flush()
        self.session.drain()
        self._report_coalesced()
        self._flush()
        return self.summary()

    def _flush(self) -> None:
        """Out with the batch of records the last poll handled. Renderers that
        write each record at once have no flush() (the protocol leaves it out)."""
        flush = getattr(self.renderer, "flush", None)
        if flush is not None:
            flush()

    def close(self) -> None:
        self.session.close()


def yield_to_workload(nice: int) -> None:
    """Once attached, let the workload being traced have the CPU first: this thread's
    niceness becomes at least `nice` (options.DEFAULT_NICE says why). Never raised back:
    a paftrace started under `nice -n 15` stays there."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > current:
        os.setpriority(os.PRIO_PROCESS, 0, nice)  # Linux: the calling thread


def silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush of what is still
    buffered cannot raise a second BrokenPipeError (Python's documented recipe:
    library/signal.html, "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def print_ebpf(options: TraceOptions) -> int:
    source, cflags = program_text(options, prepare(options))
    print("// cflags: " + " ".join(cflags))
    print(source)
    return 0


def plan_lines(options: TraceOptions) -> list[str]:
    """`--dry-run`: the frozen probe plan, exactly what the loader would attach."""
    prepared = prepare(options)
    lines = [f"kernel {prepared.kernel.release}; gfp names from {prepared.gfp_table.source}"]
    lines.append(text_table(("", "feature", "detail"),
                            [("yes" if st.used else "no", st.name, st.detail)
                             for st in prepared.plan.statuses], indent=2))
    lines.append("would attach: " + ", ".join(prepared.plan.probes()))
    return lines


def print_plan(options: TraceOptions) -> int:
    print("\n".join(plan_lines(options)))
    return 0


def run_trace(options: TraceOptions, mode: str, duration: float | None, interval: float,
              dry_run: bool = False, print_ebpf_source: bool = False,
              renderer: Renderer | None = None, memory: MemorySampler | None = None) -> int:
    """One run of the CLI. `renderer`/`memory`: a command's own (`paftrace record`,
    `paftrace frag`), else the tracer's view for `mode` and a sampler that reads the
    pageblock mix every TRACE_PAGETYPEINFO_PERIOD_S (it takes every zone lock)."""
    try:
        if print_ebpf_source:
            return print_ebpf(options)
        if dry_run:
            return print_plan(options)
    except LoaderError as exc:
        return error(str(exc))
    # A --cgroup typo is reported before the seconds spent compiling BPF.
    cgroup_filter = CgroupFilter(options.cgroup, CgroupResolver())
    problem = cgroup_filter.missing()
    if problem:
        return error(problem)
    ids = cgroup_filter.kernel_ids()
    # More cgroups than the kernel's filter map holds: filter in user space only.
    options = replace(options, cgroup_ids=frozenset(ids) if len(ids) <= CGROUP_FILTER_ENTRIES
                      else frozenset())
    stop = StopFlag()
    stop.install()
    renderer = renderer or make_renderer(mode)
    session = None
    try:
        session = TraceSession(options)
        memory = memory or MemorySampler(
            interval=interval,
            pagetypeinfo_period=TRACE_PAGETYPEINFO_PERIOD_S if os.geteuid() == 0 else None)
        tracer = Tracer(session, options, renderer, memory)
        yield_to_workload(options.nice)
        summary = tracer.run(stop, duration, interval, live_allocations=mode == "live")
        renderer.finish(summary)
    except LoaderError as exc:
        renderer.close()
        return error(str(exc))
    except BrokenPipeError:
        silence_stdout()
        renderer.close()
        return EXIT_BROKEN_PIPE
    except SystemExit:
        renderer.close()
        raise
    except Exception:
        renderer.close()
        if session is not None:  # say what the error cost before its traceback
            print(f"paftrace: {session.stats()['unhandled']} failure record(s) could not be "
                  "shown; stopping on this error:", file=sys.stderr)
        raise
    finally:
        stop.closing = True
        if session is not None:
            session.close()  # detaches every probe
        stop.restore()
    return EXIT_SIGNAL if stop.stopped else 0
