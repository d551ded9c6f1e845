"""What a channel is, declared once per channel.

A :class:`ChannelSpec` says everything the rest of Herald needs to know about a channel: the model its
content is validated with, which content fields are templates (and which are HTML), how the channel's
addresses are found for a recipient (an inline address in the request, else the contact's), which
sender identity of the tenant travels with a rendered message, and what an invalid-address answer from a
provider does. Code elsewhere looks a channel up in :data:`CHANNELS`; an unknown channel is a
``KeyError`` at start or a validation error at intake, never a silent fall-through.

Adding a channel: declare its content model in ``schemas``, a spec here, a provider module in
``herald_providers`` (see its registry) and chart values; nothing else names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from herald_common.push_overrides import OVERRIDE_FIELDS
from herald_common.schemas import EmailContent, PushContent, SmsContent
from herald_common.settings import CHANNELS as CHANNEL_NAMES

if TYPE_CHECKING:
    from herald_common.schemas import Contact, Tenant
from herald_common.wire import WireRecipient

# What a provider's "this address is invalid / gone" answer does to the address.
InvalidAddressAction = Literal["suppress", "remove_push_token"]


@dataclass(frozen=True, slots=True)
class TemplateField:
    """One templated field of a channel's content. ``html`` fields render with autoescaping;
    ``mapping`` fields are string-to-template dicts rendered value by value (push ``data``)."""

    name: str
    html: bool = False
    mapping: bool = False


def _no_identity(_: Any) -> dict[str, str]:
    return {}


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    name: str
    content_model: type[BaseModel]
    template_fields: tuple[TemplateField, ...]
    # The inline-recipient field that addresses this channel directly (``Recipient.<field>``).
    recipient_field: str
    # The contact's addresses on this channel.
    contact_addresses: Callable[[Contact], list[str]]
    on_invalid_address: InvalidAddressAction = "suppress"
    # The tenant's sender identity for this channel, merged into the rendered content.
    identity: Callable[[Tenant], dict[str, str]] = field(default=_no_identity)
    # The sender's own identity (from its settings, e.g. HERALD_EMAIL_FROM) for a message that
    # carries no ``from`` of the tenant's.
    fallback_identity: Callable[[Any], dict[str, str]] = field(default=_no_identity)
    # Rendered fields that become message headers: a control character in one fails the channel.
    header_fields: tuple[str, ...] = ()
    # Marketing messages on this channel carry a one-click unsubscribe link (herald_common.unsubscribe).
    unsubscribe_link: bool = False
    # On the bulk lane, rendered once as a skeleton with per-recipient substitutions
    # (herald_common.substitution), so that many recipients share one content.
    substitutions: bool = False
    # Content fields that are not templates: copied into the rendered message as given (push's FCM
    # override blocks). The skeleton path carries templates only, so a channel has one or the other.
    passthrough_fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        assert not (self.substitutions and self.passthrough_fields), self.name

    def addresses(self, to: WireRecipient | Any, contact: Contact | None) -> list[str]:
        """An inline address in the request wins; else the contact's addresses on this channel."""
        inline = getattr(to, self.recipient_field, None)
        if inline:
            return [str(inline)]
        return self.contact_addresses(contact) if contact is not None else []


def _email_identity(tenant: Tenant) -> dict[str, str]:
    out: dict[str, str] = {}
    if tenant.email_from:
        out["from"] = str(tenant.email_from)
        if tenant.email_from_name:
            out["from_name"] = tenant.email_from_name
    return out


def _email_fallback(settings: Any) -> dict[str, str]:
    out = {"from": str(settings.email_from)}
    if settings.email_from_name:
        out["from_name"] = settings.email_from_name
    return out


def _sms_identity(tenant: Tenant) -> dict[str, str]:
    return {"from": tenant.sms_from} if tenant.sms_from else {}


# The content key of a push message's FCM project (the tenant's; unset: the sender's HERALD_FCM_PROJECT_ID).
FCM_PROJECT = "fcm_project"


def _push_identity(tenant: Tenant) -> dict[str, str]:
    return {FCM_PROJECT: tenant.fcm_project} if tenant.fcm_project else {}


_SPECS = (
    ChannelSpec(
        name="email",
        content_model=EmailContent,
        template_fields=(TemplateField("subject"), TemplateField("html", html=True), TemplateField("text")),
        recipient_field="email",
        contact_addresses=lambda c: [str(c.email)] if c.email else [],
        identity=_email_identity,
        fallback_identity=_email_fallback,
        header_fields=("subject", "from", "from_name", "reply_to", "unsubscribe_url"),
        unsubscribe_link=True,
        substitutions=True,
    ),
    ChannelSpec(
        name="sms",
        content_model=SmsContent,
        template_fields=(TemplateField("text"),),
        recipient_field="phone",
        contact_addresses=lambda c: [c.phone] if c.phone else [],
        identity=_sms_identity,
        header_fields=("from",),
    ),
    ChannelSpec(
        name="push",
        content_model=PushContent,
        template_fields=(TemplateField("title"), TemplateField("body"), TemplateField("data", mapping=True)),
        recipient_field="push_token",
        contact_addresses=lambda c: [t.token for t in c.push_tokens],
        on_invalid_address="remove_push_token",
        identity=_push_identity,
        passthrough_fields=OVERRIDE_FIELDS,
    ),
)

CHANNELS: Mapping[str, ChannelSpec] = {spec.name: spec for spec in _SPECS}
assert tuple(CHANNELS) == CHANNEL_NAMES, "every channel name has exactly one spec"


def spec(channel: str, channels: Mapping[str, ChannelSpec] = CHANNELS) -> ChannelSpec:
    """The spec of ``channel``; ValueError naming the known channels for anything else."""
    try:
        return channels[channel]
    except KeyError:
        raise ValueError(f"unknown channel {channel!r}; expected one of {', '.join(channels)}") from None


__all__ = ["CHANNELS", "CHANNEL_NAMES", "FCM_PROJECT", "ChannelSpec", "TemplateField", "spec"]
