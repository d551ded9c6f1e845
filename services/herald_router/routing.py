"""What the router decides for one notification request: which channels, which addresses, whether a
channel is suppressed, and the rendered content. Pure logic plus reads through the Store."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from herald_common import policy
from herald_common.channels import CHANNELS, ChannelSpec, spec
from herald_common.schemas import ChannelContent, Contact, Tenant
from herald_common.wire import NotificationRequest


@dataclass(slots=True)
class ChannelPlan:
    channel: str
    addresses: list[str]
    skip_status: str | None = None  # "failed", "suppressed", "capped" when nothing is sent on it
    reason: str | None = None
    reason_code: str | None = None  # herald_common.policy


def addresses_for(
    channel: str,
    req: NotificationRequest,
    contact: Contact | None,
    channels: Mapping[str, ChannelSpec] = CHANNELS,
) -> list[str]:
    """The addresses ``req`` goes to on ``channel``; ValueError for a channel not in ``channels``."""
    return spec(channel, channels).addresses(req.to, contact)


def requested_channels(
    req: NotificationRequest, content: Any, channels: Mapping[str, ChannelSpec] = CHANNELS
) -> list[str]:
    """The channels the request names, else every channel ``content`` has content for."""
    if req.channels:
        return list(req.channels)
    return [name for name in channels if getattr(content, name, None) is not None]


def plan_channels(
    req: NotificationRequest,
    contact: Contact | None,
    content: ChannelContent | Any,
    category: str,
    tenant: Tenant | None = None,
    channels: Mapping[str, ChannelSpec] = CHANNELS,
) -> list[ChannelPlan]:
    """One plan per requested channel. ``content`` has one attribute per channel (``ChannelContent``);
    a channel missing from ``channels`` is a ValueError, never a silent fall-through."""
    plans = []
    for channel in requested_channels(req, content, channels):
        addresses = addresses_for(channel, req, contact, channels)
        if getattr(content, channel, None) is None:
            plans.append(
                ChannelPlan(channel, [], "failed", f"no {channel} content in the template", policy.NO_CONTENT)
            )
            continue
        if not addresses:
            plans.append(
                ChannelPlan(
                    channel, [], "failed", f"no {channel} address for this recipient", policy.NO_ADDRESS
                )
            )
            continue
        if contact is not None:
            prefs = contact.preferences
            opted = cast("Mapping[str, bool]", prefs.channels)  # keyed by channel name
            if opted.get(channel) is False:
                plans.append(
                    ChannelPlan(
                        channel, [], "suppressed", f"contact opted out of {channel}", policy.OPTED_OUT_CHANNEL
                    )
                )
                continue
            if not policy.is_transactional(category, tenant) and prefs.categories.get(category) is False:
                plans.append(
                    ChannelPlan(
                        channel,
                        [],
                        "suppressed",
                        f"contact opted out of {category}",
                        policy.OPTED_OUT_CATEGORY,
                    )
                )
                continue
        plans.append(ChannelPlan(channel, addresses))
    return plans


def pick_first(plans: list[ChannelPlan]) -> tuple[list[ChannelPlan], list[str]]:
    """Routing ``first``: the first plan that can be sent, and the channels after it in the request's
    order (where it falls back to if that channel fails permanently; each is checked again then).
    When none can be sent: every plan, so each channel's status says why, and nowhere to fall back."""
    for i, plan in enumerate(plans):
        if plan.skip_status is None:
            return [plan], [p.channel for p in plans[i + 1 :]]
    return plans, []
