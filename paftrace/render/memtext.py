"""Memory state as text: sizes and the one-line free-list summary of a failure."""

from __future__ import annotations

from paftrace.procfs.report import PAGE_SIZE


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def failure_line(snapshot: dict, page_size: int = PAGE_SIZE) -> str:
    """One line: 'buddy N0/Normal: 0 blocks >= order 4, 1.2 GiB free (1.2 GiB in order-0), ...'."""
    order = snapshot["order"]
    parts = []
    for z in snapshot["zones"]:
        parts.append(
            f"N{z['node']}/{z['zone']}: {z['blocks_at_or_above']} blocks >= order {order}, "
            f"{human_bytes(z['free_pages'] * page_size)} free "
            f"({human_bytes(z['order0_pages'] * page_size)} in order-0), "
            f"unusable {z['unusable_index']:.3f}")
    age = snapshot.get("sample_age_ms")
    when = ("" if age is None else
            f" (sampled {abs(age):.0f} ms {'before' if age >= 0 else 'after'})")
    return "buddy " + ("; ".join(parts) or "no eligible zone") + when
