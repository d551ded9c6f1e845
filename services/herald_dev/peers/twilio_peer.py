"""A local Twilio Messages peer: ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``.

Checks HTTP basic auth (AccountSid, AuthToken) against the account in the path, validates the form
(``To`` in E.164, ``From`` or ``MessagingServiceSid``, ``Body`` up to 1,600 characters) and answers
``201`` with the Message resource as JSON (``sid`` SM…, ``status`` queued, or accepted for a
messaging service). Errors use Twilio's document ``{"code", "message", "more_info", "status"}``:
21211 for an invalid ``To`` (and every number in ``faults.invalid``), any code from ``error_codes``
for chosen numbers (e.g. 21610 unsubscribed, 21614 not mobile, 30001 queue overflow), 20003 for bad
credentials, 20429 when throttling, 20500 for server errors.

When the request names a ``StatusCallback`` and ``status_callbacks`` is on, the peer then posts
``sent`` and ``delivered`` to it, form-encoded and signed with ``X-Twilio-Signature`` like Twilio.
:meth:`TwilioPeer.reply` posts a member's reply (STOP, START…) the way Twilio's incoming-message
webhook does.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
from email.utils import formatdate
from typing import Any

import aiohttp
import phonenumbers
import structlog
from aiohttp import web

from herald_dev.outbox import Outbox
from herald_dev.peers.callbacks import CallbackClient
from herald_dev.peers.faults import FaultPlan, apply_faults, json_response
from herald_providers.twilio import compute_signature

log = structlog.get_logger(__name__)

ERRORS: dict[int, tuple[int, str]] = {
    20003: (401, "Authenticate"),
    20429: (429, "Too Many Requests"),
    20500: (500, "An internal server error has occurred"),
    21211: (400, "The 'To' number is not a valid phone number."),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' or 'MessagingServiceSid' parameter is required to send a message."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number is not a valid mobile number"),
    21617: (400, "The concatenated message body exceeds the 1600 character limit."),
    30001: (400, "Queue overflow"),
}
_FAULT_CODES = {429: 20429, 500: 20500, 503: 20500}


def twilio_error(code: int, headers: dict[str, str] | None = None, status: int | None = None) -> web.Response:
    http_status, message = ERRORS.get(code, (400, "Error"))
    status = status or http_status
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return json_response(body, status, headers)


class TwilioPeer(CallbackClient):
    provider = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        faults: FaultPlan | None = None,
        outbox: Outbox | None = None,
        error_codes: dict[str, int] | None = None,
        status_callbacks: bool = True,
        callback_delay_s: float = 0.05,
        keep: bool = True,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.faults = faults or FaultPlan()
        self.outbox = outbox
        self.error_codes = dict(error_codes or {})
        self.status_callbacks = status_callbacks
        self.callback_delay_s = callback_delay_s
        self.keep = keep
        self.messages: list[dict[str, Any]] = []
        self.requests: list[dict[str, str]] = []  # accepted forms
        self.callbacks_sent: list[dict[str, str]] = []
        super().__init__()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create)
        app.cleanup_ctx.append(self._client)
        app.on_shutdown.append(self._shutdown)
        return app

    async def _shutdown(self, _app: web.Application) -> None:
        self.faults.release_hangs()

    def _fault(self, status: int, headers: dict[str, str]) -> web.StreamResponse:
        return twilio_error(_FAULT_CODES.get(status, 20500), headers, status)

    async def _create(self, request: web.Request) -> web.StreamResponse:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        return self.faults.note([form.get("To", "")], await self._answer(request, form))

    async def _answer(self, request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        faulty = await apply_faults(request, self.faults, self._fault)
        if faulty is not None:
            return faulty
        login, password = _basic_auth(request.headers.get("Authorization", ""))
        sid = request.match_info["sid"]
        if login != self.account_sid or password != self.auth_token or sid != self.account_sid:
            return twilio_error(20003)
        to, body = form.get("To", ""), form.get("Body", "")
        sender, service = form.get("From"), form.get("MessagingServiceSid")
        if not _valid_e164(to) or to in self.faults.invalid:
            return twilio_error(21211)
        if to in self.error_codes:
            return twilio_error(self.error_codes[to])
        if not sender and not service:
            return twilio_error(21603)
        if not body:
            return twilio_error(21602)
        if len(body) > 1600:
            return twilio_error(21617)
        message = self._resource(form)
        self._capture(form, message)
        self.faults.meter.record()
        if self.status_callbacks and form.get("StatusCallback"):
            self._in_background(self._callbacks(form["StatusCallback"], message))
        return json_response(message, 201)

    def _resource(self, form: dict[str, str]) -> dict[str, Any]:
        message_sid = "SM" + secrets.token_hex(16)
        now = formatdate(usegmt=True)
        body = form["Body"]
        per_segment = (160, 153) if body.isascii() else (70, 67)
        segments = 1 if len(body) <= per_segment[0] else -(-len(body) // per_segment[1])
        service = form.get("MessagingServiceSid")
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": service,
            "num_media": "0",
            "num_segments": str(segments),
            "price": None,
            "price_unit": "USD",
            "sid": message_sid,
            "status": "accepted" if service else "queued",
            "to": form["To"],
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{message_sid}.json",
        }

    def _capture(self, form: dict[str, str], message: dict[str, Any]) -> None:
        record = {
            "provider": self.provider,
            "to": form["To"],
            "from": form.get("From") or form.get("MessagingServiceSid"),
            "text": form["Body"],
            "sid": message["sid"],
            "status_callback": form.get("StatusCallback"),
        }
        if self.keep:
            self.messages.append(record)
            self.requests.append(form)
        if self.outbox is not None:
            self.outbox.write("sms", record)

    async def _callbacks(self, url: str, message: dict[str, Any]) -> None:
        assert self._session is not None
        for status in ("sent", "delivered"):
            await asyncio.sleep(self.callback_delay_s)
            params = {
                "AccountSid": self.account_sid,
                "ApiVersion": "2010-04-01",
                "From": message["from"] or message["messaging_service_sid"],
                "MessageSid": message["sid"],
                "MessageStatus": status,
                "SmsSid": message["sid"],
                "SmsStatus": status,
                "To": message["to"],
            }
            headers = {"X-Twilio-Signature": compute_signature(self.auth_token, url, params)}
            try:
                async with self._session.post(url, data=params, headers=headers) as resp:
                    await resp.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.debug("twilio_peer_callback_failed", error=type(exc).__name__)
                return
            self.callbacks_sent.append(params)

    async def reply(self, url: str, sender: str, to: str, body: str) -> tuple[int, dict[str, str]]:
        """A member's SMS reply, posted to ``url`` as Twilio's signed incoming-message webhook; the
        answer's status and the form (to replay it)."""
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "Body": body,
            "From": sender,
            "MessageSid": "SM" + secrets.token_hex(16),
            "NumMedia": "0",
            "To": to,
        }
        return await self.post_signed(url, params), params

    async def post_signed(self, url: str, params: dict[str, str]) -> int:
        headers = {"X-Twilio-Signature": compute_signature(self.auth_token, url, params)}
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=params, headers=headers) as resp,
        ):
            await resp.read()
            return resp.status


def _basic_auth(header: str) -> tuple[str | None, str | None]:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        login, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    return (login, password) if sep else (None, None)


def _valid_e164(number: str) -> bool:
    if not number.startswith("+"):
        return False
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(number, None))
    except phonenumbers.NumberParseException:
        return False
