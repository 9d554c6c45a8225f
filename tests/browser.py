"""Open an HTML file in Debian's headless Chromium, offline, and see what a user sees.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
NUL-terminated JSON on fds 3 and 4), so no websocket library and no port are needed.
Every console message, uncaught exception, log entry (CSP violations, failed loads)
and network request is collected; the network is also switched off for the page.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync",
         "--disable-default-apps", "--mute-audio", "--remote-debugging-pipe"]


class BrowserError(RuntimeError):
    pass


@dataclass
class PageResult:
    console: list[dict] = field(default_factory=list)     # {"type", "text"}
    exceptions: list[str] = field(default_factory=list)
    log_entries: list[dict] = field(default_factory=list)  # {"level", "source", "text"}
    requests: list[str] = field(default_factory=list)      # every URL the page asked for
    values: dict[str, object] = field(default_factory=dict)
    screenshot: Path | None = None

    @property
    def errors(self) -> list[str]:
        return ([f"console.{c['type']}: {c['text']}" for c in self.console
                 if c["type"] in ("error", "assert", "warning")] + self.exceptions +
                [f"log {e['source']}/{e['level']}: {e['text']}" for e in self.log_entries
                 if e["level"] in ("error", "warning")])


class Cdp:
    def __init__(self, proc: subprocess.Popen, to_browser: int, from_browser: int):
        self.proc, self.wfd, self.rfd = proc, to_browser, from_browser
        self.next_id = 0
        self.buffer = b""
        self.events: list[dict] = []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("chromium did not answer in time")
            ready, _, _ = select.select([self.rfd], [], [], left)
            if ready:
                chunk = os.read(self.rfd, 1 << 20)
                if not chunk:
                    raise BrowserError(f"chromium closed the pipe (exit {self.proc.poll()})")
                self.buffer += chunk
        raw, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict:
        self.next_id += 1
        msg: dict = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.wfd, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def pump(self, seconds: float) -> None:
        """Collect events for a while."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read_message(deadline))
        except BrowserError:
            if self.proc.poll() is not None:
                raise


def _collect(events: list[dict], result: PageResult) -> None:
    for ev in events:
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
            result.console.append({"type": p["type"], "text": text})
        elif method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            result.exceptions.append(d.get("exception", {}).get("description") or d["text"])
        elif method == "Log.entryAdded":
            e = p["entry"]
            result.log_entries.append({"level": e["level"], "source": e["source"],
                                       "text": e["text"]})
        elif method == "Network.requestWillBeSent":
            result.requests.append(p["request"]["url"])


def _element_shot(cdp: Cdp, session: str, selector: str, path: Path) -> None:
    box = cdp.call("Runtime.evaluate", {"expression": (
        f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
        ".getBoundingClientRect(); return [r.x + scrollX, r.y + scrollY, r.width, r.height]; })()"),
        "returnByValue": True}, session=session)["result"]["value"]
    shot = cdp.call("Page.captureScreenshot", {"format": "png", "clip": {
        "x": box[0], "y": box[1], "width": box[2], "height": box[3], "scale": 1}},
        session=session)
    path.write_bytes(base64.b64decode(shot["data"]))


def _high(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


def open_page(path: Path, wait_for: str, screenshot: Path | None = None, width: int = 1280,
              timeout: float = 90.0, values: dict[str, str] | None = None,
              crops: dict[str, str] | None = None) -> PageResult:
    """Load `path` offline; wait until the JS expression `wait_for` is truthy; evaluate
    `values` (name -> expression); take a full-page screenshot, and one of each element of
    `crops` (name -> CSS selector) beside it, as SCREENSHOT-name.png, readable at 1:1."""
    if not Path(CHROMIUM).exists():
        raise BrowserError(f"{CHROMIUM} not found: apt-get install chromium "
                           "(scripts/setup --dev installs it)")
    # Above 4, so putting them on fds 3 and 4 never closes one of them.
    to_r, to_w, from_r, from_w = (_high(fd) for fd in (*os.pipe(), *os.pipe()))
    profile = tempfile.mkdtemp(prefix="paftrace-chromium-")
    # bash puts our pipe ends on fds 3 and 4, where --remote-debugging-pipe expects them.
    cmd = ["bash", "-c", f'exec "$0" "$@" 3<&{to_r} 4>&{from_w} {to_r}<&- {from_w}>&-',
           CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},900",
           "about:blank"]
    proc = subprocess.Popen(cmd, pass_fds=(to_r, from_w), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    os.close(to_r)
    os.close(from_w)
    cdp = Cdp(proc, to_w, from_r)
    result = PageResult()
    try:
        targets = cdp.call("Target.getTargets", timeout=timeout)["targetInfos"]
        page = next(t["targetId"] for t in targets if t["type"] == "page")
        session = cdp.call("Target.attachToTarget", {"targetId": page, "flatten": True})[
            "sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            cdp.call(f"{domain}.enable", session=session)
        cdp.call("Network.emulateNetworkConditions", {
            "offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
            session=session)
        cdp.call("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
        deadline = time.monotonic() + timeout
        while True:
            done = cdp.call("Runtime.evaluate", {"expression": f"!!({wait_for})",
                                                 "returnByValue": True}, session=session)
            if done.get("result", {}).get("value"):
                break
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {wait_for}")
            cdp.pump(0.25)
        for name, expr in (values or {}).items():
            out = cdp.call("Runtime.evaluate", {"expression": expr, "returnByValue": True},
                           session=session)
            result.values[name] = out.get("result", {}).get("value")
        if screenshot is not None:
            height = cdp.call("Runtime.evaluate", {
                "expression": "document.documentElement.scrollHeight", "returnByValue": True},
                session=session)["result"]["value"]
            cdp.call("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": int(height), "deviceScaleFactor": 1,
                "mobile": False}, session=session)
            cdp.pump(1.0)  # responsive plots re-layout to the new viewport
            shot = cdp.call("Page.captureScreenshot", {"format": "png"}, session=session)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            result.screenshot = screenshot
        for name, selector in (crops or {}).items():
            _element_shot(cdp, session, selector, screenshot.with_name(
                f"{screenshot.stem}-{name}.png") if screenshot else Path(f"{name}.png"))
        cdp.pump(0.5)  # late console messages
        _collect(cdp.events, result)
        with contextlib.suppress(BrowserError):
            cdp.call("Browser.close", timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        os.close(to_w)
        os.close(from_r)
        shutil.rmtree(profile, ignore_errors=True)
    return result
