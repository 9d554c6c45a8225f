"""Property tests: a report pasted in any shape people paste it decodes to the same
order, mode, flags and context as the clean original (issue 18)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from paftrace.explain.analyze import explain_text
from paftrace.explain.logtext import log_lines
from paftrace.explain.parse import parse_reports

DATA = Path(__file__).parent / "data" / "reports"
REPORTS = sorted(p.name for p in DATA.glob("*.txt")
                 if not p.name.startswith(("2.6.32-tg3", "3.10-rhel7-seagate")))
PREFIXES = [
    "Mar  3 12:00:01 host kernel: ", "Mar 03 12:00:01.123456 web-1 kernel: ",
    "Thu Oct 17 12:07:19 2019 kern.warn kernel: ", "Mar  3 12:00:01 host kern.warning kernel: ",
    "2023-03-03T12:00:01+0100 host kernel: ", "<4>", "<6>[  123.456789] [3] ",
    "[  123.456789] ", "[Mon Apr 20 15:08:07 2020] ", "kernel: ",
    "<4>[ 7952.504959]  [7:  kworker/7:1H:12247] ", "[  12.1@2] ",
    "[  123.456789] web-1 kernel: ", "Tue 2023-03-03 12:00:01 CET web-1 kernel: ",
    "[  123.456789] (0)[123:kworker/0:1]",
]
QUOTES = ["> ", ">> ", ">>> ", "> > ", "| ", ">"]


def _body(name: str) -> list[str]:
    """The report without the leading '#' source comment."""
    lines = (DATA / name).read_text().splitlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return lines


def _summary(text: str) -> list[tuple]:
    return [(e.report.order, e.report.mode, tuple(e.flags), e.reading.context,
             e.reading.softirq) for e in explain_text(text, grouped=False)]


def _wrap(lines: list[str], width: int) -> list[str]:
    """A mail client's hard wrap: long lines broken at the last space before `width`."""
    out = []
    for line in lines:
        while len(line) > width and (cut := line.rfind(" ", 1, width)) > 0:
            out.append(line[:cut])
            line = line[cut + 1:]
        out.append(line)
    return out


def _caller(name: str) -> str:
    [(_, _, _, context, _)] = _summary("\n".join(_body(name)))[:1]
    return "C2" if context in ("softirq", "hardirq", "nmi") else "T4242"


@given(st.sampled_from(REPORTS), st.sampled_from(QUOTES), st.booleans())
@settings(max_examples=60, deadline=None)
def test_quoted_report_decodes_like_the_original(name: str, quote: str, twice: bool) -> None:
    lines = _body(name)
    quoted = [quote + (quote if twice else "") + line for line in lines]
    assert _summary("\n".join(quoted)) == _summary("\n".join(lines))


@given(st.sampled_from(REPORTS), st.sampled_from(PREFIXES))
@settings(max_examples=60, deadline=None)
def test_prefixed_report_decodes_like_the_original(name: str, prefix: str) -> None:
    lines = _body(name)
    assert _summary("\n".join(prefix + line for line in lines)) == _summary("\n".join(lines))


@given(st.sampled_from(REPORTS), st.integers(min_value=45, max_value=100),
       st.sampled_from(["", "> "]))
@settings(max_examples=80, deadline=None)
def test_wrapped_report_decodes_like_the_original(name: str, width: int, quote: str) -> None:
    lines = _body(name)
    wrapped = [quote + line for line in _wrap(lines, width)]
    assert _summary("\n".join(wrapped)) == _summary("\n".join(lines))


def _records(lines: list[str]) -> list[list[str]]:
    """Printed records: a line that lost its log prefix in the paste (wrapped by a mail
    client) belongs to the record before it; wrapping happens after printing."""
    out: list[list[str]] = []
    logged = [line.prefixed for line in log_lines("\n".join(lines))]
    for line, prefixed in zip(lines, logged):
        if out and not prefixed and any(logged):
            out[-1].append(line)
        else:
            out.append([line])
    return out


# Reports that carry caller ids of their own are interleaved with those ids, as printed.
UNTAGGED = [n for n in REPORTS if "][ T" not in (DATA / n).read_text()]


@given(st.sampled_from(REPORTS), st.sampled_from(UNTAGGED), st.randoms(use_true_random=False))
@settings(max_examples=40, deadline=None)
def test_two_cpus_interleaved_by_caller_id_decode_like_the_originals(one: str, two: str,
                                                                      rnd) -> None:
    first, second = _body(one), _body(two)
    ids = (_caller(one), "C7" if _caller(two).startswith("C") else "T777")
    tagged = [[f"[  1.000000][{ids[i]}] " + "\n".join(record) for record in _records(report)]
              for i, report in enumerate((first, second))]
    # Both CPUs print at once: lines of the second start after the first's header.
    head = next(i for i, record in enumerate(_records(first))
                if parse_reports("\n".join(record))) + 1
    merged, a, b = tagged[0][:head], head, 0
    while a < len(tagged[0]) or b < len(tagged[1]):
        if b >= len(tagged[1]) or (a < len(tagged[0]) and rnd.random() < 0.5):
            merged.append(tagged[0][a])
            a += 1
        else:
            merged.append(tagged[1][b])
            b += 1
    # Caller ids are evidence of their own ([T..] = task context): compare with each
    # report printed alone with the same ids.
    want = _summary("\n".join(tagged[0])) + _summary("\n".join(tagged[1]))
    # Reports come out in the order of their headers, which the interleaving shuffles.
    assert sorted(_summary("\n".join(merged)), key=repr) == sorted(want, key=repr)


def test_prose_before_a_header_is_not_taken_for_its_task_name() -> None:
    [e] = explain_text("Here is the log:\npage allocation failure: order:0, mode:0x20\n")
    assert e.report.comm is None
    [e] = explain_text("[  1.0][ T5] kswapd0:\npage allocation failure: order:0, mode:0x20\n")
    assert (e.report.comm, e.report.caller) == ("kswapd0", "T5")
