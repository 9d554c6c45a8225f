"""Scraping the exporter as Prometheus would: latency of each scrape, the series it saw."""

from __future__ import annotations

import threading
import time
import urllib.request
from dataclasses import dataclass, field

from paftrace.render.prometheus import parse_exposition as samples

TARGET_SCRAPE_P99_S = 0.050  # issue 14: p99 under 50 ms with all series present


def scrape(url: str, timeout: float = 10.0) -> tuple[float, str]:
    """(seconds, exposition text) of one GET."""
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    return time.perf_counter() - t0, text


def order_failures(text: str, order: int) -> int:
    """paftrace_page_alloc_failures_total summed over the labels of one order."""
    rows = samples(text).get("paftrace_page_alloc_failures_total", {})
    return int(sum(v for k, v in rows.items() if dict(k)["order"] == str(order)))


def settled(url: str, timeout: float = 15.0) -> str:
    """A scrape once the decoded failures caught up with the in-kernel count (the run
    loop may still be decoding the storm's last records), or the last one at timeout."""
    deadline = time.monotonic() + timeout
    while True:
        text = scrape(url)[1]
        found = samples(text)
        decoded = sum(found.get("paftrace_page_alloc_failures_total", {}).values())
        in_kernel = sum(found.get("paftrace_page_alloc_failures_matched_total", {}).values())
        if decoded >= in_kernel or time.monotonic() > deadline:
            return text
        time.sleep(0.2)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


@dataclass
class Scraper:
    """Scrapes every `interval` seconds in a thread (Prometheus' load on the exporter)."""

    url: str
    interval: float = 1.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    last_text: str = ""

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                seconds, self.last_text = scrape(self.url)
                self.latencies.append(seconds)
            except OSError as exc:
                self.errors.append(str(exc))

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def latency_summary(latencies: list[float]) -> dict:
    return {"scrapes": len(latencies),
            "p50_ms": round(1000 * percentile(latencies, 50), 2),
            "p99_ms": round(1000 * percentile(latencies, 99), 2),
            "max_ms": round(1000 * max(latencies), 2),
            "target_p99_ms": 1000 * TARGET_SCRAPE_P99_S,
            "met": percentile(latencies, 99) < TARGET_SCRAPE_P99_S}
