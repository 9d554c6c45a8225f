"""Issue 12, items 1-2: a task name (or a symbol, a module name) never steers the output.

Hypothesis builds task names from markup, terminal escapes, bidi overrides and invalid
UTF-8, decodes them the way the tracer decodes the kernel's 16-byte comm, and runs them
through all three renderers without root. Each must show the name, escaped, and nothing
the name says: no crash, no style, no hyperlink, no raw control or format character.
"""

from __future__ import annotations

import io
import json
import unicodedata

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.segment import Segment

from paftrace.aggregate import FailureAggregator, OrderRates
from paftrace.procfs.sampler import MemorySample, ZoneSample
from paftrace.records import Failure, RawFailure, blame_for, comm_raw_hex, decode_comm
from paftrace.render import Snapshot, printable
from paftrace.render.jsonl import JsonRenderer
from paftrace.render.live import LiveRenderer
from paftrace.render.memory import memory_panel
from paftrace.render.plain import PlainRenderer, summary_lines

# Pieces an attacker would put in a task name (prctl(PR_SET_NAME), or exec of a file
# named so): rich markup, ANSI CSI/OSC, bidi overrides and other format characters.
HOSTILE_PIECES = ["[/red]", "[red]", "[link=file:/x]", "[bold]", "[/]", "[", "]", "\\",
                  "\x1b[2J", "\x1b]8;;file:/x\x07", "\x07", "\x9b", "\u202e", "\u2066",
                  "\u200b", "\ufeff", "\u2028", "\u00ad", "x", "é", "中"]

# Every escaped character is shown as its code (\xNN, \uNNNN): never drawn, never acted on.
UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def comm_bytes(name: bytes) -> bytes:
    """What the kernel keeps: at most 15 bytes and a NUL (TASK_COMM_LEN 16)."""
    return name.replace(b"\0", b"")[:15]


task_names = st.one_of(
    st.binary(min_size=1, max_size=15),
    st.lists(st.sampled_from(HOSTILE_PIECES), min_size=1, max_size=6).map(
        lambda parts: "".join(parts).encode()),
    st.text(min_size=1, max_size=15).map(lambda s: s.encode()),
).map(comm_bytes).filter(bool)


def raw_record(name: bytes) -> RawFailure:
    raw = RawFailure()
    raw.comm = name
    return raw


def failure_for(name: bytes, context: str = "process") -> Failure:
    raw = raw_record(name)
    comm = decode_comm(raw.comm)
    frames = [f"pipe_resize_ring+0x1 [{comm}]", "do_syscall_64+0x2"]  # a module name too
    return Failure(ts_ns=10**9, cpu=0, pid=7, tid=7, comm=comm, comm_raw=comm_raw_hex(raw.comm),
                   order=4, gfp="0x400cc0", gfp_flags=["GFP_KERNEL_ACCOUNT"],
                   migratetype="Unmovable", context=context, softirq=None, stack=frames,
                   requester=comm, blame=blame_for(context, None, None, comm, 7, comm),
                   visibility="silent", severity="expected", rule=f"rule for {comm}")


def stall_record(comm: str) -> dict:
    return {"type": "stall", "ts_ns": 2 * 10**9, "kind": "direct_compaction",
            "duration_ms": 40.5, "comm": comm, "pid": 9, "order": 4, "outcome": "no_page"}


def summary_for(failure: Failure) -> dict:
    agg = FailureAggregator()
    agg.add(failure)
    return {"duration_s": 1.0, "orders": {"4": {"attempts": 10, "failures": 1}},
            "failures_matched": 1, "failures_by_context": {"process": 1},
            "by_class": {"expected": 1}, "call_sites": [s.to_json() for s in agg.top(5)],
            "lost": {"records": 0}}


def live_segments(failure: Failure) -> tuple[str, list[Segment], str]:
    """Draw the whole live view at width 80 on a (fake) terminal: text, segments, bytes."""
    out = io.StringIO()
    console = Console(record=True, width=80, file=out, force_terminal=True,
                      color_system="truecolor")
    live = LiveRenderer(console)
    live.attached({"order": "4", "kernel": "6.18", "probes": ["p"], "startup_s": 0.2})
    agg = FailureAggregator()
    agg.add(failure)
    live.failure(failure)
    live.event(stall_record(failure.comm))
    orders = OrderRates()
    orders.update({4: (10, 1)}, 1.0)
    snapshot = Snapshot(elapsed_s=1.0, orders=orders, failures=agg, stats={"records": 0},
                        failures_by_context={"process": 1}, order_label="4")
    segments = list(console.render(live_view(live, snapshot)))
    live.tick(snapshot)
    live.finish(summary_for(failure))
    return console.export_text(), segments, out.getvalue()


def live_view(live: LiveRenderer, snapshot: Snapshot):  # noqa: ANN201 - a rich renderable
    live.snapshot = snapshot
    return live.view()  # the very renderable the Live display draws


BENIGN_STYLES: set = set()


def benign_styles() -> set:
    """Every style the live view uses by itself (a harmless name)."""
    if not BENIGN_STYLES:
        _, segments, _ = live_segments(failure_for(b"benign"))
        BENIGN_STYLES.update(s.style for s in segments if s.style)
    return BENIGN_STYLES


def assert_inert(text: str) -> None:
    bad = [c for c in text if unicodedata.category(c) in UNSAFE_CATEGORIES and c != "\n"]
    assert not bad, f"raw control/format characters reached the output: {bad!r}"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(task_names)
@example(b"[/red]x")
@example(b"[red]x[/red]")
@example(b"[link=file:/x]x")
@example(b"\xe2\x80\xaeevil")  # U+202E RIGHT-TO-LEFT OVERRIDE
@example(b"\xff\xfe[bold]")
def test_live_view_shows_any_task_name_escaped_and_unstyled(name: bytes) -> None:
    failure = failure_for(name)
    shown = printable(failure.comm)
    text, segments, raw_output = live_segments(failure)
    # The panel title and the timeline carry the name verbatim (escaped, tags intact).
    assert f"#1 1x {shown}[7]" in text
    assert f"{shown}[7]" in text.replace("\n", "")
    assert_inert(text)
    # No hyperlink, no style the view does not use with a harmless name.
    assert not [s for s in segments if s.style and s.style.link]
    assert "\x1b]8;" not in raw_output
    assert {s.style for s in segments if s.style} <= benign_styles()


@settings(max_examples=150, deadline=None)
@given(task_names)
@example(b"\xe2\x80\xaeevil")
@example(b"a\\x1b")  # a literal backslash is escaped too, never mistaken for an escape
def test_plain_output_shows_any_task_name_escaped(name: bytes) -> None:
    failure = failure_for(name)
    out = io.StringIO()
    renderer = PlainRenderer(out)
    renderer.failure(failure)
    renderer.event(stall_record(failure.comm))
    renderer.finish(summary_for(failure))
    shown = printable(failure.comm)
    lines = out.getvalue().splitlines()
    assert f" {shown}[7/7] " in lines[0] and f"blame={shown}[7] in {shown}" in lines[0]
    assert f"stall {shown}[9]" in lines[1]
    assert_inert(out.getvalue())
    assert len(lines) == 2 + len(summary_lines(summary_for(failure)))  # no line was split


@settings(max_examples=150, deadline=None)
@given(task_names)
@example(b"\xff\xfe\xfd")
@example(b"caf\xc3")  # a UTF-8 sequence cut by the kernel's 15-byte limit
def test_json_keeps_the_exact_bytes_of_any_task_name(name: bytes) -> None:
    out = io.StringIO()
    JsonRenderer(out).failure(failure_for(name))
    obj = json.loads(out.getvalue())
    assert out.getvalue().count("\n") == 1 and out.getvalue().isascii()
    if "comm_raw" in obj:
        assert bytes.fromhex(obj["comm_raw"]) == name
        assert obj["comm"] == name.decode("utf-8", "replace")
    else:
        assert obj["comm"].encode() == name


def test_comm_raw_only_for_names_that_are_not_utf8() -> None:
    assert comm_raw_hex(raw_record(b"kworker/0:1").comm) is None
    assert comm_raw_hex(raw_record("tâche".encode()).comm) is None
    assert comm_raw_hex(raw_record(b"a\xffb").comm) == "61ff62"
    assert decode_comm(raw_record(b"a\xffb").comm) == "a\ufffdb"
    assert "comm_raw" not in failure_for(b"ok").to_json()


def test_printable_escapes_format_characters_and_backslashes() -> None:
    assert printable("a\u202eb") == "a\\u202eb"
    assert printable("\u2066x\u2069") == "\\u2066x\\u2069"
    assert printable("zero\u200bwidth\ufeff") == "zero\\u200bwidth\\ufeff"
    assert printable("line\u2028sep") == "line\\u2028sep"
    assert printable("a\\x1b") == "a\\\\x1b"  # not the same as an escaped ESC
    assert printable("a\x1bb") == "a\\x1bb"
    assert printable("café 中 [bold]") == "café 中 [bold]"  # letters and brackets stay


def test_kernel_supplied_strings_reach_rich_only_as_text() -> None:
    """Zone and migratetype names (read from /proc) go into rich tables as Text."""
    zone = ZoneSample(node=0, zone="[red]Normal", free=(1, 2, 3, 4, 5),
                      pagetypes={"[link=file:/x]Movable": (1, 2, 3, 4, 5)},
                      pageblocks={"[link=file:/x]Movable": 9})
    sample = MemorySample(ts_ns=1, zones=[zone], tunables={"[blink]x": 1},
                          notes=["[/red] note"])
    console = Console(record=True, width=200, file=io.StringIO(), force_terminal=True)
    console.print(memory_panel(sample, 4))
    text = console.export_text()
    assert "N0 [red]Normal" in text and "[link=file:/x]Movable" in text
    assert "[blink]x=1" in text and "[/red] note" in text

