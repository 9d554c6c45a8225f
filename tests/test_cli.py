"""The command line as a user meets it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from paftrace.cli import main
from paftrace.commands import COMMANDS
from paftrace.options import TraceOptions
from tests.helpers import needs_root

HEAVY_MODULES = ("bcc", "rich", "paftrace.loader", "paftrace.tracer", "paftrace.session",
                 "paftrace.explain.analyze")


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


def test_help_imports_no_heavy_module():
    """`paftrace --help` must not pay for bcc, rich, the loader or the tracer."""
    code = ("import sys\nfrom click.testing import CliRunner\nimport paftrace.cli\n"
            "out = CliRunner().invoke(paftrace.cli.main, ['--help']).output\n"
            "assert 'Commands:' in out and 'selftest' in out, out\n"
            f"print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_unknown_subcommand_is_no_such_command():
    result = invoke("recrod", "-o", "x")  # `record` exists since issue 15
    assert result.exit_code == 2 and "No such command 'recrod'" in result.output


@pytest.mark.parametrize("spec", COMMANDS, ids=[c.name for c in COMMANDS])
def test_registry_help_is_the_commands_own(spec):
    command = main.get_command(None, spec.name)  # type: ignore[arg-type]
    assert command.name == spec.name
    assert command.help.splitlines()[0] == spec.short_help
    assert spec.short_help in " ".join(invoke("--help").output.split())


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and "paftrace" in result.output


@needs_root
def test_dry_run_prints_the_plan():
    result = invoke("--order", "4", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would attach: raw_tracepoint:kmem:mm_page_alloc, raw_tracepoint:irq:" in result.output
    assert "failure-field" in result.output
    classic = invoke("--order", "4", "--dry-run", "--no-feature", "raw-tracepoint")
    assert classic.exit_code == 0, classic.output
    assert "would attach: tracepoint:kmem:mm_page_alloc, tracepoint:irq:" in classic.output


@needs_root
@pytest.mark.parametrize("options", [
    TraceOptions(order_min=4, order_max=4),
    TraceOptions(trace_all=True, disabled=frozenset({"irq-vectors", "ringbuf"})),
    TraceOptions(disabled=frozenset({"reclaim", "irq-tracepoints"})),
], ids=["default", "all-perfbuf", "no-reclaim"])
def test_dry_run_equals_what_attaches(options):
    from paftrace.session import TraceSession  # noqa: PLC0415
    from paftrace.tracer import plan_lines  # noqa: PLC0415

    planned = plan_lines(options)[-1].removeprefix("would attach: ").split(", ")
    session = TraceSession(options)
    try:
        attached = session.attached()
    finally:
        session.close()
    assert attached == planned
    assert session.refused == []


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
