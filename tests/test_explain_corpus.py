"""`paftrace explain --json` on the report corpus (tests/data/reports/README.md): every
architecture and paste shape, with the values read off each report by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from paftrace.cli import main

DATA = Path(__file__).parent / "data" / "reports"
ATOMIC = ["GFP_ATOMIC"]

# file -> (order, mode, gfp flags, context, softirq vector, extra checks)
EXPECTED: dict[str, tuple] = {
    # The paste stops inside the trace, before any task entry: unknown, and said why.
    "6.2-arm64-journal-strfry.txt":
        (7, "0x40dc0", ["GFP_KERNEL", "__GFP_COMP", "__GFP_ZERO"], "unknown", None,
         {"pid": 2898704, "kernel": "6.2.0-1009-oracle", "requester": "__regset_get",
          "trace_cut": True}),
    "6.1-android-arm64-kworker.txt":
        (0, "0x10800", ["GFP_NOWAIT", "__GFP_NORETRY"], "process", None,
         {"comm": "kworker/7:1H", "requester": "__erofs_allocpage"}),
    "6.1-android-kmsg-prefix-tgid-SHAPED.txt":
        (0, "0x10800", ["GFP_NOWAIT", "__GFP_NORETRY"], "process", None,
         {"pid": 12247, "requester": "__erofs_allocpage"}),
    "4.14-mips-kernwarn-ath9k-tasklet.txt":
        (0, "0x1080020", ATOMIC, "softirq", "TASKLET", {"requester": "ath_rxbuf_alloc [ath]"}),
    "5.16-x86-vmalloc-error-callerid.txt":
        (None, "0xcc2", ["GFP_KERNEL", "__GFP_HIGHMEM"], "process", None,
         {"kind": "vmalloc", "pid": 2084, "caller": "T2084"}),
    "4.14-arm-vmalloc-old-wording.txt":
        (None, "0x14000c0", ["GFP_KERNEL"], "process", None,
         {"kind": "vmalloc", "comm": "kmodloader", "requester": "module_alloc"}),
    "3.2-arm-address-only.txt":
        (0, "0xd0", ["GFP_KERNEL"], "unknown", None,
         {"comm": "modprobe", "address_only_frames": 7, "stack": [],
          "detail": "vmalloc: allocation failure: 0 bytes"}),
    "5.4-x86-dmesg-T-kworker.txt":
        (4, "0x40dc0", ["GFP_KERNEL", "__GFP_COMP", "__GFP_ZERO"], "unknown", None,
         {"pid": 1333536, "requester": "nvme_validate_ns [nvme_core]", "trace_cut": True}),
    "5.4-x86-decode-stacktrace-SHAPED.txt":
        (4, "0x40dc0", ["GFP_KERNEL", "__GFP_COMP", "__GFP_ZERO"], "unknown", None,
         {"requester": "nvme_validate_ns [nvme_core]", "trace_cut": True}),
    "4.4-arm-dmesg-T-adb.txt":
        (8, "0x24040c0", ["GFP_KERNEL", "GFP_COMP"], "unknown", None,
         {"kernel": "4.4.13-v7+", "requester": "alloc_kmem_pages", "trace_cut": True}),
    "3.8-spl-mail-quoted-SHAPED.txt":
        (0, "0x10d0", ["GFP_KERNEL", "GFP_NORETRY"], "process", None,
         {"pid": 31170, "requester": "splat_kmem_test13 [splat]"}),
    # Real powerpc64 (ELFv2, `[sp] [ip] sym+off/len`): mode 0 prints "()"; the copy
    # stops inside the driver, before any interrupt or task-entry frame: unknown.
    "4.18-ppc64le-ibmvscsi-cut.txt":
        (0, "0x0", ["none"], "unknown", None,
         {"comm": "swapper/0", "pid": 0, "requester": "iommu_alloc_coherent",
          "trace_cut": True, "flags_agree": True}),
    "2.6.32-ppc64-elfv1-softirq-WRITTEN.txt":
        (1, "0x20", ATOMIC, "softirq", "NET_RX",
         {"requester": "ibmveth_replenish_buffer_pool [ibmveth]"}),
    "5.14-ppc64le-syscall-WRITTEN.txt":
        (4, "0x40cc0", ["GFP_KERNEL", "__GFP_COMP"], "process", None,
         {"requester": "sys_msgsnd"}),
    "5.10-s390x-qeth-softirq-WRITTEN.txt":
        (2, "0xa20", ATOMIC, "softirq", "NET_RX", {"requester": "qeth_l3_rx_poll [qeth_l3]"}),
    "2.6.9-x86_64-kswapd-stale-irq-entry-WRITTEN.txt":
        (1, "0x20", ATOMIC, "process", None, {"comm": "kswapd0"}),
    "2.6.9-x86_64-e1000-hardirq-WRITTEN.txt":
        (3, "0x20", ATOMIC, "hardirq", None,
         {"requester": "e1000_alloc_rx_buffers [e1000]"}),
    "3.0-s390x-sles11-mail-quoted.txt":
        (4, "0x4d0", ["GFP_KERNEL", "GFP_REPEAT"], "unknown", None, {"comm": "WebContainer :"}),
    "4.3-arm-tasklet.txt": (0, "0x20", ATOMIC, "softirq", "TASKLET", {}),
    "3.10-rhel7-netvsc-softirq.txt": (0, "0x20", ATOMIC, "softirq", "NET_RX", {}),
    "2.6.32-tg3-softirq-seed.txt": (4, "0x20", ATOMIC, "softirq", "NET_RX", {}),
    "3.8-spl-process.txt": (0, "0x10d0", ["GFP_KERNEL", "GFP_NORETRY"], "process", None, {}),
    "4.12-android-wrapped-header.txt":
        (0, "0x14210d2", ["GFP_HIGHUSER", "__GFP_NORETRY", "__GFP_RECLAIMABLE"], "unknown",
         None, {"trace_cut": True}),
    "4.9-coreos-java.txt":
        (0, "0x2084120", ["GFP_ATOMIC", "__GFP_COLD", "__GFP_COMP"], "unknown", None, {}),
    "6.8-xtensa-threaded-irq.txt": (0, "0x820", ATOMIC, "unknown", None, {}),
}


def explain_json(path: Path) -> list[dict]:
    result = CliRunner().invoke(main, ["explain", "--json", str(path)])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_report_decodes_as_expected(name: str) -> None:
    got = explain_json(DATA / name)[0]
    order, mode, flags, context, vector, extra = EXPECTED[name]
    assert (got["order"], got["mode"], got["gfp_flags"]) == (order, mode, flags)
    assert (got["context"], got["softirq"]) == (context, vector), got["context_evidence"]
    for key, want in extra.items():
        assert got[key] == want, key


def test_every_corpus_file_is_in_the_readme_with_its_source() -> None:
    readme = (DATA / "README.md").read_text()
    for path in DATA.glob("*.txt"):
        assert path.name in readme, path.name
        head = path.read_text().splitlines()[:3]
        first = head[0]
        assert first.startswith("# Source: ") and (
            "http" in " ".join(head) or "WRITTEN" in first), path.name
        assert ("WRITTEN" in path.name) == ("Source: WRITTEN" in first), path.name


def test_corpus_covers_every_architecture_and_paste_shape() -> None:
    names = " ".join(EXPECTED)
    for needle in ("x86", "arm-", "arm64", "ppc64", "s390", "mips", "address-only", "journal",
                   "kernwarn", "android-kmsg", "quoted", "wrapped", "dmesg-T", "callerid",
                   "decode-stacktrace", "vmalloc-error", "vmalloc-old-wording", "stale"):
        assert needle in names, needle


def test_quoted_mail_with_two_headers_gives_two_reports() -> None:
    found = explain_json(DATA / "3.0-s390x-sles11-mail-quoted.txt")
    assert [(r["comm"], r["order"], r["mode"]) for r in found] == \
        [("WebContainer :", 4, "0x4d0"), ("mount.nfs", 4, "0x4d0")]
    assert all(r["context_evidence"] == ["no call trace in the report"] for r in found)


def test_address_only_trace_says_so_and_guesses_nothing() -> None:
    [got] = explain_json(DATA / "3.2-arm-address-only.txt")
    assert got["context"] == "unknown" and got["requester"] is None
    assert "no symbols" in got["context_evidence"][0]
    assert any("addresses only" in p for p in got["problems"])


def test_vmalloc_reports_say_there_is_no_order() -> None:
    for name in ("5.16-x86-vmalloc-error-callerid.txt", "4.14-arm-vmalloc-old-wording.txt"):
        [got] = explain_json(DATA / name)
        assert got["order"] is None and "no order" in got["order_note"]
        assert any("no order" in f["text"] for f in got["findings"])


def test_a_trace_cut_before_its_outer_frames_is_unknown_unless_a_witness_settles_it() -> None:
    [got] = explain_json(DATA / "6.2-arm64-journal-strfry.txt")
    assert "cut before its outer frames" in got["context_evidence"][-1]
    # The same kind of cut trace, printed with caller ids: [T...] means in_task().
    [vm] = explain_json(DATA / "5.16-x86-vmalloc-error-callerid.txt")
    assert vm["trace_cut"] and vm["context"] == "process"
    assert "which the trace alone could not tell" in vm["context_evidence"][-1]


def test_stale_interrupt_entry_is_named_in_the_evidence() -> None:
    [got] = explain_json(DATA / "2.6.9-x86_64-kswapd-stale-irq-entry-WRITTEN.txt")
    assert any("'common_interrupt' ignored" in e for e in got["context_evidence"])
