from __future__ import annotations

import pytest

from paftrace.options import OptionError, TraceOptions, comm_words, parse_order_range


@pytest.mark.parametrize("text,expected", [("4", (4, 4)), ("4+", (4, 31)), ("2-5", (2, 5)),
                                           ("0+", (0, 31)), (" 3 ", (3, 3))])
def test_order_ranges(text, expected):
    assert parse_order_range(text) == expected


@pytest.mark.parametrize("text", ["", "x", "5-2", "-1", "4++", "40", "1-40"])
def test_bad_order_ranges(text):
    with pytest.raises(OptionError):
        parse_order_range(text)


def test_order_labels():
    assert TraceOptions(order_min=4, order_max=4).order_label == "4"
    assert TraceOptions(order_min=4, order_max=31).order_label == "4+"
    assert TraceOptions(order_min=2, order_max=5).order_label == "2-5"


def test_comm_words_are_little_endian_and_nul_padded():
    lo, hi = comm_words("python3")
    assert lo.to_bytes(8, "little") == b"python3\0" and hi == 0
    lo, hi = comm_words("a-very-long-task-name")  # the kernel keeps 15 chars + NUL
    assert (lo.to_bytes(8, "little") + hi.to_bytes(8, "little")) == b"a-very-long-tas\0"
