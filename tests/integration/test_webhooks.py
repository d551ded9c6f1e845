"""Signed webhooks end to end: status changes of real notifications reach a real HTTP receiver that
verifies them with the ``standardwebhooks`` library; rotation, an endpoint that is down for a while,
final-only subscriptions and refused targets."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from standardwebhooks import Webhook

from herald_common.status import TERMINAL
from herald_common.webhooks.model import new_secret
from herald_dev.peers.webhook_peer import WebhookReceiver
from tests.conftest import Infra
from tests.harness import eventually
from tests.integration.webhook_stack import HookStack, webhook_stack

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HookStack]:
    # never paused here: tests/integration/test_webhooks_pause.py covers the pause rule
    async with webhook_stack(infra, tmp_path_factory.mktemp("wh"), webhook_pause_after_s=3600) as s:
        s.smtp.reject["gone@example.com"] = "550 5.1.1 <gone@example.com>: no such user"
        yield s


async def _tenant(stack: HookStack) -> None:
    stack.api.token = await stack.api.new_tenant("Webhook Cinemas")


def _statuses(receiver: WebhookReceiver, nid: str) -> set[str]:
    return {p["data"]["status"] for p in receiver.payloads() if p["data"]["notification_id"] == nid}


async def test_status_changes_arrive_signed_and_final_subscription_gets_only_final_states(
    stack: HookStack,
) -> None:
    await _tenant(stack)
    secret = new_secret()
    every, every_url = await stack.receiver(secret)
    finals, finals_url = await stack.receiver(secret)
    for hook_id, url, types in (
        ("all", every_url, ["notification.status"]),
        ("finals", finals_url, ["notification.final"]),
    ):
        status, doc = await stack.api.call(
            "PUT", f"/v1/webhooks/{hook_id}", {"url": url, "event_types": types, "secret": secret}
        )
        assert status == 200, doc
        assert "secret" not in doc and doc["status"] == "enabled"
    ok, bounced = await stack.send("ada@example.com"), await stack.send("gone@example.com")

    await eventually(lambda: "sent" in _statuses(every, ok), timeout_s=30)
    await eventually(lambda: bool(_statuses(finals, bounced)), timeout_s=30)
    await eventually(lambda: bool(_statuses(every, bounced) & TERMINAL), timeout_s=30)

    for item in every.received + finals.received:  # verified by the receiver; once more here
        assert Webhook(secret).verify(item.body, item.headers)["data"]["notification_id"] in (ok, bounced)
        assert item.headers["webhook-id"].startswith("msg_")
        assert item.headers["content-type"] == "application/json"
    assert _statuses(every, ok) >= {"queued", "sent"}
    final_payloads = finals.payloads()
    assert {p["type"] for p in final_payloads} == {"notification.final"}
    assert {p["data"]["status"] for p in final_payloads} <= TERMINAL
    assert ok not in {p["data"]["notification_id"] for p in final_payloads}  # "sent" is not final
    failure = next(p for p in final_payloads if p["data"]["notification_id"] == bounced)
    assert failure["data"]["channel"] == "email"
    assert "gone@example.com" not in str(every.payloads() + final_payloads)  # never a full address
    assert "reason" in failure["data"]


async def test_rotation_a_receiver_holding_only_the_previous_secret_still_verifies(stack: HookStack) -> None:
    await _tenant(stack)
    old, new = new_secret(), new_secret()
    receiver, url = await stack.receiver(old)
    status, doc = await stack.api.call(
        "PUT",
        "/v1/webhooks/rotating",
        {"url": url, "event_types": ["notification.status"], "secret": new, "previous_secret": old},
    )
    assert status == 200 and doc["rotating"] is True, doc
    nid = await stack.send("bo@example.com")
    await eventually(lambda: "sent" in _statuses(receiver, nid), timeout_s=30)
    assert receiver.refused == 0
    for item in receiver.received:
        assert len(item.headers["webhook-signature"].split(" ")) == 2
        Webhook(old).verify(item.body, item.headers)
        Webhook(new).verify(item.body, item.headers)


async def test_receiver_down_then_back_gets_every_event_duplicates_share_the_webhook_id(
    stack: HookStack,
) -> None:
    await _tenant(stack)
    secret = new_secret()
    receiver, url = await stack.receiver(secret)
    receiver.answer_with = 503
    status, _ = await stack.api.call(
        "PUT", "/v1/webhooks/flaky", {"url": url, "event_types": ["notification.status"], "secret": secret}
    )
    assert status == 200
    sent = [await stack.send(f"m{i}@example.com") for i in range(3)]
    await eventually(lambda: receiver.calls >= 8, timeout_s=30)  # failing attempts, retried
    status, doc = await stack.api.call("GET", "/v1/webhooks/flaky")
    assert doc["health"]["consecutive_failures"] >= 1 and doc["health"]["last_error"] == "HTTP 503", doc
    receiver.answer_with = None
    # every change arrives in the end (retries do not keep order: "sent" may overtake "queued")
    await eventually(
        lambda: all({"queued", "sent"} <= _statuses(receiver, nid) for nid in sent), timeout_s=30
    )

    bodies: dict[str, set[bytes]] = defaultdict(set)
    ids: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for item in receiver.received:
        bodies[item.webhook_id].add(item.body)
        data = item.payload["data"]
        ids[(data["notification_id"], data.get("channel", ""), data["status"])].add(item.webhook_id)
    assert all(len(b) == 1 for b in bodies.values())  # a duplicate is the same delivery, same id
    assert all(len(i) == 1 for i in ids.values())  # one change, one webhook-id
    status, doc = await stack.api.call("GET", "/v1/webhooks/flaky")
    assert doc["status"] == "enabled" and doc["health"]["consecutive_failures"] == 0, doc


async def test_private_targets_are_refused_unless_allow_listed(stack: HookStack) -> None:
    await _tenant(stack)
    types = {"event_types": ["notification.final"]}
    for url in (
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://[::1]/hook",
        "http://198.51.100.7/h",
    ):
        status, doc = await stack.api.call("PUT", "/v1/webhooks/w1", {"url": url, **types})
        assert status == 422, (url, doc)
        assert doc["errors"][0]["field"] == "url"
    status, doc = await stack.api.call("PUT", "/v1/webhooks/w1", {"url": "http://localhost:9/hook", **types})
    assert status == 200, doc
    assert doc["secret"].startswith("whsec_")  # generated, shown this once
    status, again = await stack.api.call("GET", "/v1/webhooks/w1")
    assert status == 200 and "secret" not in again
    status, listed = await stack.api.call("GET", "/v1/webhooks")
    assert [w["id"] for w in listed["webhooks"]] == ["w1"]
    assert (await stack.api.call("DELETE", "/v1/webhooks/w1"))[0] == 204
    assert (await stack.api.call("GET", "/v1/webhooks/w1"))[0] == 404


async def test_event_decisions_arrive_as_their_own_signed_type(stack: HookStack) -> None:
    await _tenant(stack)
    secret = new_secret()
    decisions, url = await stack.receiver(secret)
    status, doc = await stack.api.call(
        "PUT", "/v1/webhooks/decisions", {"url": url, "event_types": ["event.decision"], "secret": secret}
    )
    assert status == 200, doc
    template = {"email": {"subject": "Booked", "text": "Seat {{ data.seat }}"}}
    assert (await stack.api.call("PUT", "/v1/templates/booked", template))[0] == 200
    rules = {"rules": [{"template_id": "booked", "channels": ["email"]}]}
    assert (await stack.api.call("PUT", "/v1/triggers/booking.confirmed", rules))[0] == 200
    event = {
        "type": "booking.confirmed",
        "contact_id": "m-7",
        "data": {"seat": "F7"},
        "occurred_at": datetime.now(UTC).isoformat(),
        "contact": {"email": "ada@example.com"},
    }
    status, accepted = await stack.api.call("POST", "/v1/events", event)
    assert status == 202, accepted
    await eventually(lambda: bool(decisions.payloads()), timeout_s=30)
    (payload,) = decisions.payloads()
    assert payload["type"] == "event.decision"
    assert payload["data"]["id"] == accepted["id"] and payload["data"]["type"] == "booking.confirmed"
    (decision,) = payload["data"]["decisions"]
    assert decision["reason"] == "notified" and decision["notification_id"] == accepted["notification_ids"][0]
    (item,) = decisions.received
    assert Webhook(secret).verify(item.body, item.headers)["data"]["id"] == accepted["id"]


async def test_campaign_progress_and_finish_arrive_with_their_counts(stack: HookStack) -> None:
    await _tenant(stack)
    secret = new_secret()
    progress, url = await stack.receiver(secret)
    types = ["campaign.progress", "campaign.finished"]
    status, doc = await stack.api.call(
        "PUT", "/v1/webhooks/campaigns", {"url": url, "event_types": types, "secret": secret}
    )
    assert status == 200, doc
    contacts = [{"id": f"w{i}", "email": f"w{i}@example.com"} for i in range(40)]
    assert (await stack.api.call("POST", "/v1/contacts:batch", {"contacts": contacts}))[0] == 200
    template = {"category": "transactional", "email": {"subject": "Doors open", "text": "Tonight"}}
    assert (await stack.api.call("PUT", "/v1/templates/doors", template))[0] == 200
    status, created = await stack.api.call(
        "POST", "/v1/campaigns", {"template_id": "doors", "category": "transactional", "rate_per_s": 40}
    )
    assert status == 201, created
    cid = created["id"]
    ndjson = "".join(f'{{"contact_id": "w{i}"}}\n' for i in range(40)).encode()
    status, body = await stack.api.call(
        "POST", f"/v1/campaigns/{cid}/audience", data=ndjson, headers={"Content-Type": "application/x-ndjson"}
    )
    assert status == 200, body
    assert (await stack.api.call("POST", f"/v1/campaigns/{cid}:start"))[0] == 202

    def finished() -> list[dict]:
        return [p for p in progress.payloads() if p["type"] == "campaign.finished"]

    await eventually(lambda: bool(finished()), timeout_s=30)
    (done,) = finished()
    assert done["data"]["id"] == cid and done["data"]["state"] == "completed"
    assert done["data"]["fanned_out"] == 40
    ticks = [p for p in progress.payloads() if p["type"] == "campaign.progress"]
    assert ticks and all(p["data"]["id"] == cid for p in ticks)
    assert len({item.headers["webhook-id"] for item in progress.received}) == len(progress.received)
