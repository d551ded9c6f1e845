"""Cancelling notifications that have not been sent (herald_common.cancel has the mechanism).

- ``POST /v1/notifications/{id}:cancel``: 202 with the notification's new state (``cancelled``); 200
  when it was already cancelled; 409 once it is past the point of no return (sending, sent, delivered,
  or any other final state); 404 for an id not issued to the tenant.
- ``POST /v1/notifications:cancel-by-key`` ``{"cancellation_key": "…"}``: cancels every notification of
  the tenant carrying that key and accepted before now; 200 with the ids (and count) of those that were
  waiting (scheduled or held). Ones still in transit are stopped by the router or the sender.
"""

from __future__ import annotations

import time

from aiohttp import web

from herald_common.cancel import announce, cancel_by_key, cancel_notification, cancelled_events
from herald_common.schemas import CancelByKeyIn
from herald_gateway.context import IDS, KEYS, PRODUCER, REDIS, SETTINGS, STATUS, TENANT_ID, TOPICS
from herald_gateway.problems import ProblemError, json_response, parse_body

# Overall statuses a notification can still be cancelled in (channels queued read "accepted").
CANCELLABLE = frozenset({"accepted", "scheduled", "held"})


async def cancel_one(request: web.Request) -> web.Response:
    app, tenant_id, nid = request.app, request[TENANT_ID], request.match_info["notification_id"]
    issued_at = app[IDS].issued_at(nid, tenant_id)
    if issued_at is None:
        raise ProblemError(404, "no such notification")
    doc = await app[STATUS].read(app[KEYS].notification(tenant_id, nid), nid, issued_at)
    if doc is None:
        raise ProblemError(404, "no such notification (its status has expired)")
    if doc["status"] == "cancelled":
        return json_response(doc)
    if doc["status"] not in CANCELLABLE:
        raise ProblemError(409, f"the notification can no longer be cancelled: it is {doc['status']}")
    at = time.time()
    first = await cancel_notification(app[REDIS], app[KEYS], tenant_id, nid, at)
    if first:
        await announce(
            app[PRODUCER], app[TOPICS], cancelled_events(tenant_id, [nid], at, "cancelled by request")
        )
    doc = {**doc, "status": "cancelled", "reason": "cancelled by request", "reason_code": "cancelled"}
    doc.pop("next_attempt_at", None)
    return json_response(doc, status=202 if first else 200)


async def cancel_key(request: web.Request) -> web.Response:
    app, tenant_id = request.app, request[TENANT_ID]
    body = await parse_body(request, CancelByKeyIn, app[SETTINGS].max_body_bytes)
    at = time.time()
    ids = await cancel_by_key(app[REDIS], app[KEYS], tenant_id, body.cancellation_key, at)
    reason = "cancelled by its cancellation key"
    await announce(app[PRODUCER], app[TOPICS], cancelled_events(tenant_id, ids, at, reason))
    return json_response(
        {
            "cancellation_key": body.cancellation_key,
            "cancelled": len(ids),
            "notification_ids": ids,
            "cancelled_at": at,
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post(r"/v1/notifications/{notification_id:n_[a-z0-9]{1,40}}:cancel", cancel_one)
    app.router.add_post("/v1/notifications:cancel-by-key", cancel_key)
