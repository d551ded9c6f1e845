"""Shared data shapes: what tenants send (validated by the gateway), what Redis stores, and what travels
on Kafka between services. pydantic validates every boundary; orjson carries the bytes."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from herald_common.settings import CHANNELS, Channel, Lane

Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")]
ShortText = Annotated[str, StringConstraints(max_length=1000)]
Category = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_\-]{0,63}$")]
_TZ = frozenset(available_timezones())
_LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


# E.164 syntax: "+", a country code and up to 15 digits in all. Whether the number is allocated is the
# SMS provider's question (the Twilio adapter checks it before sending and fails such a number at once).
E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"
Phone = Annotated[str, StringConstraints(pattern=E164_PATTERN)]


# The HTML "valid email address" grammar (what browsers accept), checked with one compiled regex for the
# common ASCII case; anything else (internationalised addresses) goes through email-validator.
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


def _email(value: str) -> str:
    if len(value) <= 254 and _EMAIL.match(value) and ".." not in value and not value.startswith("."):
        local, _, domain = value.rpartition("@")
        return f"{local}@{domain.lower()}"
    try:
        return str(validate_email(value, check_deliverability=False).normalized)
    except EmailNotValidError as exc:
        raise ValueError(f"is not a valid email address: {exc}") from None


Email = Annotated[
    str,
    StringConstraints(max_length=254),
    AfterValidator(_email),
    WithJsonSchema({"type": "string", "format": "email", "maxLength": 254}),
]


# --- free-form JSON (contact attributes, notification data) ----------------------------------------------
# Any JSON, but only what every hop can carry: integers that fit 64 bits (orjson's range; larger ones
# would be stored and then fail every later read), nesting at most MAX_JSON_DEPTH deep.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
MAX_JSON_DEPTH = 16
_JSON_VALUE_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string"},
        {"type": "integer", "minimum": INT_MIN, "maximum": INT_MAX},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
        {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/JsonValue"}},
    ]
}


def _json_safe(value: Any, depth: int = 0) -> Any:
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"is nested more than {MAX_JSON_DEPTH} levels deep")
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise ValueError("holds an integer outside the 64-bit range")
        return value
    if isinstance(value, dict):
        for v in value.values():
            _json_safe(v, depth + 1)
        return value
    if isinstance(value, list):
        for v in value:
            _json_safe(v, depth + 1)
        return value
    raise ValueError(f"holds a {type(value).__name__}, which is not JSON")


JsonObject = Annotated[
    dict[str, Any],
    AfterValidator(_json_safe),
    WithJsonSchema({"type": "object", "additionalProperties": {"$ref": "#/components/schemas/JsonValue"}}),
]


def json_value_schema() -> dict[str, Any]:
    """The JSON schema of one free-form value (``#/components/schemas/JsonValue`` in the OpenAPI
    document), integer range included."""
    return _JSON_VALUE_SCHEMA


def _whole(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# An integer field: JSON Schema counts 5.0 as the integer 5, so the API does too (and nothing else).
BurstSize = Annotated[int, Field(ge=1, le=10_000_000), BeforeValidator(_whole)]


def _one_of_present(*fields: str, kind: str) -> Any:
    """JSON-schema branches, one per field, each requiring that field present and not null."""
    return [{"required": [f], "properties": {f: {"type": kind}}} for f in fields]


class Strict(BaseModel):
    """Request bodies: unknown fields refused and no type coercion (``0`` is not ``false``, ``"5"`` not
    ``5``), so the API accepts exactly what its OpenAPI document describes."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _tz(value: str) -> str:
    if value not in _TZ:
        raise ValueError("must be an IANA time zone such as Europe/London")
    return value


Locale = Annotated[str, StringConstraints(max_length=35, pattern=_LOCALE.pattern)]
TimeZone = Annotated[str, AfterValidator(_tz), WithJsonSchema({"type": "string", "enum": sorted(_TZ)})]


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

    subject: Annotated[str, StringConstraints(min_length=1, max_length=998)]
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
    data: JsonObject = Field(default_factory=dict)
    category: Category | None = None
    lane: Lane | None = Field(None, description="defaults to bulk for marketing, else transactional")
    locale: Locale | None = None
    expires_at: datetime | None = None
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None

    @model_validator(mode="after")
    def _source(self) -> NotificationIn:
        if (self.template_id is None) == (self.content is None):
            raise ValueError("give exactly one of template_id or content")
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise ValueError("expires_at needs a time zone offset")
        return self


class NotificationBatch(Strict):
    notifications: list[NotificationIn] = Field(min_length=1, max_length=1000)


# --- tenants -----------------------------------------------------------------------------------------
class TenantIn(Strict):
    id: Identifier | None = None
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    email_from: Email | None = None
    email_from_name: Annotated[str, StringConstraints(max_length=200)] | None = None
    sms_from: Annotated[str, StringConstraints(max_length=32)] | None = None
    fcm_project: Annotated[str, StringConstraints(max_length=200)] | None = None
    rate_limit_per_s: float | None = Field(
        None,
        gt=0,
        le=1_000_000,
        description="notifications per second the API accepts (all gateways together)",
    )
    rate_limit_burst: BurstSize | None = Field(
        None, description="notifications accepted at once above the rate (default: 1,000)"
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
    email_from_name: Annotated[str, StringConstraints(max_length=200)] | None = None
    sms_from: Annotated[str, StringConstraints(max_length=32)] | None = None
    fcm_project: Annotated[str, StringConstraints(max_length=200)] | None = None
    rate_limit_per_s: float | None = Field(None, gt=0, le=1_000_000)
    rate_limit_burst: BurstSize | None = None

    @model_validator(mode="after")
    def _named(self) -> TenantPatch:
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("name cannot be cleared")
        return self


class Tenant(TenantIn):
    id: Identifier
    created_at: datetime


class ApiKeyIn(Strict):
    name: Annotated[str, StringConstraints(max_length=200)] = "default"


# --- on the wire between services ----------------------------------------------------------------------
class Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class WireRecipient(Wire):
    """The recipient as the gateway validated it: not checked again on every hop."""

    contact_id: str | None = None
    email: str | None = None
    phone: str | None = None
    push_token: str | None = None


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
    data: dict[str, Any] = Field(default_factory=dict)
    category: str | None = None
    locale: str | None = None
    expires_at: float | None = None


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
    contact_id: str | None = Field(
        None, description="the contact the address came from, if any (push token clean-up needs it)"
    )


Status = Literal[
    "accepted",
    "scheduled",
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
    next_attempt_at: float | None = Field(None, description="retrying: when the next attempt is due")
