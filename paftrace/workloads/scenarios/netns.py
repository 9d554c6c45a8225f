"""Two network namespaces of our own joined by a veth pair, and removed again.

Traffic between them never leaves the machine: each namespace has only its end
of the pair and its own loopback. Namespaces are named paftrace-rx-<pid>-tx/-rx,
so `remove_stale()` can find those whose creator died (SIGKILL) and remove them.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import socket
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from paftrace.workloads.scenarios.common import ScenarioError

PREFIX = "paftrace-rx-"
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
SIOCETHTOOL = 0x8946
ETHTOOL_SSG = 0x19  # set scatter-gather (include/uapi/linux/ethtool.h)
DEVICE = "veth0"
# Link-local /30, inside our namespaces only: never routed, no other host has it.
SENDER_ADDR, RECEIVER_ADDR = "169.254.77.1", "169.254.77.2"


def ip(*args: str) -> str:
    """Run `ip ARGS`; a failure is one line saying what `ip` said."""
    try:
        proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    except FileNotFoundError as exc:
        raise ScenarioError("`ip` not found: install iproute2 (scripts/setup does)") from exc
    if proc.returncode:
        raise ScenarioError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


@contextlib.contextmanager
def entered(namespace: str) -> Iterator[None]:
    """Run the block in `namespace` (this thread only); sockets made inside stay there."""
    libc = ctypes.CDLL(None, use_errno=True)

    def setns(fd: int) -> None:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise ScenarioError(f"setns {namespace}: {os.strerror(ctypes.get_errno())}")

    with open("/proc/self/ns/net") as home, open(NETNS_DIR / namespace) as target:
        setns(target.fileno())
        try:
            yield
        finally:
            setns(home.fileno())


def set_scatter_gather(device: str, enabled: bool) -> None:
    """ethtool -K DEVICE sg on|off, through the SIOCETHTOOL ioctl (no ethtool binary)."""
    value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_SSG, int(enabled)))
    ifreq = bytearray(struct.pack("16sP", device.encode(), ctypes.addressof(value)).ljust(40,
                                                                                       b"\0"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)


@dataclass
class VethPair:
    """sender namespace (SENDER_ADDR) <-> veth <-> receiver namespace (RECEIVER_ADDR)."""

    mtu: int
    tag: str = str(os.getpid())

    @property
    def sender(self) -> str:
        return f"{PREFIX}{self.tag}-tx"

    @property
    def receiver(self) -> str:
        return f"{PREFIX}{self.tag}-rx"

    def create(self) -> None:
        for ns in (self.sender, self.receiver):
            ip("netns", "add", ns)
        ip("link", "add", DEVICE, "netns", self.sender, "type", "veth",
           "peer", "name", DEVICE, "netns", self.receiver)
        for ns, addr in ((self.sender, SENDER_ADDR), (self.receiver, RECEIVER_ADDR)):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", DEVICE, "mtu", str(self.mtu), "up")
            ip("-n", ns, "addr", "add", f"{addr}/30", "dev", DEVICE)

    def remove(self) -> None:
        """Delete both namespaces (the veth pair goes with them); never raises."""
        for ns in (self.sender, self.receiver):
            if (NETNS_DIR / ns).exists():
                with contextlib.suppress(ScenarioError):
                    ip("netns", "del", ns)

    def __enter__(self) -> VethPair:
        try:
            self.create()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def remove_stale() -> list[str]:
    """Remove our namespaces whose creating process is gone; returns their names."""
    removed = []
    for path in sorted(NETNS_DIR.glob(f"{PREFIX}*")):
        pid = path.name[len(PREFIX):].split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            ip("netns", "del", path.name)
            removed.append(path.name)
    return removed
