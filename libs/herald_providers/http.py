"""Shared plumbing for the HTTP provider adapters.

- :func:`make_session` builds the one ``aiohttp.ClientSession`` a sender shares between its adapters:
  bounded connection pool, keep-alive, and timeouts so a hung provider costs a bounded wait.
- :func:`parse_retry_after` reads ``Retry-After`` in either RFC 9110 form (delta seconds or HTTP date).
- :func:`classify_status` is the default mapping of an HTTP status to an error class: 408, 429 and
  5xx are transient (429 also ``throttled``), every other non-success status is permanent. Adapters
  refine it with the provider's own error codes first.
- :func:`transport_errors` turns timeouts and connection failures into :class:`TransientError`.
- :func:`redact` / :func:`scrub` keep addresses, phone numbers and tokens out of logs and reasons.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import parsedate_to_datetime

import aiohttp

from herald_providers.base import PermanentError, ProviderError, TransientError

USER_AGENT = "herald/0.1"
MAX_RETRY_AFTER_S = 3600.0


def make_session(
    *, timeout_s: float = 10.0, limit: int = 200, limit_per_host: int = 100, connect_timeout_s: float = 5.0
) -> aiohttp.ClientSession:
    """A client session for provider traffic. The caller owns it and closes it at shutdown."""
    connector = aiohttp.TCPConnector(
        limit=limit, limit_per_host=limit_per_host, ttl_dns_cache=300, keepalive_timeout=30
    )
    timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(connect_timeout_s, timeout_s))
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers={"User-Agent": USER_AGENT}, raise_for_status=False
    )


def request_timeout(timeout_s: float) -> aiohttp.ClientTimeout:
    """Per-request timeout used by adapters, so a shared session's defaults do not decide it."""
    return aiohttp.ClientTimeout(total=timeout_s)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (``"120"`` or an HTTP date); None if absent/bad.

    Negative or past values give 0; absurd values are capped at an hour.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def is_transient_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


def classify_status(
    status: int,
    *,
    provider: str,
    reason: str | None = None,
    code: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """Default error for a non-success status: 408/429/5xx transient, everything else permanent."""
    reason = reason or f"HTTP {status}"
    code = code or str(status)
    if is_transient_status(status):
        return TransientError(
            reason, code=code, provider=provider, retry_after=retry_after, throttled=status == 429
        )
    return PermanentError(reason, code=code, provider=provider)


@contextmanager
def transport_errors(provider: str) -> Iterator[None]:
    """Map timeouts and connection failures inside the block to :class:`TransientError`."""
    try:
        yield
    except TimeoutError as exc:
        raise TransientError("provider timed out", code="timeout", provider=provider) from exc
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
        raise TransientError(
            f"connection error: {type(exc).__name__}", code="connection", provider=provider
        ) from exc


def redact(value: str) -> str:
    """A loggable hint of an address, number or token: ``jo***@example.com``, ``+4479***56``, ``dGhp***``."""
    if not value:
        return ""
    if "@" in value:
        local, _, domain = value.rpartition("@")
        return f"{local[:2]}***@{domain}"
    if value.startswith("+"):
        return f"{value[:5]}***{value[-2:]}" if len(value) > 8 else "+***"
    return f"{value[:4]}***" if len(value) > 8 else "***"


def scrub(text: str, *secrets: str) -> str:
    """``text`` with every occurrence of each secret replaced by its :func:`redact` form."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, redact(secret))
    return text


class HttpProvider:
    """What every HTTP adapter shares: its client session (given, or made at ``start`` and then
    closed at ``close``) and the per-request timeout (``_timeout``, built once)."""

    def __init__(self, session: aiohttp.ClientSession | None, timeout_s: float) -> None:
        self._session = session
        self._owns_session = session is None
        self._timeout_s = timeout_s
        self._timeout = request_timeout(timeout_s)  # one object for every request

    async def start(self) -> None:
        if self._session is None:
            self._session = make_session(timeout_s=self._timeout_s)

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError(f"{type(self).__name__}.start() was not awaited")
        return self._session
