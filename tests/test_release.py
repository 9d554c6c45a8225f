"""Issue 12 item 10: stopping does not wait for the kernel's grace periods one by one.

The time it takes is measured in scripts/bench (stop to exit, side by side with
bpftrace); here: the closes run one by one, the tracer keeps nothing, the helper
frees everything by itself, and no program stays loaded after it.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import pytest

from paftrace import release
from tests.helpers import needs_root

BPF_PROG_GET_FD_BY_ID = 13
SYS_BPF = 321  # x86-64


def test_closes_run_one_after_the_other(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never two closes in flight: concurrent releases panicked 6.12 under TCG."""
    pipes = [os.pipe() for _ in range(6)]
    fds = [fd for pair in pipes for fd in pair]
    real_close = os.close
    in_flight: list[int] = []
    closed: list[int] = []

    def close(fd: int) -> None:
        in_flight.append(fd)
        assert len(in_flight) == 1, in_flight
        closed.append(fd)
        real_close(fd)
        in_flight.remove(fd)

    monkeypatch.setattr(release.os, "close", close)
    release.close_all(fds)
    assert closed == fds
    assert "threading" not in release._HELPER  # the helper closes in order too


def test_already_closed_fds_are_not_an_error() -> None:
    r, w = os.pipe()
    os.close(r)
    release.close_all([r, w])
    with pytest.raises(OSError):
        os.fstat(w)


def perf_event_fds(pid: int | str = "self") -> list[int]:
    fd_dir = Path(f"/proc/{pid}/fd")
    out = []
    for fd in fd_dir.iterdir():
        try:
            if os.readlink(fd) == "anon_inode:[perf_event]":
                out.append(int(fd.name))
        except OSError:
            pass
    return out


def prog_ids(pid: int | str = "self") -> set[int]:
    ids = set()
    for info in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            text = info.read_text()
        except OSError:
            continue
        ids |= {int(line.split()[1]) for line in text.splitlines()
                if line.startswith("prog_id:")}
    return ids


def prog_exists(prog_id: int) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    attr = ctypes.create_string_buffer(ctypes.c_uint32(prog_id).value.to_bytes(4, "little"),
                                       128)
    fd = libc.syscall(SYS_BPF, BPF_PROG_GET_FD_BY_ID, attr, 128)
    if fd >= 0:
        os.close(fd)
        return True
    return False


@needs_root
def test_session_close_hands_the_probes_to_a_helper_that_frees_them() -> None:
    from paftrace.options import TraceOptions  # noqa: PLC0415
    from paftrace.session import TraceSession  # noqa: PLC0415

    session = TraceSession(TraceOptions(order_min=4, order_max=4))
    attached = len(perf_event_fds())
    programs = prog_ids()
    assert attached >= 2 and programs
    session.close()
    helper = session.program.release_helper
    assert helper is not None
    assert perf_event_fds() == []  # the tracer itself holds nothing more
    assert helper.wait(timeout=60) == 0  # the helper frees them and ends by itself
    assert not [p for p in programs if prog_exists(p)]  # nothing stays loaded
