"""The consumer runner on the real broker: a slow record holds back only its own key, per-key order is
kept, and nothing past an unfinished record is committed."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from herald_common.kafka import (
    ConsumerRunner,
    ErrorPolicy,
    Handler,
    PoisonRecord,
    create_topics,
    make_producer,
)
from herald_common.lifecycle import Lifecycle
from herald_common.settings import ConsumerSettings, load
from tests.conftest import Infra, unique
from tests.harness import eventually, read_topic

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


async def _running(
    topic: str,
    group: str,
    settings: ConsumerSettings,
    handler: Handler,
    producer: AIOKafkaProducer,
    lifecycle: Lifecycle,
    error_policy: ErrorPolicy | None = None,
) -> asyncio.Task[None]:
    """A started runner of ``handler`` on ``topic``, consuming in a task (stop it with ``lifecycle``)."""
    runner = ConsumerRunner(
        service="test",
        topics=[topic],
        group_id=group,
        settings=settings,
        handler=handler,
        producer=producer,
        lifecycle=lifecycle,
        error_policy=error_policy,
    )
    await runner.start()
    return asyncio.create_task(runner.run())


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
    task = await _running(topic, group, settings, handler, producer, lifecycle)
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


class _Folding:
    """A batch-mode handler (``many``) that fails its first batch and cannot read one record."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self.single: list[bytes] = []
        self.failed_once = False

    async def __call__(self, rec: ConsumerRecord) -> None:
        self.single.append(rec.value)
        if rec.value == b"bad":
            raise PoisonRecord("unreadable")

    async def many(self, recs: list[ConsumerRecord]) -> list[ConsumerRecord]:
        if not self.failed_once:
            self.failed_once = True
            raise RuntimeError("first batch fails")
        self.batches.append([r.value for r in recs])
        return [r for r in recs if r.value == b"bad"]


async def test_a_batch_handler_takes_fetched_batches_whole_and_its_unreadable_records_are_dead_lettered(
    infra: Infra,
) -> None:
    topic, group, dlq = unique("batch"), unique("g"), unique("dlq")
    await create_topics(infra.bootstrap, [topic, dlq], 1)
    settings = runner_settings(infra)
    producer = make_producer(settings)
    await producer.start()
    values = [f"v{i}".encode() for i in range(30)]
    values.insert(7, b"bad")
    for value in values:
        await producer.send(topic, value, key=value)
    await producer.flush()
    handler = _Folding()
    lifecycle = Lifecycle()
    policy = ErrorPolicy(dead_letter_topic=dlq, base_delay_s=0.01)
    task = await _running(topic, group, settings, handler, producer, lifecycle, policy)
    try:
        await eventually(lambda: sum(len(b) for b in handler.batches) >= len(values), timeout_s=30)
        assert sorted(v for b in handler.batches for v in b) == sorted(values)  # retried whole, once
        assert len(handler.batches) < len(values)  # batches, not one call per record
        assert handler.single == [b"bad"]  # only the unreadable record went through the single path

        async def dead_lettered() -> bool:
            return [r.value for r in await read_topic(infra.bootstrap, dlq, timeout_s=2)] == [b"bad"]

        await eventually(dead_lettered, timeout_s=15, interval_s=0.3)

        async def all_committed() -> bool:
            return await _committed(infra.bootstrap, group, TopicPartition(topic, 0)) == len(values)

        await eventually(all_committed, timeout_s=10, interval_s=0.2)
    finally:
        lifecycle.request_stop("test")
        await asyncio.wait_for(task, timeout=20)
        await producer.stop()


async def test_batches_sharing_a_key_run_in_order_and_others_do_not_wait(infra: Infra) -> None:
    topic, group = unique("batch-order"), unique("g")
    await create_topics(infra.bootstrap, [topic], 1)
    settings = runner_settings(infra).model_copy(update={"consumer_max_batch": 5})
    producer = make_producer(settings)
    await producer.start()
    # fetched five at a time: [A1 k0..k3] [k4..k8] [A2 k9..k12]; the first holds until released
    values = [b"A1", *(f"k{i}".encode() for i in range(9)), b"A2", *(f"k{i}".encode() for i in range(9, 13))]
    for value in values:
        await producer.send(topic, value, key=value[:1] if value.startswith(b"A") else value)
    await producer.flush()
    release = asyncio.Event()
    handled: list[bytes] = []

    class Blocking:
        async def __call__(self, rec: ConsumerRecord) -> None:
            handled.append(rec.value)

        async def many(self, recs: list[ConsumerRecord]) -> list[ConsumerRecord]:
            if any(r.value == b"A1" for r in recs):
                await release.wait()
            handled.extend(r.value for r in recs)
            return []

    lifecycle = Lifecycle()
    task = await _running(topic, group, settings, Blocking(), producer, lifecycle)
    try:
        await eventually(lambda: b"k8" in handled, timeout_s=30)  # a batch of other keys went ahead
        await asyncio.sleep(0.5)
        assert b"A2" not in handled and b"A1" not in handled  # A2's batch waits for A1's
        release.set()
        await eventually(lambda: len(handled) == len(values), timeout_s=10)
        assert handled.index(b"A1") < handled.index(b"A2")
        assert sorted(handled) == sorted(values)
    finally:
        lifecycle.request_stop("test")
        await asyncio.wait_for(task, timeout=20)
        await producer.stop()
