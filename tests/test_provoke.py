"""scripts/provoke's method: sizes (pure) and a real run that leaves nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from paftrace.workloads.provoke import PIPE_BUFFER_SIZE, ProvokeError, pipe_size_for_order
from tests.helpers import needs_root, provoke


@pytest.mark.parametrize("order", range(4, 11))
def test_pipe_ring_lands_at_the_wanted_order(order):
    size = pipe_size_for_order(order, page_size=4096)
    ring = size // 4096 * PIPE_BUFFER_SIZE
    pages = -(-ring // 4096)
    assert (pages - 1).bit_length() == order  # kmalloc_large rounds up to 2^order pages
    assert ring > 2 * 4096  # beyond the slab caches: straight from the page allocator


def test_order4_is_a_4mib_pipe():
    assert pipe_size_for_order(4, page_size=4096) == 4 << 20


@pytest.mark.parametrize("order", [0, 1, 3, 11])
def test_orders_outside_the_method_are_refused(order):
    with pytest.raises(ProvokeError):
        pipe_size_for_order(order)


@needs_root
def test_real_failures_and_clean_up():
    before = Path("/proc/sys/fs/pipe-max-size").read_text()
    result = provoke(3, 5)
    assert result["failures"] == 3 and result["order"] == 5
    assert not Path(result["cgroup"]).exists()
    assert Path("/proc/sys/fs/pipe-max-size").read_text() == before
    with pytest.raises(ProcessLookupError):
        os.kill(result["worker_pid"], 0)
