"""`paftrace frag` for real (root): pipes pinned beyond the free unmovable pages
fall back to other migratetypes, and their call site tops the fragmenters.

On this 24 GiB host the fallbacks take whole free pageblocks (lazily initialised
memory keeps order-10 blocks around), so they claim pageblocks rather than
fragment them; fragmenting fallbacks are forced in the kernel matrix's 1 GiB
guests (scripts/matrix/payload: churned movable memory, then pinned pipes)."""

from __future__ import annotations

import subprocess
import sys

from paftrace.render.contract import check_record
from paftrace.workloads.childproc import python_env
from tests.helpers import needs_root, run_tracer


def pin_pipes() -> dict:
    proc = subprocess.run([sys.executable, "-m", "paftrace.workloads.scenarios.pipes",
                           "--mib", "256", "--beyond-free", "--hold", "1"],
                          capture_output=True, text=True, timeout=120, env=python_env())
    assert proc.returncode == 0, proc.stderr
    return proc


@needs_root
def test_pinned_pipes_are_the_top_fallback_site():
    run = run_tracer(["-o", "4", "-i", "0.5"], workload=pin_pipes, timeout=120,
                     command=("frag",))
    for record in run.lines:
        assert check_record(record) == [], record
    section = run.summary["fragmenters"]
    # 256 MiB pinned beyond the free unmovable pages; one fallback moves at most one
    # order-10 block (4 MiB; MAX_PAGE_ORDER, include/linux/mmzone.h), so 64 if every
    # page came that way. Unmovable pages that others free meanwhile serve some of
    # them (61 seen while QEMU guests ran beside the test): at least half.
    assert section["fallbacks"] >= 32
    top = section["sites"][0]
    assert "pipe_write" in top["site"] and top["comm"].startswith("python")
    assert top["class"] == "pipe buffers"
    assert top["pairs"].get("Unmovable<-Movable", 0) > 0
    streamed = run.of_type("fragmenter")
    assert any("pipe_write" in r["site"] for r in streamed)
    assert {z["zone"] for z in section["zones"]} >= {"Normal"}
    # the pageblock mix was read (root): the claimed blocks show as Unmovable growth
    normal = next(z for z in section["zones"] if z["zone"] == "Normal")
    assert normal["pageblocks"] is not None
