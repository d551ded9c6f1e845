"""What travels on Kafka between services: accepted requests, rendered deliveries and status events.
Tolerant of unknown fields (a newer producer may add some); validated once at the gateway, not again
on every hop."""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from herald_common.schemas import ChannelContent, Routing
from herald_common.settings import Channel, Lane


class Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class WireRecipient(Wire):
    """The recipient as the gateway validated it: not checked again on every hop."""

    contact_id: str | None = None
    email: str | None = None
    phone: str | None = None
    push_token: str | None = None


class Origin(Wire):
    """Where a notification came from, carried on its deliveries and status events so that consumers of
    the status stream (statistics, the message log, campaign records) need no lookup. Campaigns and
    triggers set ``campaign_id`` and ``trigger``/``event_id`` through the intake library; the router
    fills in the rest from the request."""

    contact_id: str | None = None
    template_id: str | None = None
    category: str | None = None
    campaign_id: str | None = None
    trigger: str | None = Field(None, description="the event type whose trigger decided it")
    event_id: str | None = None


class NotificationRequest(Wire):
    """``<prefix>.requests.<lane>``: an accepted notification, keyed by tenant and recipient."""

    id: str
    tenant_id: str
    lane: Lane
    accepted_at: float
    to: WireRecipient
    template_id: str | None = None
    content: ChannelContent | None = None
    channels: list[Channel] | None = None
    routing: Routing | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    category: str | None = None
    locale: str | None = None
    expires_at: float | None = None
    send_at: float | None = None
    cancellation_key: str | None = None
    origin: Origin | None = None

    @cached_property
    def full_origin(self) -> Origin:
        """The origin the caller gave, completed with the request's own contact, template and category
        (built once per request: every status and delivery of it carries the same)."""
        given = self.origin
        return Origin(
            contact_id=self.to.contact_id,
            template_id=self.template_id,
            category=self.category or "transactional",
            campaign_id=given.campaign_id if given else None,
            trigger=given.trigger if given else None,
            event_id=given.event_id if given else None,
        )


class Fallback(Wire):
    """Routing ``first``: what a delivery's channel falling through leads to. ``request`` is the same
    notification (same id) to route again on the channels after this one; ``siblings`` are the
    channel's deliveries to its other addresses (push tokens): the channel has failed, and the
    request is published, only once every one of them has failed."""

    request: NotificationRequest
    siblings: list[str] = Field(default_factory=list)


class Delivery(Wire):
    """``<prefix>.deliveries.<channel>.<lane>``: one rendered message to one address."""

    delivery_id: str
    notification_id: str
    tenant_id: str
    channel: Channel
    lane: Lane
    to: str
    content: dict[str, Any]
    accepted_at: float
    expires_at: float | None = None
    attempt: int = 1
    cancellation_key: str | None = None
    contact_id: str | None = Field(
        None, description="the contact the address came from, if any (push token clean-up needs it)"
    )
    origin: Origin | None = None
    fallback: Fallback | None = None


Status = Literal[
    "accepted",
    "scheduled",
    "held",
    "queued",
    "suppressed",
    "sending",
    "retrying",
    "sent",
    "delivered",
    "bounced",
    "failed",
    "expired",
    "cancelled",
    "capped",
]


class StatusEvent(Wire):
    """``<prefix>.status``: something happened to a notification (channel None) or one channel of it."""

    tenant_id: str
    notification_id: str
    status: Status
    at: float
    channel: Channel | None = None
    delivery_id: str | None = None
    provider: str | None = None
    provider_message_id: str | None = None
    attempts: int | None = None
    reason: str | None = None
    reason_code: str | None = Field(None, description="machine-readable reason (herald_common.policy)")
    next_attempt_at: float | None = Field(
        None, description="retrying: when the next attempt is due; scheduled, held: when it is released"
    )
    origin: Origin | None = Field(
        None, description="set by the router and senders; receipts and cancellations leave it out"
    )
