"""Headless Chromium driven over the DevTools protocol (CDP), with aiohttp's websocket client.

One browser process per `Browser`, a fresh profile in a temp dir, loopback only
(background networking, sync, component updates and QUIC off). Each `Page` is a
target with its own viewport and colour scheme. Only what the page tests and
the paint benchmark need: navigate, evaluate, wait (bounded), screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


def chromium_path() -> str | None:
    """The browser binary itself (Debian's /usr/bin/chromium is a shell wrapper adding flags)."""
    direct = Path("/usr/lib/chromium/chromium")
    if direct.exists():
        return str(direct)
    return shutil.which("chromium") or shutil.which("chromium-browser")


class CdpError(RuntimeError):
    pass


class Browser:
    def __init__(self, start_timeout: float = 20.0) -> None:
        self.start_timeout = start_timeout
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: list[Callable[[dict[str, Any]], None]] = []

    async def __aenter__(self) -> Browser:
        binary = chromium_path()
        if binary is None:
            raise FileNotFoundError("chromium is not installed")
        self._profile = tempfile.mkdtemp(prefix="healthd-chromium-")
        self._proc = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its helpers share our process group id, ended with it below
        )
        try:
            url = await self._devtools_url()
            self._http = aiohttp.ClientSession()
            self._ws = await self._http.ws_connect(url, max_msg_size=64 * 1024 * 1024)
        except BaseException:
            self._stop_process()
            raise
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._ws.close()
        await self._http.close()
        self._stop_process()

    def _stop_process(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, 15)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, 9)
            self._proc.wait(timeout=10)
        shutil.rmtree(self._profile, ignore_errors=True)

    async def _devtools_url(self) -> str:
        # Chromium writes the port it picked, then the browser target's path, to this file
        marker = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise CdpError(f"chromium exited with {self._proc.returncode}")
            lines = marker.read_text().split() if marker.exists() else []
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            await asyncio.sleep(0.05)
        raise CdpError(f"chromium did not open its DevTools port in {self.start_timeout} s")

    async def _read(self) -> None:
        async for message in self._ws:
            payload = json.loads(message.data)
            future = self._waiting.pop(payload.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(payload)
            elif "method" in payload:
                for listener in list(self._listeners):
                    listener(payload)

    async def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 30,
    ) -> dict[str, Any]:
        message_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[message_id] = future
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        await self._ws.send_str(json.dumps(message))
        answer = await asyncio.wait_for(future, timeout)
        if "error" in answer:
            raise CdpError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    async def page(self, width: int = 1440, height: int = 900, dark: bool = False) -> Page:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self, attached["sessionId"])
        self._listeners.append(page.on_event)
        for domain in ("Page", "Runtime", "Log"):
            await page.send(f"{domain}.enable")
        await page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
        )
        scheme = "dark" if dark else "light"
        await page.send(
            "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}
        )
        return page


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser, self.session = browser, session
        self.errors: list[str] = []  # uncaught exceptions and console/CSP errors
        self._loaded = asyncio.Event()
        self._tasks: set[asyncio.Future[dict[str, Any]]] = set()

    def on_event(self, payload: dict[str, Any]) -> None:
        if payload.get("sessionId") != self.session:
            return
        method, params = payload["method"], payload.get("params", {})
        if method == "Page.loadEventFired":
            self._loaded.set()
        elif method == "Runtime.exceptionThrown":
            self.errors.append(json.dumps(params.get("exceptionDetails", {}))[:500])
        elif method == "Page.javascriptDialogOpening":  # alert(): what an XSS would do first
            self.errors.append(f"dialog: {params.get('message')}")
            task = asyncio.ensure_future(self.send("Page.handleJavaScriptDialog", {"accept": True}))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            self.errors.append(params["entry"].get("text", ""))

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.browser.send(method, params, self.session)

    async def goto(self, url: str, timeout: float = 20) -> None:
        self._loaded.clear()
        await self.send("Page.navigate", {"url": url})
        await asyncio.wait_for(self._loaded.wait(), timeout)

    async def eval(self, expression: str) -> Any:
        answer = await self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in answer:
            raise CdpError(f"{expression!r}: {answer['exceptionDetails'].get('text')}")
        return answer.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 5.0) -> float:
        """Poll a JS expression until truthy (bounded); returns the seconds it took."""
        start = time.monotonic()
        while True:
            if await self.eval(expression):
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise AssertionError(f"not true within {timeout} s: {expression}")
            await asyncio.sleep(0.05)

    async def screenshot(self, path: Path, full_page: bool = True) -> None:
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": full_page}
        if full_page:
            size = await self.send("Page.getLayoutMetrics")
            content = size["cssContentSize"]
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": content["width"],
                "height": min(content["height"], 4000),
                "scale": 1,
            }
        shot = await self.send("Page.captureScreenshot", params)
        path.write_bytes(base64.b64decode(shot["data"]))

    async def close(self) -> None:
        target = await self.send("Target.getTargetInfo")
        await self.browser.send("Target.closeTarget", {"targetId": target["targetInfo"]["targetId"]})
