"""Routing ``first`` with fallback, end to end on the real broker, Valkey, FCM and Twilio peers: an event
whose trigger routes push → sms → email to a member whose push token is dead goes to push, fails
UNREGISTERED, and falls back to SMS (status: push failed with ``fell_back``, sms sent, overall sent;
email never tried); replaying the failed push delivery publishes the fallback again but sends no second
SMS. A direct notification with ``routing: first`` does the same."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import pytest_asyncio

from herald_common.kafka import make_producer
from herald_common.settings import CommonSettings, load
from herald_sender.main import serve as serve_sender
from tests.conftest import Infra, unique
from tests.harness import eventually, read_topic, running
from tests.integration.channel_support import Peers, phone, provider_peers, sender_settings
from tests.integration.stack import Stack, email_stack, wait_status

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

TEMPLATE = {
    "category": "transactional",
    "email": {"subject": "Booked", "text": "{{ data.film }}"},
    "sms": {"text": "{{ data.film }} is booked"},
    "push": {"title": "Booked", "body": "{{ data.film }}"},
}


PHONES = {"m-1": phone(1), "m-2": phone(2)}


@dataclass
class Both:
    stack: Stack
    peers: Peers


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def both(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Both]:
    tmp = tmp_path_factory.mktemp("fallback")
    async with email_stack(infra, tmp) as stack, provider_peers(tmp) as peers:
        senders = [(serve_sender, sender_settings(stack.env, peers, ch)) for ch in ("push", "sms")]
        async with running(*senders):
            yield Both(stack, peers)


async def _member(both: Both, contact_id: str) -> tuple[str, str]:
    """A tenant with the template and a member with a dead push token, a phone and an email."""
    stack = both.stack
    stack.api.token = await stack.api.new_tenant()
    assert (await stack.api.call("PUT", "/v1/templates/booking", TEMPLATE))[0] == 200
    dead, phone = "fcm-dead-" + unique(), PHONES[contact_id]
    both.peers.fcm.faults.invalid.add(dead)
    contact = {
        "email": f"{contact_id}@example.com",
        "phone": phone,
        "push_tokens": [{"token": dead, "platform": "android"}],
    }
    assert (await stack.api.call("PUT", f"/v1/contacts/{contact_id}", contact))[0] == 200
    return dead, phone


def _sms(both: Both, phone: str) -> list[dict[str, Any]]:
    return [m for m in both.peers.twilio.messages if m["to"] == phone]


async def _fell_back(both: Both, nid: str) -> dict[str, Any]:
    doc = await wait_status(both.stack, nid, "sent")
    assert doc["channels"]["push"]["status"] == "failed", doc
    assert doc["channels"]["push"]["reason_code"] == "fell_back", doc
    assert doc["channels"]["sms"]["status"] == "sent", doc
    assert "email" not in doc["channels"], doc
    return doc


async def test_first_routing_falls_back_from_a_dead_push_token_to_sms(both: Both) -> None:
    stack = both.stack
    _, phone = await _member(both, "m-1")
    rule = {"template_id": "booking", "channels": ["push", "sms", "email"], "routing": "first"}
    assert (await stack.api.call("PUT", "/v1/triggers/booking.confirmed", {"rules": [rule]}))[0] == 200
    event = {"type": "booking.confirmed", "contact_id": "m-1", "data": {"film": "Dune"}}
    status, body = await stack.api.call(
        "POST", "/v1/events", {**event, "occurred_at": datetime.now(UTC).isoformat()}
    )
    assert status == 202, body
    (nid,) = body["notification_ids"]
    await _fell_back(both, nid)
    assert [m["text"] for m in _sms(both, phone)] == ["Dune is booked"]
    assert not [m for m in stack.smtp.snapshot() if m.rcpt_to == ["m-1@example.com"]]

    # The failed push delivery redelivered: it falls back again (same id), and the SMS ledger sends once.
    topic = f"{stack.env.prefix}.deliveries.push.transactional"
    (push,) = [
        r
        for r in await read_topic(stack.env.bootstrap, topic)
        if orjson.loads(r.value)["notification_id"] == nid
    ]
    producer = make_producer(load(CommonSettings, **stack.env.settings()))
    await producer.start()
    try:
        await producer.send_and_wait(topic, push.value, key=push.key)
    finally:
        await producer.stop()
    requests = f"{stack.env.prefix}.requests.transactional"

    async def republished() -> bool:
        records = await read_topic(stack.env.bootstrap, requests, timeout_s=1)
        return [orjson.loads(r.value)["id"] for r in records].count(nid) == 3  # first, fallback, again

    await eventually(republished, timeout_s=15)
    # A later SMS to the same member travels behind the replayed fallback (same key, same partitions).
    marker = {"to": {"contact_id": "m-1"}, "content": {"sms": {"text": "marker"}}, "channels": ["sms"]}
    status, doc = await stack.api.call("POST", "/v1/notifications", marker)
    assert status == 202, doc
    await eventually(lambda: any(m["text"] == "marker" for m in _sms(both, phone)), timeout_s=15)
    assert [m["text"] for m in _sms(both, phone)] == ["Dune is booked", "marker"]


async def test_a_direct_notification_with_routing_first_falls_back_too(both: Both) -> None:
    stack = both.stack
    _, phone = await _member(both, "m-2")
    body = {
        "to": {"contact_id": "m-2"},
        "template_id": "booking",
        "channels": ["push", "sms", "email"],
        "routing": "first",
        "data": {"film": "Heat"},
    }
    status, doc = await stack.api.call("POST", "/v1/notifications", body)
    assert status == 202, doc
    await _fell_back(both, doc["id"])
    assert [m["text"] for m in _sms(both, phone)] == ["Heat is booked"]
    status, doc = await stack.api.call("POST", "/v1/notifications", {**body, "routing": None})
    assert status == 422, doc
