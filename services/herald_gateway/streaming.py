"""Request bodies read line by line (NDJSON and CSV uploads): constant memory whatever the body's size.

The body is read in chunks of at most ``chunk_bytes`` (one await per chunk, not per line), each under
the gateway's body timeout, so a stalled client raises :class:`TimeoutError`. A line longer than
``max_line`` is yielded as None (its bytes are dropped as they arrive, never buffered), so the caller
decides whether that refuses the line or the whole upload. A handler that streams its body is marked
with :func:`streams_body`, which exempts it from the gateway's whole-body read (herald_gateway.deadlines).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from aiohttp import web

CHUNK_BYTES = 64 * 1024

H = TypeVar("H", bound=Callable[[web.Request], Awaitable[web.StreamResponse]])


def streams_body(handler: H) -> H:
    handler.streams_body = True  # type: ignore[attr-defined]
    return handler


async def body_lines(
    request: web.Request, *, max_line: int, timeout_s: float, chunk_bytes: int = CHUNK_BYTES
) -> AsyncIterator[bytes | None]:
    pending, overlong = b"", False
    while True:
        async with asyncio.timeout(timeout_s):
            chunk = await request.content.read(chunk_bytes)
        if not chunk:
            break
        pieces = (pending + chunk).split(b"\n")
        pending = pieces.pop()
        for piece in pieces:
            yield None if overlong or len(piece) > max_line else piece
            overlong = False
        if len(pending) > max_line:  # drop it as it arrives; the line is refused when it ends
            pending, overlong = b"", True
    if pending or overlong:
        yield None if overlong or len(pending) > max_line else pending
