"""The last line of scripts/vagrant-check: one JSON object, and the verdict (exit status).

    python3 report.py STATE_DIR BOX_JSON TOTAL_SECONDS SHELL_STATUS

STATE_DIR holds what the run wrote: `facts` (the box booted, whether it was provisioned
afresh and saved, up/provision seconds, provisioning mode),
`stages` (seconds per stage), `guest.json` (scripts/vagrant/guest_check.py's object) and
`leftovers` (what could not be undone). Passing means: doctor and selftest pass in the VM,
every provoked failure seen, the kprobe paths on, real NET_RX failures caught, nothing left.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def read_pairs(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return dict(line.split(" ", 1) for line in path.read_text().splitlines() if " " in line)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def seconds(value: str | None) -> int | None:
    return int(value) if value is not None else None


def report(state: Path, box_json: Path, total_s: int, status: int) -> dict:
    facts = read_pairs(state / "facts")
    guest = read_json(state / "guest.json")
    box = read_json(box_json)
    trace = guest.get("trace", {})
    out = {
        # The box that booted: the plain one, or the one an earlier run provisioned.
        "box": facts.get("box") or (f"{box['name']} {box['version']}" if box else None),
        "guest_kernel": guest.get("guest_kernel"),
        "provision_s": seconds(facts.get("provision")),
        "up_s": seconds(facts.get("up")),
        "doctor": guest.get("doctor", "fail"),
        "selftest": guest.get("selftest", "fail"),
        "failures_provoked": guest.get("failures_provoked", 0),
        "failures_seen": guest.get("failures_seen", 0),
        "kprobes": guest.get("kprobes", []),
        "netrx_failures": guest.get("netrx_failures", 0),
        "leftovers": [line for line in (state / "leftovers").read_text().splitlines() if line]
        if (state / "leftovers").exists() else ["unknown: the cleanup did not finish"],
        "provision_mode": facts.get("mode"),
        # scripts/setup ran on the plain box (everything installed) or on the provisioned
        # one (setup only reinstalls paftrace); after a fresh one, whether its disk was saved.
        "fresh_provision": facts.get("fresh") == "1",
        "provisioned_box_saved": facts.get("saved") == "yes",
        "kprobe_records": {k: trace.get(k) for k in ("provoked", "seen", "warn_marked",
                                                     "latency_us")},
        "stages_s": {k: int(v) for k, v in read_pairs(state / "stages").items()},
        "total_s": total_s,
    }
    kprobe_paths = (trace.get("seen", 0) > 0 and trace.get("warn_marked") == trace.get("seen")
                    and all(v is not None for v in trace.get("latency_us", [None]))
                    and any("warn_alloc" in p for p in out["kprobes"]))
    out["passed"] = (status == 0 and out["doctor"] == "pass" and out["selftest"] == "pass"
                     and 0 < out["failures_provoked"] == out["failures_seen"] and kprobe_paths
                     and out["netrx_failures"] > 0 and not out["leftovers"])
    return out


def main(argv: list[str]) -> int:
    state, box_json, total_s, status = Path(argv[1]), Path(argv[2]), int(argv[3]), int(argv[4])
    out = report(state, box_json, total_s, status)
    print(json.dumps(out), flush=True)
    return 0 if out["passed"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
