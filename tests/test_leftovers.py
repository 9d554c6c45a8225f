"""Issue 12 items 11-12: workloads killed at any moment leave nothing behind for long,
and provoke -n N opens as many pipes as N needs (or says why it cannot).

SharedSysctl is tested on a file standing in for the sysctl (no root); the rest kills
the real scripts with real signals (root).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from paftrace.workloads.childproc import python_env
from paftrace.workloads.leftovers import STATE_DIR, SharedSysctl, start_time
from paftrace.workloads.provoke import PIPE_MAX_SIZE, cgroup_roots
from tests.helpers import IS_ROOT, needs_root, sysctl_hold

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


@pytest.fixture
def sysctl(tmp_path: Path) -> tuple[Path, SharedSysctl]:
    path = tmp_path / "pipe-max-size"
    path.write_text("1048576\n")
    return path, SharedSysctl(path, "pipe-max-size", state_dir=tmp_path / "run")


def dead_holder() -> str:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return f"{proc.pid}:12345"  # gone (and never started at that time)


def test_held_sysctl_is_restored(sysctl) -> None:
    path, shared = sysctl
    with shared.held(4194304):
        assert path.read_text() == "4194304"
    assert path.read_text().strip() == "1048576"
    assert not shared.state.exists()


def test_a_killed_holder_never_makes_the_leaked_value_the_original(sysctl) -> None:
    path, shared = sysctl
    shared.hold(4194304)
    state = json.loads(shared.state.read_text())
    state["holders"] = {dead_holder(): 4194304}  # as if the run that held it was SIGKILLed
    shared.state.write_text(json.dumps(state))
    assert path.read_text() == "4194304"  # the leak
    said = shared.hold(2097152)  # the next run
    assert any("gone" in line for line in said)
    assert path.read_text().strip() == "2097152" or path.read_text() == "2097152"
    shared.leave()
    assert path.read_text() == "1048576"  # the true original, not the leaked 4194304


def test_cleanup_restores_when_nobody_holds_it(sysctl) -> None:
    path, shared = sysctl
    shared.hold(4194304)
    state = json.loads(shared.state.read_text())
    state["holders"] = {dead_holder(): 4194304}
    shared.state.write_text(json.dumps(state))
    said = shared.recover()
    assert path.read_text() == "1048576" and any("restored" in line for line in said)
    assert shared.recover() == []


def test_a_live_holder_keeps_it_raised(sysctl) -> None:
    path, shared = sysctl
    shared.hold(4194304)
    state = json.loads(shared.state.read_text())
    state["holders"][f"1:{start_time(1)}"] = 8388608  # another live run (init, here)
    shared.state.write_text(json.dumps(state))
    shared.leave()
    assert path.read_text() == "8388608"  # it still needs it
    assert shared.recover() == []  # and --cleanup leaves it alone
    assert path.read_text() == "8388608"


def provoke_cgroups(pid: int) -> list[Path]:
    return [p for root in cgroup_roots() for p in root.glob(f"paftrace-provoke-{pid}")]


def start_provoke(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "paftrace.workloads.provoke", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=python_env(), start_new_session=True)


def wait_for(condition, timeout: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@needs_root
def test_provoke_killed_is_undone_by_cleanup() -> None:
    original = PIPE_MAX_SIZE.read_text()
    proc = start_provoke("-n", "3000", "-o", "6")  # order 6: a 16 MiB pipe-max-size
    wait_for(lambda: provoke_cgroups(proc.pid) or proc.poll() is not None)
    proc.kill()
    proc.communicate()
    assert provoke_cgroups(proc.pid) or PIPE_MAX_SIZE.read_text() != original  # leaked
    done = subprocess.run([str(SCRIPTS / "provoke"), "--cleanup"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: not provoke_cgroups(proc.pid), timeout=10)
    assert PIPE_MAX_SIZE.read_text() == original
    assert "left by pid" in done.stderr or "restored" in done.stderr


@needs_root
def test_provoke_killed_is_undone_by_the_next_run() -> None:
    original = PIPE_MAX_SIZE.read_text()
    proc = start_provoke("-n", "3000", "-o", "6")
    wait_for(lambda: provoke_cgroups(proc.pid) or proc.poll() is not None)
    proc.kill()
    proc.communicate()
    nxt = start_provoke("-n", "2", "-o", "4")
    out, err = nxt.communicate(timeout=120)
    assert nxt.returncode == 0, err
    assert json.loads(out)["failures"] == 2
    assert not provoke_cgroups(proc.pid) and PIPE_MAX_SIZE.read_text() == original


@needs_root
@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT])
def test_provoke_signal_cleans_up(sig: int) -> None:
    original = PIPE_MAX_SIZE.read_text()
    proc = start_provoke("-n", "3000", "-o", "6")
    wait_for(lambda: provoke_cgroups(proc.pid) or proc.poll() is not None)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "cleaned up" in err and "Traceback" not in err
    assert not provoke_cgroups(proc.pid) and PIPE_MAX_SIZE.read_text() == original


VM = Path("/proc/sys/vm")


@needs_root
@pytest.mark.parametrize("flags, changed", [
    (["--small-pcp"], {"percpu_pagelist_high_fraction": "100000"}),
    (["--quiet-compaction"], {"compaction_proactiveness": "0", "watermark_boost_factor": "0"}),
    (["--drain", "-o", "9"], {"extfrag_threshold": "1000"}),  # no compaction above order 3
])
def test_fragment_sysctls_of_a_killed_run_are_undone_by_cleanup(flags: list[str],
                                                                 changed: dict) -> None:
    states = {name: STATE_DIR / f"{name}.json" for name in changed}
    proc = subprocess.Popen([str(SCRIPTS / "fragment"), "--mib", "64", "--hold", "30", *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)

    wait_for(lambda: all(sysctl_hold(proc.pid, n) for n in changed) or proc.poll() is not None)
    records = {name: sysctl_hold(proc.pid, name) for name in changed}
    assert all(records.values()), proc.communicate()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    for name, value in changed.items():  # what the killed run set stays...
        assert (VM / name).read_text().strip() == value
    done = subprocess.run([str(SCRIPTS / "fragment"), "--cleanup"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for name in changed:  # ...until --cleanup
        if not states[name].exists():  # nobody else holds it: the original is back
            assert (VM / name).read_text().strip() == records[name]["original"]
        else:  # another run holds it now; our dead run is no longer a holder
            assert not any(h.startswith(f"{proc.pid}:") for h in
                           json.loads(states[name].read_text())["holders"])


@needs_root
def test_provoke_5000_failures_opens_enough_pipes() -> None:
    """It used to open 4N+64 pipes: 40,192 descriptors for -n 5000 (EMFILE)."""
    proc = start_provoke("-n", "5000", "-o", "4")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert json.loads(out)["failures"] == 5000


def test_too_few_descriptors_is_said_plainly() -> None:
    """With a hard limit it cannot raise, provoke names the limit, not the cgroup."""
    as_user = (["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
               if IS_ROOT else [])
    code = ("import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))\n"
            "from paftrace.workloads.provoke import raise_fd_limit, ProvokeError\n"
            "try:\n    raise_fd_limit(5000)\nexcept ProvokeError as e:\n    print(e)\n")
    done = subprocess.run([*as_user, sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=60, env=python_env())
    assert "-n 5000 needs 576 open files (256 pipes)" in done.stdout, done.stderr
    assert "open-file limit is 256" in done.stdout and "cgroup" not in done.stdout
