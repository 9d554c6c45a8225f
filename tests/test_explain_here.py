"""`paftrace explain` on reports the kernel printed on this machine.

The kernel matrix (scripts/kernel-matrix) boots Debian kernels under QEMU here and
loads a test module (scripts/matrix/pafwarn) that asks ZONE_DMA for order-10 blocks
with GFP_KERNEL|GFP_DMA|__GFP_NORETRY and no __GFP_NOWARN until one fails: the guest
kernel then prints a real `page allocation failure` report with its call trace and
Mem-Info. The host's own 6.18 kernel cannot load the module (no headers of its own).
These are the guests' full dmesg captures, boot messages included.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import DATA

CAPTURES = sorted((DATA / "reports" / "here").glob("qemu-*-pafwarn.dmesg"))


def explain_json(path) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "paftrace", "explain", "--json", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_all_four_guest_kernels_are_captured():
    kernels = {p.name.split("-pafwarn")[0].removeprefix("qemu-") for p in CAPTURES}
    assert kernels == {"5.10.0-46-amd64", "6.1.0-56-amd64", "6.12.95+deb12-amd64",
                       "6.12.118+deb13-amd64"}


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_report_printed_by_the_kernel_is_decoded(path):
    [report] = explain_json(path)
    kernel = path.name.split("-pafwarn")[0].removeprefix("qemu-")
    assert (report["comm"], report["kernel"], report["order"]) == ("insmod", kernel, 10)
    assert isinstance(report["pid"], int) and not report["partial"]
    # The kernel printed the decoded flags itself; the decoder must agree with it.
    assert report["mode"] == "0x10cc1" and report["flags_agree"]
    assert report["gfp_flags"] == ["GFP_KERNEL", "GFP_DMA", "__GFP_NORETRY"]
    assert (report["context"], report["softirq"]) == ("process", None)
    assert report["requester"] == "pafwarn_init [pafwarn]"
    # The failing zone (DMA) had no free order-10 block; the report lists it at least.
    dma = next(z for z in report["free_areas"] if z["zone"] == "DMA")
    assert dma["blocks_at_or_above_order"] == 0
    assert dma["free_kb"] == sum(n * 4 << int(o) for o, n in dma["blocks"].items())
    # __GFP_NORETRY: the caller expects failure.
    assert report["verdict"] == "benign"
