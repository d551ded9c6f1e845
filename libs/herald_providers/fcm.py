"""Firebase Cloud Messaging HTTP v1 adapter (push) with its OAuth2 service-account token source.

Send: ``POST {base_url}/v1/projects/{project}/messages:send`` with ``Authorization: Bearer <access
token>`` and ``{"message": {"token": ..., "notification": {"title", "body"}, "data": {str: str}}}``
plus the content's ``android``/``apns``/``webpush``/``fcm_options`` blocks as given (validated at the
API against FCM v1's field names and bounded in size: herald_common.push_overrides). Success answers
``{"name": "projects/<p>/messages/<id>"}``; that full name is the provider message id. Errors answer
``{"error": {"code", "message", "status", "details": [{"@type": ".../FcmError", "errorCode"}, ...]}}``.

Message content keys: ``title``, ``body``, ``data`` (values that are not strings are sent as JSON
text: FCM's data map only carries strings), the optional platform blocks above, and ``fcm_project``:
the tenant's Firebase project (its sender identity, ``tenant.fcm_project``), which names the URL's
project; without it the sender's own (``HERALD_FCM_PROJECT_ID``, else the service account's). One
service account sends in every project, so it needs FCM's sender role in each tenant's project; a
project id that is not one is refused before any request (``invalid_fcm_project``).

Access token (RFC 7523 JWT bearer grant): an RS256 JWT signed with the service account's private
key, claims ``iss`` = client_email, ``scope`` = firebase.messaging, ``aud`` = token URL, ``iat``,
``exp`` = iat + 3600, is POSTed form-encoded as ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer
&assertion=<jwt>`` to the token URL, which answers ``{"access_token", "expires_in", "token_type"}``.
The token is cached until shortly before it expires (one refresh at a time) and refreshed once
when FCM answers 401.

Classification: 404 or errorCode UNREGISTERED → permanent, ``invalid_recipient`` (the token is
gone: remove it); 400 INVALID_ARGUMENT → permanent (``invalid_recipient`` when it blames
``message.token``); 401 after a refresh, 403, SENDER_ID_MISMATCH, THIRD_PARTY_AUTH_ERROR →
permanent (configuration); 429 / QUOTA_EXCEEDED → transient, ``throttled``, with Retry-After;
500 INTERNAL, 503 UNAVAILABLE, timeouts and connection errors → transient.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import orjson
import structlog
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from herald_common.channels import FCM_PROJECT
from herald_common.fields import FCM_PROJECT_PATTERN
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
    request_timeout,
    scrub,
    transport_errors,
)

DEFAULT_BASE_URL = "https://fcm.googleapis.com"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_PASS_THROUGH = ("android", "apns", "webpush", "fcm_options")
_PROJECT = re.compile(FCM_PROJECT_PATTERN)

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """The fields of a Google service-account JSON key file that the token exchange needs."""

    client_email: str
    private_key: str = field(repr=False)
    token_uri: str | None = None
    project_id: str | None = None
    private_key_id: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServiceAccount:
        try:
            return cls(
                client_email=str(data["client_email"]),
                private_key=str(data["private_key"]),
                token_uri=data.get("token_uri"),
                project_id=data.get("project_id"),
                private_key_id=data.get("private_key_id"),
            )
        except KeyError as exc:
            raise ValueError(f"service account is missing {exc.args[0]!r}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> ServiceAccount:
        return cls.from_dict(orjson.loads(Path(path).read_bytes()))


class AccessTokenSource:
    """Exchanges a signed JWT for an OAuth2 access token and caches it until shortly before expiry."""

    def __init__(
        self,
        account: ServiceAccount,
        *,
        token_url: str | None = None,
        timeout_s: float = 10.0,
        provider: str = "fcm",
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        key = load_pem_private_key(account.private_key.encode(), password=None)
        if not isinstance(key, RSAPrivateKey):
            raise ValueError("service account private_key is not an RSA key")
        self._key = key
        self._account = account
        self.token_url = token_url or account.token_uri or GOOGLE_TOKEN_URL
        self._timeout = request_timeout(timeout_s)
        self._provider = provider
        self._clock = clock
        self._wall = wall_clock
        self._token: str | None = None
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()

    def assertion(self) -> str:
        now = int(self._wall())
        claims = {
            "iss": self._account.client_email,
            "scope": FCM_SCOPE,
            "aud": self.token_url,
            "iat": now,
            "exp": now + 3600,
        }
        headers = {"kid": self._account.private_key_id} if self._account.private_key_id else None
        return jwt.encode(claims, self._key, algorithm="RS256", headers=headers)

    async def token(self, session: aiohttp.ClientSession) -> str:
        if self._token is not None and self._clock() < self._refresh_at:
            return self._token
        async with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
                await self._refresh(session)
            assert self._token is not None
            return self._token

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (FCM refused it); a token already replaced by another request is kept."""
        if self._token == token:
            self._token = None

    async def _refresh(self, session: aiohttp.ClientSession) -> None:
        form = {"grant_type": JWT_BEARER, "assertion": self.assertion()}
        with transport_errors(self._provider):
            async with session.post(self.token_url, data=form, timeout=self._timeout) as resp:
                raw = await resp.read()
                status, retry_after = resp.status, parse_retry_after(resp.headers.get("Retry-After"))
        payload = _json(raw)
        if status == 200 and isinstance(payload, dict) and isinstance(payload.get("access_token"), str):
            expires_in = float(payload.get("expires_in") or 3600)
            self._token = payload["access_token"]
            self._refresh_at = self._clock() + expires_in - min(60.0, expires_in * 0.1)
            log.info("fcm_access_token_refreshed", provider=self._provider, expires_in=expires_in)
            return
        error = payload.get("error") if isinstance(payload, dict) else None
        reason = f"token exchange failed: {error or f'HTTP {status}'}"
        if status in (400, 401, 403):
            raise PermanentError(reason, code=str(error or status), provider=self._provider)
        raise classify_status(status, provider=self._provider, reason=reason, retry_after=retry_after)


class FcmProvider(HttpProvider):
    channel = "push"

    def __init__(
        self,
        *,
        project_id: str,
        credentials: ServiceAccount,
        base_url: str = DEFAULT_BASE_URL,
        token_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = 10.0,
        name: str = "fcm",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.project_id = project_id
        self._base_url = base_url.rstrip("/")
        self.tokens = AccessTokenSource(
            credentials, token_url=token_url, timeout_s=timeout_s, provider=name, clock=clock
        )
        super().__init__(session, timeout_s)

    async def send(self, msg: OutboundMessage) -> SendResult:
        if self._session is None:
            raise RuntimeError("FcmProvider.start() was not awaited")
        url = self._url(msg.content.get(FCM_PROJECT) or self.project_id)
        body = orjson.dumps({"message": self._message(msg)})
        token = await self.tokens.token(self._session)
        status, retry_after, payload = await self._post(url, body, token)
        if status == 401 and _fcm_code(payload) != "THIRD_PARTY_AUTH_ERROR":
            self.tokens.invalidate(token)
            token = await self.tokens.token(self._session)
            status, retry_after, payload = await self._post(url, body, token)
        if status == 200 and isinstance(payload, dict) and isinstance(payload.get("name"), str):
            return SendResult(self.name, payload["name"])
        raise self._error(status, payload, retry_after, msg.to)

    def _url(self, project: object) -> str:
        if not isinstance(project, str) or not _PROJECT.match(project):
            raise PermanentError(
                "the tenant's fcm_project is not a Firebase project id",
                code="invalid_fcm_project",
                provider=self.name,
            )
        return f"{self._base_url}/v1/projects/{project}/messages:send"

    def _message(self, msg: OutboundMessage) -> dict[str, Any]:
        if not msg.to or any(c.isspace() for c in msg.to):
            raise PermanentError(
                "not a valid push token", code="invalid_token", provider=self.name, invalid_recipient=True
            )
        content = msg.content
        message: dict[str, Any] = {"token": msg.to}
        notification = {k: str(content[k]) for k in ("title", "body") if content.get(k)}
        if notification:
            message["notification"] = notification
        data = content.get("data")
        if isinstance(data, dict) and data:
            message["data"] = {
                str(k): v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in data.items()
            }
        for key in _PASS_THROUGH:
            if isinstance(content.get(key), dict):
                message[key] = content[key]
        if "notification" not in message and "data" not in message:
            raise PermanentError("push content is empty", code="invalid_content", provider=self.name)
        return message

    async def _post(self, url: str, body: bytes, token: str) -> tuple[int, float | None, Any]:
        assert self._session is not None
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        with transport_errors(self.name):
            async with self._session.post(url, data=body, headers=headers, timeout=self._timeout) as resp:
                raw = await resp.read()
                return resp.status, parse_retry_after(resp.headers.get("Retry-After")), _json(raw)

    def _error(self, status: int, payload: Any, retry_after: float | None, to: str) -> ProviderError:
        error = payload.get("error") if isinstance(payload, dict) else None
        error = error if isinstance(error, dict) else {}
        fcm_code = _fcm_code(payload)
        google_status = str(error.get("status") or "")
        reason = scrub(str(error.get("message") or f"HTTP {status}"), to)
        if fcm_code == "UNREGISTERED" or status == 404:
            return PermanentError(reason, code="UNREGISTERED", provider=self.name, invalid_recipient=True)
        if status == 429 or fcm_code == "QUOTA_EXCEEDED":
            return TransientError(
                reason,
                code=fcm_code or "QUOTA_EXCEEDED",
                provider=self.name,
                retry_after=retry_after,
                throttled=True,
            )
        if fcm_code in ("UNAVAILABLE", "INTERNAL") or status >= 500:
            return TransientError(
                reason,
                code=fcm_code or google_status or str(status),
                provider=self.name,
                retry_after=retry_after,
            )
        if status == 400 or fcm_code == "INVALID_ARGUMENT":
            return PermanentError(
                reason,
                code="INVALID_ARGUMENT",
                provider=self.name,
                invalid_recipient="message.token" in _field_violations(error),
            )
        return classify_status(
            status,
            provider=self.name,
            reason=reason,
            code=fcm_code or google_status or None,
            retry_after=retry_after,
        )


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None


def _details(payload: Any) -> list[dict[str, Any]]:
    error = payload.get("error") if isinstance(payload, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _fcm_code(payload: Any) -> str | None:
    for detail in _details(payload):
        if str(detail.get("@type", "")).endswith("FcmError") and detail.get("errorCode"):
            return str(detail["errorCode"])
    return None


def _field_violations(error: dict[str, Any]) -> set[str]:
    fields: set[str] = set()
    for detail in _details({"error": error}):
        for violation in detail.get("fieldViolations") or ():
            if isinstance(violation, dict) and violation.get("field"):
                fields.add(str(violation["field"]))
    return fields


def _build(settings: Settings, session: aiohttp.ClientSession | None) -> Provider:
    account = ServiceAccount.from_file(settings.fcm_credentials_file)
    project = settings.fcm_project_id or account.project_id
    if not project:
        raise ValueError("HERALD_FCM_PROJECT_ID is required")
    return FcmProvider(
        project_id=project,
        credentials=account,
        base_url=settings.fcm_base_url,
        token_url=settings.fcm_token_url,
        session=session,
        timeout_s=settings.provider_timeout_s,
    )


SPEC = ProviderSpec(
    name="fcm",
    channel=FcmProvider.channel,
    build=_build,
    account=lambda s: s.fcm_project_id or str(s.fcm_credentials_file or "default"),
    required=("fcm_credentials_file",),
    default=True,
)
