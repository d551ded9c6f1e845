"""Time and per-member policy end to end on the real broker, Valkey and SMTP peer: send_at through the
scheduler, cancellation by id and by key, quiet hours held and released, frequency caps; and the cap
script's atomicity against Valkey."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from herald_common.caps import FrequencyCap, FrequencyCaps
from herald_common.redisio import Keys, redis_from_url
from herald_common.settings import load
from herald_scheduler.main import serve as serve_scheduler
from herald_sender.main import serve as serve_sender
from herald_sender.settings import SenderSettings
from tests.conftest import Infra, unique
from tests.harness import ADMIN_TOKEN, eventually, running
from tests.integration.channel_support import scheduler_settings
from tests.integration.stack import Stack, email_stack, wait_status

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with email_stack(infra, tmp_path_factory.mktemp("policy")) as s:
        async with running((serve_scheduler, scheduler_settings(s.env))):
            yield s


async def _tenant(stack: Stack, **settings: Any) -> str:
    status, tenant = await stack.api.call(
        "POST", "/admin/v1/tenants", {"name": "Cinema", **settings}, token=ADMIN_TOKEN
    )
    assert status == 201, tenant
    status, key = await stack.api.call(
        "POST", f"/admin/v1/tenants/{tenant['id']}/api-keys", {"name": "t"}, token=ADMIN_TOKEN
    )
    assert status == 201, key
    stack.api.token = key["api_key"]
    return str(tenant["id"])


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S")


async def _send(stack: Stack, to: str, **extra: Any) -> str:
    body = {"to": {"email": to}, "content": {"email": {"subject": "s", "text": "t"}}, **extra}
    status, doc = await stack.api.call("POST", "/v1/notifications", body)
    assert status == 202, doc
    return str(doc["id"])


def _mails(stack: Stack, to: str) -> int:
    return len([m for m in stack.smtp.snapshot() if m.rcpt_to == [to]])


async def _none_until(stack: Stack, to: str, until: float) -> None:
    """Nothing reaches the SMTP peer for ``to`` before ``until``."""
    while time.time() < until - 0.05:
        assert _mails(stack, to) == 0, "delivered early"
        await asyncio.sleep(0.05)


async def test_send_at_is_scheduled_then_delivered_after_it_not_before(stack: Stack) -> None:
    await _tenant(stack)
    send_at = time.time() + 1.5
    nid = await _send(stack, "later@example.com", send_at=_iso(send_at))
    doc = await wait_status(stack, nid, "scheduled")
    assert doc["reason_code"] == "send_at" and abs(doc["next_attempt_at"] - send_at) < 0.01
    await _none_until(stack, "later@example.com", send_at)
    doc = await wait_status(stack, nid, "sent")
    assert time.time() >= send_at and _mails(stack, "later@example.com") == 1


async def test_cancel_by_id_before_send_at(stack: Stack) -> None:
    await _tenant(stack)
    send_at = time.time() + 2.0
    nid = await _send(stack, "cancel-me@example.com", send_at=_iso(send_at))
    await wait_status(stack, nid, "scheduled")
    status, doc = await stack.api.call("POST", f"/v1/notifications/{nid}:cancel")
    assert status == 202 and doc["status"] == "cancelled", doc
    status, again = await stack.api.call("POST", f"/v1/notifications/{nid}:cancel")
    assert status == 200 and again["status"] == "cancelled" and again["reason_code"] == "cancelled"
    await asyncio.sleep(max(0.0, send_at - time.time()) + 1.5)  # released, routed and dropped by now
    assert _mails(stack, "cancel-me@example.com") == 0
    assert (await wait_status(stack, nid, "cancelled"))["reason_code"] == "cancelled"

    sent = await _send(stack, "too-late@example.com")
    await wait_status(stack, sent, "sent")
    status, problem = await stack.api.call("POST", f"/v1/notifications/{sent}:cancel")
    assert status == 409 and "sent" in problem["detail"]
    status, _ = await stack.api.call("POST", "/v1/notifications/n_0000000000000000000:cancel")
    assert status == 404
    await _tenant(stack)  # another tenant cannot cancel it
    status, _ = await stack.api.call("POST", f"/v1/notifications/{nid}:cancel")
    assert status == 404


async def test_cancel_by_key_cancels_the_pending_ones_with_that_key_only(stack: Stack) -> None:
    await _tenant(stack)
    send_at = _iso(time.time() + 2.0)
    a = await _send(stack, "k1@example.com", send_at=send_at, cancellation_key="booking:1")
    b = await _send(stack, "k2@example.com", send_at=send_at, cancellation_key="booking:1")
    c = await _send(stack, "k3@example.com", send_at=send_at, cancellation_key="booking:2")
    for nid in (a, b, c):
        await wait_status(stack, nid, "scheduled")
    status, doc = await stack.api.call(
        "POST", "/v1/notifications:cancel-by-key", {"cancellation_key": "booking:1"}
    )
    assert status == 200 and doc["cancelled"] == 2 and doc["notification_ids"] == sorted([a, b]), doc
    for nid in (a, b):
        await wait_status(stack, nid, "cancelled")
    await wait_status(stack, c, "sent")
    # A notification with the key accepted after the cancel is not affected.
    d = await _send(stack, "k4@example.com", cancellation_key="booking:1")
    await wait_status(stack, d, "sent")
    await asyncio.sleep(0.5)
    assert [_mails(stack, f"k{i}@example.com") for i in (1, 2, 3, 4)] == [0, 0, 1, 1]
    status, problem = await stack.api.call(
        "POST", "/v1/notifications:cancel-by-key", {"cancellation_key": ""}
    )
    assert status in (400, 422), problem


async def test_quiet_hours_hold_marketing_until_the_window_ends(stack: Stack) -> None:
    now = time.time()
    end = now + 2.0
    await _tenant(stack, quiet_hours={"start": _clock(now - 120), "end": _clock(end), "timezone": "UTC"})
    marketing = await _send(stack, "quiet@example.com", category="marketing")
    doc = await wait_status(stack, marketing, "held")
    assert doc["reason_code"] == "quiet_hours" and abs(doc["next_attempt_at"] - int(end)) < 1.01
    await _none_until(stack, "quiet@example.com", int(end))
    await wait_status(stack, marketing, "sent")
    assert _mails(stack, "quiet@example.com") == 1


async def test_quiet_hours_let_transactional_through_and_a_contact_can_opt_out(stack: Stack) -> None:
    now = time.time()
    window = {"start": _clock(now - 120), "end": _clock(now + 3600), "timezone": "UTC"}
    await _tenant(stack, quiet_hours=window)
    started = time.time()
    urgent = await _send(stack, "urgent@example.com", category="transactional")
    await wait_status(stack, urgent, "sent")
    assert time.time() - started < 5
    held = await _send(stack, "promo@example.com", category="marketing")
    await wait_status(stack, held, "held")
    # Expiry comes last: one that would expire before the window ends is expired, not held.
    short = await _send(stack, "short@example.com", category="marketing", expires_at=_iso(now + 600))
    doc = await wait_status(stack, short, "expired")
    assert doc["reason_code"] == "expired" and "quiet hours" in doc["reason"]
    # A contact whose own window is empty is never held.
    await stack.api.call(
        "PUT",
        "/v1/contacts/night-owl",
        {"email": "owl@example.com", "quiet_hours": {"start": "00:00", "end": "00:00"}},
    )
    status, body = await stack.api.call(
        "POST",
        "/v1/notifications",
        {
            "to": {"contact_id": "night-owl"},
            "category": "marketing",
            "content": {"email": {"subject": "s", "text": "t"}},
        },
    )
    assert status == 202, body
    await wait_status(stack, body["id"], "sent")


async def test_a_tenants_transactional_category_is_never_held_nor_opted_out(stack: Stack) -> None:
    """A tenant's own transactional category (``booking``) passes quiet hours and category opt-outs
    like ``transactional`` does; its marketing still waits."""
    now = time.time()
    window = {"start": _clock(now - 120), "end": _clock(now + 3600), "timezone": "UTC"}
    await _tenant(stack, quiet_hours=window, transactional_categories=["booking"])
    status, body = await stack.api.call(
        "PUT",
        "/v1/contacts/booker",
        {"email": "booker@example.com", "preferences": {"categories": {"booking": False}}},
    )
    assert status in (200, 201), body
    booking = await _send(stack, "late-booking@example.com", category="booking")
    await wait_status(stack, booking, "sent")
    status, body = await stack.api.call(
        "POST",
        "/v1/notifications",
        {
            "to": {"contact_id": "booker"},
            "category": "booking",
            "content": {"email": {"subject": "s", "text": "t"}},
        },
    )
    assert status == 202, body
    await wait_status(stack, body["id"], "sent")
    promo = await _send(stack, "late-promo@example.com", category="marketing")
    await wait_status(stack, promo, "held")


async def test_a_cap_of_two_a_day_caps_the_third(stack: Stack) -> None:
    await _tenant(stack, frequency_caps={"marketing": [{"max": 2, "per": "P1D"}]})
    body = {"to": {"contact_id": "fan"}, "content": {"email": {"subject": "s", "text": "t"}}}
    # Consent comes before caps: an opted-out notification is suppressed and not counted.
    opted_out = {"email": "fan@example.com", "preferences": {"categories": {"marketing": False}}}
    await stack.api.call("PUT", "/v1/contacts/fan", opted_out)
    _, doc = await stack.api.call("POST", "/v1/notifications", {**body, "category": "marketing"})
    doc = await wait_status(stack, doc["id"], "suppressed")
    assert doc["channels"]["email"]["reason_code"] == "opted_out_category"
    await stack.api.call("PUT", "/v1/contacts/fan", {"email": "fan@example.com"})
    ids = []
    for _ in range(3):
        status, doc = await stack.api.call("POST", "/v1/notifications", {**body, "category": "marketing"})
        assert status == 202
        ids.append(doc["id"])
        if len(ids) < 3:
            await wait_status(stack, doc["id"], "sent")
    doc = await wait_status(stack, ids[2], "capped")
    assert doc["channels"]["email"]["reason_code"] == "frequency_cap"
    status, doc = await stack.api.call("POST", "/v1/notifications", body)  # transactional: exempt
    await wait_status(stack, doc["id"], "sent")
    assert _mails(stack, "fan@example.com") == 3


async def test_cap_script_is_atomic_idempotent_and_rolling(infra: Infra) -> None:
    redis = redis_from_url(infra.redis_url)
    try:
        caps = FrequencyCaps(redis, Keys(unique("caps")))
        limit = [FrequencyCap(max=5, per="PT10S")]
        now = 1_000_000.0
        results = await asyncio.gather(
            *(caps.admit("t", "c", "marketing", f"n{i}", limit, now) for i in range(50))
        )
        assert sum(results) == 5
        admitted = [f"n{i}" for i, ok in enumerate(results) if ok]
        assert await caps.admit("t", "c", "marketing", admitted[0], limit, now + 1)  # counted once
        assert not await caps.admit("t", "c", "marketing", "late", limit, now + 9.9)
        assert await caps.admit("t", "c", "marketing", "late", limit, now + 10.0)  # window rolled
        assert await caps.admit("t", "other", "marketing", "x", limit, now)  # per contact
        two = [FrequencyCap(max=3, per="PT10S"), FrequencyCap(max=4, per="PT100S")]
        for i, at in enumerate((0, 1, 2)):
            assert await caps.admit("t", "d", "m", f"a{i}", two, now + at)
        assert not await caps.admit("t", "d", "m", "a3", two, now + 5)  # 3 in 10 s
        assert await caps.admit("t", "d", "m", "a3", two, now + 11)  # 4th in 100 s
        assert not await caps.admit("t", "d", "m", "a4", two, now + 50)  # 4 in 100 s
    finally:
        await redis.aclose()


async def test_the_sender_drops_a_delivery_cancelled_after_routing(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory
) -> None:
    async with email_stack(infra, tmp_path_factory.mktemp("nosend"), senders=False) as s:
        await _tenant(s)
        nid = await _send(s, "routed@example.com")
        doc = await wait_status(s, nid, "accepted")

        async def queued() -> bool:
            _, doc = await s.api.call("GET", f"/v1/notifications/{nid}")
            return doc["channels"].get("email", {}).get("status") == "queued"

        await eventually(queued, timeout_s=20)
        status, doc = await s.api.call("POST", f"/v1/notifications/{nid}:cancel")
        assert status == 202, doc
        opts = {"sender_channel": "email", "sender_lane": "transactional", "smtp_port": s.env.smtp_port}
        async with running((serve_sender, load(SenderSettings, **s.env.settings(**opts)))):
            doc = await wait_status(s, nid, "cancelled")
            assert doc["channels"]["email"]["status"] == "cancelled"
            assert doc["channels"]["email"]["reason_code"] == "cancelled"
        assert _mails(s, "routed@example.com") == 0
