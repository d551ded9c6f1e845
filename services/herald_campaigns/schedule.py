"""When each recipient of a ``local_time`` campaign gets it: the next HH:MM on their own wall clock."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def local_send_at(hhmm: str, timezone: str | None, after: float) -> float:
    """The first moment at or after ``after`` (Unix seconds) when it is ``hhmm`` in ``timezone`` (else
    UTC); a time that does not exist that day (a DST gap) resolves as the zone's rules say."""
    try:
        zone = ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    hour, minute = (int(p) for p in hhmm.split(":"))
    today = datetime.fromtimestamp(after, zone).date()
    for day in (today, today + timedelta(days=1), today + timedelta(days=2)):
        at = datetime.combine(day, time(hour, minute), zone).timestamp()
        if at >= after:
            return at
    return after
