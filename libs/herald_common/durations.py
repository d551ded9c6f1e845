"""ISO 8601 durations (``PT2H``, ``P1DT30M``, ``P2W``) as triggers use them for delays and staleness.

Only the exact-length units are accepted: weeks, days, hours, minutes and seconds (a month or a year has
no fixed length, so ``P1M`` is refused rather than guessed). Each unit takes at most 6 digits, so every
duration the schema admits fits a datetime comfortably.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, StringConstraints

_N = "[0-9]{1,6}"
_S = f"{_N}(?:\\.[0-9]{{1,6}})?S"
_TIME = f"T(?:{_N}H(?:{_N}M)?(?:{_S})?|{_N}M(?:{_S})?|{_S})"
# Not empty (``P``, ``PT`` and ``P1DT`` are refused) and without look-arounds, so the same pattern holds
# in pydantic's validator, in JSON Schema and in any client.
DURATION_PATTERN = f"^P(?:{_N}W(?:{_N}D)?(?:{_TIME})?|{_N}D(?:{_TIME})?|{_TIME})$"
_PARTS = re.compile(r"^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
_DURATION = re.compile(DURATION_PATTERN)
_FACTORS = (7 * 86400, 86400, 3600, 60, 1)


def parse_duration(text: str) -> timedelta:
    """``PT2H`` → 2 hours; ValueError for anything else (``P1M``, ``PT``, ``2h``)."""
    match = _PARTS.match(text) if _DURATION.match(text) else None
    if match is None:
        raise ValueError(f"{text!r} is not an ISO 8601 duration of weeks, days, hours, minutes, seconds")
    seconds = sum(float(g) * f for g, f in zip(match.groups(), _FACTORS, strict=True) if g)
    return timedelta(seconds=seconds)


def _check(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN, max_length=64), AfterValidator(_check)]


def parse_instant(value: Any) -> datetime | None:
    """An RFC 3339 timestamp with an offset (a string), else None."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
