"""Which gfp table decodes a report: the kernel it names, its format era, or --kernel.

4.6+ reports print the flag names themselves; when the table chosen by version
disagrees with them (distribution kernels backport renumberings, e.g. RHEL 8's
"4.18" prints 4.19 values) the table that agrees is used and the switch is said.
"""

from __future__ import annotations

from dataclasses import dataclass

from paftrace.explain.report import Report
from paftrace.gfp import GfpTable
from paftrace.gfp_tables import ERAS, Era, build_table, era_for_kernel


@dataclass
class TableChoice:
    table: GfpTable
    era: str
    how: str            # "report" | "inferred" | "--kernel"
    note: str
    agrees: bool | None  # with the names the kernel printed; None if it printed none


def _names(items: list[str]) -> set[str]:
    return {n.lstrip("_") for n in items}


def decodes_like(table: GfpTable, mask: int, printed: list[str]) -> bool:
    if mask == 0:
        # %pGg prints nothing for 0, "mode:0x0()" (lib/vsprintf.c format_flags loops
        # while flags are left); the table's own name for 0 ("none") is a trace
        # format's (include/trace/events/mmflags.h show_gfp_flags)
        return _names(printed) <= {table.zero_name.lstrip("_")}
    return _names(table.decode(mask)) == _names(printed)


def _infer(report: Report) -> tuple[Era, str]:
    if report.period_separator:
        return ERAS[0], "'failure.' with a period is the 2.6.x format (colon from ≈3.0)"
    if report.printed_flags is None:
        if report.kind == "page" and (report.mode or 0) & 0x2000000:
            return era_for_kernel("4.4"), ("'failure:' with a numeric mode only is 3.0-4.5; "
                                           "bit 0x2000000 (__GFP_KSWAPD_RECLAIM in 4.4) "
                                           "puts it at 4.4+")
        return era_for_kernel("3.10"), ("'failure:' with a numeric mode only is 3.0-4.5; no 4.4 "
                                         "reclaim bits, so the 3.x layout")
    later = "4.14" if report.nodemask is not None else "4.4"
    if report.cpuset is not None and "," in report.header.split("nodemask=")[-1]:
        later = "5.4"
    mode = report.mode or 0
    matching = [e for e in ERAS if e.version >= era_for_kernel("4.4").version
                and decodes_like(build_table(e), mode, report.printed_flags)]
    # Prefer eras the format allows; distribution kernels backport formats, so fall back.
    candidates = [e for e in matching if e.version >= era_for_kernel(later).version] or matching
    reason = ("symbolic mode (4.6+)" + (", nodemask= (4.11+)" if report.nodemask else "")
              + (", cpuset on the same line (5.4+)" if later == "5.4" else ""))
    if candidates:
        span = candidates[0].label + ("" if len(candidates) == 1 else f"..{candidates[-1].label}")
        return candidates[0], f"{reason}; the printed flag names match the {span} table(s)"
    return era_for_kernel(later), f"{reason}; no built-in table matches the printed names"


def choose_table(report: Report, override: str | None = None) -> TableChoice:
    if override:
        era, how, note = era_for_kernel(override), "--kernel", f"--kernel {override}"
    elif report.kernel:
        era, how = era_for_kernel(report.kernel), "report"
        note = f"kernel {report.kernel} named in the report"
    else:
        era, note = _infer(report)
        how = "inferred"
        note = "kernel version not in the report, inferred: " + note
    table = build_table(era)
    if report.printed_flags is None or report.mode is None:
        return TableChoice(table, era.label, how, note, None)
    if decodes_like(table, report.mode, report.printed_flags):
        return TableChoice(table, era.label, how, note, True)
    if how != "--kernel":
        agreeing = [e for e in ERAS if decodes_like(build_table(e), report.mode,
                                                    report.printed_flags)]
        if agreeing:
            best = min(agreeing, key=lambda e: abs(ERAS.index(e) - ERAS.index(era)))
            return TableChoice(build_table(best), best.label, how,
                               f"{note}; its printed flags match the Linux {best.label} table, "
                               f"not {era.label} (renumbered between "
                               "the verified trees, or a distribution backport)", True)
    return TableChoice(table, era.label, how, note + "; the printed flag names differ from "
                       "this table's decoding", False)
