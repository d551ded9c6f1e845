"""The micro-batcher, batch failover, the rate-limited wrapper and SendGrid webhook signatures, against
the local protocol peers (and the real Valkey for the shared limit)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from herald_dev.peers import SendGridPeer, TwilioPeer
from herald_dev.peers.faults import FaultPlan
from herald_providers.base import OutboundMessage, PermanentError, SendResult, TransientError
from herald_providers.batcher import MicroBatcher
from herald_providers.breaker import CircuitBreaker, FailoverChain
from herald_providers.limited import RateLimitedProvider
from herald_providers.ratelimit import RateLimiter
from herald_providers.sendgrid import SendGridProvider
from herald_providers.twilio import TwilioProvider
from herald_providers.webhooks import (
    generate_signing_key,
    load_public_key,
    sign_event_payload,
    verify_event_payload,
)

Serve = Callable[[Any], Awaitable[str]]
KEY = "SG.batching"
SID, TOKEN = "AC" + "1" * 32, "token"


def email(i: int, to: str | None = None) -> OutboundMessage:
    content = {"subject": "Premiere", "text": "Tonight", "from": "box-office@cinema.example"}
    return OutboundMessage(f"d{i}", "t1", "email", to or f"fan{i}@example.com", content)


async def sendgrid(
    serve: Serve, session: aiohttp.ClientSession, name: str = "sendgrid"
) -> tuple[SendGridPeer, SendGridProvider]:
    peer = SendGridPeer(KEY, faults=FaultPlan(journal_on=True))
    provider = SendGridProvider(api_key=KEY, base_url=await serve(peer.app()), session=session, name=name)
    return peer, provider


async def test_concurrent_submissions_share_one_request_and_get_their_own_outcome(
    serve: Serve, http_session: aiohttp.ClientSession
) -> None:
    peer, provider = await sendgrid(serve, http_session)
    peer.faults.invalid.add("fan3@example.com")
    batcher = MicroBatcher(provider.send_batch, max_size=1000, linger_s=0.02)

    outcomes = await asyncio.gather(*(batcher.submit(email(i)) for i in range(25)), return_exceptions=True)

    assert isinstance(outcomes[3], PermanentError) and outcomes[3].invalid_recipient
    assert all(isinstance(o, SendResult) for i, o in enumerate(outcomes) if i != 3)
    assert len(peer.messages) == 24
    assert len(peer.requests) == 1  # the 400 blamed one recipient; the other 24 went in one resend


async def test_a_full_batch_is_flushed_without_waiting_for_the_linger(
    serve: Serve, http_session: aiohttp.ClientSession
) -> None:
    peer, provider = await sendgrid(serve, http_session)
    batcher = MicroBatcher(provider.send_batch, max_size=10, linger_s=30)

    await asyncio.wait_for(asyncio.gather(*(batcher.submit(email(i)) for i in range(20))), timeout=5)

    assert [len(r["personalizations"]) for r in peer.requests] == [10, 10]
    await batcher.close()


async def test_batch_failover_moves_failed_messages_on_and_counts_one_breaker_failure(
    serve: Serve, http_session: aiohttp.ClientSession
) -> None:
    primary_peer, primary = await sendgrid(serve, http_session)
    backup_peer, backup = await sendgrid(serve, http_session, name="backup")
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=60)
    chain = FailoverChain([primary, backup], {"sendgrid": breaker})
    primary_peer.faults.down = True

    first = await chain.send_batch([email(i) for i in range(5)])
    second = await chain.send_batch([email(i) for i in range(5, 8)])

    assert [r.provider for r in first + second if isinstance(r, SendResult)] == ["backup"] * 8
    assert len({a.at for a in primary_peer.faults.journal}) == 1  # one failed request opened it
    assert len(backup_peer.requests) == 2


async def test_rate_limited_provider_slows_every_replica_down_when_throttled(
    serve: Serve, http_session: aiohttp.ClientSession, redis_client: Redis, key_prefix: str
) -> None:
    peer = TwilioPeer(SID, TOKEN, faults=FaultPlan(throttle_rate=1.0), status_callbacks=False)
    twilio = TwilioProvider(
        account_sid=SID,
        auth_token=TOKEN,
        base_url=await serve(peer.app()),
        sender="+14155550100",
        session=http_session,
    )
    limiter = RateLimiter(redis_client, account="tw", rate=50, burst=5, prefix=key_prefix)
    limited = RateLimitedProvider(twilio, limiter)
    sms = OutboundMessage("d1", "t1", "sms", "+447911123456", {"text": "hi"})

    with pytest.raises(TransientError) as caught:
        await limited.send(sms)

    assert caught.value.throttled
    other_replica = RateLimiter(redis_client, account="tw", rate=50, burst=5, prefix=key_prefix)
    assert await other_replica.effective_rate() == pytest.approx(25)


async def test_sendgrid_event_signatures_verify_and_tampering_fails() -> None:
    key, public = generate_signing_key()
    body = b'[{"event":"delivered"}]'
    signature = sign_event_payload(key, "1700000000", body)
    verifier = load_public_key(public)

    assert verify_event_payload(verifier, "1700000000", body, signature)
    assert not verify_event_payload(verifier, "1700000001", body, signature)
    assert not verify_event_payload(verifier, "1700000000", body + b" ", signature)
    assert not verify_event_payload(verifier, "1700000000", body, "not base64!")
    with pytest.raises(ValueError):
        load_public_key("bm90IGEga2V5")
