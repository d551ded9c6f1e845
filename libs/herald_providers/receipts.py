"""What a provider's delivery receipt becomes, whatever the provider: the shared half of
``POST /v1/receipts/<provider>``.

Each provider that posts receipts declares a parser on its :class:`~herald_providers.base.ProviderSpec`
(``receipts``): it verifies the request (signature, freshness), refuses it with
:class:`ReceiptRefused` when it must, and maps what it understands to :class:`Receipt` s. The gateway
deduplicates them by ``event_id``, applies the suppressions and produces the status events.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from herald_common.engagement import Kind
from herald_common.policy import BOUNCED
from herald_common.settings import Channel
from herald_common.wire import Status, StatusEvent

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")


class ReceiptRefused(Exception):
    """The request is refused with HTTP ``status`` (401 unsigned, 403 bad signature, 404 not enabled…)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Receipt:
    """One receipt. ``ids``, ``channel`` and ``address`` are what the payload claims; the gateway
    applies a receipt only when its notification id was issued to that tenant, recently enough, and
    its delivery id is that notification's delivery to ``address`` (nothing in a payload is trusted
    because the request was signed: the provider signs what anyone sent through it)."""

    event_id: str
    tenant_id: str
    event: StatusEvent | None = None  # what the tracker should fold, if anything
    suppress: str | None = None  # an address to put on the tenant's suppression list
    ids: Ids | None = None
    channel: Channel | None = None
    address: str | None = None  # the recipient the provider names (Twilio's To, SendGrid's email)
    suppress_reason: str = BOUNCED  # why ``suppress`` is suppressed (herald_common.policy)
    engagement: Kind | None = None  # an open, click, unsubscribe or complaint (herald_common.engagement)
    at: float | None = None  # when the provider says it happened


@dataclass(frozen=True, slots=True)
class Receipts:
    receipts: list[Receipt]
    received: int  # events in the request, including the ignored ones


@dataclass(frozen=True, slots=True)
class Ids:
    """The Herald ids a provider echoes back with each receipt."""

    tenant: str
    notification: str
    delivery: str

    @classmethod
    def of(cls, tenant: object, notification: object, delivery: object) -> Ids | None:
        """None unless all three look like Herald ids (a receipt for something that is not ours)."""
        if isinstance(tenant, str) and isinstance(notification, str) and isinstance(delivery, str):
            if all(_ID.match(v) for v in (tenant, notification, delivery)):
                return cls(tenant, notification, delivery)
        return None

    def event(
        self,
        channel: Channel,
        status: Status,
        provider: str,
        message_id: str | None,
        reason: str,
        at: object = None,
    ) -> StatusEvent:
        return StatusEvent(
            tenant_id=self.tenant,
            notification_id=self.notification,
            status=status,
            at=float(at) if isinstance(at, int | float) else time.time(),
            channel=channel,
            delivery_id=self.delivery,
            provider=provider,
            provider_message_id=message_id,
            reason=reason or None,
        )


def valid_id(value: object) -> bool:
    return isinstance(value, str) and bool(_ID.match(value))
