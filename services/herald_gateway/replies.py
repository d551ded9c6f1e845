"""``POST /v1/receipts/twilio/replies?tenant=<tenant id>``: members' SMS replies (Twilio's incoming
message webhook: form fields ``From``, ``To``, ``Body``, ``MessageSid``).

Verified like the status callbacks (``X-Twilio-Signature`` over the public URL and the form, with
``HERALD_TWILIO_AUTH_TOKEN``). The tenant is the ``tenant`` query parameter of the URL configured as
the number's incoming-message webhook: Twilio signs the whole URL, so only someone holding the auth
token can name a tenant (a number shared by several tenants can be configured for one of them only).
STOP and its synonyms (STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT) suppress the sender's number on the
sms channel (reason ``unsubscribed``, source ``twilio``) and count ``unsubscribed``; START (YES,
UNSTOP) lifts a suppression whose reason is ``unsubscribed`` (never one added for another reason).
Other replies are acknowledged and dropped. Deduplicated by ``MessageSid`` like receipts. The answer
is an empty TwiML document: Twilio itself sends the carrier-required confirmation to STOP/START.
"""

from __future__ import annotations

import time

import structlog
from aiohttp import web

from herald_common import metrics
from herald_common.logging import mask
from herald_common.policy import UNSUBSCRIBED
from herald_common.suppressions import valid_address
from herald_gateway.context import KEYS, REDIS, SETTINGS, STORE
from herald_gateway.problems import ProblemError
from herald_gateway.records import STATS
from herald_providers.receipts import valid_id
from herald_providers.receipts_twilio import PROVIDER, RECEIPT_PATH, reply_keyword, verify_signature

log = structlog.get_logger()
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
REPLIES_PATH = f"{RECEIPT_PATH}/replies"


def _twiml() -> web.Response:
    return web.Response(text=TWIML, content_type="text/xml")


async def receive_reply(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    if settings.twilio_auth_token is None:
        raise ProblemError(404, "Twilio replies are not enabled (HERALD_TWILIO_AUTH_TOKEN)")
    signature = request.headers.get("X-Twilio-Signature")
    if not signature:
        raise ProblemError(401, "send the X-Twilio-Signature header")
    if request.content_type != "application/x-www-form-urlencoded":
        raise ProblemError(415, "send the reply as application/x-www-form-urlencoded")
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    base = settings.public_base_url
    url = f"{base}{request.raw_path}" if base else str(request.url)
    if not verify_signature(settings.twilio_auth_token.get_secret_value(), url, form, signature):
        raise ProblemError(403, "the X-Twilio-Signature does not verify")
    tenant_id = request.query.get("tenant", "")
    if not valid_id(tenant_id) or await request.app[STORE].get_tenant(tenant_id) is None:
        raise ProblemError(403, "the reply URL names no tenant of this Herald (?tenant=<id>)")
    keyword = reply_keyword(form.get("Body", ""))
    number, sid = form.get("From", ""), form.get("MessageSid", "")
    if keyword is None or not valid_address("sms", number) or not valid_id(sid):
        metrics.RECEIPTS.labels(PROVIDER, "ignored").inc()
        return _twiml()
    redis, seen = request.app[REDIS], request.app[KEYS].receipt_seen(PROVIDER, f"in:{sid}")
    if not await redis.set(seen, b"1", nx=True, ex=settings.receipt_dedupe_ttl_s):
        metrics.RECEIPTS.labels(PROVIDER, "duplicate").inc()
        return _twiml()
    store = request.app[STORE]
    try:
        if keyword == "stop":
            await store.suppress(tenant_id, number, reason=UNSUBSCRIBED, source=PROVIDER, channel="sms")
            await request.app[STATS].count(tenant_id, time.time(), None, "sms", ["unsubscribed"])
        else:
            await store.suppressions.remove(tenant_id, [number], only_reason=UNSUBSCRIBED)
    except Exception as exc:
        await redis.delete(seen)
        log.warning("reply not applied; Twilio will retry", tenant=tenant_id, error=repr(exc))
        raise ProblemError(
            503, "the reply could not be recorded; retry later", headers={"Retry-After": "5"}
        ) from None
    metrics.ENGAGEMENT.labels("sms", "unsubscribed" if keyword == "stop" else "resubscribed").inc()
    log.info("sms reply applied", tenant=tenant_id, keyword=keyword, number=mask(number))
    return _twiml()


def add_routes(app: web.Application) -> None:
    app.router.add_post(REPLIES_PATH, receive_reply)
