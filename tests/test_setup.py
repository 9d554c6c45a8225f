"""scripts/setup: header selection on fake /usr/src trees (no root), every failure path's one
line, an install that survives moving the checkout, kernel changes and --uninstall.

Runs of setup install into a scratch tree (PAFTRACE_VENV, PAFTRACE_STATE, PAFTRACE_*_DIR),
never into this machine's /opt/paftrace or /usr/local. Failures are produced for real where
the machine allows it (a path under a regular file, an unreachable package index, a venv
without the distribution's bcc, not being root); PATH stubs stand in only for apt failing.
The whole README path on fresh Debian roots is scripts/fresh-root (a scripts/test stage).
"""

from __future__ import annotations

import gzip
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import tomllib

from tests.helpers import IS_ROOT, needs_root

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "scripts" / "setup"
HEADERS_LIB = ROOT / "scripts" / "lib" / "kernel-headers.sh"
SCRATCH_DIRS = {"PAFTRACE_BIN_DIR": "sbin", "PAFTRACE_MAN_DIR": "man/man8",
                "PAFTRACE_COMPLETION_DIR": "completions"}


# --- Header selection (scripts/lib/kernel-headers.sh), no root ------------------------------

def fake_src(tmp: Path, *trees: str) -> Path:
    src = tmp / "usr-src"
    for name in trees:
        (src / name).mkdir(parents=True)
        (src / name / "Makefile").write_text("# fake\n")
    src.mkdir(exist_ok=True)
    return src


def nearest(src: Path, arch: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", f'. "{HEADERS_LIB}"; nearest_headers "$1" "$2"', "_",
                           str(src), arch], capture_output=True, text=True, timeout=30)


def picked(src: Path, arch: str) -> tuple[str, str]:
    proc = nearest(src, arch)
    assert proc.returncode == 0, proc.stderr
    hdr, common = proc.stdout.split("\n")[:2]
    return Path(hdr).name, Path(common).name if common else ""


def test_debian_flavour_and_common(tmp_path: Path) -> None:
    src = fake_src(tmp_path, "linux-headers-6.1.0-28-amd64", "linux-headers-6.1.0-28-common",
                   "linux-headers-6.1.0-28-cloud-amd64", "linux-headers-6.1.0-28-rt-amd64",
                   "linux-headers-6.1.0-28-common-rt")
    assert picked(src, "amd64") == ("linux-headers-6.1.0-28-amd64",
                                    "linux-headers-6.1.0-28-common")


def test_ubuntu_generic_with_and_without_its_base_dir(tmp_path: Path) -> None:
    src = fake_src(tmp_path, "linux-headers-6.8.0-45-generic")
    assert picked(src, "amd64") == ("linux-headers-6.8.0-45-generic", "")
    fake_src(tmp_path, "linux-headers-6.8.0-45")
    assert picked(src, "amd64") == ("linux-headers-6.8.0-45-generic", "linux-headers-6.8.0-45")


def test_newest_version_wins_by_version_order(tmp_path: Path) -> None:
    src = fake_src(tmp_path, "linux-headers-6.1.0-9-amd64", "linux-headers-6.1.0-28-amd64",
                   "linux-headers-6.1.0-28-common", "linux-headers-5.10.0-33-amd64")
    assert picked(src, "amd64")[0] == "linux-headers-6.1.0-28-amd64"  # 28 > 9, not by text
    fake_src(tmp_path, "linux-headers-6.12.43+deb13-amd64", "linux-headers-6.12.43+deb13-common")
    assert picked(src, "amd64") == ("linux-headers-6.12.43+deb13-amd64",
                                    "linux-headers-6.12.43+deb13-common")


def test_arm64_naming_and_other_architectures_ignored(tmp_path: Path) -> None:
    src = fake_src(tmp_path, "linux-headers-6.12.43+deb13-arm64",
                   "linux-headers-6.12.43+deb13-common", "linux-headers-6.13.0-1-amd64")
    assert picked(src, "arm64") == ("linux-headers-6.12.43+deb13-arm64",
                                    "linux-headers-6.12.43+deb13-common")


def test_leftover_directory_without_makefile_is_not_a_tree(tmp_path: Path) -> None:
    src = fake_src(tmp_path, "linux-headers-6.1.0-28-amd64")
    (src / "linux-headers-6.1.0-30-amd64").mkdir()  # what a purged package can leave
    assert picked(src, "amd64")[0] == "linux-headers-6.1.0-28-amd64"


def test_no_headers_is_one_clear_line(tmp_path: Path) -> None:
    src = fake_src(tmp_path, "linux-headers-6.1.0-28-common", "linux-kbuild-6.1")
    proc = nearest(src, "amd64")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (f"no linux-headers-*-amd64 or linux-headers-*-generic tree under "
                           f"{src}\n")


# --- Running setup in a scratch tree --------------------------------------------------------

def scratch_env(tmp: Path, venv: Path | None = None, path_prefix: Path | None = None,
                **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAFTRACE_", "PYTHON"))}
    env.update({name: str(tmp / sub) for name, sub in SCRATCH_DIRS.items()})
    env.update(PAFTRACE_VENV=str(venv or tmp / "venv"),
               PAFTRACE_STATE=str(tmp / "state" / "setup.state"), TMPDIR=str(tmp))
    if path_prefix:
        env["PATH"] = f"{path_prefix}:{env['PATH']}"
    env.update(extra)
    return env


def run_setup(env: dict[str, str], *args: str, checkout: Path = ROOT,
              timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(checkout / "scripts" / "setup"), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def failure_line(proc: subprocess.CompletedProcess[str], step: str, command: str,
                 remedy: str) -> str:
    """The one line a failing step prints: setup: step 'NAME' failed: COMMAND: WHAT TO DO."""
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"setup: step '{step}' failed: {command}: "), lines[0]
    assert remedy in lines[0][len(f"setup: step '{step}' failed: {command}: "):], lines[0]
    return lines[0]


def logged_output(line: str) -> str:
    """The failing command's own output, from the log the line names."""
    match = re.search(r"\(output: (\S+)\)$", line)
    assert match, line
    return Path(match[1]).read_text()


def stubs(tmp: Path, **scripts: str) -> Path:
    """Commands that fail on purpose, first on PATH."""
    bin_dir = tmp / "stubs"
    bin_dir.mkdir(exist_ok=True)
    for name, body in scripts.items():
        stub = bin_dir / name.replace("_", "-")
        stub.write_text(f"#!/bin/sh\n{body}\n")
        stub.chmod(0o755)
    return bin_dir


def unreachable_index_env(tmp: Path, **extra: str) -> dict[str, str]:
    """No pip configuration (this machine's adds local wheel directories), an index no one
    serves: pip finds nothing anywhere else."""
    env = {k: v for k, v in scratch_env(tmp).items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL="http://127.0.0.1:9/simple",
               PIP_RETRIES="0", PIP_TIMEOUT="2", **extra)
    return env


def copy_checkout(dest: Path) -> Path:
    """This working tree as it is (not only what is committed)."""
    shutil.copytree(ROOT, dest, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache",
        ".hypothesis", ".vagrant"))
    return dest


def regular_file(tmp: Path) -> Path:
    blocker = tmp / "a-file"
    blocker.write_text("not a directory\n")
    return blocker


def test_not_root_is_one_line(tmp_path: Path) -> None:
    tmp_path.chmod(0o777)
    prefix = [] if not IS_ROOT else ["setpriv", "--reuid=65534", "--regid=65534",
                                     "--clear-groups"]
    proc = subprocess.run([*prefix, str(SETUP)], env=scratch_env(tmp_path), capture_output=True,
                          text=True, timeout=60)
    failure_line(proc, "root", "id -u", f"run setup as root: sudo {SETUP}")


@needs_root
def test_without_apt_get_is_one_line(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # this machine's commands, less apt-get
    bin_dir.mkdir()
    for directory in ("/usr/sbin", "/usr/bin"):
        for tool in Path(directory).iterdir():
            if tool.name != "apt-get" and not (bin_dir / tool.name).exists():
                (bin_dir / tool.name).symlink_to(tool)
    proc = run_setup(scratch_env(tmp_path, PATH=str(bin_dir)))
    failure_line(proc, "apt", "command -v apt-get", "needs apt-get")


@needs_root
@pytest.mark.parametrize("layout, command", [
    (None, "realpath -e {dir}"),
    ("wheels", "test -f {dir}/apt/Packages.gz"),
    ("apt/Packages.gz", "test -d {dir}/wheels"),
])
def test_offline_directory_incomplete_is_one_line(tmp_path: Path, layout: str | None,
                                                  command: str) -> None:
    offline = tmp_path / "offline"
    if layout:
        (offline / layout).parent.mkdir(parents=True, exist_ok=True)
        (offline / layout).mkdir() if layout == "wheels" else (offline / layout).write_bytes(b"")
    proc = run_setup(scratch_env(tmp_path), "--offline", str(offline))
    failure_line(proc, "offline", command.format(dir=offline),
                 "DIR must hold apt/ (*.deb + Packages.gz")
    assert not Path("/etc/apt/sources.list.d/paftrace-offline.list").exists()


NOTHING_INSTALLED = "exit 1"  # dpkg-query: every package missing, so apt-get is asked


@needs_root
def test_apt_update_failing_is_one_line(tmp_path: Path) -> None:
    path = stubs(tmp_path, dpkg_query=NOTHING_INSTALLED, apt_get=(
        'echo "E: Failed to fetch http://mirror.invalid/debian/dists/bookworm/InRelease" >&2; '
        "exit 100"))
    line = failure_line(run_setup(scratch_env(tmp_path, path_prefix=path)), "packages",
                        "apt-get update -q", "check the apt sources and the network")
    assert "E: Failed to fetch" in logged_output(line)


@needs_root
def test_apt_install_failing_is_one_line(tmp_path: Path) -> None:
    path = stubs(tmp_path, dpkg_query=NOTHING_INSTALLED, apt_get=(
        'case "$*" in *update*) exit 0;; esac; '
        'echo "E: Unable to locate package python3-bpfcc" >&2; exit 100'))
    packages = "python3 python3-venv python3-bpfcc bpfcc-tools kmod"
    line = failure_line(run_setup(scratch_env(tmp_path, path_prefix=path)), "packages",
                        f"apt-get install -y -q --no-install-recommends {packages}",
                        f"install them by hand (apt-get install {packages}) to see why")
    assert "Unable to locate package python3-bpfcc" in logged_output(line)


def dpkg_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()


@needs_root
def test_no_header_tree_is_one_line(tmp_path: Path) -> None:
    src = fake_src(tmp_path)
    arch, release = dpkg_arch(), platform.release()
    path = stubs(tmp_path, apt_get="exit 0")  # the headers metapackage "installs" nothing
    env = scratch_env(tmp_path, path_prefix=path, PAFTRACE_MODULES_DIR=str(tmp_path / "modules"),
                      PAFTRACE_SRC_DIR=str(src))
    line = failure_line(run_setup(env), "kernel headers", f"nearest_headers {src} {arch}",
                        f"no header tree for {arch} under {src} after installing "
                        f"linux-headers-{arch}; install linux-headers-{release}")
    assert "no linux-headers-*-" in logged_output(line)
    assert not (tmp_path / "modules" / release / "build").exists()


@needs_root
def test_build_directory_not_a_link_is_kept_and_one_line(tmp_path: Path) -> None:
    arch, release = dpkg_arch(), platform.release()
    src = fake_src(tmp_path, f"linux-headers-6.1.0-28-{arch}")
    build = tmp_path / "modules" / release / "build"
    build.mkdir(parents=True)  # a real directory, without include/: not setup's to replace
    path = stubs(tmp_path, apt_get="exit 0")
    env = scratch_env(tmp_path, path_prefix=path, PAFTRACE_MODULES_DIR=str(tmp_path / "modules"),
                      PAFTRACE_SRC_DIR=str(src))
    failure_line(run_setup(env), "kernel headers",
                 f"ln -s {src}/linux-headers-6.1.0-28-{arch} {build}",
                 f"{build} exists and is not a link: move it away and retry")
    assert build.is_dir() and not build.is_symlink()


@needs_root
def test_tracefs_not_mountable_is_one_line(tmp_path: Path) -> None:
    target = regular_file(tmp_path)
    proc = run_setup(scratch_env(tmp_path, PAFTRACE_TRACEFS=str(target)))
    failure_line(proc, "tracefs", f"mount -t tracefs nodev {target}",
                 f"mount it by hand (mount -t tracefs nodev {target})")


@needs_root
def test_venv_not_creatable_is_one_line(tmp_path: Path) -> None:
    venv = regular_file(tmp_path) / "venv"
    failure_line(run_setup(scratch_env(tmp_path, venv=venv)), "venv",
                 f"mkdir -p {venv.parent}", f"remove {venv} if it is broken")


@needs_root
def test_package_index_unreachable_is_one_line(tmp_path: Path) -> None:
    env = unreachable_index_env(tmp_path)
    line = failure_line(run_setup(env), "paftrace package",
                        f"{tmp_path}/venv/bin/python -m pip install -q "
                        f"--disable-pip-version-check {ROOT}",
                        "check the Python package index")
    assert "127.0.0.1" in logged_output(line)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], str]:
    """One real setup (plain: a non-editable install) from a copy of this checkout."""
    if not IS_ROOT:
        pytest.skip("needs root; CI runs as root")
    tmp = tmp_path_factory.mktemp("installed")
    checkout = copy_checkout(tmp / "checkout")
    env = scratch_env(tmp)
    proc = run_setup(env, checkout=checkout)
    assert proc.returncode == 0, proc.stderr
    return checkout, env, proc.stdout


@needs_root
def test_setup_says_what_it_installed_and_how_long(installed) -> None:
    _, env, out = installed
    venv, bin_dir = env["PAFTRACE_VENV"], env["PAFTRACE_BIN_DIR"]
    assert re.search(rf"^setup: ready in \d+ s: {bin_dir}/paftrace \(paftrace, version ", out,
                     re.M), out
    listed = [line.removeprefix("setup:   ") for line in out.splitlines()
              if line.startswith("setup:   ")]
    assert listed[0] == f"venv: {venv} (sees the distribution's bcc)"
    assert re.fullmatch(rf"paftrace, version \S+ in {venv} \(a copy; the checkout may move\)",
                        listed[1])
    assert listed[2:] == [f"command: {bin_dir}/paftrace -> {venv}/bin/paftrace",
                          f"man page: {env['PAFTRACE_MAN_DIR']}/paftrace.8",
                          f"bash completion: {env['PAFTRACE_COMPLETION_DIR']}/paftrace"]


@needs_root
def test_bash_completion_is_clicks_and_completes_subcommands(installed) -> None:
    _, env, _ = installed
    script = Path(env["PAFTRACE_COMPLETION_DIR"], "paftrace")
    assert "_PAFTRACE_COMPLETE=bash_complete" in script.read_text()
    # What bash asks when the user types `paftrace --ord<TAB>`.
    asked = {"_PAFTRACE_COMPLETE": "bash_complete", "COMP_WORDS": "paftrace --ord",
             "COMP_CWORD": "1"}
    proc = subprocess.run([f"{env['PAFTRACE_VENV']}/bin/paftrace"], capture_output=True,
                          text=True, timeout=60, env={**env, **asked})
    assert proc.stdout.splitlines() == ["plain,--order"]


@needs_root
def test_install_survives_moving_the_checkout(installed, tmp_path: Path) -> None:
    checkout, env, _ = installed
    moved = tmp_path / "moved"
    checkout.rename(moved)
    try:
        paftrace = f"{env['PAFTRACE_BIN_DIR']}/paftrace"
        plain_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
        version = subprocess.run([paftrace, "--version"], capture_output=True, text=True,
                                 timeout=60, cwd="/", env=plain_env)
        assert version.returncode == 0 and "paftrace, version" in version.stdout
        trace = subprocess.run([paftrace, "--order", "4", "--json", "--duration", "1"],
                               capture_output=True, text=True, timeout=120, cwd="/",
                               env=plain_env)
        assert trace.returncode == 0, trace.stderr
        assert '"type":"summary"' in trace.stdout
        where = subprocess.run([f"{env['PAFTRACE_VENV']}/bin/python", "-c",
                                "import paftrace; print(paftrace.__file__)"],
                               capture_output=True, text=True, cwd="/", env=plain_env)
        assert where.stdout.startswith(env["PAFTRACE_VENV"]), where.stdout
    finally:
        moved.rename(checkout)


def blocked_step(installed, tmp_path: Path,
                 variable: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """Setup with the installed venv, and one destination that cannot be created."""
    checkout, env, _ = installed
    blocked = str(regular_file(tmp_path) / "dir")
    return run_setup({**env, "PAFTRACE_STATE": str(tmp_path / "setup.state"),
                      variable: blocked}, checkout=checkout), blocked


@needs_root
def test_man_page_not_installable_is_one_line(installed, tmp_path: Path) -> None:
    proc, blocked = blocked_step(installed, tmp_path, "PAFTRACE_MAN_DIR")
    failure_line(proc, "man page", f"mkdir -p {blocked}", f"check that {blocked} is writable")


@needs_root
def test_completion_not_installable_is_one_line(installed, tmp_path: Path) -> None:
    proc, blocked = blocked_step(installed, tmp_path, "PAFTRACE_COMPLETION_DIR")
    failure_line(proc, "bash completion", f"mkdir -p {blocked}",
                 f"check that {blocked} is writable")


@needs_root
def test_command_not_ours_is_kept_and_one_line(installed, tmp_path: Path) -> None:
    checkout, env, _ = installed
    bin_dir = tmp_path / "sbin"
    bin_dir.mkdir()
    (bin_dir / "paftrace").write_text("#!/bin/sh\necho someone else's\n")
    proc = run_setup({**env, "PAFTRACE_BIN_DIR": str(bin_dir)}, checkout=checkout)
    failure_line(proc, "command", f"ln -s {env['PAFTRACE_VENV']}/bin/paftrace {bin_dir}/paftrace",
                 f"{bin_dir}/paftrace exists and was not made by setup: move it away")
    assert (bin_dir / "paftrace").read_text() == "#!/bin/sh\necho someone else's\n"


@needs_root
def test_venv_without_distro_bcc_is_one_line(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)],
                   check=True, timeout=120)  # no --system-site-packages: no bcc
    failure_line(run_setup(scratch_env(tmp_path, venv=venv)), "bcc",
                 f"{venv}/bin/python -c import bcc; bcc.BPF",
                 "the venv cannot import the distribution's bcc")


@needs_root
def test_new_kernel_gets_its_headers_and_uninstall_removes_only_setups(installed,
                                                                       tmp_path: Path) -> None:
    checkout, env, _ = installed
    arch = dpkg_arch()
    src = fake_src(tmp_path, f"linux-headers-6.1.0-28-{arch}", "linux-headers-6.1.0-28-common")
    modules = tmp_path / "modules"
    someone_elses = modules / "6.0.0-other" / "build"  # made by hand: never removed
    someone_elses.parent.mkdir(parents=True)
    someone_elses.symlink_to(src / f"linux-headers-6.1.0-28-{arch}")
    kernel = tmp_path / "kernel-release"
    # `uname -r` answers what kernel-release says: a kernel upgrade between two runs.
    uname = stubs(tmp_path, uname=f'[ "$1" = -r ] && exec cat {kernel}; exec /usr/bin/uname "$@"')
    env = scratch_env(tmp_path, venv=Path(env["PAFTRACE_VENV"]), path_prefix=uname,
                      PAFTRACE_MODULES_DIR=str(modules), PAFTRACE_SRC_DIR=str(src))
    (tmp_path / "completions").mkdir()
    (tmp_path / "completions" / "other-tool").write_text("complete -F _other other-tool\n")

    kernel.write_text("6.17.1-paftrace-test\n")
    first = run_setup(env, checkout=checkout)
    assert first.returncode == 0, first.stderr
    old = modules / "6.17.1-paftrace-test"
    assert os.readlink(old / "build") == f"{src}/linux-headers-6.1.0-28-{arch}"
    assert os.readlink(old / "source") == f"{src}/linux-headers-6.1.0-28-common"
    assert "no linux-headers-6.17.1-paftrace-test package; linked" in first.stdout

    fake_src(tmp_path, f"linux-headers-6.12.43+deb13-{arch}")  # upgraded headers, one dir
    kernel.write_text("6.18.2-paftrace-test\n")
    second = run_setup(env, checkout=checkout)
    assert second.returncode == 0, second.stderr
    new = modules / "6.18.2-paftrace-test"
    assert os.readlink(new / "build") == f"{src}/linux-headers-6.12.43+deb13-{arch}"
    assert not (new / "source").exists()
    assert (old / "build").is_symlink(), "the old kernel's links stay"
    state = Path(env["PAFTRACE_STATE"]).read_text().splitlines()
    assert f"link {new}/build {src}/linux-headers-6.12.43+deb13-{arch}" in state
    assert f"dir {old}" in state and f"dir {new}" in state
    assert len(state) == len(set(state)), "each item recorded once"

    gone = run_setup(env, "--uninstall", checkout=checkout)
    assert gone.returncode == 0, gone.stderr
    assert not old.exists() and not new.exists()
    # The venv was there before this state file: not this setup's to remove.
    assert Path(env["PAFTRACE_VENV"], "bin", "paftrace").exists()
    assert not Path(env["PAFTRACE_BIN_DIR"], "paftrace").is_symlink()
    assert not Path(env["PAFTRACE_MAN_DIR"], "paftrace.8").exists()
    assert not Path(env["PAFTRACE_COMPLETION_DIR"], "paftrace").exists()
    assert not Path(env["PAFTRACE_STATE"]).exists()
    assert someone_elses.is_symlink() and (tmp_path / "completions" / "other-tool").exists()
    assert (src / f"linux-headers-6.1.0-28-{arch}" / "Makefile").exists()


@needs_root
def test_offline_installs_from_the_wheels_directory_only(tmp_path: Path) -> None:
    offline = tmp_path / "offline"
    (offline / "apt").mkdir(parents=True)
    (offline / "apt" / "Packages.gz").write_bytes(gzip.compress(b""))  # nothing is missing here
    # The project's own dependencies (pyproject.toml) and what building it needs.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = [*project["project"]["dependencies"], *project["build-system"]["requires"], "wheel"]
    wheels = subprocess.run(["/opt/paftrace/venv/bin/python", "-m", "pip", "wheel", "-q", "-w",
                             str(offline / "wheels"), *needed],
                            capture_output=True, text=True, timeout=600)
    assert wheels.returncode == 0, wheels.stderr
    env = unreachable_index_env(tmp_path, PAFTRACE_OFFLINE=str(offline))  # only DIR/wheels
    proc = run_setup(env)
    assert proc.returncode == 0, proc.stderr
    assert f"setup: offline: packages from {offline}/apt and {offline}/wheels only" in proc.stdout
    assert not Path("/etc/apt/sources.list.d/paftrace-offline.list").exists()
    version = subprocess.run([f"{tmp_path}/sbin/paftrace", "--version"], capture_output=True,
                             text=True, timeout=60, cwd="/")
    assert version.returncode == 0 and "paftrace, version" in version.stdout
