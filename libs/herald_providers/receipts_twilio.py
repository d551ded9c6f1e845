"""Twilio status callbacks (``POST /v1/receipts/twilio``).

Verified before anything is read: ``X-Twilio-Signature``, HMAC-SHA1 of the public URL and the form
with the auth token (``HERALD_TWILIO_AUTH_TOKEN``; unset refuses the callbacks). ``delivered`` →
delivered; ``undelivered`` / ``failed`` → failed with the error code, and codes meaning unsubscribed
or invalid number suppress it. Callbacks map back through the ``tenant``, ``notification`` and
``delivery`` query parameters the sender put on the StatusCallback URL (covered by the signature);
the gateway checks that they were issued to that tenant (and that the callback is not stale).
Twilio has no event id, so ``<MessageSid>:<MessageStatus>`` deduplicates.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from herald_common.policy import INVALID_ADDRESS, UNSUBSCRIBED
from herald_common.wire import Status
from herald_providers.receipts import Ids, Receipt, ReceiptRefused, Receipts, valid_id

PROVIDER = "twilio"
RECEIPT_PATH = f"/v1/receipts/{PROVIDER}"
# Twilio error codes that mean the number will never take messages: unsubscribed (STOP), invalid,
# not a mobile number, unknown destination, landline or unreachable carrier, blocked by the recipient.
SUPPRESSING_CODES = frozenset({"21610", "21211", "21614", "30004", "30005", "30006"})
UNSUBSCRIBED_CODE = "21610"  # the member replied STOP: suppressed as unsubscribed, the others as invalid
Params = Mapping[str, str] | Iterable[tuple[str, str]]


async def parse(request: web.Request, settings: Any) -> Receipts:
    """``settings``: the gateway's ``ReceiptSettings``."""
    if settings.twilio_auth_token is None:
        raise ReceiptRefused(404, "Twilio receipts are not enabled (HERALD_TWILIO_AUTH_TOKEN)")
    signature = request.headers.get("X-Twilio-Signature")
    if not signature:
        raise ReceiptRefused(401, "send the X-Twilio-Signature header")
    if request.content_type != "application/x-www-form-urlencoded":
        raise ReceiptRefused(415, "send the callback as application/x-www-form-urlencoded")
    form = await request.post()
    params = [(k, v) for k, v in form.items() if isinstance(v, str)]
    base = settings.public_base_url
    url = f"{base}{request.raw_path}" if base else str(request.url)
    if not verify_signature(settings.twilio_auth_token.get_secret_value(), url, params, signature):
        raise ReceiptRefused(403, "the X-Twilio-Signature does not verify")
    receipt = from_callback(dict(request.query), dict(params))
    return Receipts([receipt] if receipt else [], received=1)


def from_callback(query: dict[str, str], form: dict[str, str]) -> Receipt | None:
    ids = Ids.of(query.get("tenant"), query.get("notification"), query.get("delivery"))
    sid, state = form.get("MessageSid", ""), form.get("MessageStatus", "")
    if ids is None or not valid_id(sid):
        return None
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
    suppress = form.get("To") if status == "failed" and code in SUPPRESSING_CODES else None
    event = ids.event("sms", status, PROVIDER, sid, reason)
    to = form.get("To") or None
    why = UNSUBSCRIBED if code == UNSUBSCRIBED_CODE else INVALID_ADDRESS
    return Receipt(
        f"tw:{sid}:{state}",
        ids.tenant,
        event,
        suppress,
        ids=ids,
        channel="sms",
        address=to,
        suppress_reason=why,
    )


def compute_signature(auth_token: str, url: str, params: Params) -> str:
    """Twilio's ``X-Twilio-Signature`` for a form POST to ``url`` with ``params``."""
    items = params.items() if isinstance(params, Mapping) else params
    data = url + "".join(k + v for k, v in sorted(items))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify_signature(auth_token: str, url: str, params: Params, signature: str) -> bool:
    """True when ``signature`` matches ``url`` as given or with its default port added/removed.

    Twilio signs the URL it was configured with; proxies may add or strip ``:443``/``:80``.
    """
    items = list(params.items() if isinstance(params, Mapping) else params)
    return any(
        hmac.compare_digest(compute_signature(auth_token, candidate, items), signature)
        for candidate in _url_variants(url)
    )


def _url_variants(url: str) -> list[str]:
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    host = parts.hostname or ""
    if default is None or not host:
        return [url]
    with_port = parts._replace(netloc=_netloc(parts, f"{host}:{parts.port or default}"))
    without = parts._replace(netloc=_netloc(parts, host)) if parts.port in (None, default) else parts
    return list(dict.fromkeys([url, urlunsplit(with_port), urlunsplit(without)]))


def _netloc(parts: Any, hostport: str) -> str:
    userinfo = parts.netloc.rpartition("@")[0]
    return f"{userinfo}@{hostport}" if userinfo else hostport


# Inbound SMS replies (``POST /v1/receipts/twilio/replies``): Twilio's own opt-out keywords.
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})


def reply_keyword(body: str) -> str | None:
    """``stop`` or ``start`` when a reply is one of Twilio's opt-out or opt-in keywords (the whole
    message, any case, surrounding spaces and punctuation ignored, as Twilio matches them)."""
    word = body.strip().strip(".!").strip().upper()
    if word in STOP_WORDS:
        return "stop"
    if word in START_WORDS:
        return "start"
    return None
