"""Kafka plumbing: the producer every service shares, topic creation, and the consumer runner.

The runner is at-least-once: it fetches a batch, processes it (records with the same key in order,
different keys concurrently up to a bound), waits until everything the handlers produced downstream
is acknowledged, and only then commits the batch's offsets. A crash at any instant leaves the batch
uncommitted, so it is redelivered; handlers make redelivery harmless (the sender's ledger).
"""

from __future__ import annotations

import asyncio
import random
import time
import zlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError
from aiokafka.structs import ConsumerRecord
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from herald_common import metrics
from herald_common.lifecycle import Lifecycle
from herald_common.settings import CommonSettings, ConsumerSettings

log = structlog.get_logger()

Record = ConsumerRecord


class PoisonRecord(Exception):
    """A handler raises this for a record it can never process (unparseable, say): it goes to the
    dead-letter topic at once instead of being retried."""


Handler = Callable[[ConsumerRecord], Awaitable[None]]


def crc32_partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """Same key, same partition (per-recipient order), at C speed; every Herald producer uses it."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[zlib.crc32(key) % len(all_partitions)]


def make_producer(settings: CommonSettings, **overrides: object) -> AIOKafkaProducer:
    """acks=all: a write is durable before anyone is told it was accepted."""
    options: dict[str, object] = {
        "partitioner": crc32_partitioner,
        "bootstrap_servers": settings.kafka_bootstrap,
        "acks": "all",
        "linger_ms": 2,
        "max_batch_size": 256 * 1024,
        "request_timeout_ms": 15_000,
        "client_id": "herald",
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


async def produce_many(
    producer: AIOKafkaProducer, topic: str, records: Sequence[tuple[bytes, bytes]]
) -> None:
    """Write many keyed records and wait until all are acknowledged.

    Records are grouped per partition (same partitioner as :func:`crc32_partitioner`) into a few
    record batches instead of one future per message: the batch intake path's main saving."""
    partitions = sorted(await producer.partitions_for(topic))
    by_partition: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
    for key, value in records:
        by_partition[crc32_partitioner(key, partitions, partitions)].append((key, value))
    futures = []
    for partition, items in by_partition.items():
        batch = producer.create_batch()
        for key, value in items:
            if batch.append(key=key, value=value, timestamp=None) is None:
                batch.close()
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        batch.close()
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    await asyncio.gather(*futures)


async def create_topics(
    bootstrap: str, names: Sequence[str], partitions: int, replication_factor: int = 1
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [
                        NewTopic(n, num_partitions=partitions, replication_factor=replication_factor)
                        for n in missing
                    ]
                )
            except TopicAlreadyExistsError:
                pass
        return missing
    finally:
        await admin.close()


@dataclass(frozen=True, slots=True)
class CommitPolicy:
    """Commit once per fetched batch, after every record in it was handled and downstream acked."""

    max_batch: int = 500
    poll_timeout_ms: int = 500


@dataclass(frozen=True, slots=True)
class ErrorPolicy:
    """What happens when a handler raises (handlers turn expected business failures into statuses
    themselves; this is for bugs and outages).

    - An outage of what the handler depends on (Redis or Kafka unreachable, timeouts) is retried with
      backoff for as long as it lasts: the partition waits, nothing is dead-lettered, readiness fails.
    - Any other error is retried ``max_attempts`` times, then the record goes to the service's
      dead-letter topic with the error in a header, so one poison record never blocks a partition.
    - :class:`PoisonRecord` (unreadable input) is dead-lettered at once.
    """

    max_attempts: int = 8
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0
    dead_letter_topic: str | None = None
    outages: tuple[type[BaseException], ...] = (
        RedisConnectionError,
        RedisTimeoutError,
        KafkaError,
        OSError,
        TimeoutError,
    )

    def delay(self, attempt: int) -> float:
        return min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)

    def is_outage(self, exc: BaseException) -> bool:
        return isinstance(exc, self.outages)


@dataclass(frozen=True, slots=True)
class Backpressure:
    """At most ``concurrency`` records are processed at once; the next batch is fetched only when the
    current one is finished, so memory stays bounded by ``max_batch``."""

    concurrency: int = 64


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, runner: ConsumerRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Let the batch in flight finish and commit before the partitions move to another member.
        try:
            await asyncio.wait_for(self.runner._idle.wait(), timeout=self.runner.drain_timeout_s)
        except TimeoutError:
            log.warning("rebalance while a batch is still running; it will be redelivered")
        if revoked:
            log.info("partitions revoked", count=len(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("partitions assigned", count=len(assigned))


class ConsumerRunner:
    def __init__(
        self,
        *,
        service: str,
        topics: Sequence[str],
        group_id: str,
        settings: ConsumerSettings,
        handler: Handler,
        producer: AIOKafkaProducer,
        lifecycle: Lifecycle,
        error_policy: ErrorPolicy | None = None,
    ) -> None:
        self.service = service
        self.topics = list(topics)
        self.group_id = group_id
        self.handler = handler
        self.producer = producer
        self.lifecycle = lifecycle
        self.commit_policy = CommitPolicy(max_batch=settings.consumer_max_batch)
        self.backpressure = Backpressure(concurrency=settings.consumer_concurrency)
        self.error_policy = error_policy or ErrorPolicy()
        self.drain_timeout_s = settings.drain_timeout_s
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
            max_poll_records=self.commit_policy.max_batch,
            client_id=f"herald-{service}",
        )
        self._idle = asyncio.Event()
        self._idle.set()
        self._sem = asyncio.Semaphore(self.backpressure.concurrency)
        self._inflight = metrics.INFLIGHT.labels(service)
        self._latency = metrics.MESSAGE_SECONDS.labels(service)
        self._errors = metrics.MESSAGE_ERRORS.labels(service)
        self._polled_ok = False

    async def ready(self) -> bool:
        return self._polled_ok

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.subscribe(self.topics, listener=_Rebalance(self))

    async def run(self) -> None:
        """Consume until the lifecycle asks to stop, then finish the batch in hand, commit and leave."""
        try:
            while not self.lifecycle.stopping.is_set():
                self.lifecycle.beat()
                try:
                    batch = await self.consumer.getmany(
                        timeout_ms=self.commit_policy.poll_timeout_ms,
                        max_records=self.commit_policy.max_batch,
                    )
                    self._polled_ok = True
                except KafkaError as exc:
                    self._polled_ok = False
                    log.warning("fetch failed", error=str(exc))
                    await asyncio.sleep(1.0)
                    continue
                if not batch:
                    continue
                self._idle.clear()
                try:
                    await self._process(batch)
                except Exception:
                    if not self.lifecycle.stopping.is_set():
                        raise
                    log.info("batch abandoned while draining; it will be redelivered uncommitted")
                    break
                finally:
                    self._idle.set()
                self._record_lag(batch)
        finally:
            await self.consumer.stop()

    async def _process(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        by_key: dict[tuple[str, bytes | None], list[ConsumerRecord]] = defaultdict(list)
        for tp, records in batch.items():
            metrics.MESSAGES_CONSUMED.labels(self.service, tp.topic).inc(len(records))
            for rec in records:
                # Records without a key keep partition order among themselves.
                key = rec.key if rec.key is not None else f"p{tp.partition}".encode()
                by_key[(tp.topic, key)].append(rec)
        async with asyncio.TaskGroup() as group:  # one failure (only while draining) cancels the rest
            for records in by_key.values():
                group.create_task(self._run_key(records))
        await self.producer.flush()
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The partitions moved on; the next owner gets the batch again and the ledger dedupes it.
            log.warning("commit failed; batch will be redelivered", error=str(exc))

    async def _run_key(self, records: list[ConsumerRecord]) -> None:
        for rec in records:
            async with self._sem:
                self._inflight.inc()
                started = time.perf_counter()
                try:
                    await self._handle_with_policy(rec)
                finally:
                    self._inflight.dec()
                    self._latency.observe(time.perf_counter() - started)

    async def _handle_with_policy(self, rec: ConsumerRecord) -> None:
        policy = self.error_policy
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.handler(rec)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._errors.inc()
                if self.lifecycle.stopping.is_set():
                    raise  # draining: leave the batch uncommitted rather than wait out a retry
                poison = isinstance(exc, PoisonRecord)
                outage = not poison and policy.is_outage(exc)
                if (poison or (attempt >= policy.max_attempts and not outage)) and policy.dead_letter_topic:
                    log.error(
                        "handler failed; dead-lettering record",
                        topic=rec.topic,
                        offset=rec.offset,
                        error=repr(exc),
                    )
                    headers = [
                        *(rec.headers or ()),
                        ("x-herald-error", repr(exc)[:500].encode()),
                        ("x-herald-source-topic", rec.topic.encode()),
                    ]
                    await self.producer.send_and_wait(
                        policy.dead_letter_topic, rec.value, key=rec.key, headers=headers
                    )
                    metrics.DEAD_LETTERS.labels(self.service).inc()
                    return
                log.warning(
                    "handler failed; retrying",
                    topic=rec.topic,
                    offset=rec.offset,
                    attempt=attempt,
                    error=repr(exc),
                )
                self.lifecycle.beat()  # waiting out an outage is not a hung process: stay live
                await asyncio.sleep(policy.delay(attempt))

    def _record_lag(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        for tp, records in batch.items():
            high = self.consumer.highwater(tp)
            if high is not None:
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition), self.group_id).set(
                    max(0, high - records[-1].offset - 1)
                )
