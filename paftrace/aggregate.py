"""Pure aggregation of decoded failures and of kernel counters."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from paftrace.records import Failure

RATE_WINDOW_NS = 10_000_000_000  # call-site rates over the last 10 s


@dataclass
class CallSite:
    """Failures sharing a stack, order, gfp mask and context."""

    sample: Failure  # the latest failure of this call site
    count: int = 0
    first_ns: int = 0
    last_ns: int = 0
    recent: deque[tuple[int, int]] = field(default_factory=deque)  # (ts_ns, failures)
    causes: Counter[str] = field(default_factory=Counter)

    def add(self, failure: Failure) -> None:
        n = failure.count  # a coalesced record stands for n failures
        if not self.count:
            self.first_ns = failure.ts_ns
        self.count += n
        self.last_ns = max(self.last_ns, failure.ts_ns)
        self.sample = failure
        self.causes[failure.cause] += n
        self.recent.append((failure.ts_ns, n))
        while self.recent and self.recent[0][0] < failure.ts_ns - RATE_WINDOW_NS:
            self.recent.popleft()

    def rate(self, now_ns: int) -> float:
        """Failures per second over the last RATE_WINDOW_NS."""
        return sum(n for t, n in self.recent if t >= now_ns - RATE_WINDOW_NS) / (
            RATE_WINDOW_NS / 1e9)

    def to_json(self) -> dict:
        f = self.sample
        return {
            "count": self.count, "first_ns": self.first_ns, "last_ns": self.last_ns,
            "order": f.order, "gfp": f.gfp, "gfp_flags": f.gfp_flags, "context": f.context,
            "softirq": f.softirq, "requester": f.requester, "blame": f.blame,
            "visibility": f.visibility, "severity": f.severity, "rule": f.rule,
            "cause": f.cause, "causes": dict(self.causes), "cgroup": cgroup_label(f),
            "stack": f.stack,
        }


def cgroup_label(f: Failure) -> str:
    """The cgroup a summary groups by: the memory cgroup path, else the cgroup2 path."""
    c = f.cgroup or {}
    return c.get("memory_path") or c.get("path") or "unknown"


def call_site_key(f: Failure) -> tuple:
    # Stacks are compared without offsets: one call site may fail from two
    # return addresses in the same function only when it is a different path.
    return (tuple(f.stack) or f.stack_id, f.order, f.gfp, f.context, f.softirq)


class FailureAggregator:
    def __init__(self, recent: int = 12):
        self.sites: dict[tuple, CallSite] = {}
        self.recent: deque[Failure] = deque(maxlen=recent)
        self.by_context: Counter[str] = Counter()
        self.by_class: Counter[str] = Counter()
        self.by_cause: Counter[str] = Counter()
        self.by_cgroup: Counter[str] = Counter()
        self.total = 0

    def add(self, failure: Failure) -> CallSite:
        key = call_site_key(failure)
        site = self.sites.get(key)
        if site is None:  # not setdefault: that built a CallSite for every failure
            site = self.sites[key] = CallSite(sample=failure)
        site.add(failure)
        self.recent.append(failure)
        n = failure.count
        self.by_context[failure.context] += n
        self.by_class[failure.visibility] += n
        self.by_class[failure.severity] += n
        self.by_cause[failure.cause] += n
        self.by_cgroup[cgroup_label(failure)] += n
        self.total += n
        return site

    def top(self, n: int = 10) -> list[CallSite]:
        return sorted(self.sites.values(), key=lambda s: (-s.count, -s.last_ns))[:n]


@dataclass
class OrderRates:
    """Per-order attempts/failures: totals from the kernel and rates between two reads."""

    totals: dict[int, tuple[int, int]] = field(default_factory=dict)
    rates: dict[int, tuple[float, float]] = field(default_factory=dict)
    _last: dict[int, tuple[int, int]] = field(default_factory=dict)
    _last_t: float | None = None

    def update(self, counts: dict[int, tuple[int, int]], now: float) -> None:
        if self._last_t is not None and now > self._last_t:
            dt = now - self._last_t
            self.rates = {
                order: ((a - self._last.get(order, (0, 0))[0]) / dt,
                        (f - self._last.get(order, (0, 0))[1]) / dt)
                for order, (a, f) in counts.items()
            }
        self.totals = dict(counts)
        self._last = dict(counts)
        self._last_t = now


def estimate_stack_counts(exact: Iterable[tuple[tuple, int]],
                          sampled: Iterable[tuple[tuple, int, int]]
                          ) -> dict[tuple, tuple[int, list[tuple[int, float]]]]:
    """Scale sampled stack counts to the exact per-key totals.

    exact: (key, count); sampled: (key, stack_id, samples). Returns, per key,
    (exact count, [(stack_id, estimated count)]) with estimates proportional to
    each stack's share of that key's samples — valid however the sampling
    rate changed over time, since every event of a key is equally likely to be
    sampled at any moment.
    """
    samples: dict[tuple, list[tuple[int, int]]] = {}
    for key, stack_id, n in sampled:
        samples.setdefault(key, []).append((stack_id, n))
    out: dict[tuple, tuple[int, list[tuple[int, float]]]] = {}
    for key, count in exact:
        stacks = samples.get(key, [])
        total = sum(n for _, n in stacks)
        est = sorted(((sid, count * n / total) for sid, n in stacks), key=lambda x: -x[1]) \
            if total else []
        out[key] = (count, est)
    return out
