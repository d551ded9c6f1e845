"""Twilio Programmable Messaging adapter (SMS) and status-callback signature check.

Wire format: ``POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json``, HTTP basic auth
(AccountSid, AuthToken), form-encoded fields ``To`` (E.164), ``From`` *or* ``MessagingServiceSid``
(a sender id starting ``MG``), ``Body`` and optionally ``StatusCallback`` (where Twilio posts
queued → sent → delivered/undelivered/failed; with ``callback_ids`` the tenant, notification and
delivery ids are added to its query, see :func:`callback_url`). ``201 Created`` answers the Message
resource as JSON; its ``sid`` is the provider message id. Errors answer
``{"code", "message", "more_info", "status"}``.

Message content keys: ``text`` (or ``body``) and optionally ``from`` (overrides the default sender).

Classification, Twilio's code first, then the HTTP status:
21211 (invalid To), 21614 (not a mobile number), 21610 (recipient replied STOP) → permanent,
``invalid_recipient``; 20429 or HTTP 429 → transient, ``throttled``; 30001 (queue overflow) →
transient; 5xx, timeouts, connection errors → transient; any other 4xx → permanent. ``To`` is
checked with ``phonenumbers`` before sending, so an impossible number never costs a request.

Status callbacks are signed: ``X-Twilio-Signature`` = base64(HMAC-SHA1(auth token, URL + each POST
parameter's name and value, sorted by name)); see :func:`verify_signature`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import phonenumbers

from herald_providers import receipts_twilio
from herald_providers.base import (
    OutboundMessage,
    PermanentError,
    Provider,
    ProviderError,
    ProviderSpec,
    SendResult,
    Settings,
    TransientError,
)
from herald_providers.http import (
    HttpProvider,
    classify_status,
    parse_retry_after,
    scrub,
    transport_errors,
)
from herald_providers.receipts_twilio import RECEIPT_PATH
from herald_providers.receipts_twilio import compute_signature as compute_signature  # re-exported
from herald_providers.receipts_twilio import verify_signature as verify_signature  # re-exported

DEFAULT_BASE_URL = "https://api.twilio.com"
INVALID_RECIPIENT_CODES = frozenset({21211, 21614, 21610})
THROTTLED_CODES = frozenset({20429})
TRANSIENT_CODES = frozenset({30001})
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


class TwilioProvider(HttpProvider):
    channel = "sms"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        base_url: str = DEFAULT_BASE_URL,
        sender: str | None = None,
        status_callback_url: str | None = None,
        callback_ids: bool = False,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = 10.0,
        name: str = "twilio",
    ) -> None:
        self.name = name
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        credentials = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self._headers = {
            "Authorization": f"Basic {credentials}",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        self._sender = sender
        self._callback = status_callback_url
        self._callback_ids = callback_ids
        super().__init__(session, timeout_s)

    async def send(self, msg: OutboundMessage) -> SendResult:
        form = self._form(msg)
        if self._session is None:
            raise RuntimeError("TwilioProvider.start() was not awaited")
        body = urlencode(form).encode()  # what FormData would send, without its per-request machinery
        with transport_errors(self.name):
            async with self._session.post(
                self._url, data=body, headers=self._headers, timeout=self._timeout
            ) as resp:
                raw = await resp.read()
                status, retry_after = resp.status, parse_retry_after(resp.headers.get("Retry-After"))
        payload = _json(raw)
        if status in (200, 201) and isinstance(payload, dict) and payload.get("sid"):
            return SendResult(self.name, str(payload["sid"]))
        raise self._error(status, payload, retry_after, form)

    def _form(self, msg: OutboundMessage) -> dict[str, str]:
        if not is_e164(msg.to):
            raise PermanentError(
                "not a valid E.164 phone number",
                code="invalid_number",
                provider=self.name,
                invalid_recipient=True,
            )
        body = msg.content.get("text") or msg.content.get("body")
        if not isinstance(body, str) or not body:
            raise PermanentError("sms content has no text", code="invalid_content", provider=self.name)
        sender = msg.content.get("from") or self._sender
        if not isinstance(sender, str) or not sender:
            raise PermanentError("no SMS sender configured", code="no_sender", provider=self.name)
        form = {"To": msg.to, "Body": body}
        form["MessagingServiceSid" if _is_messaging_service(sender) else "From"] = sender
        if self._callback:
            form["StatusCallback"] = (
                callback_url(self._callback, msg) if self._callback_ids else self._callback
            )
        return form

    def _error(
        self, status: int, payload: Any, retry_after: float | None, form: Mapping[str, str]
    ) -> ProviderError:
        code: int | None = None
        reason = f"HTTP {status}"
        if isinstance(payload, dict):
            if isinstance(payload.get("code"), int):
                code = payload["code"]
            if payload.get("message"):
                reason = scrub(str(payload["message"]), form["To"])
        code_s = str(code) if code is not None else str(status)
        if code in INVALID_RECIPIENT_CODES:
            return PermanentError(reason, code=code_s, provider=self.name, invalid_recipient=True)
        if code in THROTTLED_CODES or status == 429:
            return TransientError(
                reason, code=code_s, provider=self.name, retry_after=retry_after, throttled=True
            )
        if code in TRANSIENT_CODES:
            return TransientError(reason, code=code_s, provider=self.name, retry_after=retry_after)
        return classify_status(
            status, provider=self.name, reason=reason, code=code_s, retry_after=retry_after
        )


CALLBACK_IDS = ("tenant", "notification", "delivery")


def callback_url(base: str, msg: OutboundMessage) -> str:
    """The StatusCallback URL for one message: ``base`` plus the ids its receipt maps back to
    (``?tenant=…&notification=…&delivery=…``). Twilio signs the URL with its query, so the ids cannot
    be altered by whoever posts a callback."""
    ids = {
        "tenant": msg.tenant_id,
        "notification": msg.metadata.get("notification_id", ""),
        "delivery": msg.delivery_id,
    }
    query = urlencode({k: v for k, v in ids.items() if v})
    return f"{base}{'&' if '?' in base else '?'}{query}"


@lru_cache(maxsize=16384)
def is_e164(number: str) -> bool:
    """True for a valid phone number written exactly in E.164 (``+`` and 7 to 15 digits, no spaces).

    Memoised: parsing with ``phonenumbers`` is the costliest step of an SMS send, and recipients recur."""
    if not _E164.match(number):
        return False
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(number, None))
    except phonenumbers.NumberParseException:
        return False


def _is_messaging_service(sender: str) -> bool:
    return sender.startswith("MG") and len(sender) == 34


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None


def _build(settings: Settings, session: aiohttp.ClientSession | None) -> Provider:
    base = settings.public_base_url
    callback = settings.twilio_status_callback_url or (f"{base}{RECEIPT_PATH}" if base else None)
    return TwilioProvider(
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token.get_secret_value(),
        base_url=settings.twilio_base_url,
        sender=settings.twilio_from,
        status_callback_url=callback,
        callback_ids=True,
        session=session,
        timeout_s=settings.provider_timeout_s,
    )


SPEC = ProviderSpec(
    name=receipts_twilio.PROVIDER,
    channel=TwilioProvider.channel,
    build=_build,
    account=lambda s: s.twilio_account_sid or "default",
    required=("twilio_account_sid", "twilio_auth_token"),
    default=True,
    receipts=receipts_twilio.parse,
)
