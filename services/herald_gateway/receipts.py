"""POST /v1/receipts/{provider}: provider delivery receipts.

The provider's own receipt parser (``receipts`` of its spec in :mod:`herald_providers.registry`)
verifies the request before anything is read from it (SendGrid: the signed Event Webhook; Twilio:
``X-Twilio-Signature``) and maps it to receipts; a provider without one is a 404. Receipts are
deduplicated by event id (``SET NX`` with a TTL on ``{prefix}:receipt:<provider>:<id>``) and turned
into status events on ``<prefix>.status`` that the tracker folds, plus suppressions (with the reason
the provider gives) and engagement (opens, clicks: herald_common.engagement).

A signature says who sent the request, not that what it names is true: a receipt is applied only when
its notification id was issued to the tenant it names (ids are signed per tenant), no longer ago than
``HERALD_RECEIPT_MAX_AGE_S``, and its delivery id is that notification's delivery to the address the
provider names. Others are refused (counted in ``refused``, logged with masked ids, never applied).

The dedupe key is set before the effects and removed again if they fail (the provider retries on a
5xx), so a replayed receipt changes nothing and a failed one is not lost. Events a parser does not
map (processed, deferred, sent, queued) are acknowledged and ignored.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import structlog
from aiohttp import web

from herald_common import metrics
from herald_common.ids import NotificationIds, delivery_id, partition_key
from herald_common.logging import mask
from herald_gateway.context import IDS, KEYS, PRODUCER, REDIS, SETTINGS, STORE, TOPICS
from herald_gateway.problems import ProblemError, json_response
from herald_gateway.records import ENGAGEMENT
from herald_providers.config import ReceiptSettings
from herald_providers.receipts import Receipt, ReceiptRefused
from herald_providers.registry import receipt_parser

log = structlog.get_logger()


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/receipts/{provider}", receive)


async def receive(request: web.Request) -> web.Response:
    provider = request.match_info["provider"]
    parse = receipt_parser(provider)
    if parse is None:
        raise ProblemError(404, f"no receipts from a provider called {provider!r}")
    settings: ReceiptSettings = request.app[SETTINGS]
    try:
        parsed = await parse(request, settings)
    except ReceiptRefused as exc:
        raise ProblemError(exc.status, exc.detail) from None
    return await _apply(request, provider, parsed.receipts, received=parsed.received)


def untrusted(r: Receipt, ids: NotificationIds, max_age_s: float, now: float | None = None) -> str | None:
    """Why the ids a receipt names cannot be trusted (None when they can)."""
    if r.ids is None or r.ids.tenant != r.tenant_id:
        return "no ids"
    issued_at = ids.issued_at(r.ids.notification, r.tenant_id)
    if issued_at is None:
        return "notification not issued to that tenant"
    age = (time.time() if now is None else now) - issued_at
    if not -300 <= age <= max_age_s:
        return "stale"
    if r.channel is not None and r.address is not None:
        candidates = {r.address, r.address.lower()}
        if not any(delivery_id(r.ids.notification, r.channel, a) == r.ids.delivery for a in candidates):
            return "delivery not of that notification and address"
    elif r.suppress is not None:
        return "no address to check the delivery against"
    return None


async def _apply(request: web.Request, provider: str, receipts: list[Receipt], received: int) -> web.Response:
    app = request.app
    trusted: list[Receipt] = []
    for r in receipts:
        why = untrusted(r, app[IDS], app[SETTINGS].receipt_max_age_s)
        if why is None:
            trusted.append(r)
        else:
            log.warning(
                "receipt refused", provider=provider, tenant=r.tenant_id, why=why, receipt=r.event_id[:80]
            )
    refused = len(receipts) - len(trusted)
    metrics.RECEIPTS.labels(provider, "refused").inc(refused)
    receipts = trusted
    redis, keys = app[REDIS], app[KEYS]
    ttl = app[SETTINGS].receipt_dedupe_ttl_s
    seen_keys = [keys.receipt_seen(provider, r.event_id) for r in receipts]
    fresh: list[tuple[Receipt, str]] = []
    if receipts:
        async with redis.pipeline(transaction=False) as pipe:
            for key in seen_keys:
                pipe.set(key, b"1", nx=True, ex=ttl)
            claimed = await pipe.execute()
        fresh = [(r, k) for r, k, ok in zip(receipts, seen_keys, claimed, strict=True) if ok]
    try:
        for r, _ in fresh:
            if r.suppress:
                await app[STORE].suppress(
                    r.tenant_id, r.suppress, reason=r.suppress_reason, source=provider, channel=r.channel
                )
                log.info(
                    "address suppressed by receipt",
                    provider=provider,
                    tenant=r.tenant_id,
                    to=mask(r.suppress),
                    reason=r.suppress_reason,
                )
            if r.engagement and r.ids is not None and r.channel is not None:
                at = r.at if r.at is not None else time.time()
                if await app[ENGAGEMENT].record(r.tenant_id, r.ids.notification, r.channel, r.engagement, at):
                    metrics.ENGAGEMENT.labels(r.channel, r.engagement).inc()
        futures = [
            await app[PRODUCER].send(
                app[TOPICS].status,
                orjson.dumps(r.event.model_dump(exclude_none=True)),
                key=partition_key(r.event.tenant_id, r.event.notification_id),
            )
            for r, _ in fresh
            if r.event is not None
        ]
        await asyncio.gather(*futures)
    except Exception as exc:
        if fresh:
            await redis.delete(*(k for _, k in fresh))
        log.warning("receipt not applied; the provider will retry", provider=provider, error=repr(exc))
        raise ProblemError(
            503, "the receipt could not be recorded; retry later", headers={"Retry-After": "5"}
        ) from None
    metrics.RECEIPTS.labels(provider, "applied").inc(len(fresh))
    metrics.RECEIPTS.labels(provider, "duplicate").inc(len(receipts) - len(fresh))
    return json_response(
        {
            "received": received,
            "applied": len(fresh),
            "duplicates": len(receipts) - len(fresh),
            "refused": refused,
        }
    )
