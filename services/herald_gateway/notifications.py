"""POST /v1/notifications (and :batch): validate, write to Kafka, answer 202 once acknowledged.
GET /v1/notifications/{id}: the status the tracker folded, per channel."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiokafka.errors import KafkaError

from herald_common import metrics
from herald_common.ids import partition_key
from herald_common.kafka import produce_many
from herald_common.schemas import NotificationBatch, NotificationIn, NotificationRequest
from herald_common.settings import Lane
from herald_gateway import quota
from herald_gateway.context import (
    CATEGORY_CACHE,
    IDS,
    KEYS,
    PRODUCER,
    REDIS,
    SETTINGS,
    STATUS,
    STORE,
    TENANT_ID,
    TOPICS,
)
from herald_gateway.idempotency import Idempotency, Stored, fingerprint
from herald_gateway.problems import ProblemError, json_response, parse_body, parse_json, read_body

log = structlog.get_logger()


async def lane_for(app: web.Application, tenant_id: str, n: NotificationIn) -> Lane:
    """Explicit lane, else by category (the request's, else the template's): marketing is bulk."""
    if n.lane:
        return n.lane
    category = n.category
    if category is None and n.template_id is not None:
        template_id = n.template_id

        async def load() -> str:
            template = await app[STORE].get_template(tenant_id, template_id)
            return template.category if template else "transactional"

        category = await app[CATEGORY_CACHE].get_or_load(f"{tenant_id}\x1f{template_id}", load)
    return "bulk" if category == "marketing" else "transactional"


async def _produce(
    app: web.Application, tenant_id: str, items: list[NotificationIn]
) -> list[NotificationRequest]:
    """Write every item and wait until Kafka acknowledged all of them (acks=all)."""
    producer, topics = app[PRODUCER], app[TOPICS]
    now = time.time()
    lanes = [await lane_for(app, tenant_id, n) for n in items]
    await quota.take(app, tenant_id, len(items), "transactional" if "transactional" in lanes else "bulk")
    requests: list[NotificationRequest] = []
    per_topic: dict[str, list[tuple[bytes, bytes]]] = defaultdict(list)
    for n, lane in zip(items, lanes, strict=True):
        # Already validated as NotificationIn: construct without validating a second time.
        req = NotificationRequest.model_construct(
            id=app[IDS].new(tenant_id),
            tenant_id=tenant_id,
            lane=lane,
            accepted_at=now,
            to=n.to,  # type: ignore[arg-type]  # serialises to the same JSON as a WireRecipient
            template_id=n.template_id,
            content=n.content,
            channels=n.channels,
            data=n.data,
            category=n.category,
            locale=n.locale,
            expires_at=n.expires_at.timestamp() if n.expires_at else None,
        )
        recipient = n.to.contact_id or n.to.email or n.to.phone or n.to.push_token or req.id
        per_topic[topics.requests(req.lane)].append(
            (partition_key(tenant_id, recipient), req.model_dump_json(exclude_none=True).encode())
        )
        requests.append(req)
    try:
        if len(requests) == 1:
            ((topic, ((key, value),)),) = per_topic.items()
            await producer.send_and_wait(topic, value, key=key)
        else:
            await asyncio.gather(*(produce_many(producer, t, recs) for t, recs in per_topic.items()))
    except KafkaError as exc:
        raise ProblemError(
            503,
            f"the queue did not acknowledge the write ({type(exc).__name__}); nothing is lost by retrying "
            "with the same Idempotency-Key",
            headers={"Retry-After": "1"},
        ) from None
    for req in requests:
        metrics.NOTIFICATIONS_ACCEPTED.labels(req.lane).inc()
    return requests


def _accepted_body(req: NotificationRequest) -> dict[str, Any]:
    return {"id": req.id, "status": "accepted", "lane": req.lane}


async def create(request: web.Request) -> web.Response:
    app, tenant_id = request.app, request[TENANT_ID]
    raw = await read_body(request, app[SETTINGS].max_body_bytes)
    body = parse_json(NotificationIn, raw)
    key = request.headers.get("Idempotency-Key") or body.idempotency_key
    idem = None
    if key is not None:
        if not 1 <= len(key) <= 255:
            raise ProblemError(400, "Idempotency-Key must be 1 to 255 characters")
        idem = Idempotency(
            app[REDIS],
            app[KEYS].idempotency(tenant_id, key),
            fingerprint(raw),
            app[SETTINGS].idempotency_ttl_s,
        )
        stored: Stored | None = await idem.claim()
        if stored is not None:
            return web.Response(
                body=stored.body,
                status=stored.status,
                content_type="application/json",
                headers={"Idempotent-Replayed": "true"},
            )
    try:
        (req,) = await _produce(app, tenant_id, [body])
    except BaseException:
        if idem is not None:
            await idem.release()
        raise
    payload = orjson.dumps(_accepted_body(req))
    if idem is not None:
        await idem.complete(202, payload)
    return web.Response(
        body=payload,
        status=202,
        content_type="application/json",
        headers={"Location": f"/v1/notifications/{req.id}"},
    )


async def create_batch(request: web.Request) -> web.Response:
    """All or nothing: every item is validated first; then all are written and acknowledged together.
    Items carrying an idempotency_key already used return the first notification's id."""
    app, tenant_id = request.app, request[TENANT_ID]
    body = await parse_body(request, NotificationBatch, app[SETTINGS].max_body_bytes)
    redis, keys = app[REDIS], app[KEYS]
    results: list[dict[str, Any] | None] = [None] * len(body.notifications)
    fresh: list[tuple[int, NotificationIn]] = []
    for i, n in enumerate(body.notifications):
        if n.idempotency_key:
            existing = await redis.get(keys.idempotency(tenant_id, "batch:" + n.idempotency_key))
            if existing is not None:
                results[i] = {**orjson.loads(existing), "replayed": True}
                continue
        fresh.append((i, n))
    accepted = await _produce(app, tenant_id, [n for _, n in fresh]) if fresh else []
    for (i, n), req in zip(fresh, accepted, strict=True):
        results[i] = _accepted_body(req)
        if n.idempotency_key:
            await redis.set(
                keys.idempotency(tenant_id, "batch:" + n.idempotency_key),
                orjson.dumps(results[i]),
                ex=app[SETTINGS].idempotency_ttl_s,
                nx=True,
            )
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
