"""Quiet-hours arithmetic (midnight, DST), cap durations, and how the new statuses fold."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest
from pydantic import ValidationError

from herald_common.caps import FrequencyCap, duration_s
from herald_common.quiet_hours import QuietHours, next_allowed, resolve
from herald_common.schemas import TenantIn
from herald_common.status import OVERALL, RANK, overall

NIGHT = (time(21), time(8))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (utc(2026, 1, 10, 20, 59, 59), None),  # just before the window
        (utc(2026, 1, 10, 21, 0), utc(2026, 1, 11, 8, 0)),  # its first second
        (utc(2026, 1, 10, 23, 59, 59), utc(2026, 1, 11, 8, 0)),  # before midnight: tomorrow's 08:00
        (utc(2026, 1, 11, 0, 0), utc(2026, 1, 11, 8, 0)),  # after midnight: today's 08:00
        (utc(2026, 1, 11, 7, 59, 59), utc(2026, 1, 11, 8, 0)),
        (utc(2026, 1, 11, 8, 0), None),  # the end is not inside
        (utc(2026, 1, 11, 12, 0), None),
    ],
)
def test_window_crossing_midnight(now: datetime, expected: datetime | None) -> None:
    assert next_allowed(now, NIGHT, "UTC") == expected


def test_window_within_one_day_and_empty_window() -> None:
    lunch = (time(12), time(14))
    assert next_allowed(utc(2026, 1, 10, 11, 59), lunch, "UTC") is None
    assert next_allowed(utc(2026, 1, 10, 13, 0), lunch, "UTC") == utc(2026, 1, 10, 14, 0)
    assert next_allowed(utc(2026, 1, 10, 14, 0), lunch, "UTC") is None
    assert next_allowed(utc(2026, 1, 10, 13, 0), (time(9), time(9)), "UTC") is None


def test_evaluated_in_the_contacts_zone() -> None:
    # 22:00 UTC is 09:00 in Sydney (AEDT, +11): outside; 23:00 in London (GMT): inside.
    now = utc(2026, 1, 10, 22, 0)
    assert next_allowed(now, NIGHT, "Australia/Sydney") is None
    assert next_allowed(now, NIGHT, "Europe/London") == utc(2026, 1, 11, 8, 0)
    # 12:00 UTC is 21:00 in Tokyo: held until 08:00 Tokyo = 23:00 UTC.
    assert next_allowed(utc(2026, 1, 10, 12, 0), NIGHT, "Asia/Tokyo") == utc(2026, 1, 10, 23, 0)


def test_dst_spring_forward_the_night_the_clocks_change() -> None:
    # Europe/London moves 01:00 GMT → 02:00 BST on 2026-03-29: 08:00 that morning is 07:00 UTC.
    assert next_allowed(utc(2026, 3, 28, 22, 0), NIGHT, "Europe/London") == utc(2026, 3, 29, 7, 0)
    # 20:30 UTC on the 29th is 21:30 BST: inside, until 08:00 BST on the 30th.
    assert next_allowed(utc(2026, 3, 29, 20, 30), NIGHT, "Europe/London") == utc(2026, 3, 30, 7, 0)


def test_dst_fall_back_the_night_the_clocks_change() -> None:
    # 2026-10-25 01:00 UTC: BST ends (02:00 BST → 01:00 GMT); 08:00 that morning is 08:00 UTC.
    assert next_allowed(utc(2026, 10, 24, 20, 0), NIGHT, "Europe/London") == utc(2026, 10, 25, 8, 0)
    # 20:00 UTC on the 24th is 21:00 BST: inside a window from 20:45 (in GMT it would not be), and
    # held through the extra hour the night gains.
    late = (time(20, 45), time(8))
    assert next_allowed(utc(2026, 10, 24, 20, 0), late, "Europe/London") == utc(2026, 10, 25, 8, 0)
    assert next_allowed(utc(2026, 10, 24, 19, 30), late, "Europe/London") is None


def test_dst_end_time_that_does_not_exist_or_happens_twice() -> None:
    # 01:30 does not exist in London on 2026-03-29: it resolves to 01:30 GMT (= 02:30 BST).
    window = (time(0), time(1, 30))
    assert next_allowed(utc(2026, 3, 29, 0, 30), window, "Europe/London") == utc(2026, 3, 29, 1, 30)
    # 01:30 happens twice on 2026-10-25: the first time (BST, 00:30 UTC).
    assert next_allowed(utc(2026, 10, 24, 23, 30), window, "Europe/London") == utc(2026, 10, 25, 0, 30)


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="time zone"):
        next_allowed(datetime(2026, 1, 1, 22), NIGHT, "UTC")


def test_resolve_prefers_the_contact_window_and_zone() -> None:
    tenant = QuietHours(start="21:00", end="08:00", timezone="Europe/London")
    assert resolve(None, None, "Europe/Paris") is None
    assert resolve(tenant, None, None) == ((time(21), time(8)), "Europe/London")
    assert resolve(tenant, None, "Asia/Tokyo") == ((time(21), time(8)), "Asia/Tokyo")
    own = QuietHours(start="22:00", end="07:00")
    assert resolve(tenant, own, None) == ((time(22), time(7)), "Europe/London")


def test_settings_validate() -> None:
    t = TenantIn.model_validate(
        {
            "name": "c",
            "quiet_hours": {"start": "21:00", "end": "08:00:30", "timezone": "Europe/London"},
            "frequency_caps": {"marketing": [{"max": 2, "per": "P1D"}, {"max": 5, "per": "P7D"}]},
        }
    )
    assert t.frequency_caps is not None and t.frequency_caps["marketing"][1].max == 5
    for bad in (
        {"quiet_hours": {"start": "24:00", "end": "08:00"}},
        {"quiet_hours": {"start": "21:00", "end": "08:00", "timezone": "Mars/Base"}},
        {"frequency_caps": {"marketing": [{"max": 0, "per": "P1D"}]}},
        {"frequency_caps": {"marketing": [{"max": 1, "per": "1 day"}]}},
        {"frequency_caps": {"marketing": []}},
    ):
        with pytest.raises(ValidationError):
            TenantIn.model_validate({"name": "c", **bad})


def test_durations() -> None:
    assert duration_s("P1D") == 86400
    assert duration_s("P2W") == 2 * 604800
    assert duration_s("PT6H30M") == 6 * 3600 + 1800
    assert duration_s("P1DT1S") == 86401
    for bad in ("P", "PT", "P1DT", "1D", "P1Y", "PT-1S"):
        with pytest.raises(ValueError):
            duration_s(bad)
    with pytest.raises(ValidationError):
        FrequencyCap(max=1, per="P400D")


def test_new_statuses_fold() -> None:
    assert RANK["held"] == RANK["scheduled"] == 0 and RANK["capped"] == 4
    assert {"held", "capped"} <= set(OVERALL)
    assert overall({"status": "held"}, {}) == "held"
    assert overall({"status": "scheduled"}, {}) == "scheduled"
    assert overall({"status": "cancelled"}, {}) == "cancelled"
    assert overall({}, {"email": {"status": "capped"}, "sms": {"status": "suppressed"}}) == "capped"
    assert overall({}, {"email": {"status": "sent"}, "sms": {"status": "capped"}}) == "sent"
    assert overall({"status": "held"}, {"email": {"status": "cancelled"}}) == "cancelled"


def test_one_rule_says_which_categories_are_transactional_for_a_tenant() -> None:
    from herald_common.policy import is_transactional
    from herald_common.schemas import Tenant
    from herald_common.unsubscribe import is_marketing

    tenant = Tenant(
        id="t1", name="Cinema", created_at=datetime.now(UTC), transactional_categories=["booking"]
    )
    assert is_transactional("transactional", None) and is_transactional("transactional", tenant)
    assert is_transactional("booking", tenant) and not is_transactional("booking", None)
    assert not is_transactional("marketing", tenant)
    assert is_marketing("marketing", tenant) and not is_marketing("booking", tenant)
