"""The consumer runner on the real broker: a slow record holds back only its own key, per-key order is
kept, and nothing past an unfinished record is committed."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from herald_common.kafka import ConsumerRunner, create_topics, make_producer
from herald_common.lifecycle import Lifecycle
from herald_common.settings import ConsumerSettings, load
from tests.conftest import Infra, unique
from tests.harness import eventually

pytestmark = [pytest.mark.integration]


async def _committed(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        return await probe.committed(tp)
    finally:
        await probe.stop()


def runner_settings(infra: Infra) -> ConsumerSettings:
    """A runner that commits often and notices a lost member quickly."""
    return load(
        ConsumerSettings,
        kafka_bootstrap=infra.bootstrap,
        redis_url=infra.redis_url,
        kafka_session_timeout_ms=6000,
        kafka_heartbeat_interval_ms=500,
        consumer_commit_interval_s=0.1,
    )


async def test_slow_record_blocks_only_its_key_and_holds_back_commits(infra: Infra) -> None:
    topic, group = unique("runner"), unique("g")
    await create_topics(infra.bootstrap, [topic], 1)
    settings = runner_settings(infra)
    producer = make_producer(settings)
    await producer.start()
    # offset 0: slow "A"; then 20 fast records of other keys; then "A" again (must wait for the first)
    await producer.send_and_wait(topic, b"A1", key=b"A")
    for i in range(20):
        await producer.send_and_wait(topic, f"B{i}".encode(), key=f"k{i}".encode())
    await producer.send_and_wait(topic, b"A2", key=b"A")
    release = asyncio.Event()
    done: list[bytes] = []

    async def handler(rec: ConsumerRecord) -> None:
        if rec.value == b"A1":
            await release.wait()
        done.append(rec.value)

    lifecycle = Lifecycle()
    runner = ConsumerRunner(
        service="test",
        topics=[topic],
        group_id=group,
        settings=settings,
        handler=handler,
        producer=producer,
        lifecycle=lifecycle,
    )
    await runner.start()
    task = asyncio.create_task(runner.run())
    try:
        await eventually(lambda: len(done) == 20, timeout_s=30)
        assert all(v.startswith(b"B") for v in done)  # the other keys did not wait for A1
        await asyncio.sleep(0.5)  # several commit intervals
        tp = TopicPartition(topic, 0)
        assert (await _committed(infra.bootstrap, group, tp) or 0) == 0  # nothing past unfinished A1
        release.set()
        await eventually(lambda: len(done) == 22, timeout_s=10)
        assert done[-2:] == [b"A1", b"A2"]  # per-key order kept

        async def all_committed() -> bool:
            return await _committed(infra.bootstrap, group, tp) == 22

        await eventually(all_committed, timeout_s=10, interval_s=0.2)
    finally:
        lifecycle.request_stop("test")
        await asyncio.wait_for(task, timeout=20)
        await producer.stop()
