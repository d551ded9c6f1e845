"""Twilio adapter against the local Twilio peer, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from herald_dev.outbox import Outbox
from herald_dev.peers import FaultPlan, TwilioPeer
from herald_providers.base import OutboundMessage, PermanentError, TransientError
from herald_providers.twilio import TwilioProvider, compute_signature, verify_signature

SID = "AC" + "a" * 32
TOKEN = "auth-token-123"
SERVICE = "MG" + "b" * 32
TO = "+14155552671"

Serve = Callable[[web.Application], Awaitable[str]]
Setup = Callable[..., Awaitable[tuple[TwilioPeer, TwilioProvider]]]


def sms(to: str = TO, **content: Any) -> OutboundMessage:
    return OutboundMessage(
        delivery_id="d1",
        tenant_id="t1",
        channel="sms",
        to=to,
        content={"text": "Your code is 123456", **content},
    )


@pytest.fixture
async def setup(serve: Serve, http_session: aiohttp.ClientSession) -> AsyncIterator[Setup]:
    async def _setup(
        *,
        faults: FaultPlan | None = None,
        error_codes: dict[str, int] | None = None,
        auth_token: str = TOKEN,
        sender: str | None = "+14155550100",
        callback: str | None = "http://127.0.0.1:9/unused",
        outbox: Outbox | None = None,
    ) -> tuple[TwilioPeer, TwilioProvider]:
        peer = TwilioPeer(
            SID, TOKEN, faults=faults, error_codes=error_codes, outbox=outbox, status_callbacks=False
        )
        provider = TwilioProvider(
            account_sid=SID,
            auth_token=auth_token,
            base_url=await serve(peer.app()),
            sender=sender,
            status_callback_url=callback,
            session=http_session,
            timeout_s=2.0,
        )
        await provider.start()
        return peer, provider

    yield _setup


async def test_send_posts_the_form_with_basic_auth_and_returns_the_sid(setup: Setup, outbox: Outbox) -> None:
    peer, provider = await setup(outbox=outbox)

    result = await provider.send(sms())

    assert result.provider == "twilio"
    assert result.provider_message_id and result.provider_message_id.startswith("SM")
    assert peer.requests == [
        {
            "To": TO,
            "Body": "Your code is 123456",
            "From": "+14155550100",
            "StatusCallback": "http://127.0.0.1:9/unused",
        }
    ]
    [stored] = outbox.messages("sms")
    assert stored["provider"] == "twilio" and stored["to"] == TO and stored["text"] == "Your code is 123456"
    assert stored["sid"] == result.provider_message_id


async def test_messaging_service_sender_and_per_message_from(setup: Setup) -> None:
    peer, provider = await setup(sender=SERVICE, callback=None)

    await provider.send(sms())
    await provider.send(sms(**{"from": "CINEMA"}))

    assert peer.requests[0] == {"To": TO, "Body": "Your code is 123456", "MessagingServiceSid": SERVICE}
    assert peer.requests[1]["From"] == "CINEMA"


async def test_invalid_e164_is_refused_without_a_request(setup: Setup) -> None:
    peer, provider = await setup()

    for bad in ("4155552671", "+1415", "+999123", "+1 415 CALL ME"):
        with pytest.raises(PermanentError) as info:
            await provider.send(sms(to=bad))
        assert info.value.invalid_recipient and info.value.code == "invalid_number"
    assert peer.requests == []


@pytest.mark.parametrize("code", [21211, 21614, 21610])
async def test_recipient_error_codes_are_permanent_invalid_recipient(setup: Setup, code: int) -> None:
    _, provider = await setup(error_codes={TO: code})

    with pytest.raises(PermanentError) as info:
        await provider.send(sms())

    assert info.value.invalid_recipient and info.value.code == str(code)
    assert TO not in info.value.reason


async def test_number_the_provider_calls_invalid(setup: Setup) -> None:
    _, provider = await setup(faults=FaultPlan(invalid={TO}))

    with pytest.raises(PermanentError) as info:
        await provider.send(sms())

    assert info.value.invalid_recipient and info.value.code == "21211"


async def test_throttling_and_queue_overflow_are_transient(setup: Setup) -> None:
    faults = FaultPlan(throttle_rate=1.0, retry_after_s=3)
    _, provider = await setup(faults=faults, error_codes={"+14155552672": 30001})

    with pytest.raises(TransientError) as info:
        await provider.send(sms())
    assert info.value.throttled and info.value.code == "20429" and info.value.retry_after == 3

    faults.throttle_rate = 0.0
    with pytest.raises(TransientError) as info:
        await provider.send(sms(to="+14155552672"))
    assert info.value.code == "30001" and not info.value.throttled


async def test_server_errors_are_transient_and_other_4xx_permanent(setup: Setup) -> None:
    faults = FaultPlan(error_rate=1.0)
    _, provider = await setup(faults=faults)
    with pytest.raises(TransientError) as info:
        await provider.send(sms())
    assert info.value.code == "20500"

    faults.error_rate = 0.0
    with pytest.raises(PermanentError) as perm:
        await provider.send(sms(text="x" * 1601))
    assert perm.value.code == "21617" and not perm.value.invalid_recipient


async def test_bad_credentials_are_permanent(setup: Setup) -> None:
    _, provider = await setup(auth_token="wrong")

    with pytest.raises(PermanentError) as info:
        await provider.send(sms())

    assert info.value.code == "20003"


async def test_down_and_hanging_provider_are_transient(
    setup: Setup, http_session: aiohttp.ClientSession
) -> None:
    faults = FaultPlan(down=True)
    _, provider = await setup(faults=faults)
    with pytest.raises(TransientError):
        await provider.send(sms())

    faults.down, faults.hang_rate, faults.hang_s = False, 1.0, 10.0
    provider._timeout_s = 0.2
    with pytest.raises(TransientError) as info:
        await provider.send(sms())
    assert info.value.code == "timeout"


def test_signature_matches_twilios_published_example() -> None:
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"

    assert compute_signature("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert verify_signature("12345", url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert verify_signature(
        "12345", "https://mycompany.com:443/myapp.php?foo=1&bar=2", params, "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    )
    assert not verify_signature("12345", url, {**params, "Digits": "9"}, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not verify_signature("other", url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


async def test_peer_status_callbacks_are_signed_like_twilio(
    serve: Serve, http_session: aiohttp.ClientSession
) -> None:
    received: list[bool] = []
    done = asyncio.Event()

    async def callback(request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        received.append(
            verify_signature(TOKEN, str(request.url), form, request.headers["X-Twilio-Signature"])
        )
        if form["MessageStatus"] == "delivered":
            done.set()
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/v1/receipts/twilio", callback)
    callback_url = await serve(receiver) + "/v1/receipts/twilio"
    peer = TwilioPeer(SID, TOKEN, callback_delay_s=0.01)
    provider = TwilioProvider(
        account_sid=SID,
        auth_token=TOKEN,
        base_url=await serve(peer.app()),
        sender="+14155550100",
        status_callback_url=callback_url,
        session=http_session,
    )

    result = await provider.send(sms())
    await asyncio.wait_for(done.wait(), 2)

    assert received == [True, True]
    assert [c["MessageStatus"] for c in peer.callbacks_sent] == ["sent", "delivered"]
    assert peer.callbacks_sent[0]["MessageSid"] == result.provider_message_id
