"""``/v1/suppressions``: the tenant's suppression list (herald_common.suppressions).

``GET /v1/suppressions`` pages through it (``channel``, ``reason`` filters; ``cursor`` from the previous
page's ``next_cursor``); ``PUT``/``GET``/``DELETE /v1/suppressions/{channel}/{address}`` add (reason
``manual`` unless given, source ``api``), read and lift one entry; ``POST /v1/suppressions:import``
takes NDJSON, one ``{"channel", "address", "reason"?, "note"?}`` per line, streamed (constant memory,
any number of lines; each chunk under the body timeout), written in batches of :data:`BATCH` as the
lines are read: every valid line is imported; the answer is 200
with the count, or, when any line was refused, a 422 problem with the count imported and the first
:data:`MAX_ERRORS` line errors. Addresses are never logged.
"""

from __future__ import annotations

import re
import time

import pydantic
from aiohttp import web

from herald_common.settings import CHANNELS
from herald_common.suppressions import (
    ADDRESS_PATTERNS,
    PAGE_MAX,
    REASONS,
    UNKNOWN,
    Entry,
    SuppressionIn,
    SuppressionLine,
    valid_address,
)
from herald_gateway.context import SETTINGS, STORE, TENANT_ID
from herald_gateway.problems import ProblemError, json_response, parse_json, problem
from herald_gateway.records import limit_of, query
from herald_gateway.streaming import body_lines, streams_body

BATCH = 500
MAX_ERRORS = 100
MAX_LINE = 16 * 1024
NDJSON = "application/x-ndjson"
CURSOR_PATTERN = r"^(" + "|".join(CHANNELS) + r")\.([0-9a-f]{2}){1,4200}$"
_CURSOR = re.compile(CURSOR_PATTERN)
_CHANNEL = re.compile(r"^(" + "|".join(CHANNELS) + r")$")
_REASON = re.compile(r"^(" + "|".join((*REASONS, UNKNOWN)) + r")$")


def _address(request: web.Request) -> tuple[str, str]:
    channel, address = request.match_info["channel"], request.match_info["address"]
    if channel not in ADDRESS_PATTERNS:
        raise ProblemError(404, f"no channel called {channel!r}")
    if not valid_address(channel, address):
        raise ProblemError(
            422, f"not a valid {channel} address", errors=[{"field": "address", "message": "invalid"}]
        )
    return channel, address


async def list_suppressions(request: web.Request) -> web.Response:
    channel = query(request, "channel", _CHANNEL)
    reason = query(request, "reason", _REASON)
    raw = query(request, "cursor", _CURSOR)
    limit = limit_of(request, PAGE_MAX)
    cursor = None
    if raw is not None:
        ch, hexed = raw.split(".", 1)
        cursor = (ch, bytes.fromhex(hexed))
    entries, after = await request.app[STORE].suppressions.page(
        request[TENANT_ID], channel, reason, cursor, limit
    )
    next_cursor = f"{after[0]}.{after[1].hex()}" if after else None
    return json_response({"suppressions": [e.view() for e in entries], "next_cursor": next_cursor})


async def put_suppression(request: web.Request) -> web.Response:
    channel, address = _address(request)
    body = SuppressionIn()
    if request.body_exists:
        raw = await request.read()
        if raw.strip():
            if request.content_type != "application/json":
                raise ProblemError(415, "send the body as application/json")
            body = parse_json(SuppressionIn, raw)
    entry = await request.app[STORE].suppressions.add(
        request[TENANT_ID], address, channel=channel, reason=body.reason, source="api", note=body.note
    )
    return json_response(entry.view())


async def get_suppression(request: web.Request) -> web.Response:
    channel, address = _address(request)
    entry = await request.app[STORE].suppressions.get(request[TENANT_ID], channel, address)
    if entry is None:
        raise ProblemError(404, "that address is not suppressed")
    return json_response(entry.view())


async def delete_suppression(request: web.Request) -> web.Response:
    channel, address = _address(request)
    suppressions = request.app[STORE].suppressions
    if await suppressions.get(request[TENANT_ID], channel, address) is None:
        raise ProblemError(404, "that address is not suppressed")
    await suppressions.remove(request[TENANT_ID], [address])
    return web.Response(status=204)


@streams_body
async def import_suppressions(request: web.Request) -> web.Response:
    if request.content_type != NDJSON:
        raise ProblemError(415, f"send the body as {NDJSON}, one JSON object per line")
    tenant_id, store = request[TENANT_ID], request.app[STORE].suppressions
    imported, failed = 0, 0
    errors: list[dict[str, str]] = []
    batch: list[Entry] = []
    now = time.time()
    number = 0
    timeout = request.app[SETTINGS].http_body_timeout_s
    stalled = False
    try:
        async for line in body_lines(request, max_line=MAX_LINE, timeout_s=timeout):
            number += 1
            refused: str | None = None
            if line is None:
                refused = f"longer than {MAX_LINE} bytes"
            elif line.strip():
                try:
                    item = SuppressionLine.model_validate_json(line)
                    batch.append(
                        Entry(item.channel, item.address.lower(), item.reason, "import", now, item.note)
                    )
                except pydantic.ValidationError as exc:
                    refused = "; ".join(_messages(exc))
            if refused is not None:
                failed += 1
                if len(errors) < MAX_ERRORS:
                    errors.append({"field": f"line {number}", "message": refused})
            if len(batch) >= BATCH:
                await store.add_many(tenant_id, batch)
                imported, batch = imported + len(batch), []
    except TimeoutError:  # what was read so far is imported; the rest never came
        stalled = True
    if batch:
        await store.add_many(tenant_id, batch)
        imported += len(batch)
    if not stalled and imported + failed == 0:
        return problem(422, "the import holds no entries", imported=0, failed=0)
    if stalled:
        response = problem(408, "the upload stalled", imported=imported, failed=failed, errors=errors)
        response.force_close()
        return response
    if failed:
        detail = f"{failed} line(s) refused, {imported} imported"
        return problem(422, detail, errors=errors, imported=imported, failed=failed)
    return json_response({"imported": imported, "failed": 0})


def _messages(exc: pydantic.ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in err["loc"])
        out.append(f"{where}: {err['msg']}" if where else err["msg"])
    return out


def add_routes(app: web.Application) -> None:
    path = "/v1/suppressions/{channel:(?:" + "|".join(CHANNELS) + ")}/{address:[^/]{1,4200}}"
    app.router.add_get("/v1/suppressions", list_suppressions)
    app.router.add_post("/v1/suppressions:import", import_suppressions)
    app.router.add_put(path, put_suppression)
    app.router.add_get(path, get_suppression)
    app.router.add_delete(path, delete_suppression)
