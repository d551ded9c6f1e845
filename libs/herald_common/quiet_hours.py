"""Quiet hours: a daily window of local wall-clock time in which non-transactional notifications are
held, not sent. The window is ``[start, end)``; ``start > end`` crosses midnight (21:00 → 08:00);
``start == end`` is an empty window (no quiet hours, e.g. a contact overriding the tenant's).

It is evaluated in the contact's IANA time zone, else the window's own ``timezone``, else UTC.
:func:`next_allowed` is pure: give it ``now`` and it says until when a message must wait.
Daylight-saving changes follow the wall clock: an end time that does not exist that day (skipped
forward) resolves to the same offset as before the change (so 01:30 on a 01:00→02:00 day is 02:30 new
time); an end time that happens twice resolves to its first occurrence.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, StringConstraints

from herald_common.fields import TimeZone

# "HH:MM", or "HH:MM:SS" for a window that must end on a given second.
ClockTime = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$")]


class QuietHours(BaseModel):
    """``{"start": "21:00", "end": "08:00", "timezone": "Europe/London"}``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    start: ClockTime
    end: ClockTime
    timezone: TimeZone | None = None

    def window(self) -> tuple[time, time]:
        return time.fromisoformat(self.start), time.fromisoformat(self.end)


def next_allowed(now: datetime, window: tuple[time, time], tz: str | ZoneInfo) -> datetime | None:
    """When a message that is due ``now`` may go: None when ``now`` is outside the quiet window, else
    the window's end (an aware datetime in UTC). ``now`` must be timezone-aware."""
    if now.tzinfo is None:
        raise ValueError("now needs a time zone")
    start, end = window
    if start == end:
        return None
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    local = now.astimezone(zone)
    t = local.time().replace(tzinfo=None)
    day = local.date()
    if start < end:
        inside, end_day = start <= t < end, day
    elif t >= start:
        inside, end_day = True, day + timedelta(days=1)
    else:
        inside, end_day = t < end, day
    if not inside:
        return None
    until = datetime.combine(end_day, end, tzinfo=zone).astimezone(UTC)
    return until if until > now else None


def resolve(
    tenant_window: QuietHours | None, contact_window: QuietHours | None, contact_tz: str | None
) -> tuple[tuple[time, time], str] | None:
    """The window and zone that apply to a contact: its own window, else the tenant's; its time zone,
    else the window's, else the tenant's, else UTC. None when no window applies."""
    chosen = contact_window or tenant_window
    if chosen is None:
        return None
    tz = contact_tz or chosen.timezone or (tenant_window.timezone if tenant_window else None) or "UTC"
    return chosen.window(), tz
