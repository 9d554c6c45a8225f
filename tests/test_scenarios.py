"""The scenario scripts, run as documented (docs/SCENARIOS.md), with paftrace attached."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from paftrace.workloads.scenarios import icmp
from paftrace.workloads.scenarios.common import default_min_free_kbytes, meminfo_mib
from paftrace.workloads.scenarios.netns import NETNS_DIR, PREFIX
from paftrace.workloads.scenarios.softirq_cli import page_order, reply_buffer, size_for_order
from tests.helpers import needs_root, run_tracer, sysctl_hold

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
    assert proc.returncode == 0 and "Usage:" in proc.stdout


@pytest.mark.parametrize("name", ["fragment", "softirq-highorder"])
def test_help_says_what_paftrace_shows(name: str) -> None:
    assert "paftrace" in script(name, "--help").stdout.split("examples:")[1]


# Worked by hand for 4 KiB pages (x86-64): payload = 3/4 of the block (or the MTU)
# minus 20 (IP) + 8 (ICMP) header bytes; the reply buffer adds 384 bytes of skb
# overhead, and get_order() of that buffer is the wanted order.
@pytest.mark.parametrize(("order", "mtu", "size", "buffer"), [
    (2, 9000, 8972, 9384), (2, 65535, 12260, 12672), (3, 65535, 24548, 24960),
    (4, 65535, 49124, 49536), (5, 65535, 65507, 65919)])
def test_payload_sizes_land_on_the_wanted_order(order: int, mtu: int, size: int,
                                                buffer: int) -> None:
    assert size_for_order(order, mtu) == size
    assert reply_buffer(size, mtu) == buffer
    assert (buffer - 1).bit_length() - 12 == order  # get_order() for 4 KiB pages


def test_page_order_is_get_order() -> None:
    page = 4096
    assert [page_order(n) for n in (1, page, page + 1, 4 * page, 4 * page + 1)] == [0, 0, 1, 2, 3]


def test_orders_the_mtu_cannot_carry_are_refused() -> None:
    proc = script("softirq-highorder", "-o", "4", "--mtu", "9000")
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("softirq-highorder: order 4 cannot be reached with MTU 9000: "
                                   "replies of at most 9000 bytes need order 2")


class Unanswered(socket.socket):
    """A datagram socket whose requests go nowhere: every reply is lost."""

    def sendto(self, data: bytes, address: object) -> int:  # type: ignore[override]
        self.requests = getattr(self, "requests", 0) + 1
        return len(data)


def test_the_echo_loop_stops_at_the_lost_replies_asked_for() -> None:
    with Unanswered(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        stats = icmp.echo_loop(sock, "169.254.77.2", 64, seconds=30, max_count=100,
                               max_lost=3, reply_timeout=0.01)
        assert (stats.sent, stats.replies, stats.lost, sock.requests) == (3, 0, 3, 3)
    assert stats.waiting_s >= 3 * 0.01 and stats.slowest_s >= 0.01


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
    # where the loop's time went adds up, and the machine's memory state came along
    echo = result["echo_s"]
    assert 0 < echo["slowest"] <= echo["sending"] + echo["waiting"] <= result["seconds"]
    assert result["memory"]["during"]["available_mib"] > 0
    assert result["memory"]["during"]["major_faults"] >= 0
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


VM = Path("/proc/sys/vm")


def test_the_thinned_reserve_is_the_kernels_default_without_thp() -> None:
    # int_sqrt(lowmem kB x 16): 1 GiB -> 4096 kB, within [128, 262144]
    assert default_min_free_kbytes(1 << 20) == 4096
    assert default_min_free_kbytes(24683584) == 19873
    assert default_min_free_kbytes(512) == 128
    assert default_min_free_kbytes(1 << 33) == 262144


@needs_root
def test_drain_thins_the_reserve_and_a_killed_run_is_undone_by_cleanup() -> None:
    """--drain holds vm.min_free_kbytes at the kernel's default and vm.extfrag_threshold
    at 1000; after a SIGKILL they stay so until --cleanup (or the next run) restores them."""
    wanted = {"min_free_kbytes": min(default_min_free_kbytes(meminfo_mib("MemTotal") << 10),
                                     int((VM / "min_free_kbytes").read_text())),
              "extfrag_threshold": 1000}
    before = {name: (VM / name).read_text() for name in wanted}
    proc = subprocess.Popen([str(SCRIPTS / "softirq-highorder"), "--drain", "--seconds", "60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not all(sysctl_hold(proc.pid, n) for n in wanted) and time.monotonic() < deadline:
        time.sleep(0.1)
    held = {name: int((VM / name).read_text()) for name in wanted}
    proc.kill()
    _, err = proc.communicate()
    assert held == wanted, err
    assert {name: int((VM / name).read_text()) for name in wanted} == wanted  # left so
    cleaned = json_lines(script("softirq-highorder", "--cleanup").stdout)[-1]["cleaned"]
    assert {name: (VM / name).read_text() for name in wanted} == before, cleaned
    assert not our_namespaces(proc.pid)


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
