"""SendGrid adapter against the local SendGrid peer, over real HTTP on loopback."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from herald_dev.outbox import Outbox
from herald_dev.peers import FaultPlan, SendGridPeer
from herald_providers.base import OutboundMessage, PermanentError, SendResult, TransientError
from herald_providers.sendgrid import SendGridProvider

API_KEY = "SG.test-key"
CONTENT = {
    "from": "Cinema <news@cinema.example>",
    "subject": "Hi -name-",
    "text": "Hello -name-",
    "html": "<p>-name-</p>",
}

Serve = Callable[[web.Application], Awaitable[str]]
Setup = Callable[..., Awaitable[tuple[SendGridPeer, SendGridProvider]]]


def email(i: int, **content: Any) -> OutboundMessage:
    return OutboundMessage(
        delivery_id=f"d{i}",
        tenant_id="t1",
        channel="email",
        to=f"member{i}@example.com",
        content={**CONTENT, "substitutions": {"-name-": f"Member {i}"}, **content},
        metadata={"notification_id": f"n{i}"},
    )


@pytest.fixture
async def setup(serve: Serve, http_session: aiohttp.ClientSession) -> AsyncIterator[Setup]:
    providers: list[SendGridProvider] = []

    async def _setup(
        faults: FaultPlan | None = None,
        api_key: str = API_KEY,
        timeout_s: float = 2.0,
        outbox: Outbox | None = None,
    ) -> tuple[SendGridPeer, SendGridProvider]:
        peer = SendGridPeer(API_KEY, faults=faults, outbox=outbox)
        base_url = await serve(peer.app())
        provider = SendGridProvider(
            api_key=api_key, base_url=base_url, session=http_session, timeout_s=timeout_s
        )
        await provider.start()
        providers.append(provider)
        return peer, provider

    yield _setup
    for provider in providers:
        await provider.close()


async def test_send_one_message_has_the_v3_shape_and_returns_the_message_id(
    setup: Setup, outbox: Outbox
) -> None:
    peer, provider = await setup(outbox=outbox)

    result = await provider.send(email(1))

    assert result.provider == "sendgrid"
    assert result.provider_message_id and len(result.provider_message_id) == 22
    [body] = peer.requests
    assert body["from"] == {"email": "news@cinema.example", "name": "Cinema"}
    assert body["subject"] == "Hi -name-"
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    [p] = body["personalizations"]
    assert p["to"] == [{"email": "member1@example.com"}]
    assert p["custom_args"] == {"notification_id": "n1", "delivery_id": "d1", "tenant_id": "t1"}
    [captured] = peer.messages
    assert captured["subject"] == "Hi Member 1" and captured["text"] == "Hello Member 1"
    assert captured["message_id"] == result.provider_message_id
    [stored] = outbox.messages("email")
    assert stored["provider"] == "sendgrid" and stored["to"] == "member1@example.com"
    assert stored["subject"] == "Hi Member 1"


async def test_batch_of_2500_identical_messages_takes_three_requests_with_substitutions(setup: Setup) -> None:
    peer, provider = await setup()
    msgs = [email(i) for i in range(2500)]

    results = await provider.send_batch(msgs)

    assert all(isinstance(r, SendResult) for r in results)
    assert sorted(len(b["personalizations"]) for b in peer.requests) == [500, 1000, 1000]
    assert len(peer.messages) == 2500
    by_to = {m["to"]: m for m in peer.messages}
    assert by_to["member1234@example.com"]["subject"] == "Hi Member 1234"
    assert by_to["member1234@example.com"]["custom_args"]["delivery_id"] == "d1234"
    # every recipient of one request shares that request's X-Message-Id
    ids = {r.provider_message_id for r in results if isinstance(r, SendResult)}
    assert len(ids) == 3


async def test_different_content_goes_in_separate_requests_and_results_keep_order(setup: Setup) -> None:
    peer, provider = await setup()
    msgs = [email(0), email(1, subject="Other"), email(2), email(3, html="<b>x</b>")]

    results = await provider.send_batch(msgs)

    assert len(peer.requests) == 3
    assert [b["subject"] for b in peer.requests].count("Hi -name-") == 2
    ids = [r.provider_message_id for r in results if isinstance(r, SendResult)]
    assert len(ids) == 4 and ids[0] == ids[2] and len({ids[0], ids[1], ids[3]}) == 3


async def test_invalid_address_fails_alone_and_the_rest_of_the_batch_is_sent(setup: Setup) -> None:
    peer, provider = await setup(faults=FaultPlan(invalid={"member3@example.com"}))
    msgs = [email(i) for i in range(7)]
    msgs[6].to = "not-an-address"

    results = await provider.send_batch(msgs)

    for i, result in enumerate(results):
        if i in (3, 6):
            assert isinstance(result, PermanentError) and result.invalid_recipient, i
        else:
            assert isinstance(result, SendResult), i
    assert sorted(m["to"] for m in peer.messages) == sorted(
        m.to for i, m in enumerate(msgs) if i not in (3, 6)
    )
    assert len(peer.requests) == 1  # the syntactically bad one never left; the rejected request is not kept


async def test_single_invalid_recipient_raises_permanent_invalid_recipient(setup: Setup) -> None:
    _, provider = await setup(faults=FaultPlan(invalid={"member1@example.com"}))

    with pytest.raises(PermanentError) as info:
        await provider.send(email(1))

    assert info.value.invalid_recipient and info.value.code == "invalid_email"


async def test_wrong_api_key_is_a_permanent_configuration_error(setup: Setup) -> None:
    _, provider = await setup(api_key="SG.wrong")

    with pytest.raises(PermanentError) as info:
        await provider.send(email(1))

    assert info.value.code == "unauthorized" and not info.value.invalid_recipient


async def test_429_is_throttled_with_retry_after(setup: Setup) -> None:
    peer, provider = await setup(faults=FaultPlan(throttle_rate=1.0, retry_after_s=7))

    with pytest.raises(TransientError) as info:
        await provider.send(email(1))

    assert info.value.throttled and info.value.retry_after == 7
    assert peer.messages == []


async def test_5xx_and_down_are_transient(setup: Setup) -> None:
    faults = FaultPlan(error_rate=1.0)
    _, provider = await setup(faults=faults)
    with pytest.raises(TransientError) as info:
        await provider.send(email(1))
    assert not info.value.throttled and info.value.code == "500"

    faults.error_rate, faults.down = 0.0, True
    results = await provider.send_batch([email(1), email(2)])
    assert all(isinstance(r, TransientError) and r.code == "503" for r in results)

    faults.down_mode = "close"
    with pytest.raises(TransientError) as info:
        await provider.send(email(1))
    assert info.value.code == "connection"


async def test_hanging_provider_times_out_as_transient(setup: Setup) -> None:
    _, provider = await setup(faults=FaultPlan(hang_rate=1.0, hang_s=10), timeout_s=0.2)

    started = time.monotonic()
    with pytest.raises(TransientError) as info:
        await provider.send(email(1))

    assert info.value.code == "timeout"
    assert time.monotonic() - started < 2


async def test_oversized_request_is_permanent(serve: Serve, http_session: aiohttp.ClientSession) -> None:
    peer = SendGridPeer(API_KEY, max_body_bytes=10_000)
    provider = SendGridProvider(api_key=API_KEY, base_url=await serve(peer.app()), session=http_session)

    with pytest.raises(PermanentError) as info:
        await provider.send(email(1, html="x" * 20_000))

    assert info.value.code == "payload_too_large"


async def test_content_without_from_or_body_is_refused_before_sending(setup: Setup) -> None:
    peer, provider = await setup()

    results = await provider.send_batch([email(1, **{"from": None}), email(2, text="", html="")])

    assert all(isinstance(r, PermanentError) and r.code == "invalid_content" for r in results)
    assert peer.requests == []


async def test_provider_owns_its_session_when_none_is_given(serve: Serve) -> None:
    peer = SendGridPeer(API_KEY)
    provider = SendGridProvider(api_key=API_KEY, base_url=await serve(peer.app()))
    await provider.start()
    try:
        assert isinstance(await provider.send(email(1)), SendResult)
    finally:
        await provider.close()
    assert peer.requests[0]["personalizations"][0]["to"] == [{"email": "member1@example.com"}]
