"""The kernel matrix's judging (scripts/matrix/results.py), on recorded runs.

tests/data/kernel_matrix/ holds payload artefacts from real runs (see its README):
the host's 6.18 row, a Debian 6.1 guest whose live trace worked, and a 6.1 guest
where the kernel refused the dump_stack_lvl kprobe so nothing attached.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts" / "matrix"))

from kernels_doc import render_doc, render_readme_snippet  # noqa: E402
from results import (  # noqa: E402
    analyse,
    expected_alloc_entry,
    json_lines,
    passed,
    render_table,
    summary_json,
)

DATA = Path(__file__).parent / "data" / "kernel_matrix"
GUEST_OK = DATA / "guest-6.1-live"
GUEST_REFUSED = DATA / "guest-6.1-dump-stack-refused"
HOST = DATA / "host-6.18"


def edit_trace(directory: Path, edit) -> None:
    """Rewrite trace.out record by record with `edit(record) -> record`."""
    path = directory / "trace.out"
    records = [edit(r) for r in json_lines(path.read_text())]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture
def guest_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(GUEST_OK, tmp_path / "guest"))


def test_expected_alloc_entry_follows_the_kernels_symbols():
    assert expected_alloc_entry({"__alloc_pages_nodemask", "warn_alloc"}) == \
        "__alloc_pages_nodemask"
    assert expected_alloc_entry({"__alloc_pages"}) == "__alloc_pages"
    assert expected_alloc_entry({"__alloc_pages_noprof"}) == "__alloc_pages_noprof"
    # 6.14+: the frozen core holds the tracepoint; the wrapper is also present.
    assert expected_alloc_entry({"__alloc_pages_noprof", "__alloc_frozen_pages_noprof"}) == \
        "__alloc_frozen_pages_noprof"
    assert expected_alloc_entry(set()) is None


def test_live_guest_row_reads_every_fact():
    r = analyse(GUEST_OK)
    assert r.kernel == "6.1.0-56-amd64"
    assert r.kprobes_available
    assert r.alloc_entry_expected == "__alloc_pages"
    assert r.alloc_entry_attached == "__alloc_pages"
    assert r.warn_kprobe == "warn_alloc"
    assert r.ring == "ringbuf" and r.irq_tracepoints
    assert r.softirq_allocations > 0
    assert r.silent_provoked == 3 and r.silent_seen == 3
    assert r.warn_printed is True and r.warn_marked is True


def test_refused_kprobe_fails_the_kernel_with_reasons():
    r = analyse(GUEST_REFUSED)
    assert r.selftest == "fail" and r.probes == []
    assert any("selftest failed" in p for p in r.problems)
    assert any("did not attach" in p for p in r.problems)
    # The kernel did print the warning; with nothing attached it could not be marked.
    assert r.warn_printed is True and r.warn_marked is False
    assert not passed([r])


def test_host_without_kprobes_passes_with_warning_checks_not_applicable():
    r = analyse(HOST, where="host")
    assert not r.kprobes_available
    assert r.selftest == "pass" and r.failures_seen == r.failures_provoked == 5
    assert r.alloc_entry_attached is None and r.warn_kprobe is None
    assert r.warn_printed is None and r.warn_marked is None
    assert r.problems == []


def test_wrong_allocator_entry_name_is_a_problem(guest_copy: Path):
    def rename(record: dict) -> dict:
        if record.get("type") == "attached":
            record["probes"] = [p.replace("__alloc_pages", "__alloc_pages_nodemask")
                                for p in record["probes"]]
        return record

    edit_trace(guest_copy, rename)
    r = analyse(guest_copy)
    assert r.alloc_entry_attached == "__alloc_pages_nodemask"
    assert "allocator-entry kprobe on __alloc_pages_nodemask, expected __alloc_pages" in \
        r.problems


def test_kprobes_available_but_not_attached_is_a_problem(guest_copy: Path):
    def drop_kprobes(record: dict) -> dict:
        if record.get("type") == "attached":
            record["probes"] = [p for p in record["probes"] if "kprobe:" not in p]
        return record

    edit_trace(guest_copy, drop_kprobes)
    problems = analyse(guest_copy).problems
    assert "kprobes available but no warn_alloc kprobe attached" in problems
    assert "kprobes available but no allocator-entry kprobe attached" in problems


def test_printed_failure_not_marked_reported_is_a_problem(guest_copy: Path):
    def unmark(record: dict) -> dict:
        if record.get("type") == "failure" and record.get("comm") == "insmod":
            record["visibility"] = "rate-limited"
        return record

    edit_trace(guest_copy, unmark)
    r = analyse(guest_copy)
    assert r.warn_printed is True and r.warn_marked is False
    assert "the kernel printed the failure but paftrace did not mark it reported" in r.problems


def test_table_and_last_line_json():
    results = [analyse(HOST, where="host"), analyse(GUEST_REFUSED)]
    table = render_table(results)
    assert "6.18" in table and "6.1.0-56-amd64: selftest failed" in table
    doc = json.loads(summary_json(results))
    assert [k["kernel"] for k in doc["kernels"]] == [results[0].kernel, "6.1.0-56-amd64"]
    assert {"kernel", "selftest", "probes", "failures_seen", "failures_provoked"} <= \
        doc["kernels"][0].keys()
    assert doc["passed"] is False


def test_docs_name_each_kernel_and_its_verdict():
    results = [analyse(HOST, where="host"), analyse(GUEST_OK)]
    suites = {results[0].kernel: "host", "6.1.0-56-amd64": "bookworm"}
    doc = render_doc(results, suites)
    assert doc.startswith("# Supported kernels")
    assert "| 6.1.0-56-amd64 | bookworm | yes | __alloc_pages |" in doc
    assert "__alloc_frozen_pages_noprof" in doc  # the fallback facts
    snippet = render_readme_snippet(results, suites)
    assert "docs/KERNELS.md" in snippet and results[0].kernel in snippet


def test_live_guest_ties_the_printed_failure_to_its_compaction_stall():
    r = analyse(GUEST_OK)
    assert r.warn_stall_ms and r.warn_stall_ms > 0


def test_printed_failure_without_its_stall_is_a_problem(guest_copy: Path):
    def drop_stall(record: dict) -> dict:
        if record.get("type") == "failure":
            record["stall"] = None
        return record

    edit_trace(guest_copy, drop_stall)
    assert "the printed failure carries no direct-compaction stall" in \
        analyse(guest_copy).problems


GUEST_HUNG = DATA / "guest-6.1-hung"


def test_hung_guest_says_it_hung_and_who_was_stuck():
    result = analyse(GUEST_HUNG)
    assert result.problems[0] == ("guest did not finish in 900 s: before any step: "
                                  "soft lockup in paftrace (see console.log)")
    assert not passed([result])


def test_hung_guest_names_its_step_and_where_the_cpu_was():
    """A console as the payload and softlockup_all_cpu_backtrace make it: the step
    marks, the panic, and each CPU's registers (x86 show_regs: `RIP: 0010:sym+off/len`)."""
    result = analyse(DATA / "guest-5.10-hung-marked")
    assert result.problems[0] == ("guest hung: in step trace: soft lockup in grep at "
                                  "__alloc_pages_nodemask+0x17e/0x310 (see console.log)")


def test_a_guest_booted_twice_says_so():
    result = analyse(GUEST_OK)
    assert not result.problems
    result.earlier_boot = "guest hung: in step trace: soft lockup in paftrace (see console.log)"
    assert (f"{result.kernel}: booted twice; the first boot: guest hung: in step trace"
            in render_table([result]))
    assert "(second boot; the first: guest hung" in render_doc([result], {})
    assert json.loads(summary_json([result]))["kernels"][0]["earlier_boot"].startswith("guest")
    assert passed([result])


def frag_guest(tmp_path: Path, edit=None) -> Path:
    """The live 6.1 guest with the recorded 5.10 guest's fragmentation artefacts."""
    guest = Path(shutil.copytree(GUEST_OK, tmp_path / "guest"))
    for name in ("frag.out", "fragment.out", "pipes.out"):
        shutil.copy(DATA / "guest-5.10-frag" / name, guest / name)
    if edit:
        path = guest / "frag.out"
        path.write_text("".join(json.dumps(edit(r)) + "\n" for r in json_lines(path.read_text())))
    return guest


def test_churned_guest_shows_fragmenting_pipe_writes(tmp_path: Path):
    result = analyse(frag_guest(tmp_path))
    assert (result.frag_fallbacks, result.frag_fragmenting) == (66, 43)
    assert result.frag_top_site == "pipe_write via new_sync_write (python3)"
    assert not result.problems


def test_no_fragmenting_fallback_in_a_guest_is_a_problem(tmp_path: Path):
    def whole_blocks_only(record: dict) -> dict:
        if record.get("type") == "summary":
            record["fragmenters"]["fragmenting"] = 0
        return record

    result = analyse(frag_guest(tmp_path, whole_blocks_only))
    assert result.problems == ["no fragmenting fallback while pipes were pinned into churned "
                               "memory (66 fallbacks, all of whole pageblocks)"]
    # the host cannot be churned that far (lazily accepted memory): not asked of it
    host = analyse(frag_guest(tmp_path / "h", whole_blocks_only), where="host")
    assert not any("fragmenting" in p for p in host.problems)


NETRX = DATA / "guest-6.1-netrx"
NETRX_FILES = ("netrx.rc", "netrx.out", "netrx.err", "netrx-trace.out")


def netrx_guest(tmp_path: Path, files: dict[str, str] | None = None) -> Path:
    """The live 6.1 guest with the recorded seed's case (NET_RX failures) of a 6.1 guest;
    `files` (name: text) replaces some of them."""
    guest = Path(shutil.copytree(GUEST_OK, tmp_path / "guest"))
    for name in NETRX_FILES:
        shutil.copy(NETRX / name, guest / name)
    for name, text in (files or {}).items():
        (guest / name).write_text(text)
    return guest


def test_seed_case_guest_counts_its_net_rx_failures(tmp_path: Path):
    result = analyse(netrx_guest(tmp_path))
    recorded = [r for r in json_lines((NETRX / "netrx-trace.out").read_text())
                if r.get("type") == "failure"]
    lost = json.loads((NETRX / "netrx.out").read_text())["lost"]
    assert result.netrx_failures == len(recorded) == lost > 0
    assert result.netrx_lost == lost and result.netrx_error is None
    assert not result.problems
    assert f"{lost} ({lost} lost)" in render_table([result])


def test_no_net_rx_failure_in_a_guest_is_a_problem(tmp_path: Path):
    kept = [line for line in (NETRX / "netrx-trace.out").read_text().splitlines()
            if '"type":"failure"' not in line.replace(" ", "")]
    result = analyse(netrx_guest(tmp_path, {"netrx-trace.out": "\n".join(kept) + "\n"}))
    echo = json.loads((NETRX / "netrx.out").read_text())
    assert result.netrx_failures == 0
    assert result.problems == [f"no order-4 failure caught in NET_RX while the free blocks "
                               f"were held ({echo['lost']} of {echo['sent']} echo replies "
                               f"lost)"]


def test_a_failure_elsewhere_is_not_the_seeds_case(tmp_path: Path):
    def moved(line: str) -> str:
        return line.replace('"softirq":"NET_RX"', '"softirq":"TIMER"')

    text = "\n".join(map(moved, (NETRX / "netrx-trace.out").read_text().splitlines()))
    assert analyse(netrx_guest(tmp_path, {"netrx-trace.out": text})).netrx_failures == 0


def test_net_rx_scenario_error_is_said(tmp_path: Path):
    result = analyse(netrx_guest(tmp_path, {
        "netrx.rc": "1\n", "netrx.out": "",
        "netrx.err": "softirq-highorder: ip link add veth0: Unknown device type\n"}))
    assert result.problems == ["the NET_RX scenario failed: softirq-highorder: ip link add "
                               "veth0: Unknown device type"]


def test_net_rx_skipped_on_a_big_host_is_not_applicable(tmp_path: Path):
    guest = netrx_guest(tmp_path, {"netrx.rc": "skipped\n"})
    result = analyse(guest, where="host")
    assert (result.netrx_failures, result.netrx_lost) == (None, None)
    assert not result.problems
    assert render_table([result]).splitlines()[2].rstrip().endswith("n/a")
