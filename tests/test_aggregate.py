from __future__ import annotations

from paftrace.aggregate import FailureAggregator, OrderRates, estimate_stack_counts
from paftrace.records import Failure


def failure(ts: int, stack=("a+0x1", "b+0x2"), context="process", severity="expected"):
    return Failure(ts_ns=ts, cpu=0, pid=1, tid=1, comm="x", order=4, gfp="0x820",
                   gfp_flags=["GFP_ATOMIC"], migratetype="Unmovable", context=context,
                   softirq=None, stack=list(stack), visibility="silent", severity=severity)


def test_failures_group_by_call_site():
    agg = FailureAggregator()
    for t in (1, 2, 3):
        agg.add(failure(t * 10**9))
    agg.add(failure(4 * 10**9, stack=("c+0x1",), context="softirq", severity="harmful"))
    top = agg.top()
    assert [s.count for s in top] == [3, 1]
    assert top[0].first_ns == 10**9 and top[0].last_ns == 3 * 10**9
    assert agg.by_context == {"process": 3, "softirq": 1}
    assert agg.by_class["harmful"] == 1 and agg.by_class["silent"] == 4
    assert top[0].rate(3 * 10**9) == 0.3  # 3 failures in the 10 s window


def test_call_site_rate_forgets_old_failures():
    agg = FailureAggregator()
    agg.add(failure(0))
    site = agg.add(failure(20 * 10**9))
    assert site.rate(20 * 10**9) == 0.1 and len(site.recent) == 1


def test_order_rates_between_reads():
    rates = OrderRates()
    rates.update({4: (100, 1)}, now=10.0)
    assert rates.rates == {}
    rates.update({4: (300, 5), 0: (50, 0)}, now=12.0)
    assert rates.rates == {4: (100.0, 2.0), 0: (25.0, 0.0)}
    assert rates.totals[4] == (300, 5)


def test_sampled_stacks_scale_to_exact_counts():
    out = estimate_stack_counts([(("k",), 1000), (("j",), 5)],
                                [(("k",), 7, 30), (("k",), 8, 10)])
    count, stacks = out[("k",)]
    assert count == 1000 and stacks == [(7, 750.0), (8, 250.0)]
    assert out[("j",)] == (5, [])
