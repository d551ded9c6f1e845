"""RFC 9457 problem documents for every error the API returns, and the middleware that makes sure
nothing leaves as a bare stack trace or HTML page."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
import pydantic
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

log = structlog.get_logger()
M = TypeVar("M", bound=pydantic.BaseModel)

PROBLEM = "application/problem+json"
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def problem(
    status: int,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    body.update(extra)
    return web.Response(body=orjson.dumps(body), status=status, content_type=PROBLEM, headers=headers)


class ProblemError(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.errors, self.headers = status, detail, errors, headers


def field_errors(exc: pydantic.ValidationError, root: str = "") -> list[dict[str, str]]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        path = ".".join(str(p) for p in err["loc"] if p != "__root__")
        out.append({"field": ".".join(p for p in (root, path) if p) or "(body)", "message": err["msg"]})
    return out


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProblemError as exc:
        return problem(exc.status, exc.detail, errors=exc.errors, headers=exc.headers)
    except pydantic.ValidationError as exc:
        return problem(422, "the request body is not valid", errors=field_errors(exc))
    except web.HTTPRequestEntityTooLarge:
        return problem(413, "the request body is too large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return problem(exc.status, exc.reason, headers=headers)
    except (RedisError, KafkaError, ConnectionError) as exc:
        log.warning("dependency unavailable", error=repr(exc))
        return problem(503, "a dependency is unavailable; nothing was accepted", headers={"Retry-After": "1"})
    except Exception:
        log.exception(
            "unhandled error",
            route=request.match_info.route.resource.canonical if request.match_info.route.resource else None,
        )
        return problem(500, "an internal error occurred; nothing was accepted")


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    ctype = request.content_type
    if ctype not in ("application/json", "application/merge-patch+json") and not ctype.endswith("+json"):
        raise ProblemError(415, "send the body as application/json")
    if request.content_length is not None and request.content_length > max_bytes:
        raise ProblemError(413, f"the request body is larger than {max_bytes} bytes")
    raw = await request.read()
    if not raw:
        raise ProblemError(400, "the request body is empty")
    return raw


def parse_json(model: type[M], raw: bytes, root: str = "") -> M:
    """Validate straight from the bytes (pydantic's own JSON parser: no intermediate Python dicts)."""
    try:
        return model.model_validate_json(raw)
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        bad_json = next((e for e in errors if e["type"] == "json_invalid"), None)
        if bad_json is not None:
            raise ProblemError(400, f"the request body is not valid JSON: {bad_json['msg']}") from None
        if len(errors) == 1 and not errors[0]["loc"] and errors[0]["type"] == "model_type":
            raise ProblemError(
                422,
                "the request body must be a JSON object",
                errors=[{"field": root or "(body)", "message": "must be an object"}],
            ) from None
        raise ProblemError(422, "the request body is not valid", errors=field_errors(exc, root)) from None


async def parse_body(request: web.Request, model: type[M], max_bytes: int) -> M:
    return parse_json(model, await read_body(request, max_bytes))


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )
