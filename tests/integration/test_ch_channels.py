"""Every channel through the API and the real provider protocols: SMS over the Twilio peer, push over
the FCM peer, email over the SendGrid peer (micro-batched), and the receipts those peers post back
(signed SendGrid events, signed Twilio status callbacks) folded into status and suppression."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from herald_common.ids import delivery_id
from herald_common.settings import load
from herald_dev.infra import free_port
from herald_gateway.main import serve as serve_gateway
from herald_providers.twilio import compute_signature
from herald_providers.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_event_payload
from herald_router.main import serve as serve_router
from herald_router.settings import RouterSettings
from herald_scheduler.main import serve as serve_scheduler
from herald_sender.main import serve as serve_sender
from herald_tracker.main import serve as serve_tracker
from herald_tracker.settings import TrackerSettings
from tests.conftest import Infra, unique
from tests.harness import ADMIN_TOKEN, Api, Env, eventually, running
from tests.integration.channel_support import (
    TWILIO_TOKEN,
    Peers,
    phone,
    provider_peers,
    receipt_gateway_settings,
    scheduler_settings,
    sender_settings,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

PHONE = "+447911123456"
TEMPLATE = {
    "category": "transactional",
    "email": {"subject": "Booked: {{ data.film }}", "text": "Enjoy {{ data.film }}"},
    "sms": {"text": "{{ contact.first_name }}, {{ data.film }} is booked: seat {{ data.seat }}"},
    "push": {"title": "Booked", "body": "{{ data.film }}, seat {{ data.seat }}", "data": {"screen": "4"}},
}


@dataclass
class Stack:
    api: Api
    peers: Peers
    base: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    env = Env(infra.bootstrap, infra.redis_url, unique("ch"))
    await env.create_topics(partitions=4)
    http_port = free_port()
    base = f"http://127.0.0.1:{http_port}"
    async with provider_peers(tmp_path_factory.mktemp("peers"), webhook_base=base) as peers:
        gateway = receipt_gateway_settings(env, peers, http_port)
        services = [
            (serve_gateway, gateway),
            (serve_router, load(RouterSettings, **env.settings(router_lane="transactional"))),
            (serve_tracker, load(TrackerSettings, **env.settings())),
            (serve_scheduler, scheduler_settings(env)),
            (serve_sender, sender_settings(env, peers, "email", email_providers="sendgrid")),
            (serve_sender, sender_settings(env, peers, "sms", public_base_url=base)),
            (serve_sender, sender_settings(env, peers, "push")),
        ]
        async with running(*services), aiohttp.ClientSession() as http:
            api = Api(http, base)
            api.token = await api.new_tenant()
            status, _ = await api.call("PUT", "/v1/templates/booked", TEMPLATE)
            assert status == 200
            yield Stack(api, peers, base)


async def _status(stack: Stack, nid: str, channel: str, want: str) -> dict[str, Any]:
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


async def _notify(stack: Stack, contact: str, channels: list[str], film: str = "Dune") -> str:
    status, body = await stack.api.call(
        "POST",
        "/v1/notifications",
        {
            "to": {"contact_id": contact},
            "template_id": "booked",
            "channels": channels,
            "data": {"film": film, "seat": "F7"},
        },
    )
    assert status == 202, body
    return str(body["id"])


async def test_sms_and_push_end_to_end_with_twilio_delivery_receipts(stack: Stack) -> None:
    token = "fcm-token-" + unique()
    await stack.api.call(
        "PUT",
        "/v1/contacts/ada",
        {
            "phone": PHONE,
            "push_tokens": [{"token": token, "platform": "android"}],
            "attributes": {"first_name": "Ada"},
        },
    )
    nid = await _notify(stack, "ada", ["sms", "push"])

    doc = await _status(stack, nid, "sms", "delivered")  # Twilio's signed status callback
    sms = doc["channels"]["sms"]
    [message] = [m for m in stack.peers.twilio.messages if m["to"] == PHONE]
    assert message["text"] == "Ada, Dune is booked: seat F7"
    assert sms["provider"] == "twilio" and sms["provider_message_id"] == message["sid"]
    assert sms["attempts"] == 1  # kept from the sender's "sent" when the receipt arrived

    doc = await _status(stack, nid, "push", "sent")
    [push] = [m for m in stack.peers.fcm.messages if m["to"] == token]
    assert push["title"] == "Booked" and push["body"] == "Dune, seat F7" and push["data"] == {"screen": "4"}
    assert doc["channels"]["push"]["provider_message_id"] == push["name"]
    assert doc["status"] == "delivered"


async def test_unregistered_push_token_is_removed_from_the_contact(stack: Stack) -> None:
    gone, kept = "fcm-gone-" + unique(), "fcm-kept-" + unique()
    stack.peers.fcm.faults.invalid.add(gone)
    tokens = [{"token": gone, "platform": "ios"}, {"token": kept, "platform": "android"}]
    await stack.api.call("PUT", "/v1/contacts/bob", {"push_tokens": tokens})
    await _notify(stack, "bob", ["push"])

    async def removed() -> bool:
        _, contact = await stack.api.call("GET", "/v1/contacts/bob")
        return [t["token"] for t in contact["push_tokens"]] == [kept]

    await eventually(removed, timeout_s=15)
    # The kept token's message is a delivery of its own: it may arrive after the other was removed.
    await eventually(lambda: any(m["to"] == kept for m in stack.peers.fcm.messages), timeout_s=10)


async def test_bounce_receipt_suppresses_the_address_for_the_next_notification(stack: Stack) -> None:
    address = f"{unique('gone')}@example.com"
    stack.peers.sendgrid.bounce.add(address)
    await stack.api.call("PUT", "/v1/contacts/cy", {"email": address})
    first = await _notify(stack, "cy", ["email"])

    doc = await _status(stack, first, "email", "bounced")
    assert "550 5.1.1" in doc["channels"]["email"]["reason"]

    second = await _notify(stack, "cy", ["email"], film="Alien")
    doc = await _status(stack, second, "email", "suppressed")
    assert doc["channels"]["email"]["reason"] == "address is on the suppression list"
    assert [m["to"] for m in stack.peers.sendgrid.messages].count(address) == 1


async def test_replayed_receipt_changes_nothing(stack: Stack) -> None:
    address = f"{unique('dee')}@example.com"
    await stack.api.call("PUT", "/v1/contacts/dee", {"email": address})
    nid = await _notify(stack, "dee", ["email"])
    await _status(stack, nid, "email", "delivered")
    did = delivery_id(nid, "email", address)
    [(body, headers)] = [(b, h) for b, h, _ in stack.peers.sendgrid.webhook_posts if did.encode() in b]
    # a later bounce for the same message (a new event), then the old "delivered" post replayed
    delivered = next(e for e in orjson.loads(body) if e["event"] == "delivered")
    bounce = {
        **delivered,
        "event": "bounce",
        "type": "bounce",
        "reason": "550 later",
        "sg_event_id": unique(),
    }
    bounce_body, bounce_headers = stack.peers.sendgrid.signed([bounce])
    status, result = await stack.api.call(
        "POST", "/v1/receipts/sendgrid", data=bounce_body, headers=bounce_headers
    )
    assert status == 200 and result["applied"] == 1
    await _status(stack, nid, "email", "bounced")

    status, result = await stack.api.call("POST", "/v1/receipts/sendgrid", data=body, headers=headers)
    # processed (ignored) and delivered (a duplicate): nothing applied
    assert status == 200 and result == {"received": 2, "applied": 0, "duplicates": 1, "refused": 0}
    await asyncio.sleep(0.3)  # a wrongly applied replay would show by now
    _, doc = await stack.api.call("GET", f"/v1/notifications/{nid}")
    assert doc["channels"]["email"]["status"] == "bounced"


async def test_badly_signed_receipts_are_refused_with_problem_documents(stack: Stack) -> None:
    body, headers = stack.peers.sendgrid.signed([{"event": "delivered", "email": "x@example.com"}])
    tampered = body.replace(b"delivered", b"bounce")
    cases = [
        ("/v1/receipts/sendgrid", tampered, headers, 403),
        ("/v1/receipts/sendgrid", body, {"Content-Type": "application/json"}, 401),
    ]
    url = f"{stack.base}/v1/receipts/twilio?tenant=t&notification=n&delivery=d"
    form = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    good = compute_signature(TWILIO_TOKEN, url, form)
    encoded = b"MessageSid=SM1&MessageStatus=delivered"
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    twilio_path = url.removeprefix(stack.base)
    cases += [
        (
            twilio_path,
            encoded,
            {**form_type, "X-Twilio-Signature": compute_signature("wrong", url, form)},
            403,
        ),
        (
            twilio_path,
            encoded.replace(b"delivered", b"failed"),
            {**form_type, "X-Twilio-Signature": good},
            403,
        ),
        (twilio_path, encoded, form_type, 401),
        ("/v1/receipts/pigeon", encoded, form_type, 404),  # no such provider
        ("/v1/receipts/fcm", encoded, form_type, 404),  # a provider that posts no receipts
    ]
    for path, data, hdrs, want in cases:
        async with stack.api.http.post(stack.base + path, data=data, headers=hdrs) as resp:
            problem = await resp.json(content_type=None)
            assert resp.status == want, (path, problem)
            assert resp.headers["Content-Type"].startswith("application/problem+json")
            assert problem["status"] == want
    # the correctly signed one is accepted (and ignored: no such notification is ours)
    async with stack.api.http.post(
        url, data=encoded, headers={**form_type, "X-Twilio-Signature": good}
    ) as resp:
        assert resp.status == 200


async def test_identical_emails_are_batched_into_few_sendgrid_requests(stack: Stack) -> None:
    addresses = [f"{unique('fan')}@example.com" for _ in range(40)]
    items = [
        {"to": {"email": a}, "content": {"email": {"subject": "Premiere", "text": "Tonight at 8"}}}
        for a in addresses
    ]
    before = len(stack.peers.sendgrid.requests)
    status, body = await stack.api.call("POST", "/v1/notifications:batch", {"notifications": items})
    assert status == 202, body
    await eventually(lambda: {m["to"] for m in stack.peers.sendgrid.messages} >= set(addresses), timeout_s=15)
    requests = stack.peers.sendgrid.requests[before:]
    assert len(requests) < len(addresses) / 2
    assert max(len(r["personalizations"]) for r in requests) > 1
    assert sorted(m["to"] for m in stack.peers.sendgrid.messages if m["to"] in addresses) == sorted(addresses)


async def test_a_batch_refused_in_part_reaches_everyone_once(stack: Stack) -> None:
    """The batching sender takes fetched batches whole; when the provider answers every other request
    500, the refused deliveries are retried on their own and every member gets exactly one email."""
    addresses = [f"{unique('part')}@example.com" for _ in range(30)]
    items = [
        {"to": {"email": a}, "content": {"email": {"subject": "Encore", "text": "One more night"}}}
        for a in addresses
    ]
    stack.peers.sendgrid.faults.error_rate = 0.5
    try:
        status, body = await stack.api.call("POST", "/v1/notifications:batch", {"notifications": items})
        assert status == 202, body
        ids = [r["id"] for r in body["notifications"]]
        await eventually(
            lambda: {m["to"] for m in stack.peers.sendgrid.messages} >= set(addresses), timeout_s=30
        )
    finally:
        stack.peers.sendgrid.faults.error_rate = 0.0

    async def all_reached() -> bool:  # sent, or delivered when the peer's receipt came already
        docs = [(await stack.api.call("GET", f"/v1/notifications/{nid}"))[1] for nid in ids]
        return all(
            d.get("channels", {}).get("email", {}).get("status") in ("sent", "delivered") for d in docs
        )

    await eventually(all_reached, timeout_s=15, interval_s=0.3)
    delivered = [m["to"] for m in stack.peers.sendgrid.messages if m["to"] in addresses]
    assert sorted(delivered) == sorted(addresses)  # none twice


async def _new_tenant(stack: Stack) -> tuple[str, str]:
    """(tenant id, api key) of a new tenant."""
    status, tenant = await stack.api.call("POST", "/admin/v1/tenants", {"name": "T"}, token=ADMIN_TOKEN)
    assert status == 201
    status, key = await stack.api.call(
        "POST", f"/admin/v1/tenants/{tenant['id']}/api-keys", {"name": "k"}, token=ADMIN_TOKEN
    )
    assert status == 201
    return tenant["id"], key["api_key"]


async def _twilio_callback(stack: Stack, query: dict[str, str], form: dict[str, str]) -> tuple[int, Any]:
    url = f"{stack.base}/v1/receipts/twilio?" + "&".join(f"{k}={v}" for k, v in query.items())
    headers = {"X-Twilio-Signature": compute_signature(TWILIO_TOKEN, url, form)}
    async with stack.api.http.post(url, data=form, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def _sms(stack: Stack, key: str, phone: str) -> str:
    body = {"to": {"phone": phone}, "content": {"sms": {"text": "Doors open at 8"}}}
    status, accepted = await stack.api.call("POST", "/v1/notifications", body, token=key)
    assert status == 202, accepted
    return str(accepted["id"])


async def test_signed_receipts_naming_ids_not_issued_to_that_tenant_are_refused(stack: Stack) -> None:
    tenant_a, key_a = await _new_tenant(stack)
    tenant_b, key_b = await _new_tenant(stack)
    phone_a, victim = phone(901), phone(902)
    nid = await _sms(stack, key_a, phone_a)
    did = delivery_id(nid, "sms", phone_a)
    stop = {"MessageSid": f"SM{unique()}", "MessageStatus": "failed", "ErrorCode": "21610", "To": victim}
    forged = [
        {"tenant": tenant_b, "notification": "n_" + "0" * 39, "delivery": "d_" + "0" * 32},  # made up
        {"tenant": tenant_b, "notification": nid, "delivery": did},  # another tenant's notification
        {"tenant": tenant_a, "notification": nid, "delivery": did},  # not the delivery to that number
    ]
    for i, query in enumerate(forged):
        status, result = await _twilio_callback(stack, query, {**stop, "MessageSid": f"SM{i}{unique()}"})
        assert status == 200 and result["refused"] == 1 and result["applied"] == 0, (query, result)
    # nothing was suppressed: both tenants still reach the number
    for key in (key_a, key_b):
        sent = await _sms(stack, key, victim)
        status, doc = 0, {}
        for _ in range(150):
            status, doc = await stack.api.call("GET", f"/v1/notifications/{sent}", token=key)
            if doc.get("channels", {}).get("sms", {}).get("status") in ("sent", "delivered", "suppressed"):
                break
            await asyncio.sleep(0.1)
        assert doc["channels"]["sms"]["status"] in ("sent", "delivered"), doc
    # and the genuine callback for the genuine delivery still applies
    _, doc = await stack.api.call("GET", f"/v1/notifications/{nid}", token=key_a)
    assert doc["channels"]["sms"]["status"] in ("sent", "delivered"), doc


async def test_sendgrid_events_without_a_plain_unix_timestamp_are_refused(stack: Stack) -> None:
    body = orjson.dumps([{"event": "delivered", "email": "x@example.com"}])
    key = stack.peers.sendgrid.signing_key
    assert key is not None
    for timestamp in ("nan", "NaN", " 1", "1e3", str(int(time.time()) - 3600)):
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign_event_payload(key, timestamp, body),
            TIMESTAMP_HEADER: timestamp,
        }
        status, problem = await stack.api.call("POST", "/v1/receipts/sendgrid", data=body, headers=headers)
        assert status == 403, (timestamp, problem)


async def test_a_members_sms_arrive_in_the_order_sent_among_others(stack: Stack) -> None:
    """Five SMS to one member amid twenty to others, in one ``:batch``: the router and the SMS sender
    take them as fetched batches, and the member's still reach the peer in the order they were sent."""
    mine = "+4479001" + unique()[-5:].translate(str.maketrans("abcdef", "123456"))
    items = []
    for i in range(25):
        to = mine if i % 5 == 0 else f"+4479002{i:05d}"
        items.append({"to": {"phone": to}, "content": {"sms": {"text": f"order {i}"}}})
    status, body = await stack.api.call("POST", "/v1/notifications:batch", {"notifications": items})
    assert status == 202, body

    def arrived() -> list[str]:
        return [m["text"] for m in stack.peers.twilio.messages if m["to"] == mine]

    await eventually(lambda: len(arrived()) == 5, timeout_s=20)
    assert arrived() == [f"order {i}" for i in range(0, 25, 5)]


PUSH_BLOCKS = {
    "android": {"priority": "HIGH", "ttl": "600s", "notification": {"channel_id": "rewards"}},
    "apns": {"headers": {"apns-priority": "10"}, "payload": {"aps": {"sound": "default", "badge": 1}}},
    "webpush": {"headers": {"Urgency": "high"}, "fcm_options": {"link": "https://cinema.example.com/r"}},
}


async def _push_to(stack: Stack, token: str, template: str, api_key: str | None = None) -> dict[str, Any]:
    """Send template ``template`` to push token ``token``; the FCM request the peer took and the status."""
    status, body = await stack.api.call(
        "POST",
        "/v1/notifications",
        {"to": {"push_token": token}, "template_id": template, "data": {"film": "Dune", "seat": "F7"}},
        token=api_key,
    )
    assert status == 202, body
    doc: dict[str, Any] = {}

    async def sent() -> bool:
        nonlocal doc
        _, doc = await stack.api.call("GET", f"/v1/notifications/{body['id']}", token=api_key)
        return doc.get("channels", {}).get("push", {}).get("status") == "sent"

    await eventually(sent, timeout_s=15)
    [request] = [m for m in stack.peers.fcm.requests if m.get("token") == token]
    return {"request": request, "status": doc}


async def test_push_override_blocks_go_from_the_template_to_fcm_as_given(stack: Stack) -> None:
    template = {"category": "transactional", "push": {**TEMPLATE["push"], **PUSH_BLOCKS}}
    status, body = await stack.api.call("PUT", "/v1/templates/booked-push", template)
    assert status == 200, body
    _, stored = await stack.api.call("GET", "/v1/templates/booked-push")
    assert {k: stored["push"][k] for k in PUSH_BLOCKS} == PUSH_BLOCKS

    token = "fcm-blocks-" + unique()
    sent = await _push_to(stack, token, "booked-push")

    request = sent["request"]
    assert {k: request[k] for k in PUSH_BLOCKS} == PUSH_BLOCKS
    assert request["notification"] == {"title": "Booked", "body": "Dune, seat F7"}
    # the tenant names no FCM project: the sender's (the service account's) is the URL's
    assert sent["status"]["channels"]["push"]["provider_message_id"].startswith("projects/herald-dev/")


async def test_push_override_blocks_fcm_would_refuse_are_422_at_the_api(stack: Stack) -> None:
    bad = {"title": "t", "body": "b", "android": {"colour": "#ffffff"}, "apns": "high"}
    status, body = await stack.api.call("PUT", "/v1/templates/bad-push", {"push": bad})
    assert status == 422, body
    fields = {e["field"] for e in body["errors"]}
    assert {"push.android.colour", "push.apns"} <= fields, fields

    huge = {"title": "t", "body": "b", "apns": {"payload": {"aps": {"alert": "x" * 5000}}}}
    status, body = await stack.api.call(
        "POST", "/v1/notifications", {"to": {"push_token": "fcm-" + unique()}, "content": {"push": huge}}
    )
    assert status == 422, body
    assert any(e["field"].startswith("content.push.apns") for e in body["errors"]), body


async def test_a_tenants_fcm_project_is_where_its_push_messages_are_sent(stack: Stack) -> None:
    stack.peers.fcm.projects.add("cinema-north")
    status, tenant = await stack.api.call(
        "POST", "/admin/v1/tenants", {"name": "North", "fcm_project": "cinema-north"}, token=ADMIN_TOKEN
    )
    assert status == 201, tenant
    assert tenant["fcm_project"] == "cinema-north"
    status, key = await stack.api.call(
        "POST", f"/admin/v1/tenants/{tenant['id']}/api-keys", {"name": "k"}, token=ADMIN_TOKEN
    )
    assert status == 201
    assert (await stack.api.call("PUT", "/v1/templates/booked", TEMPLATE, token=key["api_key"]))[0] == 200

    token = "fcm-north-" + unique()
    sent = await _push_to(stack, token, "booked", api_key=key["api_key"])

    [captured] = [m for m in stack.peers.fcm.messages if m["to"] == token]
    assert captured["project"] == "cinema-north"
    assert sent["status"]["channels"]["push"]["provider_message_id"].startswith("projects/cinema-north/")
    assert "fcm_project" not in sent["request"]

    status, body = await stack.api.call(
        "PATCH", f"/admin/v1/tenants/{tenant['id']}", {"fcm_project": "../v1/x"}, token=ADMIN_TOKEN
    )
    assert status == 422 and body["errors"][0]["field"] == "fcm_project", body
