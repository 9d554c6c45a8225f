"""The Vagrantfile: valid for vagrant itself, and provisioned by the host's own setup script.

`vagrant` and `vagrant-libvirt` come from `scripts/setup --dev` (the README's test path),
so these run in CI. Booting it for real (offline, under QEMU) is scripts/vagrant-check.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def validate(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # A private VAGRANT_HOME: validating leaves nothing in the user's ~/.vagrant.d.
    return subprocess.run(["vagrant", "validate"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                            "HOME": str(tmp_path),
                                            "VAGRANT_HOME": str(tmp_path / "vagrant.d"), **env})


def test_vagrantfile_validates(tmp_path: Path) -> None:
    proc = validate(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Vagrantfile validated successfully" in proc.stdout


def test_memory_and_driver_come_from_the_environment(tmp_path: Path) -> None:
    assert validate(tmp_path, PAFTRACE_VM_MEMORY="2048", PAFTRACE_VM_CPUS="1",
                    PAFTRACE_LIBVIRT_DRIVER="qemu").returncode == 0
    too_small = validate(tmp_path, PAFTRACE_VM_MEMORY="256")
    assert too_small.returncode != 0
    assert "PAFTRACE_VM_MEMORY must be at least 512" in too_small.stdout + too_small.stderr


def test_provisioning_is_the_hosts_setup_script() -> None:
    """One path: the VM runs the same scripts/setup as the README, from the synced checkout
    (offline: the same script, given the directory the host downloaded into)."""
    text = (ROOT / "Vagrantfile").read_text()
    assert re.search(r'synced_folder "\.", "/vagrant"', text)
    provisions = re.findall(r'vm\.provision\s+"[^"]+",\s*type:\s*"shell",\s*inline:\s*(\w+)',
                            text)
    assert provisions == ["setup"]
    assert re.findall(r'^\s*setup\s*\+?=\s*"([^"]+)"', text, re.M) == [
        "/vagrant/scripts/setup", " --offline /var/cache/paftrace-offline"]
    assert re.search(r'synced_folder offline, "/var/cache/paftrace-offline"', text)
    assert "./scripts/setup" in (ROOT / "README.md").read_text()
    assert (ROOT / "scripts" / "setup").stat().st_mode & 0o111


def test_offline_provisioning_and_pool_validate(tmp_path: Path) -> None:
    offline = tmp_path / "offline"
    (offline / "apt").mkdir(parents=True)
    (offline / "wheels").mkdir()
    proc = validate(tmp_path, PAFTRACE_SETUP_OFFLINE=str(offline),
                    PAFTRACE_LIBVIRT_POOL="paftrace-vagrant", PAFTRACE_LIBVIRT_DRIVER="qemu")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def provision_key(checkout: Path, cache: Path) -> str:
    """scripts/vagrant/host.sh's provision_key: the key a saved provisioned disk is kept by."""
    proc = subprocess.run(
        ["bash", "-c", f'HERE="{ROOT}"; . "$HERE/scripts/vagrant/host.sh"; provision_key "$1" "$2"',
         "key", str(checkout), str(cache)], capture_output=True, text=True, timeout=30, check=True)
    return proc.stdout.strip()


def test_the_provisioned_box_is_dropped_when_an_input_of_provisioning_changes(
        tmp_path: Path) -> None:
    """The cached run boots a disk an earlier run provisioned: only while setup, what it
    sources, the Vagrantfile, the plain box and the offline bundle are all unchanged."""
    checkout, cache = tmp_path / "checkout", tmp_path / "cache"
    (checkout / "scripts" / "lib").mkdir(parents=True)
    (cache / "offline" / "apt").mkdir(parents=True)
    (cache / "offline" / "wheels").mkdir()
    inputs = {checkout / "scripts" / "setup": "#!/bin/bash\n",
              checkout / "scripts" / "lib" / "apt.sh": "apt_install() { :; }\n",
              checkout / "Vagrantfile": "Vagrant.configure('2') {}\n",
              cache / "box.json": '{"name": "paftrace/debian12-6.1", "version": "1"}\n',
              cache / "offline" / "apt" / "python3.deb": "deb"}
    for path, text in inputs.items():
        path.write_text(text)
    (checkout / "README.md").write_text("docs\n")
    key = provision_key(checkout, cache)
    assert re.fullmatch(r"[0-9a-f]{64}", key) and provision_key(checkout, cache) == key
    (checkout / "README.md").write_text("other docs\n")   # not an input: same key
    assert provision_key(checkout, cache) == key
    seen = {key}
    for path in inputs:
        path.write_text(path.read_text() + "# changed\n")
        changed = provision_key(checkout, cache)
        assert changed not in seen, path
        seen.add(changed)
    (cache / "offline" / "wheels" / "click-8.1.7-py3-none-any.whl").write_text("whl")
    assert provision_key(checkout, cache) not in seen
