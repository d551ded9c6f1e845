"""Trigger logic without I/O: CEL compile and evaluation, ISO 8601 delays, channel selection, event ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from herald_common.conditions import ExpressionCache, ExpressionError, compile_expression, contact_variables
from herald_common.durations import parse_duration
from herald_common.events import EventRecord, TriggerRule, rule_notification_id
from herald_common.ids import EventIds, NotificationIds
from herald_common.schemas import ChannelContent, Contact
from herald_router.triggers import DelayError, choose_channels, is_stale, send_at

GOLD = Contact.model_validate(
    {"id": "m", "email": "a@example.com", "attributes": {"tier": "gold"}, "locale": "en-GB"}
)


def _event(**data: object) -> EventRecord:
    return EventRecord(
        id="e_1",
        tenant_id="t",
        type="points.earned",
        contact_id="m",
        data=data,
        occurred_at=datetime(2030, 1, 1, 12, 0, tzinfo=UTC),
        accepted_at=0.0,
    )


def _vars(**data: object) -> dict[str, object]:
    return {"event": _event(**data).variables(), "contact": contact_variables(GOLD)}


def test_cel_condition_over_event_and_contact() -> None:
    expr = compile_expression('contact.attributes.tier == "gold" && event.data.points >= 500')
    assert expr.test(_vars(points=500)) is True
    assert expr.test(_vars(points=499)) is False
    assert compile_expression("contact.has_email && !contact.has_push").test(_vars()) is True
    assert compile_expression('contact.locale.startsWith("en")').test(_vars()) is True


def test_cel_runtime_errors_are_expression_errors_never_crashes() -> None:
    expr = compile_expression("event.data.points >= 500")
    with pytest.raises(ExpressionError, match="points"):
        expr.test(_vars())
    with pytest.raises(ExpressionError):
        expr.test(_vars(points="many"))
    with pytest.raises(ExpressionError, match="not a boolean"):
        compile_expression("event.data.points").test(_vars(points=1))


def test_cel_syntax_errors_carry_their_position() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression("event.data.points >= ")
    assert (info.value.line, info.value.column) == (1, 22)
    assert str(info.value).startswith("line 1, column 22: Syntax error")
    with pytest.raises(ExpressionError, match="unknown variable 'evnt'"):
        compile_expression("evnt.type == 'x'")
    with pytest.raises(ExpressionError, match="comprehension"):
        compile_expression("[1].map(a, [2].map(b, [3].map(c, a)))")
    with pytest.raises(ExpressionError, match="longer"):
        compile_expression("1 + " * 400 + "1")


def test_compiled_expressions_are_cached_per_version() -> None:
    cache = ExpressionCache(size=2)
    first = cache.get(("t", "x", "1"), "true")
    assert cache.get(("t", "x", "1"), "true") is first
    assert cache.get(("t", "x", "1"), "false") is not first  # same key, new source: recompiled


def test_cancellation_key_expression() -> None:
    expr = compile_expression('"booking:" + event.data.booking_id')
    assert expr.text(_vars(booking_id="b-1")) == "booking:b-1"


def test_durations() -> None:
    assert parse_duration("PT2H") == timedelta(hours=2)
    assert parse_duration("P1W2DT3H4M5.5S") == timedelta(days=9, hours=3, minutes=4, seconds=5.5)
    for bad in ("P", "PT", "P1DT", "P1M", "P1Y", "PT1H2D", "2h", "-PT1H"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_delays_and_staleness() -> None:
    rule = TriggerRule(template_id="x", delay="PT2H", stale_after="PT1H")
    event = _event(showtime="2030-01-03T20:00:00+01:00")
    assert send_at(rule, event) == event.occurred_at + timedelta(hours=2)
    before = TriggerRule.model_validate(
        {"template_id": "x", "delay": {"before": "PT24H", "field": "data.showtime"}}
    )
    assert send_at(before, event) == datetime(2030, 1, 2, 19, 0, tzinfo=UTC)
    after = TriggerRule.model_validate(
        {"template_id": "x", "delay": {"after": "PT30M", "field": "data.showtime"}}
    )
    assert send_at(after, event) == datetime(2030, 1, 3, 19, 30, tzinfo=UTC)
    with pytest.raises(DelayError):
        send_at(before, _event(showtime="tomorrow"))
    assert send_at(TriggerRule(template_id="x"), event) is None
    with pytest.raises(DelayError, match="years"):
        send_at(before, _event(showtime="0001-01-01T00:00:00+00:00"))
    assert is_stale(rule, event.occurred_at, event.occurred_at + timedelta(minutes=61))
    assert not is_stale(rule, event.occurred_at, event.occurred_at + timedelta(minutes=59))
    with pytest.raises(ValueError):
        TriggerRule.model_validate(
            {"template_id": "x", "delay": {"before": "PT1H", "after": "PT1H", "field": "data.a"}}
        )


def test_channel_selection() -> None:
    content = ChannelContent.model_validate({"email": {"subject": "s", "text": "t"}, "sms": {"text": "t"}})
    phone_only = Contact.model_validate({"id": "p", "phone": "+447911123456"})
    both = Contact.model_validate({"id": "b", "phone": "+447911123456", "email": "b@example.com"})
    opted_out = Contact.model_validate(
        {
            "id": "o",
            "phone": "+447911123456",
            "email": "o@example.com",
            "preferences": {"channels": {"sms": False}},
        }
    )
    assert choose_channels("all", ["email", "push"], phone_only, content) == ["email", "push"]
    assert choose_channels("all", None, phone_only, content) is None  # the template's channels
    # first: the reachable channels in order; the first is sent, the others are its fallback order
    assert choose_channels("first", ["push", "sms", "email"], both, content) == ["sms", "email"]
    assert choose_channels("first", ["push", "sms", "email"], opted_out, content) == ["email"]
    assert choose_channels("first", None, phone_only, content) == ["sms"]
    assert choose_channels("first", ["push", "email"], phone_only, content) == []
    assert choose_channels("first", ["push", "sms"], both, None) == ["sms"]  # template unknown: address only
    assert choose_channels("first", ["email", "sms"], both, None) == ["email", "sms"]


def test_event_and_rule_notification_ids_are_signed_and_deterministic() -> None:
    ids = NotificationIds(b"secret")
    events = EventIds.like(ids)
    eid = events.new("t")
    assert events.issued_at(eid, "t") is not None
    assert ids.issued_at("n_" + eid[2:], "t") is None  # an event id is never a notification id
    assert events.issued_at(eid, "other") is None
    first = rule_notification_id(ids, "t", eid, 1_900_000_000.0, 0)
    assert first == rule_notification_id(ids, "t", eid, 1_900_000_000.0, 0)
    assert first != rule_notification_id(ids, "t", eid, 1_900_000_000.0, 1)
    assert ids.issued_at(first, "t") == 1_900_000_000.0
