"""Loyalty events through triggers to a real SMTP server, on the real broker and Redis: what each rule
decides (sent, condition false, stale, first reachable channel), a bad CEL expression refused at PUT, a
1,000-event batch, a poison event dead-lettered, and a redelivered event publishing nothing twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import pytest_asyncio

from herald_common.kafka import make_producer
from herald_common.settings import CommonSettings, load
from herald_dev.launcher import DEMO, seed_demo
from tests.conftest import Infra
from tests.harness import ADMIN_TOKEN, eventually, read_topic
from tests.integration.stack import Stack, email_stack, wait_status

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

TEMPLATE = {
    "category": "transactional",
    "email": {"subject": "Booked: {{ data.film }}", "text": "Seat {{ data.seat }}, {{ contact.name }}."},
    "push": {"title": "Booked", "body": "{{ data.film }}"},
}
POINTS = {"email": {"subject": "You earned {{ data.points }} points", "text": "Well done."}}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with email_stack(infra, tmp_path_factory.mktemp("events")) as s:
        yield s


def _now(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


async def _setup(stack: Stack, rules: list[dict[str, Any]], event_type: str = "booking.confirmed") -> None:
    stack.api.token = await stack.api.new_tenant()
    assert (await stack.api.call("PUT", "/v1/templates/booking", TEMPLATE))[0] == 200
    assert (await stack.api.call("PUT", "/v1/templates/points", POINTS))[0] == 200
    status, body = await stack.api.call("PUT", f"/v1/triggers/{event_type}", {"rules": rules})
    assert status == 200, body


async def _post(stack: Stack, event: dict[str, Any]) -> dict[str, Any]:
    status, body = await stack.api.call("POST", "/v1/events", event)
    assert status == 202, body
    return body


async def _outcome(stack: Stack, event_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = {}

    async def processed() -> bool:
        nonlocal doc
        status, doc = await stack.api.call("GET", f"/v1/events/{event_id}")
        assert status == 200, doc
        return doc["status"] == "processed"

    await eventually(processed, timeout_s=20)
    return doc


async def test_event_sends_the_triggers_template_by_email(stack: Stack) -> None:
    await _setup(stack, [{"template_id": "booking", "channels": ["email", "push"]}])
    body = await _post(
        stack,
        {
            "type": "booking.confirmed",
            "contact_id": "m-1",
            "data": {"film": "Dune", "seat": "F7"},
            "occurred_at": _now(),
            "contact": {"email": "ada@example.com", "attributes": {"name": "Ada"}},
        },
    )
    assert body["id"].startswith("e_") and len(body["notification_ids"]) == 1
    doc = await _outcome(stack, body["id"])
    (decision,) = doc["decisions"]
    assert decision["reason"] == "notified"
    assert decision["notification_id"] == body["notification_ids"][0]
    status = await wait_status(stack, decision["notification_id"], "partially_failed")
    assert status["channels"]["email"]["status"] == "sent"
    assert status["channels"]["push"]["status"] == "failed"  # the contact has no push token
    assert status["origin"] == {
        "contact_id": "m-1",
        "template_id": "booking",
        "category": "transactional",
        "trigger": "booking.confirmed",
        "event_id": body["id"],
    }
    (mail,) = [m for m in stack.smtp.snapshot() if m.rcpt_to == ["ada@example.com"]]
    assert mail.subject == "Booked: Dune"
    assert "Seat F7, Ada." in (mail.text or "")


async def test_condition_false_and_stale_events_send_nothing_and_say_why(stack: Stack) -> None:
    rules = [
        {
            "template_id": "points",
            "condition": 'contact.attributes.tier == "gold" && event.data.points >= 500',
            "stale_after": "PT1H",
        }
    ]
    await _setup(stack, rules, "points.earned")
    contact = {"email": "bo@example.com", "attributes": {"tier": "silver"}}
    low = await _post(
        stack,
        {
            "type": "points.earned",
            "contact_id": "m-2",
            "data": {"points": 900},
            "occurred_at": _now(),
            "contact": contact,
        },
    )
    old = await _post(
        stack,
        {
            "type": "points.earned",
            "contact_id": "m-3",
            "data": {"points": 900},
            "occurred_at": _now(hours=-2),
            "contact": {"email": "cy@example.com", "attributes": {"tier": "gold"}},
        },
    )
    broken = await _post(
        stack, {"type": "points.earned", "contact_id": "m-3", "data": {}, "occurred_at": _now()}
    )
    untriggered = await _post(stack, {"type": "tier.changed", "contact_id": "m-3", "occurred_at": _now()})
    assert (await _outcome(stack, low["id"]))["decisions"][0]["reason"] == "condition_false"
    assert (await _outcome(stack, old["id"]))["decisions"][0]["reason"] == "stale"
    error = (await _outcome(stack, broken["id"]))["decisions"][0]
    assert error["reason"] == "condition_error" and "points" in error["error"]
    assert (await _outcome(stack, untriggered["id"]))["decisions"] == [{"reason": "no_trigger"}]
    good = await _post(
        stack, {"type": "points.earned", "contact_id": "m-3", "data": {"points": 500}, "occurred_at": _now()}
    )
    decision = (await _outcome(stack, good["id"]))["decisions"][0]
    assert decision["reason"] == "notified"
    await wait_status(stack, decision["notification_id"], "sent")
    assert [m for m in stack.smtp.snapshot() if m.rcpt_to == ["cy@example.com"]]
    assert not [m for m in stack.smtp.snapshot() if m.rcpt_to == ["bo@example.com"]]


async def test_first_routing_picks_the_first_reachable_channel_and_carries_delay_and_key(
    stack: Stack,
) -> None:
    rule = {
        "template_id": "booking",
        "channels": ["push", "sms", "email"],
        "routing": "first",
        "delay": {"before": "PT24H", "field": "data.showtime"},
        "cancellation_key": '"booking:" + event.data.booking_id',
    }
    await _setup(stack, [rule])
    showtime = datetime(2030, 1, 2, 20, 0, tzinfo=UTC)
    body = await _post(
        stack,
        {
            "type": "booking.confirmed",
            "contact_id": "m-4",
            "data": {"film": "Heat", "booking_id": "b-77", "showtime": showtime.isoformat()},
            "occurred_at": _now(),
            "contact": {
                "email": "di@example.com",
                "phone": "+447911123456",
                "preferences": {"channels": {"sms": False}},
            },
        },
    )
    (decision,) = (await _outcome(stack, body["id"]))["decisions"]
    assert decision["reason"] == "notified"
    assert decision["channels"] == ["email"]  # no push token; opted out of sms
    assert decision["cancellation_key"] == "booking:b-77"
    assert datetime.fromisoformat(decision["send_at"]) == showtime - timedelta(hours=24)


async def test_a_bad_cel_expression_is_refused_at_put_with_its_position(stack: Stack) -> None:
    stack.api.token = await stack.api.new_tenant()
    rules = [{"template_id": "booking"}, {"template_id": "booking", "condition": "event.data.points >= "}]
    status, body = await stack.api.call("PUT", "/v1/triggers/points.earned", {"rules": rules})
    assert status == 422, body
    (error,) = body["errors"]
    assert error["field"] == "rules.1.condition"
    assert "line 1, column 22" in error["message"], error
    status, body = await stack.api.call("GET", "/v1/triggers/points.earned")
    assert status == 404


async def test_a_thousand_events_in_one_batch(stack: Stack) -> None:
    await _setup(
        stack, [{"template_id": "points", "condition": "event.data.points > 10000"}], "points.earned"
    )
    events = [
        {
            "type": "points.earned",
            "contact_id": f"b-{i}",
            "data": {"points": i},
            "occurred_at": _now(),
            "idempotency_key": f"k-{i}",
        }
        for i in range(1000)
    ]
    status, body = await stack.api.call("POST", "/v1/events:batch", {"events": events})
    assert status == 202, body
    assert len(body["events"]) == 1000 and len({e["id"] for e in body["events"]}) == 1000
    again = await stack.api.call("POST", "/v1/events:batch", {"events": events[:3]})
    assert again[0] == 202 and [e["id"] for e in again[1]["events"]] == [e["id"] for e in body["events"][:3]]
    assert all(e.get("replayed") for e in again[1]["events"])
    last = await _outcome(stack, body["events"][-1]["id"])
    assert last["decisions"][0]["reason"] == "unknown_contact"  # no such contacts


async def _produce(stack: Stack, values: list[bytes], key: bytes) -> None:
    producer = make_producer(load(CommonSettings, **stack.env.settings()))
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(f"{stack.env.prefix}.events", value, key=key)
    finally:
        await producer.stop()


async def test_a_redelivered_event_publishes_nothing_twice_and_a_poison_one_is_dead_lettered(
    stack: Stack,
) -> None:
    await _setup(stack, [{"template_id": "points"}], "points.earned")
    body = await _post(
        stack,
        {
            "type": "points.earned",
            "contact_id": "r-1",
            "data": {"points": 5},
            "occurred_at": _now(),
            "contact": {"email": "ed@example.com"},
        },
    )
    nid = (await _outcome(stack, body["id"]))["decisions"][0]["notification_id"]
    await wait_status(stack, nid, "sent")
    records = await read_topic(stack.env.bootstrap, f"{stack.env.prefix}.events")
    (record,) = [r for r in records if orjson.loads(r.value)["id"] == body["id"]]
    await _produce(stack, [record.value, record.value, b"{not json"], record.key)

    async def poisoned() -> bool:
        dead = await read_topic(stack.env.bootstrap, f"{stack.env.prefix}.deadletter.router", timeout_s=3)
        return any(r.value == b"{not json" for r in dead)

    await eventually(poisoned, timeout_s=20)  # after both redeliveries, which share its partition
    requests = await read_topic(stack.env.bootstrap, f"{stack.env.prefix}.requests.transactional")
    assert [orjson.loads(r.value)["id"] for r in requests].count(nid) == 1
    assert len([m for m in stack.smtp.snapshot() if m.rcpt_to == ["ed@example.com"]]) == 1


async def test_the_dev_demo_event_reaches_the_demo_contact_by_email(stack: Stack) -> None:
    stack.api.token = await seed_demo(stack.base_url, ADMIN_TOKEN)
    body = await _post(stack, {**DEMO["event"], "occurred_at": _now()})
    (decision,) = (await _outcome(stack, body["id"]))["decisions"]
    assert decision["reason"] == "notified" and decision["cancellation_key"] == "booking:b-1001"
    await wait_status(
        stack, decision["notification_id"], "sent"
    )  # email sent; push waits (no push sender here)
    (mail,) = [m for m in stack.smtp.snapshot() if m.rcpt_to == [DEMO["contact"]["email"]]]
    assert "Dune: Part Two" in (mail.subject or "")
    points = await _post(
        stack,
        {"type": "points.earned", "contact_id": "member-1", "data": {"points": 50}, "occurred_at": _now()},
    )
    assert (await _outcome(stack, points["id"]))["decisions"][0]["reason"] == "condition_false"


async def test_a_cancelling_event_cancels_the_pending_reminder_of_the_same_booking(stack: Stack) -> None:
    reminder = {
        "template_id": "booking",
        "channels": ["email"],
        "delay": {"before": "PT24H", "field": "data.showtime"},
        "cancellation_key": '"booking:" + event.data.booking_id',
    }
    await _setup(stack, [reminder])
    status, body = await stack.api.call(
        "PUT",
        "/v1/triggers/booking.cancelled",
        {"rules": [{"cancels": '"booking:" + event.data.booking_id'}]},
    )
    assert status == 200, body
    showtime = (datetime.now(UTC) + timedelta(days=2)).isoformat()  # the reminder waits a day
    contact = {"email": "rem@example.com"}
    booked = await _post(
        stack,
        {
            "type": "booking.confirmed",
            "contact_id": "m-9",
            "data": {"film": "Alien", "booking_id": "b-9", "showtime": showtime},
            "occurred_at": _now(),
            "contact": contact,
        },
    )
    other = await _post(  # another booking of the same member: not cancelled
        stack,
        {
            "type": "booking.confirmed",
            "contact_id": "m-9",
            "data": {"film": "Aliens", "booking_id": "b-10", "showtime": showtime},
            "occurred_at": _now(),
        },
    )
    (pending,) = booked["notification_ids"]
    await wait_status(stack, pending, "scheduled")
    cancel = await _post(
        stack,
        {
            "type": "booking.cancelled",
            "contact_id": "m-9",
            "data": {"booking_id": "b-9"},
            "occurred_at": _now(),
        },
    )
    assert cancel["notification_ids"] == []  # a rule that only cancels sends nothing
    (decision,) = (await _outcome(stack, cancel["id"]))["decisions"]
    assert decision["reason"] == "cancelled" and decision["cancels"] == "booking:b-9"
    assert decision["cancelled"] == [pending]
    await wait_status(stack, pending, "cancelled")
    status, doc = await stack.api.call("GET", f"/v1/notifications/{other['notification_ids'][0]}")
    assert status == 200 and doc["status"] == "scheduled", doc
    assert not [m for m in stack.smtp.snapshot() if m.rcpt_to == ["rem@example.com"]]
