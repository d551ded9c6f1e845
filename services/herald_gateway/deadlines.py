"""Read deadlines: a slow client cannot hold a connection (and its memory) open.

- Headers: the next request's line and headers must be complete within ``HERALD_HTTP_HEADER_TIMEOUT_S``
  of the connection opening or the previous response. aiohttp's keep-alive timer does exactly this
  (armed at the connection's start and after each response, not moved by data arriving, and it closes
  a connection whose handler still waits for a complete request), so it is set to that deadline:
  a client trickling a header line at a time is closed at the deadline, and so is an idle one.
- Bodies: a request body must arrive in full within ``HERALD_HTTP_BODY_TIMEOUT_S`` of its headers:
  :func:`body_deadline_middleware` reads it under that deadline (aiohttp keeps what was read for the
  handler; handlers ask ``request.body_exists``, not ``can_read_body``, which is False once read), else 408
  and the connection is closed (after at most :data:`LINGER_S` more, which is how
  long aiohttp keeps reading an unread body after any early answer, so the client sees the answer).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from herald_gateway.context import SETTINGS
from herald_gateway.problems import problem
from herald_gateway.settings import GatewaySettings

LINGER_S = 1.0


def runner_options(settings: GatewaySettings) -> dict[str, Any]:
    """The ``web.AppRunner`` options that enforce the header deadline and bound the lingering read."""
    return {"keepalive_timeout": settings.http_header_timeout_s, "lingering_time": LINGER_S}


@web.middleware
async def body_deadline_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # A handler that streams its body (an audience upload) reads it line by line under its own deadline.
    if request.body_exists and not getattr(request.match_info.handler, "streams_body", False):
        try:
            async with asyncio.timeout(request.app[SETTINGS].http_body_timeout_s):
                await request.read()  # kept by aiohttp: the handler's read() or post() reuses it
        except TimeoutError:
            response = problem(408, "the request body did not arrive in time; the connection is closed")
            response.force_close()
            return response
    return await handler(request)
