"""SendGrid Event Webhook receipts (``POST /v1/receipts/sendgrid``).

Verified before anything is read: the signed Event Webhook's ECDSA signature over timestamp + body
(``HERALD_SENDGRID_WEBHOOK_PUBLIC_KEY``; unset refuses the receipts) within a freshness window.
``delivered`` → delivered; ``bounce`` → bounced (a hard bounce also suppresses the address, reason
``bounced``); ``dropped`` → failed (drops for SendGrid's own suppression lists suppress the address
too); ``open`` and ``click`` → engagement on the message (herald_common.engagement), ``unsubscribe``
and ``group_unsubscribe`` → engagement and the address suppressed (``unsubscribed``), ``spamreport``
→ engagement and suppressed (``complaint``). Receipts map back through the ``custom_args``
(tenant_id, notification_id, delivery_id) the sender put on each personalization, which SendGrid
copies into every event. Other events (processed, deferred) are ignored.
"""

from __future__ import annotations

import functools
import hashlib
import time
from typing import Any

import orjson
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

from herald_common.engagement import Kind
from herald_common.policy import BOUNCED, COMPLAINT, UNSUBSCRIBED
from herald_common.wire import Status
from herald_providers.receipts import Ids, Receipt, ReceiptRefused, Receipts
from herald_providers.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    load_public_key,
    verify_event_payload,
)

PROVIDER = "sendgrid"
# SendGrid drops mail to addresses already on its own suppression lists: mirror those.
SUPPRESSING_DROPS = ("Bounced Address", "Spam Reporting Address", "Invalid")
# Engagement events (herald_common.engagement): recorded on the message's channel and counted.
ENGAGEMENT: dict[str, Kind] = {
    "open": "opened",
    "click": "clicked",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
    "spamreport": "complained",
}


@functools.lru_cache(maxsize=4)
def _key(text: str) -> EllipticCurvePublicKey:
    return load_public_key(text)


async def parse(request: web.Request, settings: Any) -> Receipts:
    """``settings``: the gateway's ``ReceiptSettings``."""
    if not settings.sendgrid_webhook_public_key:
        raise ReceiptRefused(404, "SendGrid receipts are not enabled (HERALD_SENDGRID_WEBHOOK_PUBLIC_KEY)")
    signature = request.headers.get(SIGNATURE_HEADER)
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise ReceiptRefused(401, f"send the {SIGNATURE_HEADER} and {TIMESTAMP_HEADER} headers")
    body = await request.read()
    if not verify_event_payload(_key(settings.sendgrid_webhook_public_key), timestamp, body, signature):
        raise ReceiptRefused(403, "the event webhook signature does not verify")
    if not fresh(timestamp, settings.sendgrid_webhook_max_age_s):
        raise ReceiptRefused(403, "the event webhook timestamp is not a recent Unix time")
    try:
        events = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ReceiptRefused(400, "the body is not JSON") from None
    if not isinstance(events, list):
        raise ReceiptRefused(400, "the body must be a JSON array of events")
    receipts = [r for r in (from_event(e) for e in events if isinstance(e, dict)) if r is not None]
    return Receipts(receipts, received=len(events))


def fresh(timestamp: str, max_age_s: float, now: float | None = None) -> bool:
    """Fail closed: only whole Unix seconds (ASCII digits) within ``max_age_s`` of now, either way,
    are fresh; anything else (``nan``, ``1e3``, empty, signs, spaces) is not."""
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return False
    age = abs((time.time() if now is None else now) - int(timestamp))
    return age <= max_age_s


def from_event(ev: dict[str, Any]) -> Receipt | None:
    ids = Ids.of(ev.get("tenant_id"), ev.get("notification_id"), ev.get("delivery_id"))
    if ids is None:
        return None  # not one of ours (or sent without custom_args)
    kind = str(ev.get("event") or "")
    address = ev.get("email") if isinstance(ev.get("email"), str) else None
    reason = str(ev.get("reason") or ev.get("response") or "")[:300]
    event_id = str(
        ev.get("sg_event_id") or hashlib.sha256(orjson.dumps(ev, option=orjson.OPT_SORT_KEYS)).hexdigest()
    )
    status: Status | None = None
    suppress, why = False, BOUNCED
    engagement = ENGAGEMENT.get(kind)
    if kind == "delivered":
        status = "delivered"
    elif kind == "bounce":
        hard = ev.get("type", "bounce") == "bounce"
        status, reason, suppress = "bounced", f"{'bounce' if hard else 'blocked'}: {reason}", hard
    elif kind == "dropped":
        status, suppress = "failed", any(r in reason for r in SUPPRESSING_DROPS)
        why = COMPLAINT if "Spam Reporting" in reason else BOUNCED
        reason = f"dropped: {reason}"
    elif engagement in ("unsubscribed", "complained"):
        suppress, why = True, UNSUBSCRIBED if engagement == "unsubscribed" else COMPLAINT
    elif engagement is None:
        return None
    event = None
    if status is not None:
        message_id = str(ev.get("sg_message_id") or "").split(".", 1)[0] or None
        event = ids.event("email", status, PROVIDER, message_id, reason, ev.get("timestamp"))
    suppressed = address if suppress and address else None
    at = ev.get("timestamp")
    return Receipt(
        f"sg:{event_id}",
        ids.tenant,
        event,
        suppressed,
        ids=ids,
        channel="email",
        address=address,
        suppress_reason=why,
        engagement=engagement,
        at=float(at) if isinstance(at, int | float) and not isinstance(at, bool) else None,
    )
