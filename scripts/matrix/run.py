"""Kernel matrix runner: boot each built kernel under QEMU (TCG), run the payload
in it, run the same payload on the host, judge, print a table and one JSON line.

Called by scripts/kernel-matrix after scripts/matrix/build; see that script.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import click

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path[:0] = [str(REPO), str(HERE)]

from kernels_doc import render_doc, render_readme_snippet  # noqa: E402
from results import (  # noqa: E402
    KernelResult,
    analyse,
    guest_trouble,
    passed,
    render_table,
    summary_json,
)

HOST_VENV = Path(os.environ.get("PAFTRACE_VENV", "/opt/paftrace/venv"))
MAX_QEMU = 2  # the machine has 2 cores and is shared


@dataclass
class Kernel:
    suite: str
    abi: str
    version: str


def log(message: str) -> None:
    print(f"kernel-matrix: {message}", file=sys.stderr, flush=True)


def read_kernels(work: Path) -> list[Kernel]:
    kernels = []
    for line in (work / "kernels.list").read_text().splitlines():
        suite, abi, version = line.split()
        kernels.append(Kernel(suite, abi, version))
    return kernels


def tree_files(repo: Path) -> list[str]:
    """The working tree as git sees it: tracked and untracked, not ignored."""
    if not (repo / ".git").exists():
        return [str(p.relative_to(repo)) for p in repo.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts]
    out = subprocess.run(["git", "-C", str(repo), "ls-files", "-co", "--exclude-standard", "-z"],
                         capture_output=True, check=True).stdout.decode()
    return [f for f in out.split("\0") if f and (repo / f).is_file()]


def make_project_disk(repo: Path, run_dir: Path) -> Path:
    staging = run_dir / "project"
    for name in tree_files(repo):
        target = staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, target)
    disk = run_dir / "project.ext4"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "paftrace-src", "-d", str(staging), str(disk),
                    "64M"], check=True)
    shutil.rmtree(staging)
    return disk


def boot(work: Path, kernel: Kernel, project: Path, out: Path, memory_mb: int,
         timeout: float) -> float:
    """One guest: boot, payload, power off. Artefacts land in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with tempfile.NamedTemporaryFile(dir=out, prefix="results-", suffix=".img") as results:
        results.truncate(64 << 20)
        results.flush()
        cmd = [
            # One TCG thread runs both vCPUs: with a thread per vCPU (MTTCG) the guests
            # hung now and then while a tracepoint's static key was patched (5.10 and
            # 6.1 on 2026-12-02: both vCPUs spinning at the 5-byte NOP of the
            # mm_page_alloc site in __alloc_pages_nodemask, nobody patching any more).
            "qemu-system-x86_64", "-accel", "tcg,thread=single", "-cpu", "max", "-smp", "2",
            "-m", str(memory_mb), "-nographic", "-no-reboot", "-snapshot", "-nic", "none",
            "-kernel", str(work / "kernels" / kernel.abi / "boot" / f"vmlinuz-{kernel.abi}"),
            "-initrd", str(work / "initrd" / f"{kernel.abi}.img"),
            "-drive", f"file={work / 'image.ext4'},format=raw,if=virtio",
            "-drive", f"file={project},format=raw,if=virtio,readonly=on",
            "-drive", f"file={results.name},format=raw,if=virtio,snapshot=off",
            # A soft lockup panics with every CPU's stack on the console
            # (kernel/watchdog.c): a hung guest ends minutes before the timeout and says
            # where it hung. panic=-1 reboots, which -no-reboot turns into exit. The
            # threshold is the largest (60: reported after 2 x 60 s): emulated, a long
            # kernel path stalls a vCPU for 20-30 s (6.12, pipe_write clearing pages
            # into churned memory), which is slowness, not a hang.
            "-append", "console=ttyS0 panic=-1 quiet loglevel=3 watchdog_thresh=60 "
                       "softlockup_panic=1 softlockup_all_cpu_backtrace=1",
        ]
        with open(out / "console.log", "wb") as console:
            try:
                subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=console,
                               stderr=subprocess.STDOUT, timeout=timeout, check=False)
            except subprocess.TimeoutExpired:
                (out / "timeout.txt").write_text(f"guest did not finish in {timeout:.0f} s\n")
        try:
            with tarfile.open(results.name) as tar:
                tar.extractall(out, filter="data") if hasattr(tarfile, "data_filter") \
                    else tar.extractall(out)
        except tarfile.TarError:
            pass  # nothing written: the guest died early; console.log tells why
    if not (out / "uname.txt").exists():
        (out / "uname.txt").write_text(kernel.abi + "\n")
    return time.monotonic() - t0


def run_host(out: Path) -> float:
    """The host's own row: the same payload with the host's installed paftrace."""
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PATH"] = f"{HOST_VENV / 'bin'}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    env["PAFTRACE_PYTHON"] = str(HOST_VENV / "bin" / "python")
    t0 = time.monotonic()
    subprocess.run(["sh", str(HERE / "payload"), str(out)], env=env, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600, check=False)
    return time.monotonic() - t0


@dataclass(frozen=True)
class MatrixArgs:
    work: Path
    only: tuple[str, ...]
    no_host: bool
    jobs: int
    memory: int
    timeout: float
    docs: Path | None
    tree: Path


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Cache of kernels, images and the last run (scripts/kernel-matrix sets it).")
@click.option("--only", multiple=True,
              help="Run only kernels whose release contains this (repeatable).")
@click.option("--no-host", is_flag=True, help="Skip the host's own row.")
@click.option("--jobs", type=click.IntRange(min=1), default=MAX_QEMU, show_default=True,
              help="Guests booted at once (at most MAX_QEMU).")
@click.option("--memory", type=click.IntRange(min=256), default=1024, show_default=True,
              help="Guest RAM in MiB.")
@click.option("--timeout", type=float, default=900.0, show_default=True,
              help="Per guest, seconds.")
@click.option("--docs", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the Supported kernels page here.")
@click.option("--tree", type=click.Path(file_okay=False, path_type=Path), default=REPO,
              show_default="this checkout", help="Project tree copied into the guests.")
def cli(**options: object) -> None:
    """Boot each built kernel under QEMU, run the payload there and on the host, judge."""
    sys.exit(main(MatrixArgs(**options)))  # type: ignore[arg-type]


def main(args: MatrixArgs) -> int:
    kernels = [k for k in read_kernels(args.work)
               if not args.only or any(s in k.abi for s in args.only)]
    run_dir = args.work / "last-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    project = make_project_disk(args.tree, run_dir)
    suites = {k.abi: k.suite for k in kernels}

    results: list[KernelResult] = []
    if not args.no_host:
        log("host: running the payload with the host's paftrace")
        seconds = run_host(run_dir / "host")
        results.append(analyse(run_dir / "host", where="host"))
        suites[results[-1].kernel] = "host"
        log(f"host: {results[-1].kernel} done in {seconds:.0f} s")

    def one(kernel: Kernel) -> KernelResult:
        out = run_dir / kernel.abi
        log(f"{kernel.abi}: booting")
        seconds = boot(args.work, kernel, project, out, args.memory, args.timeout)
        log(f"{kernel.abi}: done in {seconds:.0f} s")
        trouble = guest_trouble(out)
        if trouble is None:
            return analyse(out)
        # A guest that hung is booted once more (the 6.1 guest hung once in CI on
        # 2026-12-02: soft lockups in paftrace and grep, two TCG guests sharing the
        # machine's 2 CPUs; it passed on its next boots). The first boot's console is
        # kept and its trouble reported with the result, never dropped.
        out.rename(out.with_name(kernel.abi + ".first-boot"))
        log(f"{kernel.abi}: {trouble}; booting once more")
        seconds = boot(args.work, kernel, project, out, args.memory, args.timeout)
        log(f"{kernel.abi}: second boot done in {seconds:.0f} s")
        result = analyse(out)
        result.earlier_boot = trouble
        return result

    with ThreadPoolExecutor(max_workers=max(1, min(args.jobs, MAX_QEMU))) as pool:
        results += list(pool.map(one, kernels))

    (run_dir / "results.json").write_text(summary_json(results) + "\n")
    print(render_table(results))
    if args.docs:
        args.docs.write_text(render_doc(results, suites))
        log(f"wrote {args.docs}; README snippet:")
        print(render_readme_snippet(results, suites))
    print(summary_json(results))
    return 0 if passed(results) else 1


if __name__ == "__main__":
    cli(prog_name="kernel-matrix")
