"""What Herald did, read back: ``GET /v1/contacts/{id}/notifications`` (the message log) and
``GET /v1/stats`` (daily counters), plus the engagement recorder the receipts use.

Both read what the tracker's observers keep (herald_common.message_log, herald_common.stats); query
parameters are checked against the same patterns the OpenAPI document states (herald_gateway.
openapi_records), and anything else is a 422 problem naming the parameter.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

from aiohttp import web

from herald_common.engagement import Engagement
from herald_common.message_log import CURSOR_PATTERN, MessageLog, parse_cursor
from herald_common.message_log import PAGE_MAX as LOG_PAGE_MAX
from herald_common.stats import BY, Stats
from herald_gateway.context import IDS, KEYS, REDIS, SETTINGS, STORE, TENANT_ID
from herald_gateway.problems import ProblemError, json_response
from herald_gateway.resources import ID

STATS = web.AppKey("stats", Stats)
MESSAGE_LOG = web.AppKey("message_log", MessageLog)
ENGAGEMENT = web.AppKey("engagement", Engagement)

LIMIT = re.compile(r"^[0-9]{1,6}$")
DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
DEFAULT_DAYS = 30


def query(request: web.Request, name: str, pattern: re.Pattern[str] | None = None) -> str | None:
    value = request.query.get(name)
    if value is not None and pattern is not None and not pattern.match(value):
        raise ProblemError(
            422, f"the {name} parameter is not valid", errors=[{"field": name, "message": "invalid"}]
        )
    return value


def limit_of(request: web.Request, most: int, default: int = 50) -> int:
    raw = query(request, "limit", LIMIT)
    n = int(raw) if raw is not None else min(default, most)
    if not 1 <= n <= most:
        raise ProblemError(
            422, f"limit must be 1 to {most}", errors=[{"field": "limit", "message": "out of range"}]
        )
    return n


def _date(request: web.Request, name: str) -> date | None:
    raw = query(request, name, DATE)
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ProblemError(
            422, f"{name} is not a date", errors=[{"field": name, "message": "not a date"}]
        ) from None


async def _clients(app: web.Application) -> AsyncIterator[None]:
    settings, redis, keys = app[SETTINGS], app[REDIS], app[KEYS]
    app[STATS] = Stats(redis, keys, settings.stats_retention_days)
    app[MESSAGE_LOG] = MessageLog(redis, keys, settings)
    app[ENGAGEMENT] = Engagement(redis, keys, app[STATS], settings.status_ttl_s)
    yield


async def contact_notifications(request: web.Request) -> web.Response:
    tenant_id, contact_id = request[TENANT_ID], request.match_info["contact_id"]
    limit = limit_of(request, LOG_PAGE_MAX, default=20)
    raw = query(request, "cursor", re.compile(CURSOR_PATTERN))
    cursor = parse_cursor(raw) if raw is not None else None
    entries, next_cursor = await request.app[MESSAGE_LOG].page(tenant_id, contact_id, cursor, limit)
    if not entries and cursor is None and await request.app[STORE].get_contact(tenant_id, contact_id) is None:
        raise ProblemError(404, "no such contact")
    ids = request.app[IDS]
    for e in entries:
        e["accepted_at"] = ids.issued_at(e["id"], tenant_id) or e["accepted_at"]
    return json_response({"notifications": entries, "next_cursor": next_cursor})


async def stats(request: web.Request) -> web.Response:
    by = query(request, "by") or "day"
    if by not in BY:
        raise ProblemError(
            422, "by must be one of " + ", ".join(BY), errors=[{"field": "by", "message": "invalid"}]
        )
    today = datetime.now(UTC).date()
    end = _date(request, "to") or today
    start = _date(request, "from") or end - timedelta(days=DEFAULT_DAYS - 1)
    return json_response(await request.app[STATS].read(request[TENANT_ID], start, end, by, today=today))


def add_to(app: web.Application) -> None:
    app.cleanup_ctx.append(_clients)
    app.router.add_get("/v1/contacts/" + ID % "contact_id" + "/notifications", contact_notifications)
    app.router.add_get("/v1/stats", stats)
