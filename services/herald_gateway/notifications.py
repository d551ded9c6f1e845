"""POST /v1/notifications (and :batch): parse and validate, take the tenant's quota, hand the requests
to the intake library (lane, ids, idempotency, produce with acks=all), answer 202 once acknowledged.
GET /v1/notifications/{id}: the status the tracker folded, per channel."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from herald_common.intake import (
    Admit,
    IdempotencyError,
    IdempotencyRejected,
    LaneNotAllowed,
    QueueUnavailable,
    RecordTooLarge,
    Submission,
)
from herald_common.schemas import NotificationBatch, NotificationIn
from herald_common.settings import Lane
from herald_gateway import quota
from herald_gateway.context import IDS, INTAKE, KEYS, SETTINGS, STATUS, TENANT_ID
from herald_gateway.problems import ProblemError, json_response, parse_body, parse_json, read_body

_QUEUE_DOWN = (
    "the queue did not acknowledge the write; nothing was accepted, and retrying with the same "
    "idempotency key is safe"
)


def _admit(app: web.Application, tenant_id: str) -> Admit:
    async def admit(n: int, lane: Lane) -> None:
        await quota.take(app, tenant_id, n, lane)

    return admit


def _too_large(exc: RecordTooLarge, field: str) -> ProblemError:
    """413: a size error is permanent (retrying the same request can never succeed)."""
    errors = [
        {
            "field": field.format(i=i),
            "message": f"is {size} bytes as a queue record; the limit is {exc.limit}",
        }
        for i, size in sorted(exc.sizes.items())
    ]
    detail = (
        f"the notification is larger than a queue record may be ({exc.limit} bytes); nothing was accepted"
    )
    return ProblemError(413, detail, errors=errors or None)


def _rejected(exc: IdempotencyRejected, field: str) -> ProblemError:
    """409 while a key is in flight (retry later); 422 when a key was used with another request."""
    status = 422 if exc.mismatch else 409
    errors = [{"field": field.format(i=e.index), "message": e.message} for e in exc.errors]
    detail = (
        "an idempotency key was used before with a different request"
        if exc.mismatch
        else "a request with the same idempotency key is in flight"
    )
    return ProblemError(status, f"{detail}; nothing was accepted", errors=errors)


def _lane_refused(exc: LaneNotAllowed, field: str) -> ProblemError:
    return ProblemError(
        422, "nothing was accepted: " + str(exc), errors=[{"field": field, "message": str(exc)}]
    )


async def create(request: web.Request) -> web.Response:
    app, tenant_id = request.app, request[TENANT_ID]
    body = parse_json(NotificationIn, await read_body(request, app[SETTINGS].max_body_bytes))
    header = request.headers.get("Idempotency-Key")
    key = header or body.idempotency_key
    if key is not None and not 1 <= len(key) <= 255:
        raise ProblemError(400, "Idempotency-Key must be 1 to 255 characters")
    try:
        accepted = await app[INTAKE].publish(tenant_id, Submission(body, key), _admit(app, tenant_id))
    except IdempotencyError as exc:
        field = "Idempotency-Key" if header else "idempotency_key"
        raise _rejected(IdempotencyRejected([exc]), field) from None
    except LaneNotAllowed as exc:
        raise _lane_refused(exc, "lane") from None
    except RecordTooLarge as exc:
        raise _too_large(exc, "(body)") from None
    except QueueUnavailable as exc:
        raise ProblemError(503, _QUEUE_DOWN, headers={"Retry-After": "1"}) from exc
    payload = orjson.dumps(accepted.body())
    headers = {"Location": f"/v1/notifications/{accepted.id}"}
    if accepted.replayed:
        headers["Idempotent-Replayed"] = "true"
    return web.Response(body=payload, status=202, content_type="application/json", headers=headers)


async def create_batch(request: web.Request) -> web.Response:
    """All or nothing: every item is validated, every idempotency key reserved (a key in flight → 409,
    used with another request → 422, with per-item errors), then all are written and acknowledged
    together. Items whose key was used before with the same request return the first id (replayed)."""
    app, tenant_id = request.app, request[TENANT_ID]
    body = await parse_body(request, NotificationBatch, app[SETTINGS].max_body_bytes)
    submissions = [Submission(n, n.idempotency_key) for n in body.notifications]
    try:
        accepted = await app[INTAKE].publish_many(tenant_id, submissions, _admit(app, tenant_id))
    except IdempotencyRejected as exc:
        raise _rejected(exc, "notifications[{i}].idempotency_key") from None
    except LaneNotAllowed as exc:
        raise _lane_refused(exc, f"notifications[{exc.index}].lane") from None
    except RecordTooLarge as exc:
        raise _too_large(exc, "notifications[{i}]") from None
    except QueueUnavailable as exc:
        raise ProblemError(503, _QUEUE_DOWN, headers={"Retry-After": "1"}) from exc
    results: list[dict[str, Any]] = [
        {**a.body(), "replayed": True} if a.replayed else a.body() for a in accepted
    ]
    return json_response({"notifications": results}, status=202)


async def get(request: web.Request) -> web.Response:
    tenant_id, nid = request[TENANT_ID], request.match_info["notification_id"]
    issued_at = request.app[IDS].issued_at(nid, tenant_id)
    if issued_at is None:  # not an id this tenant was given
        raise ProblemError(404, "no such notification")
    doc = await request.app[STATUS].read(request.app[KEYS].notification(tenant_id, nid), nid, issued_at)
    if doc is None:
        raise ProblemError(404, "no such notification (its status has expired)")
    return json_response(doc)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/notifications", create)
    app.router.add_post("/v1/notifications:batch", create_batch)
    app.router.add_get(r"/v1/notifications/{notification_id:n_[a-z0-9]{1,40}}", get)
