"""cgroup paths, unit names, mounts, the id resolver and the per-failure attribution."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paftrace.attribution import Attributor, CgroupFilter, parse_cpulist, status_mems_allowed
from paftrace.cgroups import CgroupResolver, unit_of
from paftrace.procfs.memcg import (
    CgroupMounts,
    ancestors,
    binding_limit,
    parse_mountinfo,
    parse_proc_cgroup,
    read_chain,
)
from paftrace.records import Failure
from tests.helpers import DATA, gfp_table_618

DOCKER_ID = "4f1c3a9b2d7e8f60" + "a" * 48
POD_UID = "8e3b1f1c-2a4d-4c6b-9d1e-0f2a3b4c5d6e"


@pytest.mark.parametrize("path,kind,label", [
    (f"/system.slice/docker-{DOCKER_ID}.scope", "docker", "docker 4f1c3a9b2d7e"),
    (f"/docker/{DOCKER_ID}", "docker", "docker 4f1c3a9b2d7e"),
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
     f"{POD_UID.replace('-', '_')}.slice/cri-containerd-{DOCKER_ID}.scope", "kubepods",
     f"pod {POD_UID} container 4f1c3a9b2d7e"),
    (f"/kubepods/burstable/pod{POD_UID}/{DOCKER_ID}", "kubepods",
     f"pod {POD_UID} container 4f1c3a9b2d7e"),
    (f"/kubepods.slice/kubepods-pod{POD_UID.replace('-', '_')}.slice", "kubepods",
     f"pod {POD_UID}"),
    (f"/machine.slice/libpod-{DOCKER_ID}.scope", "podman", "podman 4f1c3a9b2d7e"),
    ("/system.slice/nginx.service", "systemd-service", "nginx.service"),
    ("/user.slice/user-1000.slice/session-3.scope", "systemd-scope", "session-3.scope"),
    ("/user.slice/user-1000.slice/user@1000.service/app.slice/labm6.service",
     "systemd-service", "labm6.service"),
    ("/lxc.payload.web1", "lxc", "lxc web1"),
    ("/machine.slice/machine-qemu\\x2d1\\x2dvm.scope", "machine", "machine qemu\\x2d1\\x2dvm"),
])
def test_unit_names_from_paths(path, kind, label):
    unit = unit_of(path)
    assert unit is not None and unit.kind == kind and unit.label() == label


@pytest.mark.parametrize("path", [None, "", "/", "/paftrace-provoke-123", "/process_api/abc"])
def test_plain_paths_name_no_unit(path):
    assert unit_of(path) is None


@given(st.text())
def test_unit_of_never_fails_on_any_path(path):
    unit = unit_of(path)
    assert unit is None or unit.label()


def test_proc_cgroup_v1_hybrid_and_v2():
    text = ("9:name=systemd:/\n4:memory:/process_api/de01\n3:cpuset:/\n"
            "2:cpu,cpuacct:/a\n0::/user.slice\n")
    got = parse_proc_cgroup(text)
    assert got["memory"] == "/process_api/de01" and got[""] == "/user.slice"
    assert got["cpu"] == got["cpuacct"] == "/a"


def test_mountinfo_of_this_hybrid_host_and_a_pure_v2_host():
    hybrid = ("35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
              "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n")
    m = parse_mountinfo(hybrid)
    assert m.v1_memory == Path("/sys/fs/cgroup/memory") and m.memory_version == 1
    assert m.v2 == Path("/sys/fs/cgroup/unified")
    v2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    m = parse_mountinfo(v2, read_controllers=lambda p: "cpuset cpu io memory pids")
    assert m.memory_version == 2 and m.v2 == Path("/sys/fs/cgroup")
    assert parse_mountinfo(v2, read_controllers=lambda p: "cpu").memory_version is None


def test_ancestors_and_the_binding_level():
    assert ancestors("/a/b") == ["/a/b", "/a", "/"]
    assert ancestors("/") == ["/"]
    chain = read_chain(DATA / "memcg" / "v1-provoke", "/paftrace-provoke", 1)
    assert binding_limit(chain).path == "/paftrace-provoke"
    assert read_chain(DATA / "memcg" / "v1-provoke", "/gone", 1) == []


def test_cpulists():
    assert parse_cpulist("0-3,8,10-11\n") == {0, 1, 2, 3, 8, 10, 11}
    assert status_mems_allowed("Name:\tx\nMems_allowed_list:\t0-1\n") == {0, 1}


def test_resolver_maps_cgroup2_inodes_to_paths(tmp_path):
    (tmp_path / "system.slice" / "a.service").mkdir(parents=True)
    resolver = CgroupResolver(CgroupMounts(v2=tmp_path), proc=str(tmp_path))
    ino = os.stat(tmp_path / "system.slice" / "a.service").st_ino
    assert resolver.path_of_id(ino) == "/system.slice/a.service"
    assert resolver.path_of_id(os.stat(tmp_path).st_ino) == "/"
    assert resolver.id_of_path("/system.slice/a.service") == ino
    assert resolver.subtree_ids("/system.slice") == {
        os.stat(tmp_path / "system.slice").st_ino, ino}
    assert resolver.path_of_id(0) is None


def _failure(pid: int, context: str = "process") -> Failure:
    return Failure(ts_ns=2_000_000, cpu=0, pid=pid, tid=pid, comm="w", order=4, gfp="0x0",
                   gfp_flags=[], migratetype="Unmovable", context=context, softirq=None,
                   stack=[])


T618 = gfp_table_618()


def _host(tmp_path: Path, cache_s: float = 0.0) -> Attributor:
    """A v1 host: the provoke capture as the memory hierarchy, one live pid in it."""
    memory = tmp_path / "memory"
    shutil.copytree(DATA / "memcg" / "v1-provoke", memory)
    proc = tmp_path / "proc" / "77"
    proc.mkdir(parents=True)
    (proc / "cgroup").write_text("4:memory:/paftrace-provoke\n0::/\n")
    (proc / "stat").write_text("77 (w) S 1 77 77 0 -1 4194560 100 0 0 0")
    (proc / "status").write_text("Mems_allowed_list:\t0\n")
    resolver = CgroupResolver(CgroupMounts(v1_memory=memory), proc=str(tmp_path / "proc"))
    return Attributor(T618, resolver, proc=str(tmp_path / "proc"), sys_root=str(tmp_path),
                      cache_s=cache_s)


def test_attribution_on_a_v1_host_names_the_memory_cgroup_and_classifies(tmp_path):
    attributor = _host(tmp_path)
    f = _failure(77)
    attributor.annotate(f, 0x442dc0, 0, None)
    assert f.cgroup["memory_path"] == "/paftrace-provoke" and f.cgroup["memory_version"] == 1
    assert f.cgroup["path"] == "/"  # the cgroup2 line of /proc/PID/cgroup (hybrid host)
    # order 4 with 164 KiB of headroom, failcnt 57 seen once, no memory sample: memcg
    # weak evidence alone does not decide without the buddy lists.
    assert f.cause == "unknown"
    # A second reading with failcnt risen decides.
    (tmp_path / "memory" / "paftrace-provoke" / "memory.failcnt").write_text("60\n")
    attributor.annotate(f, 0x442dc0, 0, None)
    assert f.cause == "memcg-limit"
    assert "memory.failcnt 60" in f.cause_evidence["sentence"]


def test_attribution_says_when_the_process_is_gone(tmp_path):
    f = _failure(4242)
    _host(tmp_path).annotate(f, 0x442dc0, 0, None)
    assert f.cgroup["memory_path"] is None
    assert "process 4242 exited" in f.cgroup["missing"]
    assert f.cause == "unknown" and any("4242" in m for m in f.cause_evidence["missing"])


def test_cgroup_filter_matches_the_subtree_only():
    flt = CgroupFilter("/system.slice/", CgroupResolver(CgroupMounts()))
    assert flt.path == "/system.slice"
    assert flt.matches({"memory_path": "/system.slice/a.service", "path": None})
    assert flt.matches({"memory_path": None, "path": "/system.slice"})
    assert not flt.matches({"memory_path": "/system.slice2/x", "path": None})
    assert not flt.matches(None)
    assert CgroupFilter(None, CgroupResolver(CgroupMounts())).matches(None)


@pytest.mark.parametrize("stat,exiting", [
    ("77 (w) S 1 77 77 0 -1 4194560 100 0 0 0", False),
    ("77 (a b) c) R 1 77 77 0 -1 4194564 100 0 0 0", True),   # PF_EXITING (0x4)
    ("77 (w) Z 1 77 77 0 -1 4194560 100 0 0 0", True),
    ("77 (w)", True),
])
def test_exiting_tasks_are_told_apart(stat, exiting):
    from paftrace.cgroups import task_exiting

    assert task_exiting(stat) is exiting


def test_an_exiting_task_has_no_cgroup_to_report(tmp_path):
    # An exiting task reads as the root cgroup: that must not be taken for its cgroup.
    proc = tmp_path / "77"
    proc.mkdir()
    (proc / "cgroup").write_text("4:memory:/\n")
    (proc / "stat").write_text("77 (w) R 1 77 77 0 -1 4194564 100 0 0 0")
    resolver = CgroupResolver(CgroupMounts(), proc=str(tmp_path))
    assert resolver.proc_cgroups(77) is None
    (proc / "stat").write_text("77 (w) S 1 77 77 0 -1 4194560 100 0 0 0")
    assert resolver.proc_cgroups(77) == {"memory": "/"}


def test_a_storm_reads_the_files_once_per_period(tmp_path):
    attributor = _host(tmp_path, cache_s=60.0)
    first, second = _failure(77), _failure(77)
    attributor.annotate(first, 0x442dc0, 0, None)
    (tmp_path / "memory" / "paftrace-provoke" / "memory.failcnt").write_text("60\n")
    (tmp_path / "proc" / "77" / "cgroup").write_text("4:memory:/elsewhere\n")
    attributor.annotate(second, 0x442dc0, 0, None)
    assert second.cgroup == first.cgroup and second.cgroup is not first.cgroup
    assert second.cause_evidence["memcg"]["levels"][0]["limit_events"] == 57


def test_v2_host_resolves_the_kernel_cgroup_id_even_after_the_process_exited(tmp_path):
    # cgroup2 host: the record's id (bpf_get_current_cgroup_id) names the cgroup, so a
    # process gone by decode time still gets its container and memcg numbers.
    from paftrace.procfs.buddyinfo import parse_buddyinfo
    from paftrace.procfs.sampler import build_sample
    from paftrace.procfs.zoneinfo import parse_zoneinfo

    root = tmp_path / "cg"
    shutil.copytree(DATA / "memcg" / "v2-postgres-384m", root)
    scope = root / "system.slice" / f"docker-{DOCKER_ID}.scope"
    scope.parent.mkdir()
    (root / "postgres").rename(scope)
    resolver = CgroupResolver(CgroupMounts(v2=root, v2_memory=True), proc=str(tmp_path))
    attributor = Attributor(T618, resolver, proc=str(tmp_path), sys_root=str(tmp_path))
    sample = build_sample(1_000_000, parse_buddyinfo(
        (DATA / "procfs" / "buddyinfo.live-6.18-x86").read_text()), parse_zoneinfo(
        (DATA / "procfs" / "zoneinfo.live-6.18-x86").read_text()))
    f = _failure(4242)
    attributor.annotate(f, 0x442dc0, os.stat(scope).st_ino, sample)
    assert f.cgroup["path"] == f"/system.slice/docker-{DOCKER_ID}.scope"
    assert f.cgroup["memory_version"] == 2 and f.cgroup["unit"]["kind"] == "docker"
    assert f.cause == "memcg-limit"
    assert f.cause_evidence["memcg"]["binding"]["limit"] == 402653184
    assert f.cause_evidence["advice"][0]["text"].startswith(
        "the container is at its memory limit: docker update --memory")


def test_v2_reads_the_process_only_when_the_kernel_id_is_not_resolved(tmp_path):
    # A storm of short-lived tasks made a /proc/PID/cgroup and stat read per new task;
    # with cgroup2 and the id resolved they add nothing.
    root = tmp_path / "cg"
    (root / "app").mkdir(parents=True)
    resolver = CgroupResolver(CgroupMounts(v2=root, v2_memory=True), proc=str(tmp_path))
    attributor = Attributor(T618, resolver, proc=str(tmp_path), sys_root=str(tmp_path))
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "cgroup").write_text("0::/from-proc\n")
    (tmp_path / "4242" / "stat").write_text("4242 (a) R 1 " + "0 " * 45 + "\n")
    reads = []
    real = resolver.proc_cgroups
    resolver.proc_cgroups = lambda pid: reads.append(pid) or real(pid)  # type: ignore[method-assign]
    resolved = _failure(4242)
    attributor.annotate(resolved, 0x442dc0, os.stat(root / "app").st_ino, None)
    assert resolved.cgroup["path"] == "/app" and reads == []
    unresolved = _failure(4242, "softirq")  # another cache key, an id no directory has
    attributor.annotate(unresolved, 0x442dc0, 999_999_999, None)
    assert unresolved.cgroup["path"] == "/from-proc" and reads == [4242]


@given(st.text())
def test_untrusted_text_never_breaks_the_readers(text):
    from paftrace.cgroups import task_exiting
    from paftrace.explain.cause_read import memcg_from_lines
    from paftrace.procfs.memcg import parse_flat_keyed

    parse_proc_cgroup(text)
    parse_mountinfo(text, read_controllers=lambda p: text)
    parse_flat_keyed(text)
    assert isinstance(task_exiting(text), bool)
    for reading in memcg_from_lines(text.splitlines()):
        assert reading.usage is not None and reading.usage >= 0


@given(st.lists(st.sampled_from([
    "memory: usage 24396kB, limit 24576kB, failcnt 35",
    "kmem: usage 152kB, limit 9007199254740988kB, failcnt 0",
    "Memory cgroup stats for /a b:", "Memory cgroup stats for /x:", "noise", ""]), max_size=12))
def test_memcg_lines_in_any_order(lines):
    from paftrace.explain.cause_read import memcg_from_lines

    got = memcg_from_lines(lines)
    assert len(got) == sum("memory: usage" in x for x in lines)


def _live_sample(ts_ns: int):
    from paftrace.procfs.buddyinfo import parse_buddyinfo
    from paftrace.procfs.sampler import build_sample
    from paftrace.procfs.zoneinfo import parse_zoneinfo

    procfs = DATA / "procfs"
    return build_sample(ts_ns, parse_buddyinfo((procfs / "buddyinfo.live-6.18-x86").read_text()),
                        parse_zoneinfo((procfs / "zoneinfo.live-6.18-x86").read_text()))


def test_a_storm_shares_one_verdict_and_keeps_each_failures_age(tmp_path):
    attributor = _host(tmp_path, cache_s=60.0)
    sample = _live_sample(1_000_000)
    first, second = _failure(77), replace(_failure(77), ts_ns=9_000_000)
    attributor.annotate(first, 0x442dc0, 0, sample)
    attributor.annotate(second, 0x442dc0, 0, sample)
    assert first.cause == second.cause == "memcg-limit"  # weak: failcnt 57, zones had room
    assert second.shared_evidence is first.shared_evidence is not None
    assert (first.cause_evidence["sample_age_ms"], second.cause_evidence["sample_age_ms"]) \
        == (1.0, 8.0)
    # The same as judging the second failure afresh, in the same state of the files.
    fresh = replace(_failure(77), ts_ns=9_000_000)
    _host(tmp_path / "again").annotate(fresh, 0x442dc0, 0, sample)
    assert fresh.cause_evidence == second.cause_evidence


def test_a_sentence_that_cites_the_age_is_each_failures_own(tmp_path):
    attributor = _host(tmp_path, cache_s=60.0)
    sample = _live_sample(1_000_000)
    first, second = _failure(4242), replace(_failure(4242), ts_ns=9_000_000)
    for f in (first, second):
        attributor.annotate(f, 0x442dc0, 0, sample)  # gone: memcg state missing
    assert first.cause == second.cause == "unknown"
    assert first.shared_evidence is None and second.shared_evidence is None
    assert "sampled 1 ms away" in first.cause_evidence["sentence"]
    assert "sampled 8 ms away" in second.cause_evidence["sentence"]
