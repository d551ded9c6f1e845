"""What the router decides for one notification request: which channels, which addresses, whether a
channel is suppressed, and the rendered content. Pure logic plus reads through the Store."""

from __future__ import annotations

from dataclasses import dataclass

from herald_common.schemas import ChannelContent, Contact, NotificationRequest


@dataclass(slots=True)
class ChannelPlan:
    channel: str
    addresses: list[str]
    skip_status: str | None = None  # "failed" or "suppressed" when nothing is sent on this channel
    reason: str | None = None


def addresses_for(channel: str, req: NotificationRequest, contact: Contact | None) -> list[str]:
    if channel == "email":
        email = req.to.email or (contact.email if contact else None)
        return [str(email)] if email else []
    if channel == "sms":
        phone = req.to.phone or (contact.phone if contact else None)
        return [phone] if phone else []
    if req.to.push_token:
        return [req.to.push_token]
    return [t.token for t in contact.push_tokens] if contact else []


def plan_channels(
    req: NotificationRequest, contact: Contact | None, content: ChannelContent, category: str
) -> list[ChannelPlan]:
    plans = []
    for channel in req.channels or content.channels():
        if getattr(content, channel) is None:
            plans.append(ChannelPlan(channel, [], "failed", f"no {channel} content in the template"))
            continue
        addresses = addresses_for(channel, req, contact)
        if not addresses:
            plans.append(ChannelPlan(channel, [], "failed", f"no {channel} address for this recipient"))
            continue
        if contact is not None:
            prefs = contact.preferences
            if prefs.channels.get(channel) is False:
                plans.append(ChannelPlan(channel, [], "suppressed", f"contact opted out of {channel}"))
                continue
            if category != "transactional" and prefs.categories.get(category) is False:
                plans.append(ChannelPlan(channel, [], "suppressed", f"contact opted out of {category}"))
                continue
        plans.append(ChannelPlan(channel, addresses))
    return plans
