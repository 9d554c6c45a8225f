"""What a workload changes on the machine, kept so that a run that was killed (SIGKILL, a
lost terminal) leaves nothing behind for long.

Sysctls (fs.pipe-max-size for provoke and the bench, vm.percpu_pagelist_high_fraction for
fragment) are shared: several runs may need one at once. /run/paftrace/NAME.json holds
the value found before the first of them changed it and who holds it now (pid and start
time, so a reused pid is not mistaken for the holder). The last holder to leave puts
the original back; a holder that died is dropped by the next one to look, so a leaked
value is never saved as "original" and the original comes back once nobody is left.
Cgroups carry their creator's pid in their name (PREFIX<pid>): those whose creator is
gone are stale, and are emptied and removed by the next run or by `--cleanup`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

STATE_DIR = Path("/run/paftrace")


def _as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt like Ctrl-C, so `finally` cleans up."""
    old = {sig: signal.signal(sig, _as_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (/proc/PID/stat field 22), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # fields after "(comm)" start at 3


def alive(holder: str) -> bool:
    """`holder` is "pid:start_time"."""
    pid, _, started = holder.partition(":")
    return pid.isdigit() and start_time(int(pid)) == started


def me() -> str:
    return f"{os.getpid()}:{start_time(os.getpid())}"


class SharedSysctl:
    """A sysctl raised while any run needs it, restored when the last one leaves."""

    def __init__(self, path: Path, name: str, state_dir: Path = STATE_DIR,
                 combine: Callable[[list[int]], int] = max):
        self.sysctl = path
        self.name = name
        self.state = state_dir / f"{name}.json"
        self.lock = state_dir / f"{name}.lock"
        self.combine = combine  # the value that serves every holder's wish

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict]:
        self.state.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # held for a read and a write only
            try:
                record = json.loads(self.state.read_text())
            except (OSError, ValueError):
                record = {}
            record.setdefault("holders", {})
            dead = [h for h in record["holders"] if not alive(h)]
            for holder in dead:
                del record["holders"][holder]
            record["dropped"] = dead
            yield record

    def _apply(self, record: dict) -> list[str]:
        """Write the value the holders need, or the original when none is left."""
        said = [f"dropped {self.name} holder {h.split(':')[0]}, which is gone"
                for h in record.pop("dropped")]
        if record["holders"]:
            value = str(self.combine([int(v) for v in record["holders"].values()]
                                     + [int(record["original"])]))
            tmp = self.state.with_suffix(".tmp")
            tmp.write_text(json.dumps(record))
            tmp.replace(self.state)  # the original is on disk before the sysctl changes
        else:
            value = record.get("original")
            self.state.unlink(missing_ok=True)
        if value is not None and self.sysctl.read_text().strip() != value:
            self.sysctl.write_text(value)
            if not record["holders"]:
                said.append(f"restored {self.sysctl} to {value}")
        return said

    def hold(self, wanted: int) -> list[str]:
        with self._locked() as record:
            if not record["holders"] and "original" not in record:
                record["original"] = self.sysctl.read_text().strip()
            # else: a run holds it, or one that died did (its original is the true one)
            record["holders"][me()] = wanted
            return self._apply(record)

    def leave(self) -> list[str]:
        with self._locked() as record:
            record["holders"].pop(me(), None)
            if "original" not in record:
                return []
            return self._apply(record)

    def recover(self) -> list[str]:
        """--cleanup: drop dead holders, restore the original if nobody is left."""
        with self._locked() as record:
            if "original" not in record:
                return []
            return self._apply(record)

    @contextlib.contextmanager
    def held(self, wanted: int) -> Iterator[list[str]]:
        said = self.hold(wanted)
        try:
            yield said
        finally:
            self.leave()


def remove_cgroup(path: Path, attempts: int = 50) -> bool:
    """Kill what is left in a cgroup of ours, then remove it; False if it stays."""
    for _ in range(attempts):
        if not path.exists():
            return True
        with contextlib.suppress(OSError):
            kill = path / "cgroup.kill"  # cgroup v2, Linux 5.14+
            if kill.exists():
                kill.write_text("1")
            else:
                for pid in (path / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            time.sleep(0.1)  # tasks still exiting
    return False


def remove_stale_cgroups(roots: list[Path], prefix: str) -> list[str]:
    """Remove our cgroups named PREFIX<pid> whose creating process is gone."""
    said = []
    for root in roots:
        for path in sorted(root.glob(f"{prefix}*")):
            pid = path.name[len(prefix):]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists() and remove_cgroup(path):
                said.append(f"removed {path}, left by pid {pid}, which is gone")
    return said
