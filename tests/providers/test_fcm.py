"""FCM adapter and its OAuth2 token source against the local FCM peer, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from herald_dev.outbox import Outbox
from herald_dev.peers import FaultPlan, FcmPeer
from herald_providers.base import OutboundMessage, PermanentError, SendResult, TransientError
from herald_providers.config import ProviderSettings, build_http_provider
from herald_providers.fcm import FCM_SCOPE, FcmProvider, ServiceAccount

PUSH_TOKEN = "fcm-token:" + "a" * 40

Serve = Callable[[web.Application], Awaitable[str]]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def push(to: str = PUSH_TOKEN, **content: Any) -> OutboundMessage:
    return OutboundMessage(
        delivery_id="d1",
        tenant_id="t1",
        channel="push",
        to=to,
        content={
            "title": "Reward unlocked",
            "body": "Free popcorn!",
            "data": {"reward_id": "r1", "points": 250},
        }
        | content,
    )


class Rig:
    def __init__(self, peer: FcmPeer, provider: FcmProvider, clock: FakeClock, base_url: str) -> None:
        self.peer, self.provider, self.clock, self.base_url = peer, provider, clock, base_url


Setup = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def setup(
    serve: Serve, http_session: aiohttp.ClientSession, service_account: dict[str, Any]
) -> AsyncIterator[Setup]:
    async def _setup(
        *,
        faults: FaultPlan | None = None,
        account: dict[str, Any] | None = None,
        outbox: Outbox | None = None,
    ) -> Rig:
        peer = FcmPeer([service_account], project_id="herald-dev", faults=faults, outbox=outbox)
        base_url = await serve(peer.app())
        clock = FakeClock()
        provider = FcmProvider(
            project_id="herald-dev",
            credentials=ServiceAccount.from_dict(account or service_account),
            base_url=base_url,
            token_url=f"{base_url}/token",
            session=http_session,
            timeout_s=2.0,
            clock=clock,
        )
        await provider.start()
        return Rig(peer, provider, clock, base_url)

    yield _setup


async def test_send_has_the_v1_shape_and_returns_the_message_name(setup: Setup, outbox: Outbox) -> None:
    rig = await setup(outbox=outbox)

    result = await rig.provider.send(push())

    assert result.provider == "fcm"
    assert result.provider_message_id and result.provider_message_id.startswith(
        "projects/herald-dev/messages/"
    )
    assert rig.peer.requests == [
        {
            "token": PUSH_TOKEN,
            "notification": {"title": "Reward unlocked", "body": "Free popcorn!"},
            "data": {"reward_id": "r1", "points": "250"},
        }
    ]
    [stored] = outbox.messages("push")
    assert stored["provider"] == "fcm" and stored["to"] == PUSH_TOKEN and stored["title"] == "Reward unlocked"
    assert stored["data"] == {"reward_id": "r1", "points": "250"}


async def test_token_exchange_sends_a_signed_jwt_with_the_right_claims(
    setup: Setup, service_account: dict[str, Any]
) -> None:
    rig = await setup()

    await rig.provider.send(push())

    [claims] = rig.peer.token_requests
    assert claims["iss"] == service_account["client_email"]
    assert claims["scope"] == FCM_SCOPE
    assert claims["aud"] == f"{rig.base_url}/token"
    assert claims["exp"] - claims["iat"] == 3600


async def test_access_token_is_cached_then_refreshed_shortly_before_expiry(setup: Setup) -> None:
    rig = await setup()

    await asyncio.gather(*(rig.provider.send(push()) for _ in range(20)))
    assert len(rig.peer.token_requests) == 1  # concurrent senders share one refresh

    rig.clock.now += 3600 - 120
    await rig.provider.send(push())
    assert len(rig.peer.token_requests) == 1

    rig.clock.now += 100  # within the last minute of the token's life
    await rig.provider.send(push())
    assert len(rig.peer.token_requests) == 2


async def test_a_401_refreshes_the_token_once_and_retries(setup: Setup) -> None:
    rig = await setup()
    await rig.provider.send(push())

    rig.peer.revoke_tokens()
    result = await rig.provider.send(push())

    assert isinstance(result, SendResult)
    assert len(rig.peer.token_requests) == 2
    assert len(rig.peer.messages) == 2


async def test_a_401_that_persists_after_refresh_is_permanent(setup: Setup) -> None:
    rig = await setup()
    rig.peer.accept_tokens = False

    with pytest.raises(PermanentError) as info:
        await rig.provider.send(push())

    assert info.value.code == "UNAUTHENTICATED" and not info.value.invalid_recipient
    assert len(rig.peer.token_requests) == 2


async def test_jwt_signed_with_an_unknown_key_is_refused(
    setup: Setup, other_service_account: dict[str, Any]
) -> None:
    rig = await setup(account=other_service_account)

    with pytest.raises(PermanentError) as info:
        await rig.provider.send(push())

    assert info.value.code == "invalid_grant"
    assert rig.peer.token_requests == [] and rig.peer.messages == []


async def test_unregistered_token_is_permanent_invalid_recipient(setup: Setup) -> None:
    rig = await setup(faults=FaultPlan(invalid={PUSH_TOKEN}))

    with pytest.raises(PermanentError) as info:
        await rig.provider.send(push())

    assert info.value.invalid_recipient and info.value.code == "UNREGISTERED"
    assert PUSH_TOKEN not in info.value.reason


async def test_malformed_token_is_invalid_argument_and_invalid_recipient(setup: Setup) -> None:
    rig = await setup()

    with pytest.raises(PermanentError) as info:
        await rig.provider.send(push(to="short"))

    assert info.value.code == "INVALID_ARGUMENT" and info.value.invalid_recipient


async def test_invalid_data_key_is_permanent_but_not_the_recipients_fault(setup: Setup) -> None:
    rig = await setup()

    with pytest.raises(PermanentError) as info:
        await rig.provider.send(push(data={"from": "x"}))

    assert info.value.code == "INVALID_ARGUMENT" and not info.value.invalid_recipient


async def test_quota_exceeded_is_throttled_with_retry_after(setup: Setup) -> None:
    rig = await setup(faults=FaultPlan(throttle_rate=1.0, retry_after_s=9))

    with pytest.raises(TransientError) as info:
        await rig.provider.send(push())

    assert info.value.throttled and info.value.retry_after == 9 and info.value.code == "QUOTA_EXCEEDED"


@pytest.mark.parametrize(("down", "code"), [(False, "INTERNAL"), (True, "UNAVAILABLE")])
async def test_internal_and_unavailable_are_transient(setup: Setup, down: bool, code: str) -> None:
    rig = await setup(faults=FaultPlan(error_rate=0.0 if down else 1.0, down=down))

    with pytest.raises(TransientError) as info:
        await rig.provider.send(push())

    assert info.value.code == code and not info.value.throttled


async def test_fault_fractions_are_deterministic(setup: Setup) -> None:
    rig = await setup(faults=FaultPlan(error_rate=0.25))

    outcomes = await asyncio.gather(*(rig.provider.send(push()) for _ in range(40)), return_exceptions=True)

    assert sum(isinstance(o, TransientError) for o in outcomes) == 10
    assert rig.peer.faults.meter.count == 30


async def test_build_http_provider_reads_the_credentials_file(
    serve: Serve,
    http_session: aiohttp.ClientSession,
    service_account: dict[str, Any],
    service_account_file: Path,
) -> None:
    peer = FcmPeer([service_account])
    base_url = await serve(peer.app())
    settings = ProviderSettings(
        fcm_base_url=base_url, fcm_token_url=f"{base_url}/token", fcm_credentials_file=service_account_file
    )

    provider = build_http_provider("fcm", settings, http_session)

    assert isinstance(await provider.send(push()), SendResult)  # project id from the key file
    assert peer.messages[0]["to"] == PUSH_TOKEN


ANDROID = {"priority": "HIGH", "ttl": "600s", "notification": {"channel_id": "rewards", "color": "#ff8800"}}
APNS = {"headers": {"apns-priority": "10"}, "payload": {"aps": {"sound": "default", "badge": 1}}}
WEBPUSH = {"headers": {"Urgency": "high"}, "fcm_options": {"link": "https://cinema.example.com/r"}}


async def test_platform_override_blocks_reach_fcm_as_given(setup: Setup) -> None:
    rig = await setup()

    await rig.provider.send(
        push(android=ANDROID, apns=APNS, webpush=WEBPUSH, fcm_options={"analytics_label": "q4"})
    )

    [message] = rig.peer.requests
    assert message["android"] == ANDROID and message["apns"] == APNS and message["webpush"] == WEBPUSH
    assert message["fcm_options"] == {"analytics_label": "q4"}
    assert message["notification"] == {"title": "Reward unlocked", "body": "Free popcorn!"}


@pytest.mark.parametrize(
    "blocks",
    [
        {"android": {"colour": "#ffffff"}},
        {"android": {"priority": "URGENT"}},
        {"apns": {"aps": {}}},
        {"webpush": {"data": {"n": 1}}},
    ],
)
async def test_the_peer_refuses_override_blocks_as_fcm_does(setup: Setup, blocks: dict[str, Any]) -> None:
    rig = await setup()

    with pytest.raises(PermanentError) as info:
        await rig.provider.send(push(**blocks))

    assert info.value.code == "INVALID_ARGUMENT" and not info.value.invalid_recipient
    assert rig.peer.messages == []


async def test_the_tenants_fcm_project_is_the_url_path_and_the_sender_s_is_the_fallback(
    serve: Serve, http_session: aiohttp.ClientSession, service_account: dict[str, Any]
) -> None:
    peer = FcmPeer([service_account], project_id="herald-dev", projects={"cinema-north"})
    base_url = await serve(peer.app())
    provider = FcmProvider(
        project_id="herald-dev",
        credentials=ServiceAccount.from_dict(service_account),
        base_url=base_url,
        token_url=f"{base_url}/token",
        session=http_session,
    )
    await provider.start()

    tenants = await provider.send(push(fcm_project="cinema-north"))
    default = await provider.send(push())

    assert tenants.provider_message_id and tenants.provider_message_id.startswith("projects/cinema-north/")
    assert default.provider_message_id and default.provider_message_id.startswith("projects/herald-dev/")
    assert [m["project"] for m in peer.messages] == ["cinema-north", "herald-dev"]
    assert len(peer.token_requests) == 1  # one service account, one access token for both projects
    assert all("fcm_project" not in m for m in peer.requests)  # identity is the path, not the message


async def test_a_project_the_service_account_cannot_send_in_is_permanent(
    serve: Serve, http_session: aiohttp.ClientSession, service_account: dict[str, Any]
) -> None:
    peer = FcmPeer([service_account], project_id="herald-dev")
    base_url = await serve(peer.app())
    provider = FcmProvider(
        project_id="herald-dev",
        credentials=ServiceAccount.from_dict(service_account),
        base_url=base_url,
        token_url=f"{base_url}/token",
        session=http_session,
    )
    await provider.start()

    with pytest.raises(PermanentError) as info:
        await provider.send(push(fcm_project="cinema-south"))
    assert not info.value.invalid_recipient  # configuration, not the member's token

    with pytest.raises(PermanentError) as bad:
        await provider.send(push(fcm_project="../../admin"))  # never put into the URL
    assert bad.value.code == "invalid_fcm_project"
    assert peer.messages == []
