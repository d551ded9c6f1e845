"""Retries through the scheduler, dead letters and their replay: an SMS sender against a Twilio peer
that fails, throttles and hangs, on the real broker and Valkey."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from herald_common.dlq import DeadLetterQueue
from herald_common.redisio import Keys, redis_from_url
from herald_common.settings import CommonSettings, load
from herald_dev.peers.faults import FaultPlan
from herald_scheduler.main import serve as serve_scheduler
from herald_sender.main import serve as serve_sender
from herald_tracker.main import serve as serve_tracker
from herald_tracker.settings import TrackerSettings
from tests.conftest import Infra, unique
from tests.harness import Env, eventually, running
from tests.integration.channel_support import (
    Peers,
    channel_status,
    delivery,
    phone,
    produce,
    provider_peers,
    scheduler_settings,
    sender_settings,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

MAX_ATTEMPTS = 8
NOT_MOBILE = phone(900)  # answered with Twilio's permanent 21614
OVERFLOW = phone(901)  # answered with Twilio's transient 30001 until the test clears it


@dataclass
class Setup:
    env: Env
    peers: Peers
    redis: aioredis.Redis


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def setup(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Setup]:
    env = Env(infra.bootstrap, infra.redis_url, unique("retry"))
    await env.create_topics(partitions=4)
    async with provider_peers(tmp_path_factory.mktemp("peers")) as peers:
        peers.twilio.status_callbacks = False
        peers.twilio.error_codes.update({NOT_MOBILE: 21614, OVERFLOW: 30001})
        sender = sender_settings(
            env, peers, "sms", retry_max_attempts=MAX_ATTEMPTS, breaker_failure_threshold=1000
        )
        services = [
            (serve_sender, sender),
            (serve_scheduler, scheduler_settings(env)),
            (serve_tracker, load(TrackerSettings, **env.settings())),
        ]
        redis = redis_from_url(infra.redis_url)
        try:
            async with running(*services):
                yield Setup(env, peers, redis)
        finally:
            await redis.aclose()


async def test_flaky_provider_every_message_delivered_once_and_retry_after_honoured(setup: Setup) -> None:
    twilio = setup.peers.twilio
    twilio.faults = FaultPlan(
        error_rate=0.15, throttle_rate=0.15, retry_after_s=1, hang_rate=0.1, hang_s=1.5, journal_on=True
    )
    numbers = [phone(i) for i in range(30)]
    tenant = unique("t")
    await produce(
        setup.env,
        [delivery(tenant, f"n{i}", "sms", to, {"text": f"code {i}"}) for i, to in enumerate(numbers)],
    )

    await eventually(lambda: {m["to"] for m in twilio.messages} >= set(numbers), timeout_s=30)

    # exactly once at the provider
    delivered = [m["to"] for m in twilio.messages if m["to"] in numbers]
    assert sorted(delivered) == sorted(numbers), "a message was sent twice"
    # the faults really happened and were retried
    answers = defaultdict(list)
    for a in twilio.faults.journal:
        answers[a.to].append(a)
    assert sum(1 for a in twilio.faults.journal if a.status == 429) >= 4
    assert sum(1 for a in twilio.faults.journal if a.status >= 500) >= 4
    # no retry before the provider's Retry-After
    for attempts in answers.values():
        attempts.sort(key=lambda a: a.at)
        for answer, following in itertools.pairwise(attempts):
            if answer.status == 429 and answer.retry_after:
                assert following.at - answer.at >= answer.retry_after - 0.01, (answer, following)

    async def all_sent() -> bool:
        for i in range(30):
            status = await channel_status(setup.redis, setup.env, tenant, f"n{i}", "sms")
            if status is None or status["status"] != "sent":
                return False
        return True

    await eventually(all_sent, timeout_s=10)
    retried = [
        await channel_status(setup.redis, setup.env, tenant, f"n{i}", "sms")
        for i, to in enumerate(numbers)
        if len(answers[to]) > 1
    ]
    assert retried and all(s and s["attempts"] >= 2 for s in retried)


async def test_permanent_error_fails_at_once_with_the_providers_reason(setup: Setup) -> None:
    setup.peers.twilio.faults = FaultPlan()
    tenant = unique("t")
    await produce(setup.env, [delivery(tenant, "n-perm", "sms", NOT_MOBILE, {"text": "hi"})])

    async def failed() -> bool:
        s = await channel_status(setup.redis, setup.env, tenant, "n-perm", "sms")
        return s is not None and s["status"] == "failed"

    await eventually(failed, timeout_s=10)
    status = await channel_status(setup.redis, setup.env, tenant, "n-perm", "sms")
    assert status is not None
    assert status["reason"] == "'To' number is not a valid mobile number"
    assert status["attempts"] == 1 and status["provider"] == "twilio"
    # an address that can never work is suppressed for the tenant
    assert await setup.redis.sismember(Keys(setup.env.prefix).suppressions(tenant), NOT_MOBILE)


async def test_exhausted_delivery_is_dead_lettered_and_replayed_once(setup: Setup) -> None:
    setup.peers.twilio.faults = FaultPlan()
    tenant = unique("t")
    d = delivery(tenant, "n-dlq", "sms", OVERFLOW, {"text": "eventually"})
    await produce(setup.env, [d])
    seen: list[dict] = []

    async def retrying() -> bool:
        s = await channel_status(setup.redis, setup.env, tenant, "n-dlq", "sms")
        seen.append(s or {})
        return s is not None and s["status"] == "retrying"

    await eventually(retrying, timeout_s=10, interval_s=0.01)
    assert seen[-1]["next_attempt_at"] > seen[-1]["updated_at"] and seen[-1]["reason"] == "Queue overflow"

    async def failed() -> bool:
        s = await channel_status(setup.redis, setup.env, tenant, "n-dlq", "sms")
        return s is not None and s["status"] == "failed"

    await eventually(failed, timeout_s=15)
    status = await channel_status(setup.redis, setup.env, tenant, "n-dlq", "sms")
    assert status is not None and status["attempts"] == MAX_ATTEMPTS
    assert status["reason"] == f"gave up after {MAX_ATTEMPTS} attempts: Queue overflow"

    letters = DeadLetterQueue(load(CommonSettings, **setup.env.settings()), setup.redis)
    [listed] = [line for line in await letters.describe() if line.get("delivery_id") == d.delivery_id]
    assert listed["reason"] == status["reason"]
    assert listed["source_topic"] == f"{setup.env.prefix}.deliveries.sms.transactional"
    assert listed["attempts"] == MAX_ATTEMPTS and listed["replayed"] is False
    assert OVERFLOW not in str(listed)  # addresses are masked

    del setup.peers.twilio.error_codes[OVERFLOW]
    assert [dl.offset for dl in await letters.replay(d.delivery_id)] == [listed["offset"]]
    assert await letters.replay(d.delivery_id) == []  # never the same dead letter twice
    assert await letters.replay() == []

    async def sent() -> bool:
        s = await channel_status(setup.redis, setup.env, tenant, "n-dlq", "sms")
        return s is not None and s["status"] == "sent"

    await eventually(sent, timeout_s=10)
    assert [m["to"] for m in setup.peers.twilio.messages].count(OVERFLOW) == 1
    [after] = [line for line in await letters.describe() if line.get("delivery_id") == d.delivery_id]
    assert after["replayed"] is True
