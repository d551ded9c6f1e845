"""SendGrid v3 Mail Send adapter (email), one message or batches of up to 1,000 recipients per request.

Wire format: ``POST {base_url}/v3/mail/send`` with ``Authorization: Bearer <api key>`` and JSON::

    {"personalizations": [{"to": [{"email": "ann@example.com"}],
                           "custom_args": {"delivery_id": "...", "tenant_id": "...", ...metadata},
                           "substitutions": {"-name-": "Ann"}}],            # one per recipient
     "from": {"email": "news@chain.example", "name": "Chain"},
     "reply_to": {"email": "help@chain.example"},                           # optional
     "subject": "Hello -name-",
     "content": [{"type": "text/plain", "value": "..."}, {"type": "text/html", "value": "..."}]}

``202 Accepted`` (empty body) means SendGrid queued the request; its id is the ``X-Message-Id``
header. Every recipient of one request shares that id; the event webhook reports
``sg_message_id = "<X-Message-Id>.<suffix>"`` and echoes ``custom_args``, so receipts map back to a
delivery through ``custom_args.delivery_id``. Errors are ``{"errors": [{"message", "field", "help"}]}``.

Message content keys: ``subject``, ``text`` and/or ``html``, ``from`` (``"a@x"`` or
``"Name <a@x>"``), optional ``from_name``, ``reply_to``, ``substitutions``, and ``unsubscribe_url``
(marketing: becomes the personalization's ``headers``, ``List-Unsubscribe`` and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click``, RFC 8058).

Batching (:meth:`SendGridProvider.send_batch`): messages whose content is identical once
``substitutions`` and ``unsubscribe_url`` are set aside share one request, one personalization per
message, at most ``max_per_request`` (1,000, SendGrid's limit) per request. ``substitutions`` is a
per-recipient ``{token: value}`` map (:mod:`herald_common.substitution`: the router renders a bulk email
once with tokens) that SendGrid replaces in the bodies, so a personalised campaign goes out in 1/1000th
of the requests; each personalization also carries its own ``subject``, expanded here, so the header
check sees what the member gets. A message whose substitutions exceed SendGrid's 10,000 bytes per
personalization is sent expanded, as content of its own. Different content → separate requests.

Errors: 400 naming ``personalizations.N.to.M.email`` → :class:`PermanentError` with
``invalid_recipient`` for that message only; the rest of the batch is sent again without it (once).
Other 400s, 401/403 (bad key or scopes: configuration), 413 (content too large) → permanent for the
whole request. 429 → transient and ``throttled`` (``Retry-After``, else ``X-RateLimit-Reset``);
408/5xx, timeouts and connection errors → transient.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
import re
import time
from collections.abc import Sequence
from email.utils import parseaddr
from typing import Any

import aiohttp
import orjson

from herald_common.fields import header_problem
from herald_common.substitution import CONTENT_FIELD as SUBSTITUTIONS
from herald_common.substitution import expand, expand_text
from herald_common.unsubscribe import CONTENT_FIELD as UNSUBSCRIBE
from herald_common.unsubscribe import list_unsubscribe_headers
from herald_providers import receipts_sendgrid
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
    transport_errors,
)

DEFAULT_BASE_URL = "https://api.sendgrid.com"
MAX_PERSONALIZATIONS = 1000
MAX_SUBSTITUTION_BYTES = 10_000  # SendGrid's limit for one personalization's substitutions
_RECIPIENT_FIELD = re.compile(r"^personalizations\.(\d+)\.(?:to|cc|bcc)\.\d+\.email$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")

Result = SendResult | ProviderError
# Content keys that differ per recipient and travel in its personalization, not in the shared body.
_PER_RECIPIENT = frozenset({SUBSTITUTIONS, UNSUBSCRIBE})


class SendGridProvider(HttpProvider):
    channel = "email"
    supports_batch = True

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = 10.0,
        name: str = "sendgrid",
        max_per_request: int = MAX_PERSONALIZATIONS,
    ) -> None:
        if not 1 <= max_per_request <= MAX_PERSONALIZATIONS:
            raise ValueError(f"max_per_request must be 1..{MAX_PERSONALIZATIONS}")
        self.name = name
        self._url = base_url.rstrip("/") + "/v3/mail/send"
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        super().__init__(session, timeout_s)
        self._max = max_per_request

    async def send(self, msg: OutboundMessage) -> SendResult:
        [result] = await self.send_batch([msg])
        if isinstance(result, ProviderError):
            raise result
        return result

    async def send_batch(self, msgs: Sequence[OutboundMessage]) -> list[Result]:
        """Send many messages in as few requests as possible; one outcome per message, in order."""
        results: list[Result | None] = [None] * len(msgs)
        msgs = [_fitted(m) for m in msgs]
        groups: dict[bytes, list[int]] = {}
        for i, msg in enumerate(msgs):
            try:
                key = self._group_key(msg)
            except PermanentError as exc:
                results[i] = exc
                continue
            groups.setdefault(key, []).append(i)
        chunks = [idx[j : j + self._max] for idx in groups.values() for j in range(0, len(idx), self._max)]
        outcomes = await asyncio.gather(*(self._send_chunk([msgs[i] for i in c]) for c in chunks))
        for chunk, outcome in zip(chunks, outcomes, strict=True):
            for i, result in zip(chunk, outcome, strict=True):
                results[i] = result
        return [r for r in results if r is not None]

    def requests_needed(self, msgs: Sequence[OutboundMessage]) -> int:
        """How many HTTP requests :meth:`send_batch` makes for ``msgs`` (what a rate limit counts)."""
        sizes: dict[bytes, int] = {}
        for msg in msgs:
            try:
                key = self._group_key(_fitted(msg))
            except PermanentError:
                continue
            sizes[key] = sizes.get(key, 0) + 1
        return sum(-(-n // self._max) for n in sizes.values())

    def _group_key(self, msg: OutboundMessage) -> bytes:
        if not _EMAIL.match(msg.to) or len(msg.to) > 254:
            raise PermanentError(
                "not a valid email address", code="invalid_email", provider=self.name, invalid_recipient=True
            )
        subs = msg.content.get(SUBSTITUTIONS)
        for name in ("subject", "from", "from_name", "reply_to", UNSUBSCRIBE):
            if (problem := header_problem(expand_text(msg.content.get(name), subs))) is not None:
                raise PermanentError(f"the {name} {problem}", code="invalid_header", provider=self.name)
        shared = {k: v for k, v in msg.content.items() if k not in _PER_RECIPIENT}
        try:
            return orjson.dumps(shared, option=orjson.OPT_SORT_KEYS)
        except TypeError as exc:
            raise PermanentError("content is not JSON", code="invalid_content", provider=self.name) from exc

    async def _send_chunk(self, msgs: list[OutboundMessage], *, rounds: int = 3) -> list[Result]:
        """One request; when a 400 blames some recipients, fail those and resend the rest."""
        try:
            status, headers, payload = await self._post(self._body(msgs))
        except ProviderError as exc:
            return [copy.copy(exc) for _ in msgs]
        if status in (200, 202):
            message_id = headers.get("X-Message-Id")
            return [SendResult(self.name, message_id) for _ in msgs]
        invalid = _invalid_recipients(status, payload, len(msgs))
        if not invalid:
            error = self._error(status, headers, payload)
            return [copy.copy(error) for _ in msgs]
        rest = [m for i, m in enumerate(msgs) if i not in invalid]
        if rounds > 1:
            rest_results = await self._send_chunk(rest, rounds=rounds - 1) if rest else []
        else:  # not their fault: let them go again later, in another batch
            rest_results = [
                TransientError(
                    "batch rejected for other recipients", code="batch_rejected", provider=self.name
                )
                for _ in rest
            ]
        good = iter(rest_results)
        return [
            PermanentError(invalid[i], code="invalid_email", provider=self.name, invalid_recipient=True)
            if i in invalid
            else next(good)
            for i in range(len(msgs))
        ]

    def _body(self, msgs: list[OutboundMessage]) -> bytes:
        content = msgs[0].content
        sender = _address(content.get("from"), content.get("from_name"))
        if sender is None:
            raise PermanentError(
                "email content has no valid 'from'", code="invalid_content", provider=self.name
            )
        parts = [
            {"type": mime, "value": content[key]}
            for key, mime in (("text", "text/plain"), ("html", "text/html"))
            if isinstance(content.get(key), str) and content[key]
        ]
        subject = content.get("subject")
        if not parts or not isinstance(subject, str) or not subject:
            raise PermanentError(
                "email content needs a subject and text or html", code="invalid_content", provider=self.name
            )
        body: dict[str, Any] = {
            "personalizations": [_personalization(m) for m in msgs],
            "from": sender,
            "subject": subject,
            "content": parts,
        }
        reply_to = _address(content.get("reply_to"), None)
        if reply_to is not None:
            body["reply_to"] = reply_to
        return orjson.dumps(body)

    async def _post(self, body: bytes) -> tuple[int, Any, Any]:
        if self._session is None:
            raise RuntimeError("SendGridProvider.start() was not awaited")
        with transport_errors(self.name):
            async with self._session.post(
                self._url, data=body, headers=self._headers, timeout=self._timeout
            ) as resp:
                raw = await resp.read()
                return resp.status, resp.headers, _json(raw)

    def _error(self, status: int, headers: Any, payload: Any) -> ProviderError:
        reason = _first_error(payload) or f"HTTP {status}"
        if status in (401, 403):
            return PermanentError(f"rejected credentials: {reason}", code="unauthorized", provider=self.name)
        if status == 413:
            return PermanentError("request too large", code="payload_too_large", provider=self.name)
        if status == 429:
            return TransientError(
                "rate limited",
                code="429",
                provider=self.name,
                retry_after=_retry_after(headers),
                throttled=True,
            )
        return classify_status(status, provider=self.name, reason=reason, retry_after=_retry_after(headers))


def _personalization(msg: OutboundMessage) -> dict[str, Any]:
    p: dict[str, Any] = {
        "to": [{"email": msg.to}],
        "custom_args": {**msg.metadata, "delivery_id": msg.delivery_id, "tenant_id": msg.tenant_id},
    }
    subs = msg.content.get(SUBSTITUTIONS)
    if isinstance(subs, dict) and subs:
        p["substitutions"] = {str(k): str(v) for k, v in subs.items()}
        if subject := expand_text(msg.content.get("subject"), subs):
            p["subject"] = subject  # else SendGrid substitutes the shared one to the same
    if isinstance(url := msg.content.get(UNSUBSCRIBE), str) and url:
        p["headers"] = list_unsubscribe_headers(url)
    return p


def _fitted(msg: OutboundMessage) -> OutboundMessage:
    """``msg``, expanded when its substitutions are more than one personalization may carry."""
    subs = msg.content.get(SUBSTITUTIONS)
    if not isinstance(subs, dict) or not subs:
        return msg
    size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in subs.items())
    if size <= MAX_SUBSTITUTION_BYTES:
        return msg
    return dataclasses.replace(msg, content=expand(msg.content))


def _address(value: Any, name: Any) -> dict[str, str] | None:
    if not isinstance(value, str):
        return None
    parsed_name, email = parseaddr(value)
    if not _EMAIL.match(email):
        return None
    out = {"email": email}
    display = name if isinstance(name, str) and name else parsed_name
    if display:
        out["name"] = display
    return out


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None


def _errors(payload: Any) -> list[dict[str, Any]]:
    if isinstance(payload, dict) and isinstance(payload.get("errors"), list):
        return [e for e in payload["errors"] if isinstance(e, dict)]
    return []


def _first_error(payload: Any) -> str | None:
    errors = _errors(payload)
    return str(errors[0].get("message")) if errors else None


def _invalid_recipients(status: int, payload: Any, count: int) -> dict[int, str]:
    """Personalization index → message when *every* error of a 400 blames one recipient's address."""
    if status != 400:
        return {}
    out: dict[int, str] = {}
    errors = _errors(payload)
    for err in errors:
        match = _RECIPIENT_FIELD.match(str(err.get("field") or ""))
        if match is None or int(match.group(1)) >= count:
            return {}
        out[int(match.group(1))] = str(err.get("message") or "invalid recipient")
    return out


def _retry_after(headers: Any) -> float | None:
    seconds = parse_retry_after(headers.get("Retry-After"))
    if seconds is None and headers.get("X-RateLimit-Reset"):
        try:
            seconds = max(0.0, float(headers["X-RateLimit-Reset"]) - time.time())
        except ValueError:
            return None
    return seconds


def _build(settings: Settings, session: aiohttp.ClientSession | None) -> Provider:
    return SendGridProvider(
        api_key=settings.sendgrid_api_key.get_secret_value(),
        base_url=settings.sendgrid_base_url,
        session=session,
        timeout_s=settings.provider_timeout_s,
    )


def _account(settings: Settings) -> str:
    """A digest of the API key: two keys are two accounts, and the key itself never reaches Redis."""
    if settings.sendgrid_api_key is None:
        return "default"
    return hashlib.sha256(settings.sendgrid_api_key.get_secret_value().encode()).hexdigest()[:16]


SPEC = ProviderSpec(
    name=receipts_sendgrid.PROVIDER,
    channel=SendGridProvider.channel,
    build=_build,
    account=_account,
    required=("sendgrid_api_key",),
    batches=True,
    receipts=receipts_sendgrid.parse,
)
