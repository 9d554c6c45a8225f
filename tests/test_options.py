from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from paftrace.cli import main
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


# -- issue 12 item 8: every option value is checked before anything is loaded ----------

def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize(("args", "message"), [
    (["-i", "0"], "-i"), (["-i", "-1"], "-i"), (["-i", "nan"], "finite"),
    (["-i", "inf"], "-i"), (["-i", "0.01"], "-i"),
    (["-d", "-1"], "-d"), (["-d", "0"], "-d"), (["-d", "nan"], "finite"),
    (["-d", "inf"], "finite"), (["-d", "-inf"], "-d"),
    (["-p", "-5"], "-p"), (["-p", "0"], "-p"),
    (["-c", ""], "empty"),
    (["--stack-sample", "-1"], "--stack-sample"),
    (["--stack-storage-size", "0"], "--stack-storage-size"),
])
def test_bad_values_are_usage_errors(args: list[str], message: str) -> None:
    result = invoke(*args, "--dry-run")
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_a_pid_that_does_not_exist_is_refused() -> None:
    never = int(Path("/proc/sys/kernel/pid_max").read_text())  # pids are below pid_max
    result = invoke("-p", str(never), "--dry-run")
    assert result.exit_code == 2
    assert f"no process {never}" in result.output and "--wait-for-pid" in result.output


def test_wait_for_pid_traces_a_pid_that_does_not_exist_yet() -> None:
    never = int(Path("/proc/sys/kernel/pid_max").read_text())
    result = invoke("-p", str(never), "--wait-for-pid", "--dry-run")
    assert result.exit_code != 2, result.output


def test_a_thread_id_is_refused_with_its_process() -> None:
    ready, stop = threading.Event(), threading.Event()
    tids: list[int] = []

    def thread() -> None:
        tids.append(threading.get_native_id())
        ready.set()
        stop.wait(5)

    t = threading.Thread(target=thread)
    t.start()
    ready.wait(5)
    try:
        result = invoke("-p", str(tids[0]), "--dry-run")
    finally:
        stop.set()
        t.join()
    assert result.exit_code == 2
    assert f"thread of process {os.getpid()}" in result.output


def test_existing_pid_and_sane_values_are_accepted() -> None:
    result = invoke("-p", str(os.getpid()), "-i", "0.5", "-d", "0.5", "--dry-run")
    assert result.exit_code != 2, result.output


def test_long_comm_is_cut_to_what_the_kernel_keeps_with_a_warning() -> None:
    result = CliRunner().invoke(main, ["-c", "a-very-long-daemon-name", "--dry-run"])
    assert result.exit_code != 2
    assert "the kernel keeps 15 bytes" in result.output and "'a-very-long-dae'" in result.output


def test_long_comm_cut_inside_a_character_says_so() -> None:
    result = CliRunner().invoke(main, ["-c", "aaaaaaaaaaaaaa\u00e9t\u00e9", "--dry-run"])
    assert result.exit_code != 2
    assert "the kernel keeps 15 bytes" in result.output and "inside a character" in result.output


def test_comm_of_15_bytes_is_quiet() -> None:
    result = CliRunner().invoke(main, ["-c", "x" * 15, "--dry-run"])
    assert "kernel keeps" not in result.output
