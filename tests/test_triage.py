"""Triage rules on the running kernel's own flag table (6.18 capture)."""

from __future__ import annotations

import pytest

from paftrace.records import blame_for
from paftrace.triage import triage
from tests.helpers import gfp_table_618

TABLE = gfp_table_618()
NOWARN, NORETRY, RETRY_MAYFAIL, NOFAIL = 0x2000, 0x10000, 0x4000, 0x8000
GFP_ATOMIC, GFP_KERNEL, THP = 0x820, 0xCC0, 0x1C24CA


@pytest.mark.parametrize("mask,order,context,visibility,severity,rule_part", [
    (GFP_ATOMIC, 4, "softirq", "reported", "harmful", "atomic allocation in softirq"),
    (GFP_ATOMIC | NOWARN, 3, "softirq", "silent", "expected", "tolerates"),
    (GFP_KERNEL | NOWARN | NORETRY, 3, "process", "silent", "expected", "fallback"),
    (THP, 9, "process", "silent", "expected", "THP"),
    (GFP_KERNEL | RETRY_MAYFAIL, 4, "process", "reported", "harmful", "RETRY_MAYFAIL"),
    (GFP_KERNEL | NOFAIL, 0, "process", "reported", "harmful", "NOFAIL"),
    (GFP_KERNEL, 4, "process", "reported", "harmful", "costly order 4"),
    (GFP_KERNEL, 0, "process", "reported", "harmful", "did not plan"),
    (0x442DC0, 4, "process", "silent", "expected", "__GFP_NOWARN"),
])
def test_rules(mask, order, context, visibility, severity, rule_part):
    v = triage(TABLE, mask, order, context)
    assert (v.visibility, v.severity) == (visibility, severity)
    assert rule_part in v.rule


def test_rate_limited_only_known_with_the_warn_kprobe():
    assert triage(TABLE, GFP_ATOMIC, 4, "softirq", warned=True, printed=False).visibility \
        == "rate-limited"
    assert triage(TABLE, GFP_ATOMIC, 4, "softirq", warned=True, printed=True).visibility \
        == "reported"


def test_interrupt_failures_blame_the_softirq_not_the_bystander():
    assert blame_for("softirq", "NET_RX", None, "swapper/0", 0, "tg3_start_xmit [tg3]") == \
        "softirq NET_RX in tg3_start_xmit [tg3]"
    assert blame_for("hardirq", None, "irq 24 (eth0)", "bash", 1, None) == "hardirq irq 24 (eth0)"
    assert blame_for("process", None, None, "bash", 42, "pipe_resize_ring") == \
        "bash[42] in pipe_resize_ring"
