"""A traced call site judged by `paftrace explain`'s own logic (explain/advice.assess).

The tracer's failure is turned into the explain `Report` the kernel would have printed
for it: header fields, stack, the free areas of the eligible zones from the memory
sample the failure cites, and their watermarks. So the report's verdict and advice are
the same statements, with the same evidence, as `paftrace explain` gives for a dmesg
report: one implementation.
"""

from __future__ import annotations

from dataclasses import asdict

from paftrace.explain.advice import VmSettings, assess
from paftrace.explain.frames import tokens
from paftrace.explain.report import Frame, FreeArea, Report, ZoneState
from paftrace.gfp import parse_mask
from paftrace.gfp_tables import newest_table, table_for_kernel
from paftrace.records import Failure

# explain says benign/real (the words of its output); the tracer says expected/harmful.
VERDICT = {"benign": "expected", "real": "harmful"}


def _frames(stack: list[str]) -> list[Frame]:
    """The tracer's frames ('name+0x1/0x2 [mod]') read by explain's own trace grammar."""
    return [Frame(tok.name, tok.module, tok.reliable, section=None, offset=tok.offset)
            for text in stack for tok in tokens(text) if tok.kind == "frame" and tok.name]


def _memory(failure: Failure, samples: dict[int, dict], page_kb: int
            ) -> tuple[list[FreeArea], list[ZoneState]]:
    """Free areas and watermarks of the zones the request could use, when it failed."""
    snap = failure.buddyinfo or {}
    sample = samples.get(snap.get("sample_ts_ns", -1))
    if sample is None:
        return [], []
    eligible = {(z["node"], z["zone"]) for z in snap.get("zones", [])}
    areas, zones = [], []
    for z in sample["zones"]:
        if (z["node"], z["zone"]) not in eligible:
            continue
        blocks = dict(enumerate(z["free"]))
        areas.append(FreeArea(z["node"], z["zone"], page_kb, blocks,
                              sum(n * page_kb << o for o, n in blocks.items())))
        marks = z.get("watermarks")
        if marks:
            zones.append(ZoneState(z["node"], z["zone"], z.get("pages_free", 0) * page_kb,
                                   marks.get("min", 0) * page_kb, marks.get("low", 0) * page_kb,
                                   marks.get("high", 0) * page_kb,
                                   (z.get("managed") or 0) * page_kb or None))
    return areas, zones


def vm_settings(system: dict) -> VmSettings:
    """The recorded machine's vm.* and MemTotal, as explain's advice wants them."""
    sysctl = system.get("sysctl_vm") or {}

    def value(name: str) -> int | None:
        text = sysctl.get(name, "")
        return int(text) if text.isdigit() else None

    return VmSettings(value("vm.min_free_kbytes"), value("vm.watermark_scale_factor"),
                      (system.get("meminfo_kb") or {}).get("MemTotal"),
                      source="the recorded machine (vm.* when the recording started)")


def explain_report_of(failure: Failure, kernel: str | None, samples: dict[int, dict],
                      page_kb: int) -> Report:
    areas, zones = _memory(failure, samples, page_kb)
    return Report(kind="page", line=0,
                  header=f"{failure.comm}: page allocation failure: order:{failure.order}, "
                         f"mode:{failure.gfp}",
                  mode=parse_mask(failure.gfp), order=failure.order, comm=failure.comm,
                  pid=failure.pid, kernel=kernel, printed_flags=list(failure.gfp_flags),
                  frames=_frames(failure.stack), free_areas=areas, zones=zones)


def judge(failure: Failure, context: dict) -> dict:
    """{"verdict": "harmful"|"expected", "reasons", "findings", "advice"}: each a list of
    {"text", "evidence"}. `context`: kernel, system (facts), samples (by ts_ns)."""
    kernel = context.get("kernel")
    table = table_for_kernel(kernel) if kernel else newest_table()
    system = context.get("system") or {}
    page_kb = (system.get("page_size") or 4096) // 1024
    report = explain_report_of(failure, kernel, context.get("samples") or {}, page_kb)
    result = assess(report, table, failure.context, vm_settings(system))
    return {"verdict": VERDICT[result.verdict],
            "reasons": [asdict(p) for p in result.reasons],
            "findings": [asdict(p) for p in result.findings],
            "advice": [asdict(p) for p in result.advice]}
