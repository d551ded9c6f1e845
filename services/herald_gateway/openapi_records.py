"""The OpenAPI operations of the message log, stats and the suppression list (merged into
herald_gateway.openapi's document): their query and path parameters with the patterns the handlers
check, and the NDJSON import."""

from __future__ import annotations

from typing import Any

from herald_common.message_log import CURSOR_PATTERN as LOG_CURSOR
from herald_common.message_log import PAGE_MAX as LOG_PAGE_MAX
from herald_common.settings import CHANNELS
from herald_common.stats import BY, COUNTERS
from herald_common.suppressions import (
    ADDRESS_PATTERNS,
    PAGE_MAX,
    REASONS,
    UNKNOWN,
    SuppressionIn,
    line_schema,
)
from herald_gateway.suppressions import CURSOR_PATTERN, NDJSON

_ID = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$"
_DATE = {"type": "string", "format": "date", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}
_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _param(name: str, where: str, schema: dict[str, Any], required: bool = False, about: str = "") -> dict:
    out = {"name": name, "in": where, "required": required or where == "path", "schema": schema}
    if about:
        out["description"] = about
    return out


def _limit(most: int) -> dict[str, Any]:
    return _param(
        "limit", "query", {"type": "integer", "minimum": 1, "maximum": most}, about="entries per page"
    )


def _op(
    summary: str, params: list[dict], status: int, body: dict | None = None, optional: bool = False
) -> dict:
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{"apiKey": []}],
        "parameters": params,
        "responses": {
            str(status): {"description": "success"},
            "default": {"description": "problem", "content": _PROBLEM},
        },
    }
    if body is not None:
        op["requestBody"] = {"required": not optional, "content": body}
    return op


def schemas() -> dict[str, Any]:
    return {
        "SuppressionIn": SuppressionIn.model_json_schema(),
        "SuppressionLine": line_schema(),
    }


def paths() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    out["/v1/contacts/{contact_id}/notifications"] = {
        "get": _op(
            "A contact's message log, newest first: status, origin, per-channel outcome and engagement",
            [
                _param("contact_id", "path", {"type": "string", "pattern": _ID}),
                _param(
                    "cursor",
                    "query",
                    {"type": "string", "pattern": LOG_CURSOR},
                    about="next_cursor of the previous page",
                ),
                _limit(LOG_PAGE_MAX),
            ],
            200,
        )
    }
    out["/v1/stats"] = {
        "get": _op(
            "Daily counters ("
            + ", ".join(COUNTERS)
            + ") grouped by day, template, campaign, trigger or channel",
            [
                _param("from", "query", _DATE, about="first UTC day (default: 29 days before to)"),
                _param("to", "query", _DATE, about="last UTC day, inclusive (default: today)"),
                _param("by", "query", {"enum": list(BY)}, about="how rows are grouped (default: day)"),
            ],
            200,
        )
    }
    out["/v1/suppressions"] = {
        "get": _op(
            "The suppression list, by channel then address",
            [
                _param("channel", "query", {"enum": list(CHANNELS)}),
                _param("reason", "query", {"enum": [*REASONS, UNKNOWN]}),
                _param(
                    "cursor",
                    "query",
                    {"type": "string", "pattern": CURSOR_PATTERN},
                    about="next_cursor of the previous page",
                ),
                _limit(PAGE_MAX),
            ],
            200,
        )
    }
    line = {"$ref": "#/components/schemas/SuppressionLine"}
    out["/v1/suppressions:import"] = {
        "post": _op(
            "Import suppressions, one NDJSON entry per line (422 lists refused lines; the rest are imported)",
            [],
            200,
            {NDJSON: {"schema": {"type": "array", "items": line, "minItems": 1}}},
        )
    }
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/SuppressionIn"}}}
    for channel, pattern in ADDRESS_PATTERNS.items():
        address = [_param("address", "path", {"type": "string", "pattern": pattern})]
        out[f"/v1/suppressions/{channel}/{{address}}"] = {
            "put": _op(
                f"Suppress an {channel} address (reason manual unless given)",
                address,
                200,
                body,
                optional=True,
            ),
            "get": _op(f"Read the suppression of an {channel} address", address, 200),
            "delete": _op(f"Lift the suppression of an {channel} address", address, 204),
        }
    return out
