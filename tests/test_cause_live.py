"""Real: provoked memcg failures are classified memcg-limit with the provoker's cgroup
and its usage/limit numbers; --cgroup keeps exactly one cgroup's failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from paftrace.workloads.childproc import python_env
from tests.helpers import needs_root, provoke, run_tracer

pytestmark = needs_root

V1_MEMORY = Path("/sys/fs/cgroup/memory")


@pytest.fixture
def parent_cgroup():
    """A memory cgroup of our own to nest the provoker in (removed afterwards)."""
    root = V1_MEMORY if (V1_MEMORY / "memory.limit_in_bytes").exists() else next(
        r for r in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))
        if (r / "cgroup.subtree_control").exists())
    made = []

    def make(tag: str) -> str:
        name = f"paftrace-test-{tag}-{uuid.uuid4().hex[:8]}"
        (root / name).mkdir()
        if root != V1_MEMORY:  # v2: children need the memory controller enabled
            (root / name / "cgroup.subtree_control").write_text("+memory")
        made.append(root / name)
        return name

    yield make
    for path in reversed(made):
        os.rmdir(path)


def test_provoked_memcg_failures_are_memcg_limit_with_usage_and_limit(parent_cgroup):
    parent = parent_cgroup("cause")
    name = f"{parent}/provoker"
    run = run_tracer(["--order", "4"], lambda: provoke(3, 4, "--hold", "2", "--name", name))
    provoked = run.workload_result
    assert provoked["failures"] == 3
    mine = [f for f in run.failures if f["pid"] == provoked["worker_pid"]]
    assert len(mine) == 3
    for f in mine:
        assert f["cause"] == "memcg-limit", f["cause_evidence"]
        assert f["cgroup"]["memory_path"] == f"/{name}"
        memcg = f["cause_evidence"]["memcg"]
        binding = memcg["binding"]
        assert binding["path"] == f"/{name}"
        assert 0 < binding["usage"] <= binding["limit"] < 100 << 20
        sentence = f["cause_evidence"]["sentence"]
        assert sentence.startswith(f"memory cgroup /{name} at its limit: usage ")
        assert "not fragmentation" in sentence and "limit" in sentence
        # The buddy lists had blocks: the evidence says so, with the numbers.
        assert sum(z["blocks_at_or_above"] for z in f["cause_evidence"]["zones"]) > 0
        advice = f["cause_evidence"]["advice"]
        assert advice[0]["text"].startswith("the container is at its memory limit")
        assert f"/{name}: usage " in advice[0]["evidence"]
        assert not any("raise vm.min_free_kbytes" in a["text"] for a in advice)
    summary = run.summary
    assert summary["by_cause"]["memcg-limit"] >= 3
    assert summary["by_cgroup"][f"/{name}"] == 3
    site = next(s for s in summary["call_sites"] if s["requester"] == "pipe_resize_ring")
    assert site["cause"] == "memcg-limit"


def test_cgroup_filter_keeps_only_that_subtree(parent_cgroup):
    watched, other = parent_cgroup("watched"), parent_cgroup("other")
    run = run_tracer(["--order", "4", "--cgroup", f"/{watched}"],
                     lambda: (provoke(2, 4, "--hold", "1", "--name", f"{watched}/a"),
                              provoke(2, 4, "--hold", "1", "--name", f"{other}/b")))
    a, b = run.workload_result
    assert a["failures"] == 2 and b["failures"] == 2
    pids = {f["pid"] for f in run.failures}
    assert a["worker_pid"] in pids and b["worker_pid"] not in pids
    assert all(f["cgroup"]["memory_path"].startswith(f"/{watched}/") for f in run.failures)
    assert run.summary["cgroup_filter"] == f"/{watched}"
    assert run.summary["failures_filtered_by_cgroup"] >= 2


def test_cgroup_filter_typo_is_one_clear_error():
    run = run_tracer(["--order", "4", "--cgroup", "/no-such-cgroup-here"], timeout=30)
    assert run.returncode == 1
    assert "--cgroup /no-such-cgroup-here: no such cgroup under" in run.stderr
    assert "Traceback" not in run.stderr


V2_ROOTS = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))


def test_cgroup2_id_is_read_in_the_kernel_and_filters_there():
    # The provoker joins a cgroup2 directory of ours (on this hybrid host the memory
    # controller stays on v1): the records carry that directory's id, resolved to its
    # path, and --cgroup on it filters by id in the kernel.
    root = next(r for r in V2_ROOTS if (r / "cgroup.procs").exists()
                and (r / "cgroup.controllers").exists())
    name = f"paftrace-test-v2-{uuid.uuid4().hex[:8]}"
    (root / name).mkdir()
    try:
        def provoke_in_v2() -> dict:
            script = (f"echo $$ > {root / name}/cgroup.procs && exec {sys.executable} "
                      "-m paftrace.workloads.provoke -n 2 -o 4")
            proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                                  timeout=120, env=python_env())
            return json.loads(proc.stdout.strip().splitlines()[-1])

        run = run_tracer(["--order", "4", "--cgroup", f"/{name}"],
                         lambda: (provoke_in_v2(), provoke(2, 4)))
        inside, outside = run.workload_result
        assert inside["failures"] == 2 and outside["failures"] == 2
        plan = {f["name"]: f for f in run.attached["features"]}
        assert plan["cgroup-id"]["used"]
        mine = [f for f in run.failures if f["pid"] == inside["worker_pid"]]
        assert len(mine) == 2
        assert all(f["pid"] != outside["worker_pid"] for f in run.failures)
        for f in mine:
            assert f["cgroup"]["id"] == os.stat(root / name).st_ino
            assert f["cgroup"]["path"] == f"/{name}"
        # The other provoker's failures never left the kernel: nothing was dropped
        # in user space for them.
        assert run.summary["failures_filtered_by_cgroup"] == 0
        assert run.summary["failures_matched"] == len(run.failures)
    finally:
        os.rmdir(root / name)
