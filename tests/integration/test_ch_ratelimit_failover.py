"""A provider account's rate limit shared by two sender replicas, and failover between email providers
when one goes down and comes back: real senders, broker and Valkey, protocol peers on loopback."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from herald_dev.infra import free_port
from herald_dev.peers.faults import FaultPlan
from herald_dev.smtp_peer import SmtpCapture, SmtpPeer
from herald_sender.main import serve as serve_sender
from tests.conftest import Infra, unique
from tests.harness import Env, eventually, running
from tests.integration.channel_support import (
    delivery,
    group_settled,
    phone,
    produce,
    provider_peers,
    sender_settings,
)

pytestmark = [pytest.mark.integration]

RATE, BURST = 25.0, 4
JITTER_S = 0.15


async def test_two_senders_together_stay_within_the_shared_limit(infra: Infra, tmp_path: Path) -> None:
    env = Env(infra.bootstrap, infra.redis_url, unique("rl"))
    await env.create_topics(partitions=4)
    async with provider_peers(tmp_path) as peers:
        peers.twilio.status_callbacks = False
        limit = {"twilio_rate_per_s": RATE, "twilio_burst": BURST, "consumer_concurrency": 16}
        replicas = [
            sender_settings(env, peers, "sms", twilio_from=sender, **limit)
            for sender in ("+14155550101", "+14155550102")
        ]
        async with running(*((serve_sender, s) for s in replicas)):
            await group_settled(env, f"{env.prefix}.sender.sms.transactional", members=2)
            numbers = [phone(i) for i in range(40)]
            await produce(
                env, [delivery("t1", f"n{i}", "sms", to, {"text": "hi"}) for i, to in enumerate(numbers)]
            )
            await eventually(lambda: len(peers.twilio.messages) >= len(numbers), timeout_s=20)

    # Timestamps are taken where requests arrive, so requests granted apart can arrive together on a
    # busy machine: allow JITTER_S of transit spread on top of what the bucket grants.
    accepted = sorted(peers.twilio.faults.meter.timestamps)
    for (i, first), (j, last) in itertools.combinations(enumerate(accepted), 2):
        allowed = RATE * (last - first + JITTER_S) + BURST + 1
        assert j - i + 1 <= allowed, f"{j - i + 1} accepted in {last - first:.3f}s"
    assert accepted[-1] - accepted[0] >= (len(numbers) - BURST - 1) / RATE * 0.9  # the limit did bind
    assert {m["from"] for m in peers.twilio.messages} == {"+14155550101", "+14155550102"}  # both sent


async def test_email_fails_over_to_smtp_while_sendgrid_is_down_and_comes_back(
    infra: Infra, tmp_path: Path
) -> None:
    env = Env(infra.bootstrap, infra.redis_url, unique("fo"))
    await env.create_topics(partitions=4)
    smtp = SmtpCapture()
    smtp_peer = SmtpPeer(free_port(), smtp).start()
    try:
        async with provider_peers(tmp_path) as peers:
            sendgrid = peers.sendgrid
            sendgrid.faults = FaultPlan(journal_on=True)
            settings = sender_settings(
                env,
                peers,
                "email",
                email_providers="sendgrid,smtp",
                smtp_port=smtp_peer.port,
                breaker_failure_threshold=2,
                breaker_cooldown_s=1.0,
            )
            sent = itertools.count()

            async def send(n: int) -> list[str]:
                """n emails, one every 40 ms, to fresh addresses."""
                addresses = [f"fan{next(sent)}@example.com" for _ in range(n)]
                for to in addresses:
                    await produce(
                        env, [delivery("t1", f"n-{to}", "email", to, {"subject": "s", "text": "t"})]
                    )
                    await asyncio.sleep(0.04)
                return addresses

            def at_sendgrid() -> set[str]:
                return {m["to"] for m in sendgrid.messages}

            def at_smtp() -> set[str]:
                return {r for m in smtp.snapshot() for r in m.rcpt_to}

            async with running((serve_sender, settings)):
                healthy = await send(3)
                await eventually(lambda: at_sendgrid() >= set(healthy), timeout_s=10)

                sendgrid.faults.down = True
                outage = await send(10)
                await eventually(lambda: at_smtp() >= set(outage), timeout_s=10)
                refused = [a for a in sendgrid.faults.journal if a.status == 503]
                # the breaker opened after two failed requests (each a batch; a third may have been in
                # flight at that moment): the rest went straight to SMTP
                assert 2 <= len({a.at for a in refused}) <= 3
                assert not at_sendgrid() & set(outage)

                sendgrid.faults.down = False
                await asyncio.sleep(1.1)  # the breaker's cool-down: the next send is its probe
                recovered = await send(5)
                await eventually(lambda: at_sendgrid() >= set(recovered), timeout_s=10)
                assert not at_smtp() & set(recovered)
                assert not at_smtp() & set(healthy)
    finally:
        smtp_peer.stop()
