"""The contract every provider adapter fulfils.

An adapter turns an :class:`OutboundMessage` into one provider request and classifies the answer:
it returns a :class:`SendResult` when the provider accepted the message, raises
:class:`TransientError` when trying again later may succeed (timeouts, connection errors, 5xx, 429,
throttling codes) and :class:`PermanentError` when it never will (invalid address, unregistered token,
rejected content).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import aiohttp
    from aiohttp import web

    from herald_providers.receipts import Receipts


@dataclass(slots=True)
class OutboundMessage:
    delivery_id: str
    tenant_id: str
    channel: str  # a channel name of herald_common.channels
    to: str  # email address, E.164 phone number or push token
    content: dict[str, Any]  # email: subject/html/text/from; sms: text/from; push: title/body/data
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class SendResult:
    provider: str
    provider_message_id: str | None = None


class ProviderError(Exception):
    def __init__(self, reason: str, *, code: str | None = None, provider: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.provider = provider


class TransientError(ProviderError):
    """Worth retrying later; ``retry_after`` is the provider's own hint in seconds, if it gave one.

    ``provider_fault`` is False when the provider is healthy and only this message was deferred (an
    SMTP server greylisting one recipient, say): such failures do not count toward the provider's
    circuit breaker.
    """

    def __init__(
        self,
        reason: str,
        *,
        code: str | None = None,
        provider: str | None = None,
        retry_after: float | None = None,
        throttled: bool = False,
        provider_fault: bool = True,
    ) -> None:
        super().__init__(reason, code=code, provider=provider)
        self.retry_after = retry_after
        self.throttled = throttled
        self.provider_fault = provider_fault


class PermanentError(ProviderError):
    """Will never succeed for this address/content. ``invalid_recipient`` feeds suppression/clean-up."""

    def __init__(
        self,
        reason: str,
        *,
        code: str | None = None,
        provider: str | None = None,
        invalid_recipient: bool = False,
    ) -> None:
        super().__init__(reason, code=code, provider=provider)
        self.invalid_recipient = invalid_recipient


Outcome = SendResult | ProviderError
"""One message's result in a batch: accepted, or the error it got."""


@runtime_checkable
class Provider(Protocol):
    name: str
    channel: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, msg: OutboundMessage) -> SendResult: ...


def supports_batch(provider: object) -> bool:
    """True for adapters that send many messages per request (``send_batch``), e.g. SendGrid."""
    return bool(getattr(provider, "supports_batch", False)) and callable(
        getattr(provider, "send_batch", None)
    )


async def send_many(provider: Provider, msgs: Sequence[OutboundMessage]) -> list[Outcome]:
    """One outcome per message, in order: the provider's own batch call when it has one, else one
    ``send`` per message, concurrently, each message's exception its own outcome (any other than a
    :class:`ProviderError` a :class:`TransientError` ``unexpected_error``), so one bad message never
    fails the others, which were sent."""
    if supports_batch(provider):
        results: list[Outcome] = await provider.send_batch(msgs)  # type: ignore[attr-defined]
        return results

    async def one(msg: OutboundMessage) -> Outcome:
        try:
            return await provider.send(msg)
        except ProviderError as exc:
            return exc
        except Exception as exc:  # a bug for one message stays that message's: never its neighbours'
            return TransientError(
                f"unexpected error: {type(exc).__name__}", code="unexpected_error", provider=provider.name
            )

    return list(await asyncio.gather(*(one(m) for m in msgs)))


# A provider's settings object: the sender's settings (``ProviderSettings`` plus the SMTP, rate-limit
# and provider-list fields), read by attribute so this package never imports a service.
Settings = Any
# Verifies and maps one ``POST /v1/receipts/<provider>`` request (gateway ``ReceiptSettings``); raises
# ``herald_providers.receipts.ReceiptRefused`` for a request that must be refused.
ReceiptParser = Callable[["web.Request", Any], Awaitable["Receipts"]]


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """What the rest of Herald needs to know about one provider, declared in its adapter module and
    collected by :mod:`herald_providers.registry`.

    Settings of provider ``<name>`` follow one pattern: ``HERALD_<NAME>_RATE_PER_S`` and
    ``HERALD_<NAME>_BURST`` limit its account, ``required`` names the settings fields without which it
    cannot be built.
    """

    name: str
    channel: str
    # Builds the adapter; ``session`` is the sender's shared aiohttp session when ``needs_http``.
    build: Callable[[Settings, aiohttp.ClientSession | None], Provider]
    # Which provider account a rate limit belongs to (never the secret itself).
    account: Callable[[Settings], str]
    required: tuple[str, ...] = ()
    needs_http: bool = True
    batches: bool = False
    # The provider of its channel when ``HERALD_<CHANNEL>_PROVIDERS`` is unset.
    default: bool = False
    receipts: ReceiptParser | None = None

    def missing(self, settings: Settings) -> list[str]:
        """The ``HERALD_*`` variables this provider needs that ``settings`` leaves unset."""
        return [_var(f) for f in self.required if getattr(settings, f, None) in (None, "")]

    def missing_env(self, env: Mapping[str, str]) -> list[str]:
        """The same, read from an environment mapping (``herald dev`` checks before it starts senders)."""
        return [_var(f) for f in self.required if not env.get(_var(f))]

    def check(self, settings: Settings) -> None:
        """ValueError naming the first missing ``HERALD_*`` variable, if any."""
        missing = self.missing(settings)
        if missing:
            raise ValueError(f"{missing[0]} is required")

    def rate_limit(self, settings: Settings) -> tuple[float, int]:
        """(rate per second, burst) of the provider's account; rate 0 means no limit."""
        return float(getattr(settings, f"{self.name}_rate_per_s")), int(
            getattr(settings, f"{self.name}_burst")
        )


def _var(field_name: str) -> str:
    return "HERALD_" + field_name.upper()
