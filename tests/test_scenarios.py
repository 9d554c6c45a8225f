"""The scenario scripts, run as documented (docs/SCENARIOS.md), with paftrace attached."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from paftrace.workloads.scenarios.netns import NETNS_DIR, PREFIX
from paftrace.workloads.scenarios.softirq_cli import page_order, reply_buffer, size_for_order
from tests.helpers import needs_root, run_tracer

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def script(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPTS / name), *args], capture_output=True, text=True,
                          timeout=timeout)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def our_namespaces(pid: int | None = None) -> list[str]:
    prefix = f"{PREFIX}{pid}-" if pid else PREFIX
    return sorted(p.name for p in NETNS_DIR.glob(f"{prefix}*")) if NETNS_DIR.exists() else []


@pytest.mark.parametrize("name", ["fragment", "softirq-highorder", "provoke"])
def test_each_script_has_help(name: str) -> None:
    proc = script(name, "--help")
    assert proc.returncode == 0 and "usage:" in proc.stdout


@pytest.mark.parametrize("name", ["fragment", "softirq-highorder"])
def test_help_says_what_paftrace_shows(name: str) -> None:
    assert "paftrace" in script(name, "--help").stdout.split("examples:")[1]


@pytest.mark.parametrize(("order", "mtu"), [(2, 9000), (2, 65535), (3, 65535), (4, 65535),
                                            (5, 65535)])
def test_payload_sizes_land_on_the_wanted_order(order: int, mtu: int) -> None:
    size = size_for_order(order, mtu)
    assert size + 28 <= mtu and page_order(reply_buffer(size, mtu)) == order


def test_orders_the_mtu_cannot_carry_are_refused() -> None:
    proc = script("softirq-highorder", "-o", "4", "--mtu", "9000")
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("softirq-highorder: order 4 cannot be reached with MTU 9000: "
                                   "replies of at most 9000 bytes need order 2")


def net_rx_rows(summary: dict) -> list[dict]:
    return [row for row in summary["allocations"]
            if row["context"] == "softirq" and row["softirq"] == "NET_RX"]


@needs_root
@pytest.mark.parametrize(("order", "mtu"), [(4, 65535), (2, 9000)])
def test_linear_replies_are_atomic_high_order_allocations_in_net_rx(order: int,
                                                                    mtu: int) -> None:
    """Each echo reply is one GFP_ATOMIC kmalloc of the reply's order, in NET_RX."""
    run = run_tracer(["--all", "-o", "1+"], lambda: json_lines(script(
        "softirq-highorder", "-o", str(order), "--mtu", str(mtu), "--seconds", "3").stdout))
    assert run.returncode == 130, run.stderr
    result = run.workload_result[-1]
    assert result["reply_order"] == order and result["replies"] > 100
    rows = [r for r in net_rx_rows(run.summary) if r["order"] == order
            and "GFP_ATOMIC" in r["gfp_flags"] and "__GFP_NOWARN" in r["gfp_flags"]]
    assert rows, net_rx_rows(run.summary)
    # One allocation per reply; lost replies may be failed allocations, counted too.
    assert sum(r["count"] for r in rows) >= result["replies"]
    stacks = [s for r in rows for s in r["stacks"]]
    assert any("icmp_reply" in " ".join(s["stack"]) for s in stacks)
    assert {s["requester"] for s in stacks} & {"sock_alloc_send_pskb", "__alloc_skb"}
    assert not our_namespaces()


@needs_root
def test_scatter_gather_replies_take_order3_page_fragments_in_net_rx() -> None:
    """--keep-sg: the reply is paged; skb_page_frag_refill tries order 3, may fall back."""
    run = run_tracer(["--all", "-o", "3"], lambda: json_lines(script(
        "softirq-highorder", "--keep-sg", "--seconds", "2").stdout))
    result = run.workload_result[-1]
    rows = [r for r in net_rx_rows(run.summary) if "__GFP_NORETRY" in r["gfp_flags"]
            and any(s["requester"] == "skb_page_frag_refill"
                    and "icmp_reply" in " ".join(s["stack"]) for s in r["stacks"])]
    assert result["reply_order"] is None and result["replies"] > 100
    assert rows and all(r["order"] == 3 for r in rows)


@needs_root
def test_sigterm_removes_the_namespaces() -> None:
    proc = subprocess.Popen([str(SCRIPTS / "softirq-highorder"), "--seconds", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while len(our_namespaces(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(our_namespaces(proc.pid)) == 2
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "namespaces removed" in err
    assert not our_namespaces(proc.pid)


@needs_root
def test_cleanup_removes_namespaces_of_a_killed_run() -> None:
    proc = subprocess.Popen([str(SCRIPTS / "softirq-highorder"), "--seconds", "60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while len(our_namespaces(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    left = our_namespaces(proc.pid)
    assert len(left) == 2
    removed = json_lines(script("softirq-highorder", "--cleanup").stdout)[-1]["removed"]
    assert set(left) <= set(removed) and not our_namespaces(proc.pid)


def buddyinfo_samples(interval: float) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "paftrace", "buddyinfo", "--json", "-i",
                             str(interval)], stdout=subprocess.PIPE, text=True)


@needs_root
def test_fragment_shows_in_buddyinfo_samples() -> None:
    """While the script holds, the pages it freed are order-0 blocks in buddyinfo
    (--small-pcp: else 6.x per-CPU lists keep up to a few hundred MiB out of sight)."""
    pcp_fraction = Path("/proc/sys/vm/percpu_pagelist_high_fraction").read_text()
    sampler = buddyinfo_samples(0.25)
    try:
        proc = script("fragment", "--mib", "384", "--hold", "3", "--small-pcp")
    finally:
        sampler.send_signal(signal.SIGINT)
        out, _ = sampler.communicate(timeout=30)
    assert proc.returncode == 0, proc.stderr
    phases = {p["phase"]: p for p in json_lines(proc.stdout)}
    assert list(phases) == ["before", "touched", "fragmented", "held", "released"]
    freed = phases["fragmented"]["freed_pages"]
    assert freed == 384 * 256 // 2
    held = [s for s in json_lines(out)
            if phases["fragmented"]["ts_ns"] <= s["ts_ns"] <= phases["held"]["ts_ns"]]
    assert len(held) >= 4
    order0 = [sum(z["free"][0] for z in s["zones"]) for s in held]
    # Other tasks allocate and free too, hence half rather than all of them.
    assert min(order0) - phases["touched"]["order0_blocks"] > freed // 2
    assert not Path(f"/proc/{phases['fragmented']['pid']}").exists()
    assert Path("/proc/sys/vm/percpu_pagelist_high_fraction").read_text() == pcp_fraction


def test_fragment_sigterm_ends_the_child() -> None:
    proc = subprocess.Popen([str(SCRIPTS / "fragment"), "--mib", "256", "--hold", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = [json.loads(proc.stdout.readline()) for _ in range(3)]
    assert lines[-1]["phase"] == "fragmented"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "memory released" in err
    assert not Path(f"/proc/{lines[-1]['pid']}").exists()


def test_fragment_refuses_more_than_memory_allows() -> None:
    proc = script("fragment", "--share", "95")
    available = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text()
                         .splitlines() if line.startswith("MemAvailable:"))) >> 10
    if available * 0.95 > 4096:  # the fixed bound comes first on a large machine
        assert proc.stderr.startswith("fragment: ") and "out of range: use 1..4096" in proc.stderr
    else:
        assert "would leave less than 128 MiB available" in proc.stderr
    assert proc.returncode == 1 and proc.stdout == ""


@needs_root
def test_provoke_script_failures_appear_in_the_tracer() -> None:
    comm = f"paf-scen-{os.getpid() % 10000}"
    run = run_tracer(["-o", "6", "-c", comm], lambda: json_lines(script(
        "provoke", "-n", "4", "-o", "6", "--comm", comm).stdout))
    assert run.workload_result[-1]["failures"] == 4
    assert len(run.failures) == 4
    assert {(f["order"], f["context"], f["requester"]) for f in run.failures} == {
        (6, "process", "pipe_resize_ring")}
    assert run.summary["orders"]["6"]["failures"] >= 4
