"""Shared data shapes: what tenants send (validated by the gateway), what Redis stores, and what travels
on Kafka between services. pydantic validates every boundary; orjson carries the bytes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from herald_common.caps import FrequencyCap
from herald_common.fields import (
    _LOCALE,
    HEADER_CHARS,
    BurstSize,
    CancellationKey,
    Category,
    Email,
    FcmProject,
    Identifier,
    JsonObject,
    Locale,
    Phone,
    TimeZone,
    _one_of_present,
)
from herald_common.push_overrides import AndroidConfig, ApnsConfig, FcmOptions, WebpushConfig
from herald_common.quiet_hours import QuietHours
from herald_common.settings import CHANNELS, Channel, Lane

# How a notification uses its channels: every one, or the first reachable with fallback (README).
Routing = Literal["all", "first"]


class Strict(BaseModel):
    """Request bodies: unknown fields refused and no type coercion (``0`` is not ``false``, ``"5"`` not
    ``5``), so the API accepts exactly what its OpenAPI document describes."""

    model_config = ConfigDict(extra="forbid", strict=True)


# --- contacts ----------------------------------------------------------------------------------------
class PushToken(Strict):
    token: Annotated[str, StringConstraints(min_length=8, max_length=4096)]
    platform: Literal["android", "ios", "web"]


class Preferences(Strict):
    channels: dict[Channel, bool] = Field(default_factory=dict, description="false opts out of a channel")
    categories: dict[Category, bool] = Field(default_factory=dict, description="false opts out of a category")


class ContactIn(Strict):
    email: Email | None = None
    phone: Phone | None = None
    push_tokens: list[PushToken] = Field(default_factory=list, max_length=20)
    locale: Locale | None = None
    timezone: TimeZone | None = None
    attributes: JsonObject = Field(default_factory=dict)
    preferences: Preferences = Field(default_factory=Preferences)
    quiet_hours: QuietHours | None = Field(
        None, description="replaces the tenant's quiet hours for this contact (start = end: none)"
    )


class Contact(ContactIn):
    id: Identifier
    updated_at: datetime | None = None


class ContactBatchItem(ContactIn):
    id: Identifier


class ContactBatch(Strict):
    contacts: list[ContactBatchItem] = Field(min_length=1, max_length=1000)


# --- templates / content -----------------------------------------------------------------------------
class EmailContent(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": [f], "properties": {f: {"type": "string", "minLength": 1}}}
                for f in ("html", "text")
            ]
        }
    )

    subject: Annotated[str, StringConstraints(min_length=1, max_length=998), HEADER_CHARS]
    html: Annotated[str, StringConstraints(max_length=512_000)] | None = None
    text: Annotated[str, StringConstraints(max_length=512_000)] | None = None

    @model_validator(mode="after")
    def _body(self) -> EmailContent:
        if not self.html and not self.text:
            raise ValueError("an email needs html or text")
        return self


class SmsContent(Strict):
    text: Annotated[str, StringConstraints(min_length=1, max_length=1600)]


class PushContent(Strict):
    title: Annotated[str, StringConstraints(max_length=250)] | None = None
    body: Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    data: dict[str, str] = Field(default_factory=dict)
    # FCM v1 override blocks, sent as given (herald_common.push_overrides).
    android: AndroidConfig | None = Field(None, description="FCM v1 message.android, sent as given")
    apns: ApnsConfig | None = Field(None, description="FCM v1 message.apns, sent as given")
    webpush: WebpushConfig | None = Field(None, description="FCM v1 message.webpush, sent as given")
    fcm_options: FcmOptions | None = Field(None, description="FCM v1 message.fcm_options, sent as given")


class ChannelContent(Strict):
    email: EmailContent | None = None
    sms: SmsContent | None = None
    push: PushContent | None = None

    model_config = ConfigDict(json_schema_extra={"anyOf": _one_of_present(*CHANNELS, kind="object")})

    def channels(self) -> list[Channel]:
        """The channels this content has content for, in channel order."""
        return [ch for ch in CHANNELS if getattr(self, ch) is not None]

    @model_validator(mode="after")
    def _some(self) -> ChannelContent:
        if not self.channels():
            raise ValueError(f"give content for at least one of {', '.join(CHANNELS)}")
        return self


class TemplateIn(ChannelContent):
    category: Category = "transactional"
    locales: dict[Annotated[str, StringConstraints(pattern=_LOCALE.pattern)], ChannelContent] = Field(
        default_factory=dict,
        description="per-locale variants; a contact's locale picks one, else the default",
    )


class Template(TemplateIn):
    id: Identifier
    version: int = 1
    updated_at: datetime | None = None

    def content_for(self, locale: str | None) -> ChannelContent:
        if locale:
            for candidate in (locale, locale.split("-")[0]):
                if candidate in self.locales:
                    return self.locales[candidate]
        return self


class PreviewIn(Strict):
    contact: ContactIn | None = None
    data: JsonObject = Field(default_factory=dict)
    locale: Locale | None = None


# --- notifications -----------------------------------------------------------------------------------
class Recipient(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": _one_of_present("contact_id", "email", "phone", "push_token", kind="string")
        }
    )

    contact_id: Identifier | None = None
    email: Email | None = None
    phone: Phone | None = None
    push_token: Annotated[str, StringConstraints(min_length=8, max_length=4096)] | None = None

    @model_validator(mode="after")
    def _one(self) -> Recipient:
        if not (self.contact_id or self.email or self.phone or self.push_token):
            raise ValueError("give a contact_id or at least one of email, phone, push_token")
        return self


class NotificationIn(Strict):
    # Exactly one of template_id and content: at least one of them, and not both.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": _one_of_present("template_id", kind="string")
            + _one_of_present("content", kind="object"),
            "not": {
                "required": ["template_id", "content"],
                "properties": {"template_id": {"type": "string"}, "content": {"type": "object"}},
            },
        }
    )

    to: Recipient
    template_id: Identifier | None = None
    content: ChannelContent | None = None
    channels: list[Channel] | None = Field(None, min_length=1, max_length=3)
    routing: Annotated[Routing | None, WithJsonSchema({"type": "string", "enum": ["all", "first"]})] = Field(
        None,
        description="all (the default): every channel; first: the first channel, in the order given, the "
        "recipient can be reached on, falling back to the next one when it fails permanently",
    )
    data: JsonObject = Field(default_factory=dict)
    category: Category | None = None
    lane: Lane | None = Field(
        None,
        description="defaults to transactional for the transactional category and the tenant's "
        "transactional_categories, else bulk; transactional for any other category is refused (422)",
    )
    locale: Locale | None = None
    expires_at: datetime | None = None
    send_at: datetime | None = Field(None, description="deliver no earlier than this (held until then)")
    cancellation_key: CancellationKey | None = Field(
        None,
        description="notifications sharing a key can be cancelled together while they wait "
        "(POST /v1/notifications:cancel-by-key, or an event whose trigger cancels that key)",
    )
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None

    @model_validator(mode="after")
    def _source(self) -> NotificationIn:
        if (self.template_id is None) == (self.content is None):
            raise ValueError("give exactly one of template_id or content")
        if "routing" in self.model_fields_set and self.routing is None:
            raise ValueError("routing is all or first")
        for name in ("expires_at", "send_at"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                raise ValueError(f"{name} needs a time zone offset")
        return self


class NotificationBatch(Strict):
    notifications: list[NotificationIn] = Field(min_length=1, max_length=1000)


class CancelByKeyIn(Strict):
    cancellation_key: CancellationKey


# --- tenants -----------------------------------------------------------------------------------------
FrequencyCaps = Annotated[
    dict[Category, Annotated[list[FrequencyCap], Field(min_length=1, max_length=5)]], Field(max_length=50)
]


class TenantIn(Strict):
    id: Identifier | None = None
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    email_from: Email | None = None
    email_from_name: Annotated[str, StringConstraints(max_length=200), HEADER_CHARS] | None = None
    sms_from: Annotated[str, StringConstraints(max_length=32), HEADER_CHARS] | None = None
    fcm_project: FcmProject | None = Field(
        None,
        description="the Firebase project this tenant's push messages are sent in (default: the sender's)",
    )
    transactional_categories: list[Category] = Field(
        default_factory=list,
        max_length=50,
        description="categories besides transactional that may use the transactional lane",
    )
    rate_limit_per_s: float | None = Field(
        None,
        gt=0,
        le=1_000_000,
        description="notifications per second the API accepts (all gateways together)",
    )
    rate_limit_burst: BurstSize | None = Field(
        None, description="notifications accepted at once above the rate (default: 1,000)"
    )
    quiet_hours: QuietHours | None = Field(
        None, description="non-transactional notifications inside this local window are held until it ends"
    )
    frequency_caps: FrequencyCaps | None = Field(
        None, description="per contact and category: at most max notifications per rolling window"
    )
    events_topic: bool = Field(
        False,
        description="Herald creates and consumes the Kafka topic <prefix>.tenant-events.<tenant id>, "
        "which the tenant's own systems produce loyalty events to",
    )


class TenantPatch(Strict):
    """Fields of a tenant an admin can change; absent fields stay as they are, null clears (every
    field but the name, which a tenant always has)."""

    name: Annotated[
        str | None,
        StringConstraints(min_length=1, max_length=200),
        WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 200}),
    ] = None
    email_from: Email | None = None
    email_from_name: Annotated[str, StringConstraints(max_length=200), HEADER_CHARS] | None = None
    sms_from: Annotated[str, StringConstraints(max_length=32), HEADER_CHARS] | None = None
    fcm_project: FcmProject | None = Field(
        None,
        description="the Firebase project this tenant's push messages are sent in (default: the sender's)",
    )
    transactional_categories: list[Category] | None = Field(None, max_length=50)
    rate_limit_per_s: float | None = Field(None, gt=0, le=1_000_000)
    rate_limit_burst: BurstSize | None = None
    quiet_hours: QuietHours | None = None
    frequency_caps: FrequencyCaps | None = None
    events_topic: Annotated[bool | None, WithJsonSchema({"type": "boolean"})] = None

    @model_validator(mode="after")
    def _named(self) -> TenantPatch:
        if "events_topic" in self.model_fields_set and self.events_topic is None:
            raise ValueError("events_topic is true or false")
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("name cannot be cleared")
        return self


class Tenant(TenantIn):
    id: Identifier
    created_at: datetime
    # Kept as stored: a value from before project ids were checked still reads (the sender refuses it).
    fcm_project: Annotated[str, StringConstraints(max_length=200)] | None = None


class ApiKeyIn(Strict):
    name: Annotated[str, StringConstraints(max_length=200)] = "default"
