"""The command line as a user meets it."""

from __future__ import annotations

from click.testing import CliRunner

from paftrace.cli import main
from tests.helpers import needs_root


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_help_ends_with_examples():
    for args in ([], ["trace"]):
        result = invoke(*args, "--help")
        assert result.exit_code == 0
        assert "sudo paftrace --order 4" in result.output
        assert result.output.rstrip().endswith("paftrace gfp 0x400cc0              # decode a gfp "
                                               "mask")


def test_order_is_the_default_command():
    result = invoke("--order", "x")
    assert result.exit_code == 2 and "bad order 'x'" in result.output


def test_unknown_feature_is_rejected_with_the_known_ones():
    result = invoke("--no-feature", "warp")
    assert result.exit_code == 2 and "ringbuf" in result.output


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and "paftrace" in result.output


@needs_root
def test_dry_run_prints_the_plan():
    result = invoke("--order", "4", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would attach: tracepoint:kmem:mm_page_alloc" in result.output
    assert "failure-field" in result.output


@needs_root
def test_ebpf_prints_source_and_cflags():
    result = invoke("-o", "2-5", "--atomic-only", "--ebpf")
    assert result.exit_code == 0
    assert "-DORDER_MIN=2 -DORDER_MAX=5" in result.output and "-DATOMIC_ONLY" in result.output
    assert "TRACEPOINT_PROBE(kmem, mm_page_alloc)" in result.output


@needs_root
def test_doctor_and_selftest_pass_here():
    doctor = invoke("doctor", "--json")
    assert doctor.exit_code == 0, doctor.output
    assert '"name": "load", "ok": true' in doctor.output
    selftest = invoke("selftest", "-n", "3", "--json")
    assert selftest.exit_code == 0, selftest.output
    assert '"selftest": "pass"' in selftest.output
