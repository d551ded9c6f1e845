"""A tenant's own Kafka events topic, on the real broker, Redis and SMTP server: enabled through the admin
API (Herald creates the topic and the running router picks it up), its records handled like HTTP events
(same model, same idempotency keys), a poison record dead-lettered with its reason while the next one is
still handled, and the tenant taken from the topic, never from the record."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import pytest_asyncio

from herald_common.kafka import DLQ_REASON, create_topics, make_producer
from herald_common.settings import CommonSettings, load
from tests.conftest import Infra, unique
from tests.harness import ADMIN_TOKEN, eventually, read_topic
from tests.integration.stack import Stack, email_stack

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

TEMPLATE = {"category": "transactional", "email": {"subject": "Points: {{ data.points }}", "text": "Hi."}}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with email_stack(
        infra, tmp_path_factory.mktemp("tenant-events"), router_overrides={"tenant_events_refresh_s": 0.5}
    ) as s:
        yield s


async def _tenant(stack: Stack, events_topic: bool) -> str:
    """A tenant with a template and a points.earned trigger; its id."""
    tid = unique("tt")
    status, body = await stack.api.call(
        "POST", "/admin/v1/tenants", {"id": tid, "name": "C"}, token=ADMIN_TOKEN
    )
    assert status == 201, body
    if events_topic:
        path = f"/admin/v1/tenants/{tid}"
        status, body = await stack.api.call("PATCH", path, {"events_topic": True}, token=ADMIN_TOKEN)
        assert status == 200 and body["events_topic"] is True, body
    status, key = await stack.api.call("POST", f"/admin/v1/tenants/{tid}/api-keys", {}, token=ADMIN_TOKEN)
    stack.api.token = key["api_key"]
    assert (await stack.api.call("PUT", "/v1/templates/points", TEMPLATE))[0] == 200
    status, body = await stack.api.call(
        "PUT", "/v1/triggers/points.earned", {"rules": [{"template_id": "points"}]}
    )
    assert status == 200, body
    return tid


def _event(contact: str, email: str, points: int, **extra: Any) -> bytes:
    return orjson.dumps(
        {
            "type": "points.earned",
            "contact_id": contact,
            "data": {"points": points},
            "occurred_at": datetime.now(UTC).isoformat(),
            "contact": {"email": email},
            **extra,
        }
    )


async def _produce(stack: Stack, topic: str, values: list[bytes], key: bytes = b"member") -> None:
    producer = make_producer(load(CommonSettings, **stack.env.settings()))
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def _mails(stack: Stack, to: str) -> list[Any]:
    return [m for m in stack.smtp.snapshot() if m.rcpt_to == [to]]


async def test_events_from_the_tenants_topic_notify_and_a_poison_record_is_dead_lettered(
    stack: Stack,
) -> None:
    tid = await _tenant(stack, events_topic=True)
    topic = f"{stack.env.prefix}.tenant-events.{tid}"
    bad_type = _event("m-2", "bad@example.com", 1, tenant_id="someone-else")  # an unknown field
    await _produce(
        stack,
        topic,
        [_event("m-1", "ana@example.com", 120), b"{not json", bad_type, _event("m-1", "ana@example.com", 7)],
    )
    await eventually(lambda: len(_mails(stack, "ana@example.com")) == 2, timeout_s=30)
    assert sorted(m.subject for m in _mails(stack, "ana@example.com")) == ["Points: 120", "Points: 7"]
    assert not _mails(stack, "bad@example.com")

    dead: list[Any] = []

    async def dead_lettered() -> bool:
        nonlocal dead
        records = await read_topic(stack.env.bootstrap, f"{stack.env.prefix}.deadletter.router", timeout_s=1)
        dead = [r for r in records if r.value in (b"{not json", bad_type)]
        return len(dead) == 2

    await eventually(dead_lettered, timeout_s=10)
    reasons = {r.value: dict(r.headers)[DLQ_REASON].decode() for r in dead}
    assert "invalid event" in reasons[b"{not json"]
    assert "tenant_id: Extra inputs are not permitted" in reasons[bad_type]


async def test_an_idempotency_key_is_shared_with_http_events_and_other_tenants_topics_are_refused(
    stack: Stack,
) -> None:
    tid = await _tenant(stack, events_topic=True)
    event = orjson.loads(_event("m-3", "bo@example.com", 50, idempotency_key="points-50"))
    status, body = await stack.api.call("POST", "/v1/events", event)
    assert status == 202, body
    await eventually(lambda: len(_mails(stack, "bo@example.com")) == 1, timeout_s=20)
    topic = f"{stack.env.prefix}.tenant-events.{tid}"
    # The same event again under its key (taken in already), then a new one: only the new one is sent.
    await _produce(stack, topic, [orjson.dumps(event), _event("m-3", "bo@example.com", 51)], key=b"m-3")
    await eventually(lambda: len(_mails(stack, "bo@example.com")) == 2, timeout_s=20)
    assert sorted(m.subject for m in _mails(stack, "bo@example.com")) == ["Points: 50", "Points: 51"]

    # A tenant that has not enabled its topic: a topic of its name is not read as its events.
    other = await _tenant(stack, events_topic=False)
    await create_topics(stack.env.bootstrap, [f"{stack.env.prefix}.tenant-events.{other}"], 2)
    await _produce(stack, f"{stack.env.prefix}.tenant-events.{other}", [_event("m-4", "cy@example.com", 9)])

    async def refused() -> bool:
        records = await read_topic(stack.env.bootstrap, f"{stack.env.prefix}.deadletter.router", timeout_s=1)
        return any(b"cy@example.com" in r.value for r in records)

    await eventually(refused, timeout_s=20)
    assert not _mails(stack, "cy@example.com")
