"""scripts/lib/apt.sh: the project's scripts install their tools one at a time (no root:
apt-get and dpkg-query are stand-ins on PATH that log when they run). On a cold machine
scripts/test's two background builds ran apt-get together and one failed on the lists lock."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

APT_LIB = Path(__file__).resolve().parent.parent / "scripts" / "lib" / "apt.sh"


def stand_ins(tmp: Path, installed: bool) -> dict[str, str]:
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    log = tmp / "apt.log"
    (bin_dir / "apt-get").write_text(
        "#!/bin/bash\n"
        f'echo "start $$ $*" >> "{log}"\n'
        "sleep 0.3\n"
        f'echo "end $$" >> "{log}"\n')
    (bin_dir / "dpkg-query").write_text(
        "#!/bin/bash\n" + ("echo 'install ok installed'\n" if installed else "exit 1\n"))
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "PAFTRACE_APT_LOCK": str(tmp / "lock" / "apt.lock")}


def install(env: dict[str, str], who: str) -> subprocess.Popen[str]:
    return subprocess.Popen(["bash", "-c", f'. "{APT_LIB}"; apt_install_missing "$1" pkg-a pkg-b',
                             "_", who], env=env, stderr=subprocess.PIPE, text=True)


def test_two_scripts_installing_at_once_take_turns(tmp_path):
    env = stand_ins(tmp_path, installed=False)
    procs = [install(env, "one"), install(env, "two")]
    for p in procs:
        assert p.wait(timeout=30) == 0, p.stderr.read() if p.stderr else ""
    lines = (tmp_path / "apt.log").read_text().splitlines()
    assert len(lines) == 8  # update + install, twice
    # Never two apt-get at once: each start is followed by its own end.
    for start, end in zip(lines[::2], lines[1::2]):
        assert start.startswith("start ") and end == "end " + start.split()[1]
    # Each caller's update runs right before its install, with apt's own lock wait.
    starts = [line.split(maxsplit=2)[2] for line in lines[::2]]
    assert [s.split()[-3:] for s in starts[1::2]] == [["--no-install-recommends", "pkg-a",
                                                       "pkg-b"]] * 2
    assert all(s.startswith("-o DPkg::Lock::Timeout=") for s in starts)
    assert [s.split()[-2] for s in starts[::2]] == ["update", "update"]


def test_nothing_runs_when_everything_is_installed(tmp_path):
    env = stand_ins(tmp_path, installed=True)
    proc = install(env, "one")
    assert proc.wait(timeout=30) == 0
    assert not (tmp_path / "apt.log").exists()
    assert proc.stderr is not None and proc.stderr.read() == ""
