"""A real headless Chromium (Debian's ``chromium``) driven over the DevTools protocol, for page tests.

``async with Browser.launch(tmp) as page:`` starts Chromium with its own profile and a free debugging
port, attaches to its first tab and gives a :class:`Page` that can navigate, click, read the DOM
(also inside a sandboxed iframe) and take screenshots. Without ``chromium`` the test skips, except
under ``CI=true``, where it fails: CI installs it (``.ci/run``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

ARTIFACTS = Path(__file__).resolve().parents[1] / "var" / "test-artifacts"
_LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


def chromium() -> str:
    """The Chromium binary; skips the test when it is absent, fails it in CI."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (CI installs it: apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return found


def artifact(name: str) -> Path:
    """Where a test keeps a screenshot (var/test-artifacts/, gitignored); the path is printed."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    print(f"artifact: {path}")
    return path


class Page:
    """One tab over its DevTools websocket: commands by id, events handed to waiters."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._waiters: dict[str, list[asyncio.Future[Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = orjson.loads(msg.data)
            if "id" in data and (fut := self._pending.pop(data["id"], None)) is not None:
                if "error" in data:
                    fut.set_exception(RuntimeError(f"CDP error: {data['error']}"))
                else:
                    fut.set_result(data.get("result", {}))
            elif "method" in data:
                for fut in self._waiters.pop(data["method"], []):
                    if not fut.done():
                        fut.set_result(data.get("params", {}))

    async def send(self, method: str, **params: Any) -> Any:
        msg_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        await self.ws.send_str(orjson.dumps({"id": msg_id, "method": method, "params": params}).decode())
        return await asyncio.wait_for(fut, 20)

    def event(self, method: str) -> asyncio.Future[Any]:
        """A future for the next ``method`` event: create it before the action that causes it."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(method, []).append(fut)
        return fut

    async def goto(self, url: str) -> None:
        loaded = self.event("Page.loadEventFired")
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(loaded, 20)

    async def eval(self, expression: str, context_id: int | None = None) -> Any:
        params: dict[str, Any] = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        if context_id is not None:
            params["contextId"] = context_id
        result = await self.send("Runtime.evaluate", **params)
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float = 10.0) -> Any:
        """The value of ``expression`` once it is truthy (the page updates on its own)."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = await self.eval(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"never true in the page: {expression}")
            await asyncio.sleep(0.1)

    async def click(self, selector: str, *, navigates: bool = False) -> None:
        loaded = self.event("Page.loadEventFired") if navigates else None
        clicked = await self.eval(
            f"(() => {{ const e = document.querySelector({orjson.dumps(selector).decode()});"
            " if (!e) return false; e.click(); return true; })()"
        )
        assert clicked, f"nothing to click at {selector}"
        if loaded is not None:
            await asyncio.wait_for(loaded, 20)

    async def frame_eval(self, expression: str, index: int = 0) -> Any:
        """``expression`` inside the page's ``index``-th child frame (a sandboxed iframe too: the
        expression runs in an isolated world of that frame, which its sandbox does not restrict)."""
        tree = await self.send("Page.getFrameTree")
        frame = tree["frameTree"]["childFrames"][index]["frame"]
        world = await self.send("Page.createIsolatedWorld", frameId=frame["id"], worldName="test")
        return await self.eval(expression, world["executionContextId"])

    async def screenshot(self, path: Path) -> Path:
        shot = await self.send("Page.captureScreenshot", format="png")  # the viewport: frames paint
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))
        return path

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.ws.close()


class Browser:
    @staticmethod
    @contextlib.asynccontextmanager
    async def launch(profile: Path, width: int = 1100, height: int = 1400) -> AsyncIterator[Page]:
        proc = await asyncio.create_subprocess_exec(
            chromium(),
            "--headless=new",
            "--no-sandbox",  # tests run as root in CI containers
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-features=IsolateSandboxedIframes,site-per-process",  # frames stay inspectable
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        drain: asyncio.Task[None] | None = None
        try:
            ws_url = await asyncio.wait_for(_devtools_url(proc), 30)
            drain = asyncio.create_task(_drain(proc))  # a chatty Chromium never blocks on a full pipe
            port = int(ws_url.split(":")[2].split("/")[0])
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                    targets = await resp.json()
                tab = next(t for t in targets if t["type"] == "page")
                ws = await http.ws_connect(tab["webSocketDebuggerUrl"], max_msg_size=64 * 1024 * 1024)
                page = Page(ws)
                try:
                    await page.send("Page.enable")
                    await page.send("Runtime.enable")
                    yield page
                finally:
                    await page.close()
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            if drain is not None:
                drain.cancel()


async def _devtools_url(proc: asyncio.subprocess.Process) -> str:
    """Chromium prints its DevTools websocket URL on stderr once it listens."""
    assert proc.stderr is not None
    seen: list[str] = []
    while line := (await proc.stderr.readline()).decode(errors="replace"):
        seen.append(line)
        if match := _LISTENING.search(line):
            return match.group(1)
    raise RuntimeError(f"chromium exited: {''.join(seen)[-2000:]}")


async def _drain(proc: asyncio.subprocess.Process) -> None:
    assert proc.stderr is not None
    while await proc.stderr.read(65536):
        pass
