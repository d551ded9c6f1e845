"""What a trigger rule decides for one event, as pure functions: staleness, the send time a delay gives,
and the channels (all, or the first the contact can be reached on)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from herald_common.channels import CHANNELS, ChannelSpec
from herald_common.durations import parse_duration, parse_instant
from herald_common.events import EventRecord, RelativeDelay, TriggerRule
from herald_common.schemas import ChannelContent, Contact


class DelayError(ValueError):
    """A relative delay whose event field is missing or not an RFC 3339 timestamp."""


def is_stale(rule: TriggerRule, occurred_at: datetime, now: datetime) -> bool:
    if rule.stale_after is None:
        return False
    try:
        return now - occurred_at > parse_duration(rule.stale_after)
    except OverflowError:  # an occurred_at in year 1 with a positive offset: older than any limit
        return True


def field_value(data: Mapping[str, Any], path: str) -> Any:
    """``data.showtime`` → ``data["showtime"]``; None when any step is missing."""
    value: Any = {"data": data}
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def send_at(rule: TriggerRule, event: EventRecord) -> datetime | None:
    """When the rule's notification is due: ``occurred_at`` + a duration, or before/after a time the
    event carries; None without a delay. Computed from the event alone, so a redelivered event asks for
    the same time (a time already past means at once)."""
    delay = rule.delay
    if delay is None:
        return None
    try:
        if isinstance(delay, str):
            return event.occurred_at + parse_duration(delay)
        relative = cast(RelativeDelay, delay)
        base = parse_instant(field_value(event.data, relative.field))
        if base is None:
            raise DelayError(f"{relative.field} is missing or not an RFC 3339 timestamp with an offset")
        if relative.before is not None:
            return base - parse_duration(relative.before)
        return base + parse_duration(relative.after or "PT0S")
    except OverflowError:
        raise DelayError("the send time falls outside the years 1 to 9999") from None


def reachable(
    channel: str,
    contact: Contact,
    content: ChannelContent | None,
    channels: Mapping[str, ChannelSpec] = CHANNELS,
) -> bool:
    """The contact has an address on ``channel``, has not opted out of it, and the template (when
    known) has content for it."""
    spec = channels.get(channel)
    if spec is None or not spec.contact_addresses(contact):
        return False
    if cast("Mapping[str, bool]", contact.preferences.channels).get(channel) is False:
        return False
    return content is None or getattr(content, channel, None) is not None


def choose_channels(
    routing: str,
    wanted: Sequence[str] | None,
    contact: Contact,
    content: ChannelContent | None,
    channels: Mapping[str, ChannelSpec] = CHANNELS,
) -> list[str] | None:
    """``all``: the rule's channels as given (None: the template's). ``first``: of the rule's channels
    (else the template's, else every channel, in channel order) those the contact can be reached on, in
    that order: the first is sent, the others are where it falls back to on a permanent failure; an
    empty list when there is none."""
    if routing != "first":
        return list(wanted) if wanted else None
    candidates = list(wanted) if wanted else (content.channels() if content is not None else list(channels))
    return [channel for channel in candidates if reachable(channel, contact, content, channels)]


__all__ = ["DelayError", "choose_channels", "field_value", "is_stale", "reachable", "send_at"]
