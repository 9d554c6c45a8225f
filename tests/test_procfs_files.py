"""paftrace/procfs/files.py: files kept open and read again from their start, and the
three-call reader, on real kernel files and on files changed under them."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paftrace.procfs.buddyinfo import parse_buddyinfo
from paftrace.procfs.files import CHUNK, KeptFile, read_text
from paftrace.procfs.sampler import MemorySampler
from paftrace.procfs.zoneinfo import parse_zoneinfo


def shape(text: str) -> list[str]:
    """Each line's first word: what stays the same between two reads of a live file
    whose counters move."""
    return [line.split()[0] if line.split() else "" for line in text.splitlines()]


def test_a_kept_proc_file_reads_all_of_its_text_again_at_every_read() -> None:
    kept = KeptFile("/proc/zoneinfo")
    first, second = kept.read(), kept.read()
    fresh = Path("/proc/zoneinfo").read_text()
    # Several chunks (5 KiB with 2 CPUs), each read from offset 0 again.
    assert shape(first) == shape(second) == shape(fresh)
    assert [z.key for z in parse_zoneinfo(second)] == [z.key for z in parse_zoneinfo(fresh)]
    kept.close()
    kept.close()  # twice is harmless


def test_a_kept_sysctl_follows_its_value() -> None:
    kept = KeptFile("/proc/sys/kernel/ostype")
    assert kept.read() == kept.read() == "Linux\n"


def test_a_kept_file_sees_what_was_written_into_it(tmp_path: Path) -> None:
    path = tmp_path / "buddyinfo"
    path.write_text("Node 0, zone   Normal    1 2 3\n")
    kept = KeptFile(path)
    assert parse_buddyinfo(kept.read())[0].free == (1, 2, 3)
    path.write_text("Node 0, zone   Normal    4 5 6 7\n")  # same file, rewritten
    assert parse_buddyinfo(kept.read())[0].free == (4, 5, 6, 7)


def test_a_missing_file_raises_and_is_opened_once_it_exists(tmp_path: Path) -> None:
    kept = KeptFile(tmp_path / "extfrag_threshold")
    with pytest.raises(FileNotFoundError):
        kept.read()
    (tmp_path / "extfrag_threshold").write_text("500\n")
    assert kept.read() == "500\n"


@given(st.binary(max_size=3 * CHUNK + 7))
def test_read_text_returns_every_byte_and_replaces_what_is_not_utf8(data: bytes) -> None:
    with tempfile.NamedTemporaryFile() as file:  # a file per example, not per test
        file.write(data)
        file.flush()
        assert read_text(file.name) == data.decode(errors="replace")
        assert KeptFile(file.name).read() == data.decode(errors="replace")


def test_the_sampler_reads_each_file_again_through_one_descriptor() -> None:
    sampler = MemorySampler(interval=0)
    before = len(os.listdir("/proc/self/fd"))
    first = sampler.sample()
    opened = len(os.listdir("/proc/self/fd")) - before
    for _ in range(5):
        later = sampler.sample()
    assert len(os.listdir("/proc/self/fd")) - before == opened  # no new descriptors
    assert [z.key for z in later.zones] == [z.key for z in first.zones]
    assert later.ts_ns > first.ts_ns and later.tunables.keys() == first.tunables.keys()
    assert "min_free_kbytes" in later.tunables
