"""Tenant webhook endpoints: what a tenant asks for (:class:`WebhookIn`), what is kept
(:class:`Endpoint`), and the event types an endpoint can subscribe to.

Event types are one list (:data:`EVENT_TYPES`); a status event maps to the types it is delivered as
by :func:`event_types_for`. ``notification.status`` is every status change of a notification or one of
its channels; ``notification.final`` only the final ones (:data:`herald_common.status.TERMINAL`).
``event.decision``, ``campaign.progress`` and ``campaign.finished`` are notices
(:mod:`herald_common.notices`), delivered as their own type.

Secrets follow Standard Webhooks: ``whsec_`` + base64 of 24 to 65 random bytes (the pattern says it
all, so the OpenAPI document states exactly what is accepted). ``previous_secret``
(rotation) is signed with too, beside ``secret``, until a PUT leaves it out.
"""

from __future__ import annotations

import base64
import secrets
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator

from herald_common.status import TERMINAL

EventType = Literal[
    "notification.status", "notification.final", "event.decision", "campaign.progress", "campaign.finished"
]
EVENT_TYPES: tuple[EventType, ...] = (
    "notification.status",
    "notification.final",
    "event.decision",
    "campaign.progress",
    "campaign.finished",
)

SECRET_PREFIX = "whsec_"
Secret = Annotated[
    str,
    StringConstraints(pattern=r"^whsec_(?:[A-Za-z0-9+/]{4}){8,21}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"),
    Field(description="whsec_ followed by the base64 (padded) of 24 to 65 random bytes"),
]


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def event_types_for(status: str) -> set[EventType]:
    """The event types a status change is delivered as."""
    types: set[EventType] = {"notification.status"}
    if status in TERMINAL:
        types.add("notification.final")
    return types


class WebhookIn(BaseModel):
    """``PUT /v1/webhooks/{id}``: create or replace one endpoint."""

    model_config = {"extra": "forbid", "strict": True}

    url: Annotated[str, StringConstraints(min_length=8, max_length=2048)] = Field(
        description="https URL (http only for hosts the operator allow-lists)"
    )
    event_types: list[EventType] = Field(
        min_length=1, max_length=len(EVENT_TYPES), description="the event types this endpoint receives"
    )
    secret: Secret | None = Field(
        None, description="signing secret; left out on create, one is generated and shown once"
    )
    previous_secret: Secret | None = Field(
        None, description="the secret being rotated away from: deliveries carry both signatures"
    )
    enabled: bool = True
    description: Annotated[str, StringConstraints(max_length=500)] | None = None

    @field_validator("event_types")
    @classmethod
    def _unique(cls, v: list[EventType]) -> list[EventType]:
        return sorted(set(v), key=EVENT_TYPES.index)


class Endpoint(BaseModel):
    """One stored endpoint (secrets included: the webhooks service signs with them)."""

    id: str
    tenant_id: str
    url: str
    event_types: list[EventType]
    secret: str
    previous_secret: str | None = None
    enabled: bool = True
    description: str | None = None
    created_at: float
    updated_at: float

    def wants(self, event_type: str) -> bool:
        return self.enabled and event_type in self.event_types

    def signing_secrets(self) -> list[str]:
        return [self.secret] + ([self.previous_secret] if self.previous_secret else [])


class Health(BaseModel):
    """How an endpoint's deliveries have been going, and whether it is paused."""

    paused: bool = False
    paused_reason: str | None = None
    paused_at: float | None = None
    consecutive_failures: int = 0
    failing_since: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None
