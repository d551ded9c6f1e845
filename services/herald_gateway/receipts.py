"""POST /v1/receipts/sendgrid and /v1/receipts/twilio: provider delivery receipts.

Both are verified before anything is read from them (SendGrid: the signed Event Webhook's ECDSA
signature over timestamp + body, with a freshness window; Twilio: ``X-Twilio-Signature``, HMAC-SHA1 of
the public URL and the form with the auth token), deduplicated by event id (``SET NX`` with a TTL on
``{prefix}:receipt:<provider>:<id>``; Twilio has no event id, so ``<MessageSid>:<MessageStatus>``),
and turned into status events on ``<prefix>.status`` that the tracker folds:

- SendGrid ``delivered`` → delivered; ``bounce`` → bounced (a hard bounce also suppresses the
  address); ``dropped`` → failed; ``spamreport`` → suppresses the address. Receipts map back through
  the ``custom_args`` (tenant_id, notification_id, delivery_id) the sender put on each personalization,
  which SendGrid copies into every event.
- Twilio ``delivered`` → delivered; ``undelivered`` / ``failed`` → failed with the error code, and
  codes meaning unsubscribed or invalid number suppress it. Receipts map back through the
  ``tenant``, ``notification`` and ``delivery`` query parameters the sender put on the StatusCallback
  URL (covered by Twilio's signature).

The dedupe key is set before the effects and removed again if they fail (the provider retries on a
5xx), so a replayed receipt changes nothing and a failed one is not lost. Other events (processed,
deferred, open, click, sent, queued) are acknowledged and ignored.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

from herald_common import metrics
from herald_common.ids import partition_key
from herald_common.logging import mask
from herald_common.schemas import Status, StatusEvent
from herald_common.settings import Channel
from herald_gateway.context import KEYS, PRODUCER, REDIS, SETTINGS, STORE, TOPICS
from herald_gateway.problems import ProblemError, json_response
from herald_providers.config import ReceiptSettings
from herald_providers.twilio import verify_signature
from herald_providers.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    load_public_key,
    verify_event_payload,
)

log = structlog.get_logger()

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")
# SendGrid drops mail to addresses already on its own suppression lists: mirror those.
SENDGRID_SUPPRESSING_DROPS = ("Bounced Address", "Spam Reporting Address", "Invalid")
# Twilio error codes that mean the number will never take messages: unsubscribed (STOP), invalid,
# not a mobile number, unknown destination, landline or unreachable carrier, blocked by the recipient.
TWILIO_SUPPRESSING_CODES = frozenset({"21610", "21211", "21614", "30004", "30005", "30006"})


@dataclass(frozen=True, slots=True)
class ReceiptConfig:
    settings: ReceiptSettings
    sendgrid_key: EllipticCurvePublicKey | None


RECEIPTS = web.AppKey("receipts", ReceiptConfig)


@dataclass(frozen=True, slots=True)
class Receipt:
    event_id: str
    tenant_id: str
    event: StatusEvent | None = None  # what the tracker should fold, if anything
    suppress: str | None = None  # an address to put on the tenant's suppression list


def add_routes(app: web.Application) -> None:
    settings: ReceiptSettings = app[SETTINGS]
    key = (
        load_public_key(settings.sendgrid_webhook_public_key)
        if settings.sendgrid_webhook_public_key
        else None
    )
    app[RECEIPTS] = ReceiptConfig(settings, key)
    app.router.add_post("/v1/receipts/sendgrid", sendgrid)
    app.router.add_post("/v1/receipts/twilio", twilio)


# --- SendGrid ------------------------------------------------------------------------------------------
async def sendgrid(request: web.Request) -> web.Response:
    config = request.app[RECEIPTS]
    if config.sendgrid_key is None:
        raise ProblemError(404, "SendGrid receipts are not enabled (HERALD_SENDGRID_WEBHOOK_PUBLIC_KEY)")
    signature = request.headers.get(SIGNATURE_HEADER)
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise ProblemError(401, f"send the {SIGNATURE_HEADER} and {TIMESTAMP_HEADER} headers")
    body = await request.read()
    if not verify_event_payload(config.sendgrid_key, timestamp, body, signature):
        raise ProblemError(403, "the event webhook signature does not verify")
    try:
        age = abs(time.time() - float(timestamp))
    except ValueError:
        raise ProblemError(403, "the event webhook timestamp is not a number") from None
    if age > config.settings.sendgrid_webhook_max_age_s:
        raise ProblemError(403, "the event webhook timestamp is too old")
    try:
        events = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ProblemError(400, "the body is not JSON") from None
    if not isinstance(events, list):
        raise ProblemError(400, "the body must be a JSON array of events")
    receipts = [r for r in (from_sendgrid(e) for e in events if isinstance(e, dict)) if r is not None]
    return await _apply(request, "sendgrid", receipts, received=len(events))


def from_sendgrid(ev: dict[str, Any]) -> Receipt | None:
    tenant, notification, delivery = (ev.get(k) for k in ("tenant_id", "notification_id", "delivery_id"))
    if not all(isinstance(v, str) and _ID.match(v) for v in (tenant, notification, delivery)):
        return None  # not one of ours (or sent without custom_args)
    assert isinstance(tenant, str) and isinstance(notification, str) and isinstance(delivery, str)
    kind = str(ev.get("event") or "")
    email = ev.get("email") if isinstance(ev.get("email"), str) else None
    reason = str(ev.get("reason") or ev.get("response") or "")[:300]
    event_id = str(
        ev.get("sg_event_id") or hashlib.sha256(orjson.dumps(ev, option=orjson.OPT_SORT_KEYS)).hexdigest()
    )
    status: Status | None = None
    suppress = False
    if kind == "delivered":
        status = "delivered"
    elif kind == "bounce":
        hard = ev.get("type", "bounce") == "bounce"
        status, reason, suppress = "bounced", f"{'bounce' if hard else 'blocked'}: {reason}", hard
    elif kind == "dropped":
        status, suppress = "failed", any(r in reason for r in SENDGRID_SUPPRESSING_DROPS)
        reason = f"dropped: {reason}"
    elif kind == "spamreport":
        suppress = True
    else:
        return None
    event = None
    if status is not None:
        message_id = str(ev.get("sg_message_id") or "").split(".", 1)[0] or None
        event = _event(tenant, notification, delivery, "email", status, "sendgrid", message_id, reason, ev)
    return Receipt(f"sg:{event_id}", tenant, event, email if suppress and email else None)


# --- Twilio --------------------------------------------------------------------------------------------
async def twilio(request: web.Request) -> web.Response:
    config = request.app[RECEIPTS].settings
    if config.twilio_auth_token is None:
        raise ProblemError(404, "Twilio receipts are not enabled (HERALD_TWILIO_AUTH_TOKEN)")
    signature = request.headers.get("X-Twilio-Signature")
    if not signature:
        raise ProblemError(401, "send the X-Twilio-Signature header")
    if request.content_type != "application/x-www-form-urlencoded":
        raise ProblemError(415, "send the callback as application/x-www-form-urlencoded")
    form = await request.post()
    params = [(k, v) for k, v in form.items() if isinstance(v, str)]
    url = f"{config.public_base_url}{request.raw_path}" if config.public_base_url else str(request.url)
    if not verify_signature(config.twilio_auth_token.get_secret_value(), url, params, signature):
        raise ProblemError(403, "the X-Twilio-Signature does not verify")
    receipt = from_twilio(dict(request.query), dict(params))
    return await _apply(request, "twilio", [receipt] if receipt else [], received=1)


def from_twilio(query: dict[str, str], form: dict[str, str]) -> Receipt | None:
    tenant, notification, delivery = (query.get(k) for k in ("tenant", "notification", "delivery"))
    sid, state = form.get("MessageSid", ""), form.get("MessageStatus", "")
    if not all(isinstance(v, str) and _ID.match(v) for v in (tenant, notification, delivery, sid)):
        return None
    assert isinstance(tenant, str) and isinstance(notification, str) and isinstance(delivery, str)
    code = form.get("ErrorCode") or ""
    status: Status
    if state == "delivered":
        status, reason = "delivered", ""
    elif state in ("undelivered", "failed"):
        status = "failed"
        reason = f"twilio {state}" + (f" (error {code})" if code else "")
        if form.get("ErrorMessage"):
            reason += f": {form['ErrorMessage'][:200]}"
    else:
        return None
    suppress = form.get("To") if status == "failed" and code in TWILIO_SUPPRESSING_CODES else None
    event = _event(tenant, notification, delivery, "sms", status, "twilio", sid, reason, {})
    return Receipt(f"tw:{sid}:{state}", tenant, event, suppress)


# --- shared --------------------------------------------------------------------------------------------
def _event(
    tenant: str,
    notification: str,
    delivery: str,
    channel: Channel,
    status: Status,
    provider: str,
    message_id: str | None,
    reason: str,
    raw: dict[str, Any],
) -> StatusEvent:
    at = raw.get("timestamp")
    return StatusEvent(
        tenant_id=tenant,
        notification_id=notification,
        status=status,
        at=float(at) if isinstance(at, int | float) else time.time(),
        channel=channel,
        delivery_id=delivery,
        provider=provider,
        provider_message_id=message_id,
        reason=reason or None,
    )


async def _apply(request: web.Request, provider: str, receipts: list[Receipt], received: int) -> web.Response:
    app = request.app
    redis, keys = app[REDIS], app[KEYS]
    ttl = app[RECEIPTS].settings.receipt_dedupe_ttl_s
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
                await app[STORE].suppress(r.tenant_id, r.suppress)
                log.info(
                    "address suppressed by receipt",
                    provider=provider,
                    tenant=r.tenant_id,
                    to=mask(r.suppress),
                )
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
        {"received": received, "applied": len(fresh), "duplicates": len(receipts) - len(fresh)}
    )
