"""What Herald did, told back: engagement receipts and the daily stats they move, the suppression
list's API (and the router honouring it), SMS STOP/START replies, the message log of a contact, and
the NDJSON import, on the real broker, Valkey and the SendGrid and Twilio peers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from herald_common.ids import delivery_id
from herald_common.redisio import Keys, redis_from_url
from herald_common.settings import load
from herald_dev.infra import free_port
from herald_gateway.main import serve as serve_gateway
from herald_router.main import serve as serve_router
from herald_router.settings import RouterSettings
from herald_sender.main import serve as serve_sender
from herald_tracker.main import serve as serve_tracker
from herald_tracker.settings import TrackerSettings
from tests.conftest import Infra, unique
from tests.harness import ADMIN_TOKEN, Api, Env, eventually, running
from tests.integration.channel_support import (
    SENDER_NUMBER,
    Peers,
    phone,
    provider_peers,
    receipt_gateway_settings,
    sender_settings,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

TEMPLATE = {
    "category": "transactional",
    "email": {"subject": "Hi", "text": "Enjoy"},
    "sms": {"text": "Enjoy"},
}


@dataclass
class Stack:
    api: Api
    peers: Peers
    base: str
    tenant: str
    env: Env


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    env = Env(infra.bootstrap, infra.redis_url, unique("rec"))
    await env.create_topics(partitions=2)
    http_port = free_port()
    base = f"http://127.0.0.1:{http_port}"
    async with provider_peers(tmp_path_factory.mktemp("peers"), webhook_base=base) as peers:
        gateway = receipt_gateway_settings(env, peers, http_port)
        services = [
            (serve_gateway, gateway),
            (serve_router, load(RouterSettings, **env.settings(router_lane="transactional"))),
            (serve_tracker, load(TrackerSettings, **env.settings())),
            (serve_sender, sender_settings(env, peers, "email", email_providers="sendgrid")),
            (serve_sender, sender_settings(env, peers, "sms", public_base_url=base)),
        ]
        async with running(*services), aiohttp.ClientSession() as http:
            api = Api(http, base)
            _, tenant = await api.call("POST", "/admin/v1/tenants", {"name": "Records"}, token=ADMIN_TOKEN)
            _, key = await api.call("POST", f"/admin/v1/tenants/{tenant['id']}/api-keys", token=ADMIN_TOKEN)
            api.token = key["api_key"]
            assert (await api.call("PUT", "/v1/templates/hi", TEMPLATE))[0] == 200
            yield Stack(api, peers, base, tenant["id"], env)


async def _notify(stack: Stack, contact: str, channels: list[str]) -> str:
    body = {"to": {"contact_id": contact}, "template_id": "hi", "channels": channels}
    status, doc = await stack.api.call("POST", "/v1/notifications", body)
    assert status == 202, doc
    return str(doc["id"])


async def _channel(stack: Stack, nid: str, channel: str, want: str) -> dict[str, Any]:
    doc: dict[str, Any] = {}

    async def check() -> bool:
        nonlocal doc
        _, doc = await stack.api.call("GET", f"/v1/notifications/{nid}")
        return doc.get("channels", {}).get(channel, {}).get("status") == want

    try:
        await eventually(check, timeout_s=15)
    except AssertionError:
        raise AssertionError(f"{channel} never became {want}: {doc}") from None
    return doc


async def _stats(stack: Stack, by: str) -> dict[str, dict[str, int]]:
    status, doc = await stack.api.call("GET", f"/v1/stats?by={by}")
    assert status == 200, doc
    return {row[by]: row for row in doc["rows"]}


async def test_open_and_click_receipts_move_stats_by_one_and_replays_change_nothing(stack: Stack) -> None:
    address = f"{unique('ana')}@example.com"
    await stack.api.call("PUT", "/v1/contacts/ana", {"email": address})
    nid = await _notify(stack, "ana", ["email"])
    await _channel(stack, nid, "email", "delivered")
    did = delivery_id(nid, "email", address)
    await eventually(lambda: _stats(stack, "channel"), timeout_s=1)
    delivered = next(
        e
        for body, _, _ in stack.peers.sendgrid.webhook_posts
        if did.encode() in body
        for e in orjson.loads(body)
        if e["event"] == "delivered"
    )
    before = (await _stats(stack, "channel"))["email"]
    assert before["sent"] >= 1 and before["delivered"] >= 1 and before["accepted"] >= 1
    opened = {**delivered, "event": "open", "sg_event_id": unique("o")}
    clicked = {**delivered, "event": "click", "url": "https://example.com", "sg_event_id": unique("c")}
    body, headers = stack.peers.sendgrid.signed([opened, clicked])
    status, result = await stack.api.call("POST", "/v1/receipts/sendgrid", data=body, headers=headers)
    assert status == 200 and result["applied"] == 2, result
    after = (await _stats(stack, "channel"))["email"]
    assert (after["opened"], after["clicked"]) == (before["opened"] + 1, before["clicked"] + 1)
    _, doc = await stack.api.call("GET", f"/v1/notifications/{nid}")
    assert doc["channels"]["email"]["status"] == "delivered"  # engagement leaves the status alone
    assert doc["channels"]["email"]["opened_at"] and doc["channels"]["email"]["clicked_at"]
    # the same post again (deduplicated), and a second open of the same message (counted once)
    status, result = await stack.api.call("POST", "/v1/receipts/sendgrid", data=body, headers=headers)
    assert status == 200 and result["duplicates"] == 2
    again, again_headers = stack.peers.sendgrid.signed([{**opened, "sg_event_id": unique("o")}])
    assert (await stack.api.call("POST", "/v1/receipts/sendgrid", data=again, headers=again_headers))[
        0
    ] == 200
    final = (await _stats(stack, "channel"))["email"]
    assert (final["opened"], final["clicked"]) == (after["opened"], after["clicked"])
    assert (await _stats(stack, "template"))["hi"]["opened"] >= 1


async def test_a_suppression_added_by_api_suppresses_the_next_notification_as_manual(stack: Stack) -> None:
    address = f"{unique('bo')}@example.com"
    await stack.api.call("PUT", "/v1/contacts/bo", {"email": address})
    status, entry = await stack.api.call(
        "PUT", f"/v1/suppressions/email/{address}", {"note": "asked by phone"}
    )
    assert status == 200 and entry["reason"] == "manual" and entry["source"] == "api", entry
    status, page = await stack.api.call("GET", "/v1/suppressions?channel=email&reason=manual")
    assert status == 200 and address in [e["address"] for e in page["suppressions"]]
    nid = await _notify(stack, "bo", ["email"])
    doc = await _channel(stack, nid, "email", "suppressed")
    assert doc["channels"]["email"]["reason_code"] == "manual"
    assert (await stack.api.call("DELETE", f"/v1/suppressions/email/{address}"))[0] == 204
    assert (await stack.api.call("GET", f"/v1/suppressions/email/{address}"))[0] == 404
    await _channel(stack, await _notify(stack, "bo", ["email"]), "email", "delivered")


async def test_stop_suppresses_the_number_and_start_lets_messages_through_again(stack: Stack) -> None:
    number = phone(4242)
    await stack.api.call("PUT", "/v1/contacts/cy", {"phone": number})
    url = f"{stack.base}/v1/receipts/twilio/replies?tenant={stack.tenant}"
    before = (await _stats(stack, "channel")).get("sms", {}).get("unsubscribed", 0)
    status, stop = await stack.peers.twilio.reply(url, number, SENDER_NUMBER, " Stop ")
    assert status == 200
    assert await stack.peers.twilio.post_signed(url, stop) == 200  # Twilio retried: nothing more
    _, entry = await stack.api.call("GET", f"/v1/suppressions/sms/{number}")
    assert (entry["reason"], entry["source"]) == ("unsubscribed", "twilio")
    assert (await _stats(stack, "channel"))["sms"]["unsubscribed"] == before + 1
    doc = await _channel(stack, await _notify(stack, "cy", ["sms"]), "sms", "suppressed")
    assert doc["channels"]["sms"]["reason_code"] == "unsubscribed"
    assert (await stack.peers.twilio.reply(url, number, SENDER_NUMBER, "START"))[0] == 200
    await _channel(stack, await _notify(stack, "cy", ["sms"]), "sms", "delivered")
    forged = f"{stack.base}/v1/receipts/twilio/replies?tenant=nobody"
    assert (await stack.peers.twilio.reply(forged, number, SENDER_NUMBER, "STOP"))[0] == 403


async def test_the_message_log_lists_a_contacts_sends_newest_first_in_pages(stack: Stack) -> None:
    await stack.api.call("PUT", "/v1/contacts/dee", {"email": f"{unique('dee')}@example.com"})
    ids = []
    for _ in range(3):
        ids.append(await _notify(stack, "dee", ["email"]))
        await _channel(stack, ids[-1], "email", "delivered")
    status, page = await stack.api.call("GET", "/v1/contacts/dee/notifications?limit=2")
    assert status == 200, page
    assert [e["id"] for e in page["notifications"]] == [ids[2], ids[1]]
    first = page["notifications"][0]
    assert first["template_id"] == "hi" and first["status"] == "delivered"
    assert first["channels"]["email"]["status"] == "delivered" and first["updated_at"] > 0
    _, rest = await stack.api.call(
        "GET", f"/v1/contacts/dee/notifications?limit=2&cursor={page['next_cursor']}"
    )
    assert [e["id"] for e in rest["notifications"]] == [ids[0]] and rest["next_cursor"] is None
    assert (await stack.api.call("DELETE", "/v1/contacts/dee"))[0] == 204
    redis = redis_from_url(stack.env.redis_url)
    try:
        assert not await redis.exists(Keys(stack.env.prefix).message_log(stack.tenant, "dee"))
    finally:
        await redis.aclose()
    assert (await stack.api.call("GET", "/v1/contacts/dee/notifications"))[0] == 404


async def test_import_takes_the_good_lines_and_names_the_bad_ones(stack: Stack) -> None:
    lines = [
        b'{"channel": "email", "address": "Imp1@Example.com"}',
        b"not json",
        b'{"channel": "sms", "address": "+447700900001", "reason": "complaint", "note": "old list"}',
        b'{"channel": "sms", "address": "imp@example.com"}',
        b"",
        b'{"channel": "email", "address": "imp3@example.com", "reason": "nope"}',
    ]
    status, problem = await stack.api.call(
        "POST",
        "/v1/suppressions:import",
        data=b"\n".join(lines),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert status == 422, problem
    assert (problem["imported"], problem["failed"]) == (2, 3)
    assert [e["field"] for e in problem["errors"]] == ["line 2", "line 4", "line 6"]
    _, entry = await stack.api.call("GET", "/v1/suppressions/email/imp1@example.com")
    assert (entry["reason"], entry["source"]) == ("manual", "import")
    # an address suppressed before entries had details reads "unknown" and is listed
    redis = redis_from_url(stack.env.redis_url)
    try:
        await redis.sadd(Keys(stack.env.prefix).suppressions(stack.tenant), "legacy@example.com")
    finally:
        await redis.aclose()
    _, entry = await stack.api.call("GET", "/v1/suppressions/email/legacy@example.com")
    assert entry["reason"] == "unknown"
    seen: list[str] = []
    cursor = ""
    while True:
        _, page = await stack.api.call("GET", f"/v1/suppressions?channel=email&limit=1{cursor}")
        seen += [e["address"] for e in page["suppressions"]]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert {"imp1@example.com", "legacy@example.com"} <= set(seen) and len(seen) == len(set(seen))
    status, _ = await stack.api.call(
        "POST", "/v1/suppressions:import", data=lines[0], headers={"Content-Type": "application/x-ndjson"}
    )
    assert status == 200


async def test_a_notification_counts_accepted_once_in_total_and_once_per_channel(stack: Stack) -> None:
    await stack.api.call(
        "PUT", "/v1/contacts/eve", {"email": f"{unique('eve')}@example.com", "phone": phone(4343)}
    )
    days, channels = await _stats(stack, "day"), await _stats(stack, "channel")
    total = sum(row["accepted"] for row in days.values())
    email, sms = (channels.get(c, {}).get("accepted", 0) for c in ("email", "sms"))
    nid = await _notify(stack, "eve", ["email", "sms"])
    await _channel(stack, nid, "email", "delivered")

    async def counted() -> bool:
        after = await _stats(stack, "channel")
        return after["email"]["accepted"] == email + 1 and after["sms"]["accepted"] == sms + 1

    await eventually(counted, timeout_s=10)
    assert sum(row["accepted"] for row in (await _stats(stack, "day")).values()) == total + 1
    redis = redis_from_url(stack.env.redis_url)
    try:
        counted_days = [day for day, row in (await _stats(stack, "day")).items() if row["accepted"]]
        assert counted_days
        for day in counted_days:
            ttl = await redis.ttl(Keys(stack.env.prefix).stats(stack.tenant, day))
            assert 0 < ttl <= 401 * 86400  # the day's counters expire after the retention
    finally:
        await redis.aclose()
