"""The contract every provider adapter fulfils.

An adapter turns an :class:`OutboundMessage` into one provider request and classifies the answer:
it returns a :class:`SendResult` when the provider accepted the message, raises
:class:`TransientError` when trying again later may succeed (timeouts, connection errors, 5xx, 429,
throttling codes) and :class:`PermanentError` when it never will (invalid address, unregistered token,
rejected content).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(slots=True)
class OutboundMessage:
    delivery_id: str
    tenant_id: str
    channel: str  # "email" | "sms" | "push"
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
    """Worth retrying later; ``retry_after`` is the provider's own hint in seconds, if it gave one."""

    def __init__(
        self,
        reason: str,
        *,
        code: str | None = None,
        provider: str | None = None,
        retry_after: float | None = None,
        throttled: bool = False,
    ) -> None:
        super().__init__(reason, code=code, provider=provider)
        self.retry_after = retry_after
        self.throttled = throttled


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


@runtime_checkable
class Provider(Protocol):
    name: str
    channel: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, msg: OutboundMessage) -> SendResult: ...
