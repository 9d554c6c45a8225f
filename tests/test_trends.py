"""The live view's trend lines (render/trends.py): fed with snapshots, shown as Text."""

from __future__ import annotations

from paftrace.aggregate import FailureAggregator, OrderRates
from paftrace.procfs.sampler import MemorySample, ZoneSample
from paftrace.render import Snapshot
from paftrace.render.trends import Trends


def snapshot(elapsed: float, failures: int, normal_free: tuple[int, ...], ts: int) -> Snapshot:
    agg = FailureAggregator()
    agg.total = failures
    sample = MemorySample(ts, [ZoneSample(0, "Normal", normal_free),
                               ZoneSample(0, "DMA32", (0, 0, 0, 0, 0, 2))])
    return Snapshot(elapsed_s=elapsed, orders=OrderRates(), failures=agg, stats={},
                    failures_by_context={}, order_label="4", order_min=4, memory=sample)


def test_blocks_and_failure_rate_trends() -> None:
    trends = Trends(points=5)
    frees = [(9, 9, 9, 9, 8, 8), (9, 9, 9, 9, 4, 2), (9, 9, 9, 9, 0, 0)]
    for i, free in enumerate(frees):
        trends.update(snapshot(float(i), failures=[0, 0, 30][i], normal_free=free, ts=i))
    trends.update(snapshot(3.0, failures=30, normal_free=frees[-1], ts=2))  # same sample
    assert list(trends.blocks["N0 Normal"]) == [16, 6, 0]
    assert list(trends.failures_per_s) == [0.0, 30.0, 0.0]
    lines = trends.render(4).plain.splitlines()
    assert lines[1] == "N0 Normal  blocks >= o4  █▃▁   0"
    assert lines[2] == "N0 DMA32   blocks >= o4  ▁▁▁   2"
    assert lines[3] == "failures/s               ▁█▁   0.0"
    # a zone with no block left is red: the trend ends at zero
    assert any(span.style == "bold red" for span in trends.render(4).spans)


def test_task_text_cannot_reach_the_trend_lines() -> None:
    """Zone names come from /proc, but even so they are Text, never markup."""
    trends = Trends(points=3)
    s = snapshot(0.0, 0, (1, 1, 1, 1, 1, 1), ts=1)
    s.memory.zones[0].zone = "[bold]x[/bold]"  # type: ignore[union-attr]
    trends.update(s)
    assert "[bold]x[/bold]" in trends.render(4).plain
