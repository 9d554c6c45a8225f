"""Test helpers of the exporter: its dependencies, a running exporter, a real Prometheus."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import IS_ROOT, paftrace_cmd

ROOT = Path(__file__).resolve().parents[1]
INSTALLER = ROOT / "scripts" / "install-exporter"


def install_test_deps() -> None:
    """The project's own installer, as CI would run it (root only)."""
    subprocess.run([str(INSTALLER), "--test-deps"], check=True, timeout=900)


def require_prometheus_client() -> None:
    """Import the client library; as root install it first if it is missing."""
    try:
        import prometheus_client  # noqa: F401, PLC0415
    except ImportError:
        if not IS_ROOT:
            pytest.skip("python3-prometheus-client is not installed (scripts/install-exporter "
                        "--test-deps, as root)", allow_module_level=True)
        install_test_deps()


def require_tool(name: str) -> str:
    """promtool, prometheus or systemd-analyze; installed by the project's script as root."""
    path = shutil.which(name)
    if path is None and IS_ROOT:
        install_test_deps()
        path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (scripts/install-exporter --test-deps, as root)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
        return resp.read().decode()


def wait_for(what: str, check: Callable[[], object], timeout: float,
             every: float = 0.25) -> object:
    """check()'s first truthy result; its exceptions count as 'not yet'."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (OSError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


@dataclass
class Exporter:
    proc: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def scrape(self) -> str:
        return http_get(self.url)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> tuple[int, float, str]:
        """(exit status, seconds from the signal to the exit, stderr)."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, time.monotonic() - t0, err


@contextlib.contextmanager
def running_exporter(*args: str, prefix: tuple[str, ...] = (), port: int | None = None,
                     timeout: float = 90.0) -> Iterator[Exporter]:
    """`paftrace exporter ARGS` on a free loopback port, ready (tracing) when yielded."""
    port = port or free_port()
    proc = subprocess.Popen([*prefix, *paftrace_cmd(), "exporter", "--listen",
                             f"127.0.0.1:{port}", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    exporter = Exporter(proc, port)
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"exporter exited {proc.returncode}: "
                                     f"{proc.stderr.read() if proc.stderr else ''}")
            return "paftrace_build_info{" in exporter.scrape()

        wait_for("the exporter to attach", ready, timeout)
        yield exporter
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


class Prometheus:
    """A real Prometheus server on loopback: own config, own temporary storage, 1 s scrapes."""

    def __init__(self, targets: list[str], rule_files: list[Path] = ()):  # type: ignore[assignment]
        self.binary = require_tool("prometheus")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="paftrace-prometheus-"))
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": "paftrace",
                                "static_configs": [{"targets": targets}]}],
        }
        # JSON is YAML: no YAML library needed to write the config.
        (self.dir / "prometheus.yml").write_text(json.dumps(config, indent=1))
        self.proc: subprocess.Popen[str] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def __enter__(self) -> Prometheus:
        self.log = open(self.dir / "prometheus.log", "w")  # noqa: SIM115 - closed in __exit__
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={self.dir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, text=True)
        wait_for("Prometheus to be ready",
                 lambda: self._alive() and "Ready" in http_get(
                     f"http://127.0.0.1:{self.port}/-/ready"), 60)
        return self

    def _alive(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError("prometheus exited: "
                                 + (self.dir / "prometheus.log").read_text()[-2000:])
        return True

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def query(self, promql: str, path: str = "query", **params: str) -> list[dict]:
        url = f"{self.api}/{path}?" + urllib.parse.urlencode({"query": promql, **params})
        body = json.loads(http_get(url))
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, promql: str) -> float | None:
        """A single-valued instant query; None when it has no result."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def target_health(self) -> str:
        body = json.loads(http_get(f"{self.api}/targets"))
        targets = body["data"]["activeTargets"]
        return targets[0]["health"] if targets else "none"


def parse_exposition(text: str) -> dict[str, dict[tuple, float]]:
    from paftrace.render.prometheus import parse_exposition as parse  # noqa: PLC0415

    return parse(text)


def provoke_as(comm: str, count: int, order: int = 4) -> dict:
    """scripts/provoke with the failing worker named `comm` (the exporter filters on it:
    other failures on this shared machine must not count)."""
    from paftrace.commands.selftest import provoke_subprocess  # noqa: PLC0415

    return provoke_subprocess(count, order, "--comm", comm)
