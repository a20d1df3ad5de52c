"""A real headless Chromium for tests: load a local page, collect console errors and network requests, read the DOM,
take a screenshot. Driven over the DevTools protocol (a websocket on 127.0.0.1), so no test framework's own browser
download is needed: Debian's ``chromium`` is enough.

Every wait is bounded (``TIMEOUT_S``). The browser runs with no network of its own (background networking off)
and a fresh temporary profile, and is killed on exit whatever happened.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from websockets.sync.client import ClientConnection, connect

TIMEOUT_S = 30.0
VIEWPORT = (1200, 900)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-extensions",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


def find_chromium() -> str | None:
    """The Debian ``chromium`` binary (or a ``chromium-browser`` / ``google-chrome`` one), if installed."""
    return next(
        (path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None
    )


class BrowserError(RuntimeError):
    """The browser did not start, answer or load the page in time."""


@dataclass
class PageLoad:
    """What loading one page produced."""

    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)


class Chromium:
    """``with Chromium(path) as browser: load = browser.load(file)``; then :meth:`evaluate` and :meth:`screenshot`."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self._profile = Path(tempfile.mkdtemp(prefix="critic-guard-chromium-"))
        self._log = (self._profile / "chromium.log").open("wb")
        self._process: subprocess.Popen[bytes] | None = None
        self._stack = ExitStack()
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> Self:
        width, height = VIEWPORT
        self._process = subprocess.Popen(
            [
                self.executable,
                *FLAGS,
                f"--user-data-dir={self._profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,  # its own process group: renderer and GPU helpers end with it
        )
        port = self._wait_for_port()
        url = self._page_websocket(port)
        self._ws = self._stack.enter_context(connect(url, max_size=None, open_timeout=TIMEOUT_S, proxy=None))
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()
        if self._process is not None:
            with suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=TIMEOUT_S)
        self._log.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def log(self) -> str:
        """The browser's own stderr so far (for failure messages)."""
        return (self._profile / "chromium.log").read_text(errors="replace")[-4000:]

    def _wait_for_port(self) -> int:
        """Chromium writes its DevTools port to ``DevToolsActivePort`` in the profile once it listens."""
        marker = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise BrowserError(f"chromium exited with {self._process.returncode}: {self.log()}")
            if marker.is_file() and (lines := marker.read_text().split()):
                return int(lines[0])
            time.sleep(0.05)
        raise BrowserError(f"chromium did not open its DevTools port within {TIMEOUT_S} s: {self.log()}")

    def _page_websocket(self, port: int) -> str:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
        with opener.open(f"http://127.0.0.1:{port}/json/list", timeout=TIMEOUT_S) as response:
            targets = json.load(response)
        pages = [t for t in targets if t.get("type") == "page"]
        if not pages:
            raise BrowserError(f"no page target among {targets}")
        return str(pages[0]["webSocketDebuggerUrl"])

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result; events that arrive meanwhile are kept."""
        assert self._ws is not None
        call_id = next(self._ids)
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            message = json.loads(self._ws.recv(timeout=max(0.0, deadline - time.monotonic())))
            if message.get("id") == call_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self._events.append(message)

    def _wait_for_event(self, method: str) -> None:
        assert self._ws is not None
        deadline = time.monotonic() + TIMEOUT_S
        while not any(e.get("method") == method for e in self._events):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError(f"no {method} within {TIMEOUT_S} s")
            self._events.append(json.loads(self._ws.recv(timeout=remaining)))

    def load(self, path: Path) -> PageLoad:
        """Navigate to a local file and wait for its load event; report console errors and network requests."""
        self._events.clear()
        self.call("Page.navigate", url=path.resolve().as_uri())
        self._wait_for_event("Page.loadEventFired")
        self.evaluate("new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")  # painted
        load = PageLoad()
        for event in self._events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                load.console_errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                load.console_errors.append(str(details.get("exception", {}).get("description", details.get("text"))))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                load.console_errors.append(f"{params['entry']['source']}: {params['entry']['text']}")
            elif method == "Network.requestWillBeSent":
                load.requests.append(params["request"]["url"])
            elif method == "Network.loadingFailed":
                load.failed_requests.append(f"{params.get('errorText')}")
        return load

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited); a thrown error is raised."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self) -> bytes:
        """A PNG of the first screen (the viewport), as a user opening the page sees it."""
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
