"""The campaign's shapes: what a tenant posts (:class:`CampaignIn`), what is stored and returned
(:class:`Campaign`), the recipients' outcomes and the deterministic notification id per recipient."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from herald_common.conditions import MAX_EXPRESSION_CHARS
from herald_common.fields import Category, Identifier, JsonObject
from herald_common.ids import NotificationIds
from herald_common.schemas import Strict
from herald_common.settings import Channel
from herald_common.wire import Wire

State = Literal["draft", "scheduled", "running", "paused", "completed", "cancelled"]
STATES: Final = ("draft", "scheduled", "running", "paused", "completed", "cancelled")
FINAL_STATES: Final = frozenset({"completed", "cancelled"})

# A recipient's outcome, the most advanced of its channels' (a later status only ever moves it up):
# queued (fanned out, nothing heard yet) < skipped/suppressed/capped/cancelled < sent < failed < delivered.
OUTCOMES: Final = ("queued", "skipped", "suppressed", "capped", "cancelled", "sent", "failed", "delivered")
OUTCOME_RANK: Final = {
    "queued": 0,
    "skipped": 1,
    "suppressed": 1,
    "capped": 1,
    "cancelled": 1,
    "sent": 2,
    "failed": 3,
    "delivered": 4,
}
_BY_STATUS: Final = {
    "sent": "sent",
    "delivered": "delivered",
    "failed": "failed",
    "bounced": "failed",
    "expired": "failed",
    "suppressed": "suppressed",
    "capped": "capped",
    "cancelled": "cancelled",
}
# Notification-level failures that mean "never attempted": the recipient was skipped, with the reason.
SKIP_CODES: Final = frozenset(
    {"unknown_contact", "template_not_found", "no_address", "no_content", "render_error", "too_large"}
)

LocalTime = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
Segment = Annotated[str, StringConstraints(min_length=1, max_length=MAX_EXPRESSION_CHARS)]
RatePerSecond = Annotated[float, Field(gt=0, le=100_000)]


def outcome_of(status: str, reason_code: str | None) -> tuple[str, str] | None:
    """The campaign outcome a status event means, with its reason (empty when none); None for the
    in-progress statuses (accepted, scheduled, held, queued, sending, retrying), which leave it queued."""
    if status == "failed" and reason_code in SKIP_CODES:
        return "skipped", reason_code or ""
    outcome = _BY_STATUS.get(status)
    if outcome is None:
        return None
    return outcome, (reason_code or "") if outcome in ("suppressed", "capped", "failed", "cancelled") else ""


def recipient_notification_id(
    ids: NotificationIds, tenant_id: str, campaign: Campaign, contact_id: str
) -> str:
    """The one notification a campaign sends a recipient: the same (campaign, contact) always gives the
    same signed id, so a replayed batch is recognised downstream."""
    return ids.derived(tenant_id, f"campaign\x1f{campaign.id}\x1f{contact_id}", campaign.created_at)


class CampaignIn(Strict):
    # send_at or local_time, not both.
    model_config = ConfigDict(
        json_schema_extra={
            "not": {
                "required": ["send_at", "local_time"],
                "properties": {"send_at": {"type": "string"}, "local_time": {"type": "string"}},
            }
        }
    )

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    template_id: Identifier
    channels: list[Channel] | None = Field(
        None, min_length=1, max_length=3, description="default: every channel the template has content for"
    )
    category: Category = Field("marketing", description="marketing (the default) travels on the bulk lane")
    data: JsonObject = Field(default_factory=dict, description="the templates' `data`, the same for everyone")
    rate_per_s: RatePerSecond = Field(100.0, description="recipients fanned out per second")
    send_at: datetime | None = Field(None, description="start no earlier than this (with a time zone offset)")
    local_time: LocalTime | None = Field(
        None,
        description="HH:MM: each recipient gets it at the next HH:MM in their own time zone (else UTC) "
        "after the campaign starts",
    )
    segment: Segment | None = Field(
        None,
        description="CEL condition over `contact` (id, attributes, locale, timezone, has_email, has_phone, "
        "has_push), evaluated once at start: over the uploaded audience, else over all the tenant's contacts",
    )

    @model_validator(mode="after")
    def _when(self) -> CampaignIn:
        if self.send_at is not None and self.send_at.tzinfo is None:
            raise ValueError("send_at needs a time zone offset")
        if self.send_at is not None and self.local_time is not None:
            raise ValueError("give send_at or local_time, not both")
        return self


class CampaignPatch(Strict):
    rate_per_s: RatePerSecond


class Campaign(Wire):
    """A campaign's configuration as stored (``cfg`` in its Redis hash); state and progress live beside it."""

    id: str
    tenant_id: str
    name: str | None = None
    template_id: str
    channels: list[Channel] | None = None
    category: str = "marketing"
    data: dict[str, Any] = Field(default_factory=dict)
    send_at: float | None = None
    local_time: str | None = None
    segment: str | None = None
    created_at: float
    follow_up_of: str | None = None

    def cancellation_key(self) -> str:
        return f"campaign:{self.id}"
