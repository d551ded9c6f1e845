"""The scheduler's delayed-work protocol against the real Valkey, and the service on the real broker."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from herald_common.delayed import DelayedRecord, DelayQueue
from herald_common.dlq import read_dead_letters
from herald_common.kafka import create_topics
from herald_common.redisio import Keys, redis_from_url
from herald_scheduler.main import serve as serve_scheduler
from tests.conftest import Infra, unique
from tests.harness import Env, eventually, running
from tests.integration.channel_support import scheduler_settings

pytestmark = [pytest.mark.integration]


def _record(i: int, topic: str = "t") -> DelayedRecord:
    return DelayedRecord(topic=topic, value=f"v{i}".encode(), key=f"k{i}".encode(), headers=(("h", b"1"),))


async def test_two_schedulers_never_claim_the_same_item(infra: Infra) -> None:
    keys = Keys(unique("sched"))
    clients = [redis_from_url(infra.redis_url) for _ in range(2)]
    try:
        a, b = (DelayQueue(c, keys) for c in clients)
        now = time.time()
        for i in range(300):
            await a.put(f"item-{i}", _record(i), now - 1)
        claimed: list[str] = []

        async def drain(queue: DelayQueue) -> None:
            while True:
                claim = await queue.claim(limit=7, lease_s=30)
                if not claim.items:
                    return
                claimed.extend(item_id for item_id, _ in claim.items)
                await asyncio.sleep(0)
                assert await queue.ack(claim.token, [item_id for item_id, _ in claim.items]) == len(
                    claim.items
                )

        await asyncio.gather(*(drain(q) for q in (a, b, a, b)))

        assert [k for k, n in Counter(claimed).items() if n > 1] == []
        assert sorted(claimed) == sorted(f"item-{i}" for i in range(300))
        assert await a.pending() == (0, 0)
    finally:
        for c in clients:
            await c.aclose()


async def test_an_unacked_claim_is_released_again_after_its_lease(infra: Infra) -> None:
    keys = Keys(unique("sched"))
    redis = redis_from_url(infra.redis_url)
    try:
        queue = DelayQueue(redis, keys)
        now = time.time()
        for i in range(3):
            await queue.put(f"item-{i}", _record(i), now - 1)
        await queue.put("later", _record(9), now + 60)

        first = await queue.claim(limit=10, lease_s=0.3)
        assert sorted(i for i, _ in first.items) == ["item-0", "item-1", "item-2"]
        assert DelayedRecord.decode(first.items[0][1]) == _record(int(first.items[0][0][-1]))
        assert await queue.ack(first.token, ["item-0"]) == 1
        assert (await queue.claim(limit=10, lease_s=0.3)).items == []  # leased, and "later" is not due

        await asyncio.sleep(0.35)  # the claimer "crashed": its lease runs out
        second = await queue.claim(limit=10, lease_s=30)
        assert sorted(i for i, _ in second.items) == ["item-1", "item-2"]
        assert await queue.ack(first.token, ["item-1", "item-2"]) == 0  # the dead claimer lost them
        assert await queue.ack(second.token, ["item-1", "item-2"]) == 2
        assert await queue.pending() == (1, 0)
        assert (await queue.next_due() or 0) > now + 59
    finally:
        await redis.aclose()


async def test_scheduler_service_produces_items_when_due_and_not_before(infra: Infra) -> None:
    env = Env(infra.bootstrap, infra.redis_url, unique("sched"))
    topic = f"{env.prefix}.released"
    await create_topics(infra.bootstrap, [topic], 2)
    redis = redis_from_url(infra.redis_url)
    try:
        queue = DelayQueue(redis, Keys(env.prefix))
        settings = [scheduler_settings(env), scheduler_settings(env)]  # two replicas
        async with running(*((serve_scheduler, s) for s in settings)):
            due = time.time() + 0.5
            for i in range(20):
                await queue.put(f"r-{i}", _record(i, topic), due)
            await asyncio.sleep(0.3)
            assert await queue.pending() == (20, 0)  # nothing released before it is due

            async def all_released() -> bool:
                return await queue.pending() == (0, 0)

            await eventually(all_released, timeout_s=10, interval_s=0.02)
            released_at = time.time()
        assert released_at >= due
        records = await read_dead_letters(infra.bootstrap, topic)
        assert sorted(r.value for r in records) == sorted(f"v{i}".encode() for i in range(20))
        assert all(r.headers == {"h": "1"} for r in records)
    finally:
        await redis.aclose()
