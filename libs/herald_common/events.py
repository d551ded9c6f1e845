"""Loyalty events and the triggers that turn them into notifications: what tenants send, what travels on
``<prefix>.events``, what the router decides per trigger rule, and the ids that tie them together."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from herald_common.durations import Duration
from herald_common.fields import Category, Identifier, JsonObject, _one_of_present
from herald_common.ids import NotificationIds
from herald_common.schemas import ContactIn, Routing, Strict
from herald_common.settings import Channel, Lane
from herald_common.wire import Wire

EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_\-]{0,63}(\.[a-z0-9_\-]{1,64}){0,4}$"
EventType = Annotated[str, StringConstraints(pattern=EVENT_TYPE_PATTERN, max_length=200)]
# A dotted path into the event (``data.showtime``): what a relative delay counts from.
EventField = Annotated[str, StringConstraints(pattern=r"^data(\.[A-Za-z0-9_\-]{1,64}){1,8}$")]
Source = Annotated[str, StringConstraints(min_length=1, max_length=1000)]
MAX_RULES = 20


# --- events in ---------------------------------------------------------------------------------------
class EventIn(Strict):
    type: EventType
    contact_id: Identifier
    data: JsonObject = Field(default_factory=dict)
    occurred_at: datetime = Field(description="RFC 3339 with a time zone offset")
    contact: ContactIn | None = Field(
        None,
        description="profile fields to upsert into the contact first (given fields replace the stored ones)",
    )
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None

    @model_validator(mode="after")
    def _offset(self) -> EventIn:
        if self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at needs a time zone offset")
        return self


class EventBatch(Strict):
    events: list[EventIn] = Field(min_length=1, max_length=1000)


class EventRecord(Wire):
    """``<prefix>.events``: an accepted event, keyed by tenant and contact."""

    id: str
    tenant_id: str
    type: str
    contact_id: str
    data: dict[str, Any] = Field(default_factory=dict)
    occurred_at: datetime
    accepted_at: float

    @classmethod
    def accepted(cls, event: EventIn, event_id: str, tenant_id: str, at: float) -> EventRecord:
        """The record of ``event``, taken in for ``tenant_id`` under ``event_id`` at ``at``."""
        return cls(
            id=event_id,
            tenant_id=tenant_id,
            type=event.type,
            contact_id=event.contact_id,
            data=event.data,
            occurred_at=event.occurred_at,
            accepted_at=at,
        )

    def variables(self) -> dict[str, Any]:
        """The ``event`` variable of trigger expressions."""
        return {
            "id": self.id,
            "type": self.type,
            "data": self.data,
            "occurred_at": self.occurred_at.isoformat(),
        }


# --- triggers ----------------------------------------------------------------------------------------
class RelativeDelay(Strict):
    """Send ``before`` or ``after`` a time the event carries (``{"before": "PT24H", "field":
    "data.showtime"}``): the field must hold an RFC 3339 timestamp."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"oneOf": _one_of_present("before", "after", kind="string")},
    )

    field: EventField
    before: Duration | None = None
    after: Duration | None = None

    @model_validator(mode="after")
    def _one(self) -> RelativeDelay:
        if (self.before is None) == (self.after is None):
            raise ValueError("give exactly one of before or after")
        return self


class TriggerRule(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"type": "string"}}}
                for name in ("template_id", "cancels")
            ]
        }
    )

    template_id: Identifier | None = Field(None, description="what the rule sends (it may only cancel)")
    channels: list[Channel] | None = Field(
        None, min_length=1, max_length=3, description="in order of preference; default: the template's"
    )
    routing: Routing = Field(
        "all",
        description="all: every channel; first: the first channel the contact can be reached on, falling "
        "back to the next one when it fails permanently",
    )
    lane: Lane | None = None
    category: Category | None = None
    condition: Source | None = Field(None, description="CEL over event and contact; true sends")
    delay: Duration | RelativeDelay | None = Field(
        None, description="after occurred_at (ISO 8601 duration), or before/after a time in the event"
    )
    stale_after: Duration | None = Field(
        None, description="an event older than this (from occurred_at) when processed is dropped as stale"
    )
    cancellation_key: Source | None = Field(
        None,
        description='CEL giving the key put on the notification, e.g. "booking:" + event.data.booking_id',
    )
    cancels: Source | None = Field(
        None,
        description="CEL giving a cancellation key: when the rule matches, the tenant's pending "
        'notifications carrying it are cancelled, e.g. "booking:" + event.data.booking_id',
    )

    @model_validator(mode="after")
    def _does_something(self) -> TriggerRule:
        if self.template_id is None and self.cancels is None:
            raise ValueError("a rule sends a template_id, cancels a key, or both")
        return self


class TriggerIn(Strict):
    rules: list[TriggerRule] = Field(min_length=1, max_length=MAX_RULES)


class Trigger(TriggerIn):
    event_type: str
    version: int = 1
    updated_at: datetime | None = None


# --- decisions ---------------------------------------------------------------------------------------
# Why a rule did or did not produce a notification (``GET /v1/events/{id}``).
Reason = Literal[
    "notified",  # matched: a notification was published (notification_id)
    "condition_false",
    "condition_error",  # the condition failed to evaluate (error says why)
    "stale",  # older than the rule's stale_after when processed
    "no_trigger",  # no trigger for this event type
    "unknown_contact",
    "no_reachable_channel",  # routing first: no channel has an address the contact has not opted out of
    "delay_error",  # a relative delay's field is missing or not a timestamp
    "cancellation_key_error",
    "cancelled",  # a cancels-only rule matched: pending notifications with its key were cancelled
]


class Decision(Wire):
    rule: int | None = None
    reason: Reason
    template_id: str | None = None
    notification_id: str | None = None
    channels: list[str] | None = None
    send_at: datetime | None = None
    cancellation_key: str | None = None
    cancels: str | None = Field(None, description="the key this rule cancelled")
    cancelled: list[str] | None = Field(None, description="notifications it cancelled while they waited")
    error: str | None = None


class EventOutcome(Wire):
    id: str
    type: str
    contact_id: str
    occurred_at: datetime
    status: Literal["accepted", "processed"] = "processed"
    processed_at: datetime | None = None
    trigger_version: int | None = None
    decisions: list[Decision] = Field(default_factory=list)


def rule_notification_id(ids: NotificationIds, tenant_id: str, event_id: str, at: float, rule: int) -> str:
    """The notification an event's rule publishes: the same event and rule always give the same id."""
    return ids.derived(tenant_id, f"event\x1f{event_id}\x1f{rule}", at)


def event_idempotency_name(key: str) -> str:
    """Where a client's event idempotency key lives among the tenant's keys: one namespace for events
    posted over HTTP and produced to the tenant's events topic, apart from notifications' keys."""
    return f"event\x1f{key}"


def rule_idempotency_key(event_id: str, rule: int) -> str:
    """The intake idempotency key of that notification: a redelivered event publishes nothing twice."""
    return f"event:{event_id}:{rule}"
