"""Input that must not break `explain` (issue 12, items 3-7), conflicting evidence
(issue 18), and log text reaching the terminal only as data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from paftrace.cli import main
from paftrace.explain.analyze import explain_text
from paftrace.explain.headers import parse_printed_mask
from paftrace.explain.parse import parse_reports
from paftrace.explain.render import render_rich

DATA = Path(__file__).parent / "data" / "reports"
ROOT = Path(__file__).resolve().parent.parent


# --- item 3: the mask as the kernel prints it, never a traceback -----------------------

@pytest.mark.parametrize("printed, value", [("0x20", 0x20), ("0123", 0x123), ("08", 0x8),
                                            ("0", 0), ("0X2080020", 0x2080020), ("d0", 0xd0)])
def test_mask_is_read_as_hex_like_the_kernel_prints_it(printed: str, value: int) -> None:
    # "%#x" (4.6+) or "0x%x" / "%x" before: hexadecimal in every era.
    assert parse_printed_mask(printed) == value
    [e] = explain_text(f"x: page allocation failure: order:1, mode:{printed}\n")
    assert e.report.mode == value


@pytest.mark.parametrize("printed", ["zz", "0x", "0xg1", "12345678901234567890"])
def test_unreadable_mask_gives_a_partial_report_with_the_reason(printed: str) -> None:
    result = CliRunner().invoke(main, ["explain", "--json", "-"],
                                input=f"x: page allocation failure: order:1, mode:{printed}\n")
    assert result.exit_code == 0 and "Traceback" not in result.output
    [obj] = [json.loads(line) for line in result.output.splitlines()]
    assert obj["mode"] is None and obj["gfp_flags"] == [] and obj["partial"]
    assert any("not a hexadecimal mask" in p for p in obj["problems"])
    plain = CliRunner().invoke(main, ["explain", "--plain", "-"],
                               input=f"x: page allocation failure: order:1, mode:{printed}\n")
    assert plain.exit_code == 0 and "PARTIAL" in plain.output and "unreadable" in plain.output


def test_unreadable_order_gives_a_partial_report() -> None:
    [e] = explain_text("x: page allocation failure: order:x1, mode:0x20\n")
    assert e.report.order is None and any("order 'x1'" in p for p in e.report.problems)


# --- item 4: linear time on long lines --------------------------------------------------

UNITS = ["vmalloc ", "page allocation failure ", "vmalloc error: size 1, ", "cpuset=x", "mode:",
         "[<", "(", "order:1, mode:0x", "Node 0 DMA: 1*4kB ", "x: page allocation failure: order:"]


@pytest.mark.parametrize("unit", UNITS)
def test_one_megabyte_line_is_read_in_well_under_a_second(unit: str) -> None:
    # `python3 -c "print('vmalloc '*8000)" | paftrace explain` took 8.3 s (quadratic).
    text = unit * (1_000_000 // len(unit))
    start = time.process_time()   # CPU time: the machine is shared
    explain_text(text)
    assert time.process_time() - start < 1.0


@pytest.mark.parametrize("unit", ["vmalloc ", "[<", "(", "x: page allocation failure: order:"])
def test_many_such_lines_cost_linear_time(unit: str) -> None:
    def cost(lines: int) -> float:
        start = time.process_time()
        explain_text((unit + "\n") * lines)
        return time.process_time() - start
    one, two = cost(10_000), cost(40_000)
    assert two < 8 * one + 0.2, (one, two)   # linear: 4x (quadratic would be 16x)


# --- item 5: colour sequences from `dmesg --color=always` / a terminal journal ----------

def _colour(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if line.startswith("["):
            stamp, _, rest = line.partition("] ")
            line = f"\x1b[32m{stamp}]\x1b[0m \x1b[33m{rest}\x1b[0m"
        lines.append(f"\x1b[1m\x1b[38;5;9m{line}\x1b[0m\x1b[K")
    return "\n".join(lines)


@pytest.mark.parametrize("name", ["4.3-arm-tasklet.txt", "6.1-android-arm64-kworker.txt",
                                  "5.16-x86-vmalloc-error-callerid.txt"])
def test_coloured_log_loses_nothing(name: str) -> None:
    clean = (DATA / name).read_text()
    [want] = parse_reports(clean)
    [got] = parse_reports(_colour(clean))
    assert (got.pid, got.kernel, got.comm, got.mode, got.caller) == \
        (want.pid, want.kernel, want.comm, want.mode, want.caller)
    assert got.frames == want.frames and got.free_areas == want.free_areas
    assert got.pid is not None and got.frames


# --- item 6: streamed input, bounded memory ---------------------------------------------

# Linux carries a process's peak RSS across exec (fs/exec.c, exec_mmap ->
# setmax_mm_hiwater_rss), so a child forked from this pytest process (bcc, clang and
# all loaded) would report pytest's peak as its own. A small interpreter in between
# forks `paftrace explain` from itself and reports that child's peak alone.
_MEASURE = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
sys.stderr.write(done.stderr.decode(errors="replace"))
print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _peak_rss_kb(path: Path, *args: str) -> int:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, "-m", "paftrace",
                           "explain", *args, str(path)], capture_output=True, text=True,
                          env=env, timeout=600)
    returncode, maxrss = proc.stdout.split()
    assert returncode == "0", proc.stderr
    return int(maxrss)


def test_large_input_is_streamed_with_bounded_memory(tmp_path: Path) -> None:
    report = (DATA / "6.1-android-arm64-kworker.txt").read_text()
    # Long lines (as audit/firmware records are) keep the line count, and the run time, low.
    noise = "".join(f"[ {i}.000000] audit: type=1400 msg=" + "x" * 400 + f" n={i}\n"
                    for i in range(300))
    block = (report + noise).encode()
    small, big = tmp_path / "small.log", tmp_path / "big.log"
    small.write_bytes(block)
    size = 50 * 1024 * 1024
    with open(big, "wb") as out:
        for _ in range(size // len(block)):
            out.write(block)
        out.write(b"x" * (8 * 1024 * 1024) + b"\n")   # one 8 MiB line without a report
        out.write(block)
    base = _peak_rss_kb(small, "--json")
    peak = _peak_rss_kb(big, "--json")
    # The whole 58 MB file in memory would add >= 58 MB (it added ~10x before streaming).
    assert peak - base < 20 * 1024, (base, peak)
    assert peak < 200 * 1024
    assert _peak_rss_kb(big, "--json", "--no-group") - base < 20 * 1024


# --- item 7: 2.6.9-era traces and stale interrupt-entry frames --------------------------

I386_KSWAPD = """\
Oct 27 18:00:02 concorde kernel: kswapd0: page allocation failure. order:0, mode:0x50
Oct 27 18:00:02 concorde kernel:  [<c013fa77>] __alloc_pages+0x28b/0x29d
Oct 27 18:00:02 concorde kernel:  [<c013faa1>] __get_free_pages+0x18/0x24
Oct 27 18:00:02 concorde kernel:  [<c0107d3b>] common_interrupt+0x1b/0x20
Oct 27 18:00:02 concorde kernel:  [<c01423f8>] kmem_getpages+0x1c/0xbb
Oct 27 18:00:02 concorde kernel:  [<c0144c2e>] shrink_list+0x2e4/0x4f8
Oct 27 18:00:02 concorde kernel:  [<c014512b>] kswapd+0xd5/0xdd
Oct 27 18:00:02 concorde kernel:  [<c01041f1>] kernel_thread_helper+0x5/0xb
"""


def test_stale_common_interrupt_in_a_kswapd_trace_is_process_context() -> None:
    [e] = explain_text(I386_KSWAPD)
    assert e.reading.context == "process"
    assert any("'common_interrupt' ignored" in x for x in e.reading.evidence)


def test_interrupt_entry_with_handler_frames_inside_is_an_interrupt() -> None:
    text = I386_KSWAPD.replace("mode:0x50", "mode:0x20").replace("__get_free_pages+0x18/0x24",
                               "e100_intr+0x18/0x24 [e100]\nOct 27 18:00:02 concorde kernel:  "
                               "[<c0108d46>] handle_IRQ_event+0x2e/0x5a\nOct 27 18:00:02 "
                               "concorde kernel:  [<c0109c4e>] do_IRQ+0x92/0x123")
    [e] = explain_text(text)
    assert e.reading.context == "hardirq"
    # The same trace with a mask that may sleep (0x50: __GFP_WAIT in 2.6) is a conflict.
    [conflict] = explain_text(text.replace("mode:0x20", "mode:0x50"))
    assert conflict.reading.context == "unknown"
    assert e.report.frames[1].name == "e100_intr" and e.report.frames[1].module == "e100"


def test_2_6_9_x86_64_brace_frames_are_a_trace() -> None:
    [e] = explain_text((DATA / "2.6.9-x86_64-e1000-hardirq-WRITTEN.txt").read_text())
    names = [f.name for f in e.report.frames]
    assert names[:3] == ["__alloc_pages", "__get_free_pages", "kmem_getpages"]
    assert e.report.frames[0].offset == "+789" and e.report.frames[0].section == "irq"
    assert ("e1000_intr", "e1000") in [(f.name, f.module) for f in e.report.frames]


# --- conflicting evidence: unknown, with both pieces -----------------------------------

PROCESS_TRACE = """\
[  1.0][{caller}] x: page allocation failure: order:2, mode:0x{mode}
[  1.0][{caller}] CPU: 1 PID: 7 Comm: x Not tainted 5.10.0 #1
[  1.0][{caller}] Call Trace:
[  1.0][{caller}]  dump_stack+0x6/0x8
[  1.0][{caller}]  warn_alloc+0x1/0x2
[  1.0][{caller}]  __alloc_pages_nodemask+0x1/0x2
[  1.0][{caller}]  {frame}
[  1.0][{caller}]  do_syscall_64+0x1/0x2
"""


def test_caller_id_that_contradicts_the_trace_gives_unknown_with_both() -> None:
    text = PROCESS_TRACE.format(caller="C1", mode="a20", frame="foo_ioctl+0x1/0x2 [foo]")
    [e] = explain_text(text)
    assert e.reading.context == "unknown"
    evidence = " ".join(e.reading.evidence)
    assert "trace says process" in evidence and "[C1] says interrupt" in evidence
    [agree] = explain_text(text.replace("C1", "T7"))
    assert agree.reading.context == "process"


def test_sleeping_mask_in_softirq_gives_unknown_with_both() -> None:
    text = PROCESS_TRACE.format(caller="C1", mode="cc0", frame="net_rx_action+0x1/0x2\n"
                                "[  1.0][C1]  __do_softirq+0x1/0x2")
    [e] = explain_text(text)
    assert e.reading.context == "unknown"
    evidence = " ".join(e.reading.evidence)
    assert "trace says softirq" in evidence and "may sleep" in evidence


def test_irq_bracket_with_a_syscall_entry_inside_gives_unknown() -> None:
    text = ("x: page allocation failure: order:2, mode:0xa20\nCall Trace:\n <IRQ>\n"
            " warn_alloc+0x1/0x2\n foo+0x1/0x2\n do_syscall_64+0x1/0x2\n </IRQ>\n")
    [e] = explain_text(text)
    assert e.reading.context == "unknown" and "conflicting evidence" in e.reading.evidence[-1]


# --- log text is data for the terminal --------------------------------------------------

@given(st.lists(st.sampled_from(list("[]/=:redlink \x1b;") + ["[/red]", "[link=file:/x]",
                                                             "\u202e", "[bold]"]),
                max_size=12).map("".join))
@settings(max_examples=100, deadline=None)
def test_rich_output_shows_log_text_literally(comm: str) -> None:
    text = f"{comm}: page allocation failure: order:1, mode:0x20\n"
    found = explain_text(text)
    out = StringIO()
    render_rich(found, Console(file=out, force_terminal=True, width=200))
    assert "\x1b]8;" not in out.getvalue()        # no OSC 8 hyperlink from the text
    if found and found[0].report.comm and "[" in found[0].report.comm:
        plain = StringIO()
        render_rich(found, Console(file=plain, width=200, color_system=None))
        assert found[0].report.comm in plain.getvalue()


@given(st.lists(st.one_of(st.binary(max_size=200), st.sampled_from([
    b"x: page allocation failure: order:3, mode:0x820(GFP_ATOMIC)\n", b"\x1b[31m", b"#012",
    b"Call Trace:\n", b" <IRQ>\n", b" foo+0x1/0x2 [m]\n", b"> ", b"mode:0x20\n", b"\r\n",
    b"[  1.0][ T12] ", b"vmalloc error: size 1, mode:08\n", b"\xff\xfe"])), max_size=40))
@settings(max_examples=150, deadline=None)
def test_cli_streams_any_bytes_without_a_traceback(parts: list[bytes]) -> None:
    result = CliRunner().invoke(main, ["explain", "--json", "-"], input=b"".join(parts))
    assert result.exit_code in (0, 1), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for line in result.stdout.splitlines():
        json.loads(line)


# --- every report warn_alloc() prints for vmalloc (mm/vmalloc.c) -----------------------

@pytest.mark.parametrize("header, kind, order, detail", [
    # v5.13+ __vmalloc_node_range / __vmalloc_area_node
    ("x: vmalloc error: size 0, exceeds total pages, mode:0xcc0(GFP_KERNEL), nodemask=(null)",
     "vmalloc", None, "vmalloc error: size 0, exceeds total pages"),
    ("x: vmalloc error: size 8192, vm_struct allocation failed, mode:0xdc0(GFP_KERNEL|"
     "__GFP_ZERO), nodemask=(null),cpuset=/,mems_allowed=0", "vmalloc", None,
     "vmalloc error: size 8192, vm_struct allocation failed"),
    ("x: vmalloc error: size 4096, failed to allocated page array size 8, mode:0xcc0(GFP_KERNEL)"
     ", nodemask=(null)", "vmalloc", None,
     "vmalloc error: size 4096, failed to allocated page array size 8"),
    ("x: vmalloc error: size 65536, failed to map pages, mode:0xcc0(GFP_KERNEL), nodemask=(null)",
     "vmalloc", None, "vmalloc error: size 65536, failed to map pages"),
    # v4.12-v5.12, and v4.9-v4.11 (", allocated N of M bytes")
    ("x: vmalloc: allocation failure: 425984 bytes, mode:0x14000c0(GFP_KERNEL), nodemask=(null)",
     "vmalloc", None, "vmalloc: allocation failure: 425984 bytes"),
    ("x: vmalloc: allocation failure, allocated 0 of 4096 bytes, mode:0x24000c2(GFP_KERNEL|"
     "__GFP_HIGHMEM)", "vmalloc", None, "vmalloc: allocation failure, allocated 0 of 4096 bytes"),
    # mm/sparse-vmemmap.c: has an order
    ("x: vmemmap alloc failure: order:9, mode:0x4cc0(GFP_KERNEL|__GFP_RETRY_MAYFAIL), "
     "nodemask=(null),cpuset=/,mems_allowed=0", "vmemmap", 9, "vmemmap alloc failure: order:9"),
])
def test_every_vmalloc_wording_is_a_report(header: str, kind: str, order: int | None,
                                           detail: str) -> None:
    [e] = explain_text(header + "\n")
    assert (e.report.kind, e.report.order, e.report.detail, e.report.comm) == \
        (kind, order, detail, "x")
    assert e.report.mode is not None and e.flags


def test_old_vmalloc_line_before_a_page_report_is_one_report() -> None:
    # 2.6.28-4.8: warn_alloc_failed() printed the vmalloc message, then its own header.
    text = ("vmalloc: allocation failure, allocated 16384 of 32768 bytes\n"
            "insmod: page allocation failure: order:0, mode:0xd2\n")
    [e] = explain_text(text)
    assert e.report.detail == "vmalloc: allocation failure, allocated 16384 of 32768 bytes"
    assert any("vmalloc's" in f.text for f in e.assessment.findings)


def test_grouped_output_keeps_a_bounded_number_of_groups_and_says_so(monkeypatch) -> None:
    command = main.get_command(None, "explain")  # type: ignore[attr-defined]
    module = sys.modules[command.callback.__module__]
    monkeypatch.setattr(module, "MAX_GROUPS", 5)
    text = "".join(f"p{i}: page allocation failure: order:1, mode:0x20\n" for i in range(8))
    result = CliRunner().invoke(main, ["explain", "--json", "-"], input=text)
    assert result.exit_code == 0
    assert [json.loads(line)["comm"] for line in result.stdout.splitlines()] == \
        [f"p{i}" for i in range(5)]
    assert "3 more report(s) with other stacks not shown" in result.stderr
    streamed = CliRunner().invoke(main, ["explain", "--json", "--no-group", "-"], input=text)
    assert len(streamed.stdout.splitlines()) == 8 and not streamed.stderr
