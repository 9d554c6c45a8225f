"""Every variant of the BPF program compiles and passes this kernel's verifier.

Some paths cannot attach here (no kprobes on this kernel) but they can still be
compiled and loaded: `load_func` runs the verifier without attaching, so a
kprobe-only variant is checked here and not first on a user's machine.
"""

from __future__ import annotations

import pytest

from paftrace.loader import bpf_source_path, cflags_for, import_bcc, prepare
from paftrace.options import TraceOptions
from paftrace.reclaim import BPF_SOURCE as RECLAIM_SOURCE
from paftrace.reclaim import pageblock_order, plan_reclaim
from tests.helpers import needs_root

pytestmark = needs_root

ALL_KPROBES = ("on_warn_alloc", "on_warn_printed", "on_alloc_entry")


# (flags added (-D) or removed (-U), kprobe programs to verify, --all, reclaim.c too)
@pytest.mark.parametrize("extra,kprobes,trace_all,with_reclaim", [
    (["-DHAVE_KPROBE_WARN", "-DHAVE_KPROBE_ALLOC"], ALL_KPROBES, False, True),
    (["-DHAVE_KPROBE_WARN", "-DHAVE_KPROBE_ALLOC"], ALL_KPROBES, True, False),
    (["-UUSE_RINGBUF", "-DHAVE_KPROBE_ALLOC"], ("on_alloc_entry",), True, True),
    (["-UHAVE_IRQ_TP"], (), False, False),
    (["-UHAVE_PFN"], (), False, False),  # the page-pointer era (< 4.1) failure test
])
def test_variant_loads(extra, kprobes, trace_all, with_reclaim):
    options = TraceOptions(order_min=2, order_max=5, trace_all=trace_all, pid=1, comm="x",
                           atomic_only=True, warn_only=True)
    kernel, plan, table = prepare(options)
    flags = cflags_for(options, plan, table)
    undefine = {f[2:] for f in extra if f.startswith("-U")}
    flags = [f for f in flags if f[2:] not in undefine] + [f for f in extra if f[:2] == "-D"]
    source = bpf_source_path().read_text()
    if with_reclaim:
        rplan = plan_reclaim(kernel, pageblock_order())
        source = bpf_source_path(RECLAIM_SOURCE).read_text() + "\n" + source
        flags += [*rplan.cflags, "-DWITH_RECLAIM"]
    if "HAVE_PFN" in undefine:
        # This kernel's record has `pfn`; compile the `page` branch against a
        # stand-in field name so the code path is at least built and verified.
        source = source.replace("args->page", "args->pfn")
    bpf = import_bcc().BPF(text=source, cflags=flags)
    try:
        for name in kprobes:
            assert bpf.load_func(name, import_bcc().BPF.KPROBE).fd >= 0
    finally:
        bpf.cleanup()
