"""A local SendGrid v3 Mail Send peer: ``POST /v3/mail/send``.

Checks ``Authorization: Bearer <api key>``, validates the request like SendGrid does (personalizations
1..1,000 with valid ``to`` addresses, ``from``, ``subject``, ``content`` with text/plain first),
applies each personalization's ``substitutions``, and answers ``202`` with an ``X-Message-Id``
header. Errors use SendGrid's document ``{"errors": [{"message", "field", "help"}]}``: 400 for shape
and invalid addresses (addresses in ``faults.invalid`` are refused as invalid), 401 for a bad key,
413 over ``max_body_bytes``, 429 with ``Retry-After`` and ``X-RateLimit-*`` when throttling.
Each recipient becomes one captured message: provider, to, from, subject, text, html, custom_args.

Event Webhook: given ``event_webhook_url`` and a ``signing_key`` (see
:func:`herald_providers.webhooks.generate_signing_key`), the peer then posts one JSON array of events
per accepted request, signed like SendGrid's signed Event Webhook: ``processed`` and ``delivered``
for each recipient, or ``bounce`` (type ``bounce``, a 550) for addresses in ``bounce``. Each event
carries the personalization's ``custom_args`` at its top level, like SendGrid's.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from typing import Any

import aiohttp
import orjson
import structlog
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

from herald_dev.outbox import Outbox
from herald_dev.peers.callbacks import CallbackClient
from herald_dev.peers.faults import FaultPlan, apply_faults, json_response
from herald_providers.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_event_payload

log = structlog.get_logger(__name__)

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
_STATUS_MESSAGES = {
    429: "too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def _errors(
    status: int, *errors: tuple[str | None, str], headers: dict[str, str] | None = None
) -> web.Response:
    body = {"errors": [{"message": msg, "field": fld, "help": _HELP if fld else None} for fld, msg in errors]}
    return json_response(body, status, headers)


class SendGridPeer(CallbackClient):
    provider = "sendgrid"

    def __init__(
        self,
        api_key: str,
        *,
        faults: FaultPlan | None = None,
        outbox: Outbox | None = None,
        keep: bool = True,
        max_body_bytes: int = 30 * 1024 * 1024,
        event_webhook_url: str | None = None,
        signing_key: EllipticCurvePrivateKey | None = None,
        bounce: set[str] | None = None,
        event_delay_s: float = 0.05,
    ) -> None:
        self.api_key = api_key
        self.event_webhook_url = event_webhook_url
        self.signing_key = signing_key
        self.bounce = set(bounce or ())
        self.event_delay_s = event_delay_s
        self.webhook_posts: list[tuple[bytes, dict[str, str], int]] = []  # body, headers, answer (keep)
        super().__init__()
        self.faults = faults or FaultPlan()
        self.outbox = outbox
        self.keep = keep
        self.max_body_bytes = max_body_bytes
        self.messages: list[dict[str, Any]] = []  # one per accepted recipient (when keep)
        self.requests: list[dict[str, Any]] = []  # accepted request bodies (when keep)
        self.recipients_accepted = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body_bytes + 1)
        app.router.add_post("/v3/mail/send", self._send)
        app.cleanup_ctx.append(self._client)
        app.on_shutdown.append(self._shutdown)
        return app

    async def _shutdown(self, _app: web.Application) -> None:
        self.faults.release_hangs()

    def _fault(self, status: int, headers: dict[str, str]) -> web.StreamResponse:
        if status == 429:
            reset = str(int(time.time()) + int(headers.get("Retry-After", "1")))
            headers = {
                **headers,
                "X-RateLimit-Limit": "600",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": reset,
            }
        return _errors(status, (None, _STATUS_MESSAGES.get(status, "error")), headers=headers)

    async def _send(self, request: web.Request) -> web.StreamResponse:
        response = await self._answer(request)
        if self.faults.journal_on:
            try:
                body = orjson.loads(await request.read())
            except orjson.JSONDecodeError:
                body = None
            self.faults.note(_recipients(body), response)
        return response

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        faulty = await apply_faults(request, self.faults, self._fault)
        if faulty is not None:
            return faulty
        auth = request.headers.get("Authorization", "")
        if not auth:
            return _errors(401, (None, "authorization required"))
        if auth != f"Bearer {self.api_key}":
            return _errors(401, (None, "The provided authorization grant is invalid, expired, or revoked"))
        if (request.content_length or 0) > self.max_body_bytes:
            return _errors(413, (None, "Payload Too Large"))
        raw = await request.read()
        if len(raw) > self.max_body_bytes:
            return _errors(413, (None, "Payload Too Large"))
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _errors(400, (None, "Bad Request"))
        if not isinstance(body, dict):
            return _errors(400, (None, "Bad Request"))
        problems = self._validate(body)
        if problems:
            return _errors(400, *problems)
        message_id = secrets.token_urlsafe(16)[:22]
        self._capture(body, message_id)
        self.faults.meter.record()
        if self.event_webhook_url and self.signing_key is not None:
            self._in_background(self._post_events(body, message_id))
        return web.Response(status=202, headers={"X-Message-Id": message_id})

    def events_for(self, body: dict[str, Any], message_id: str) -> list[dict[str, Any]]:
        """What SendGrid would report for an accepted request: one outcome per recipient."""
        events: list[dict[str, Any]] = []
        for i, p in enumerate(body["personalizations"]):
            args = {**body.get("custom_args", {}), **p.get("custom_args", {})}
            for addr in p["to"]:
                base = {
                    "email": addr["email"],
                    "timestamp": int(time.time()),
                    "sg_message_id": f"{message_id}.filterdrecv-{i:04d}",
                    "smtp-id": f"<{message_id}@herald.local>",
                    **args,
                }
                events.append({**base, "event": "processed", "sg_event_id": secrets.token_urlsafe(16)})
                if addr["email"] in self.bounce:
                    outcome = {
                        "event": "bounce",
                        "type": "bounce",
                        "status": "5.1.1",
                        "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
                    }
                else:
                    outcome = {"event": "delivered", "response": "250 2.0.0 OK"}
                events.append({**base, **outcome, "sg_event_id": secrets.token_urlsafe(16)})
        return events

    def signed(self, events: list[dict[str, Any]]) -> tuple[bytes, dict[str, str]]:
        """A webhook body and the headers that sign it, as SendGrid's signed Event Webhook sends."""
        assert self.signing_key is not None
        body = orjson.dumps(events)
        timestamp = str(int(time.time()))
        signature = sign_event_payload(self.signing_key, timestamp, body)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature,
            TIMESTAMP_HEADER: timestamp,
        }
        return body, headers

    async def _post_events(self, request_body: dict[str, Any], message_id: str) -> None:
        assert self._session is not None and self.event_webhook_url is not None
        await asyncio.sleep(self.event_delay_s)
        body, headers = self.signed(self.events_for(request_body, message_id))
        try:
            async with self._session.post(self.event_webhook_url, data=body, headers=headers) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.debug("sendgrid_peer_webhook_failed", error=type(exc).__name__)
            return
        if self.keep:
            self.webhook_posts.append((body, headers, status))

    def _validate(self, body: dict[str, Any]) -> list[tuple[str | None, str]]:
        problems: list[tuple[str | None, str]] = []
        ps = body.get("personalizations")
        if not isinstance(ps, list) or not ps:
            return [
                (
                    "personalizations",
                    "The personalizations field is required and must have at least one item.",
                )
            ]
        if len(ps) > 1000:
            return [("personalizations", "The personalizations field must have 1000 or fewer items.")]
        recipients = 0
        for i, p in enumerate(ps):
            to = p.get("to") if isinstance(p, dict) else None
            if not isinstance(to, list) or not to:
                problems.append(
                    (f"personalizations.{i}.to", "The to array is required for all personalization objects.")
                )
                continue
            for j, addr in enumerate(to):
                recipients += 1
                email = addr.get("email") if isinstance(addr, dict) else None
                if not isinstance(email, str) or not _EMAIL.match(email) or email in self.faults.invalid:
                    problems.append(
                        (f"personalizations.{i}.to.{j}.email", "Does not contain a valid address.")
                    )
            args = p.get("custom_args", {})
            if not isinstance(args, dict) or not all(isinstance(v, str) for v in args.values()):
                problems.append((f"personalizations.{i}.custom_args", "Custom args values must be strings."))
        if recipients > 1000:
            problems.append(("personalizations", "The total number of recipients must be 1000 or fewer."))
        sender = body.get("from")
        if not isinstance(sender, dict) or not _EMAIL.match(str(sender.get("email", ""))):
            problems.append(("from.email", "The from email does not contain a valid address."))
        if not body.get("subject") and not all(isinstance(p, dict) and p.get("subject") for p in ps):
            problems.append(("subject", "The subject is required."))
        content = body.get("content")
        if not isinstance(content, list) or not content:
            problems.append(
                ("content", "Unless a valid template_id is provided, the content parameter is required.")
            )
        elif any(
            not isinstance(c, dict) or not c.get("type") or not isinstance(c.get("value"), str)
            for c in content
        ):
            problems.append(("content", "Each content item needs a type and a string value."))
        elif any(c["type"] == "text/plain" for c in content[1:]):
            problems.append(("content.0.type", "The text/plain content type must be first."))
        return problems

    def _capture(self, body: dict[str, Any], message_id: str) -> None:
        parts = {c["type"]: c["value"] for c in body["content"]}
        sender = body["from"]["email"]
        for p in body["personalizations"]:
            subs = p.get("substitutions") or {}
            subject = _substitute(p.get("subject") or body.get("subject") or "", subs)
            text = _substitute(parts.get("text/plain", ""), subs)
            html = _substitute(parts.get("text/html", ""), subs)
            for addr in p["to"]:
                self.recipients_accepted += 1
                record = {
                    "provider": self.provider,
                    "to": addr["email"],
                    "from": sender,
                    "subject": subject,
                    "text": text,
                    "html": html,
                    "custom_args": {**body.get("custom_args", {}), **p.get("custom_args", {})},
                    "message_id": message_id,
                    "headers": {**body.get("headers", {}), **p.get("headers", {})},
                }
                if self.keep:
                    self.messages.append(record)
                if self.outbox is not None:
                    self.outbox.write("email", record)
        if self.keep:
            self.requests.append(body)


def _recipients(body: Any) -> list[str]:
    try:
        return [a["email"] for p in body["personalizations"] for a in p["to"]]
    except (KeyError, TypeError):
        return [""]


def _substitute(text: str, subs: dict[str, str]) -> str:
    for token, value in subs.items():
        text = text.replace(token, str(value))
    return text
