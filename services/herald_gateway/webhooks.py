"""``/v1/webhooks``: a tenant's webhook endpoints (several per tenant).

PUT creates or replaces one; a PUT without ``secret`` keeps the endpoint's secret, or generates one
on create and shows it in that one answer. GET never shows a secret. Saving an endpoint clears its
health, which is how a paused endpoint is resumed. The URL is checked where it points
(herald_common.webhooks.targets): a private, loopback or link-local target is refused with 422 unless
the operator allow-listed it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from aiohttp import web

from herald_common.webhooks.model import Endpoint, WebhookIn, new_secret
from herald_common.webhooks.store import WebhookStore, endpoint_view
from herald_common.webhooks.targets import TargetRefused, check_target
from herald_gateway.context import KEYS, REDIS, SETTINGS, TENANT_ID
from herald_gateway.problems import ProblemError, json_response, parse_body
from herald_gateway.resources import ID

MAX_ENDPOINTS = 20  # per tenant: bounds the fan-out of every status event
WEBHOOKS = web.AppKey("webhooks", WebhookStore)


async def _store(app: web.Application) -> AsyncIterator[None]:
    app[WEBHOOKS] = WebhookStore(app[REDIS], app[KEYS])
    yield


async def put_webhook(request: web.Request) -> web.Response:
    settings, store = request.app[SETTINGS], request.app[WEBHOOKS]
    tenant_id, endpoint_id = request[TENANT_ID], request.match_info["webhook_id"]
    body = await parse_body(request, WebhookIn, settings.max_body_bytes)
    try:
        await check_target(body.url, settings.allowed_hosts(), settings.webhook_allow_private)
    except TargetRefused as exc:
        raise ProblemError(
            422, "the webhook URL is refused", errors=[{"field": "url", "message": str(exc)}]
        ) from None
    existing = await store.get(tenant_id, endpoint_id)
    if existing is None and len(await store.list(tenant_id)) >= MAX_ENDPOINTS:
        raise ProblemError(409, f"a tenant has at most {MAX_ENDPOINTS} webhook endpoints; delete one first")
    generated = None if body.secret or existing else new_secret()
    now = time.time()
    endpoint = Endpoint(
        id=endpoint_id,
        tenant_id=tenant_id,
        url=body.url,
        event_types=body.event_types,
        secret=body.secret or generated or (existing.secret if existing else ""),
        previous_secret=body.previous_secret,
        enabled=body.enabled,
        description=body.description,
        created_at=existing.created_at if existing else now,
        updated_at=now,
    )
    await store.put(endpoint)
    doc = endpoint_view(endpoint, await store.health(tenant_id, endpoint_id))
    if generated:
        doc["secret"] = generated  # shown this once
    return json_response(doc)


async def get_webhook(request: web.Request) -> web.Response:
    store, tenant_id = request.app[WEBHOOKS], request[TENANT_ID]
    endpoint = await store.get(tenant_id, request.match_info["webhook_id"])
    if endpoint is None:
        raise ProblemError(404, "no such webhook")
    return json_response(endpoint_view(endpoint, await store.health(tenant_id, endpoint.id)))


async def list_webhooks(request: web.Request) -> web.Response:
    store, tenant_id = request.app[WEBHOOKS], request[TENANT_ID]
    endpoints = await store.list(tenant_id)
    healths = await asyncio.gather(*(store.health(tenant_id, e.id) for e in endpoints))
    views = [endpoint_view(e, h) for e, h in zip(endpoints, healths, strict=True)]
    return json_response({"webhooks": views})


async def delete_webhook(request: web.Request) -> web.Response:
    if not await request.app[WEBHOOKS].delete(request[TENANT_ID], request.match_info["webhook_id"]):
        raise ProblemError(404, "no such webhook")
    return web.Response(status=204)


def add_to(app: web.Application) -> None:
    """The store (after the gateway's Redis client exists) and the routes."""
    app.cleanup_ctx.append(_store)
    path = "/v1/webhooks/" + ID % "webhook_id"
    app.router.add_put(path, put_webhook)
    app.router.add_get(path, get_webhook)
    app.router.add_delete(path, delete_webhook)
    app.router.add_get("/v1/webhooks", list_webhooks)
