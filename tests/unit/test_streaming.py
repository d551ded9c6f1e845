"""Uploads read line by line: lines cut across chunks, an overlong line refused without buffering it."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from herald_gateway.streaming import body_lines, streams_body

pytestmark = pytest.mark.asyncio


async def _collect(body: bytes, *, max_line: int, chunk_bytes: int) -> list[Any]:
    got: list[Any] = []

    @streams_body
    async def handler(request: web.Request) -> web.Response:
        async for line in body_lines(request, max_line=max_line, timeout_s=5, chunk_bytes=chunk_bytes):
            got.append(line)
        return web.Response()

    app = web.Application()
    app.router.add_post("/", handler)
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/", data=body)
        assert resp.status == 200
    assert handler.streams_body  # type: ignore[attr-defined]
    return got


async def test_lines_are_cut_across_chunks_and_an_overlong_one_is_none() -> None:
    body = b"one\ntwo\n" + b"x" * 50 + b"\nthree\n\nlast"
    assert await _collect(body, max_line=10, chunk_bytes=3) == [b"one", b"two", None, b"three", b"", b"last"]
    assert await _collect(b"a\n" + b"y" * 20, max_line=10, chunk_bytes=4) == [b"a", None]
    assert await _collect(b"", max_line=10, chunk_bytes=4) == []
