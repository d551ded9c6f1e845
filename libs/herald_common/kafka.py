"""Kafka plumbing: the producer every service shares, topic creation, and the consumer runner.

The runner is at-least-once: records with the same key are handled one after another in offset order,
other keys concurrently up to a bound; it keeps fetching while older records are in flight (bounded),
and periodically commits, per partition, only the offsets before the first unfinished record, after
flushing the producer. A crash at any instant leaves unfinished records uncommitted, so they are
redelivered; handlers make redelivery harmless (the sender's ledger).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import zlib
from collections import defaultdict, deque
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

# Headers every dead letter carries, whoever wrote it (this runner, or a sender giving up on a delivery).
DLQ_SOURCE_TOPIC = "x-herald-source-topic"  # where the record came from: where a replay sends it back
DLQ_REASON = "x-herald-reason"  # why it was given up on


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
    """Commit, per partition, the offset after the longest run of handled records from the last
    commit on (a record still in flight holds back every later offset of its partition), every
    ``interval_s``, after flushing the producer: what is committed was handled and its downstream
    writes acknowledged."""

    max_batch: int = 500
    poll_timeout_ms: int = 500
    interval_s: float = 0.5


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
    """At most ``concurrency`` records are handled at once and at most ``max_in_flight`` fetched but
    unfinished (the larger of the batch size and the concurrency): the next fetch waits until half of
    that window is free, so memory stays bounded however slow a handler is. A slow record delays only
    the records with its key, not the next fetch."""

    concurrency: int = 64
    max_in_flight: int = 1000


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, runner: ConsumerRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Finish and commit what is in flight before the partitions move to another member.
        self.runner._paused = True
        if not await self.runner._settle(self.runner.drain_timeout_s):
            log.warning("rebalance while records are still in flight; they will be redelivered")
        await self.runner._commit()
        self.runner._offsets.forget(revoked)
        if revoked:
            log.info("partitions revoked", count=len(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.runner._paused = False
        log.info("partitions assigned", count=len(assigned))


class _Offsets:
    """Per partition, the offsets fetched and not yet handled, and the next offset safe to commit."""

    def __init__(self) -> None:
        self._pending: dict[TopicPartition, deque[int]] = defaultdict(deque)
        self._done: dict[TopicPartition, set[int]] = defaultdict(set)
        self._committable: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self.in_flight = 0

    def fetched(self, tp: TopicPartition, offset: int) -> None:
        self._pending[tp].append(offset)
        self.in_flight += 1

    def handled(self, tp: TopicPartition, offset: int) -> None:
        pending, done = self._pending[tp], self._done[tp]
        done.add(offset)
        self.in_flight = max(0, self.in_flight - 1)
        while pending and pending[0] in done:
            first = pending.popleft()
            done.discard(first)
            self._committable[tp] = first + 1

    def abandoned(self, count: int) -> None:
        """Records that will not be handled here (the process is draining): no longer in flight, and
        their offsets stay uncommitted so the next owner gets them."""
        self.in_flight = max(0, self.in_flight - count)

    def to_commit(self) -> dict[TopicPartition, int]:
        return {tp: o for tp, o in self._committable.items() if self._committed.get(tp) != o}

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        self._committed.update(offsets)

    def forget(self, tps: list[TopicPartition]) -> None:
        for tp in tps:
            self.in_flight = max(0, self.in_flight - len(self._pending.pop(tp, ())))
            self._done.pop(tp, None)
            self._committable.pop(tp, None)
            self._committed.pop(tp, None)


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
        self.commit_policy = CommitPolicy(
            max_batch=settings.consumer_max_batch, interval_s=settings.consumer_commit_interval_s
        )
        self.backpressure = Backpressure(
            concurrency=settings.consumer_concurrency,
            max_in_flight=max(settings.consumer_max_batch, settings.consumer_concurrency),
        )
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
        self._sem = asyncio.Semaphore(self.backpressure.concurrency)
        self._offsets = _Offsets()
        self._queues: dict[tuple[str, bytes], deque[ConsumerRecord]] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._progress = asyncio.Event()  # set whenever a record finishes
        self._paused = False  # while partitions are being revoked
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
        """Consume until the lifecycle asks to stop; then finish what is in flight, commit and leave."""
        last_commit = time.monotonic()
        try:
            while not self.lifecycle.stopping.is_set():
                self.lifecycle.beat()
                room = self.backpressure.max_in_flight - self._offsets.in_flight
                # Fetch again once half the window is free: full-size fetches, not one per finished record.
                if self._paused or room < max(1, self.backpressure.max_in_flight // 2):
                    await self._wait_progress(self.commit_policy.poll_timeout_ms / 1000)
                else:
                    try:
                        batch = await self.consumer.getmany(
                            timeout_ms=self.commit_policy.poll_timeout_ms,
                            max_records=min(room, self.commit_policy.max_batch),
                        )
                        self._polled_ok = True
                    except KafkaError as exc:
                        self._polled_ok = False
                        log.warning("fetch failed", error=str(exc))
                        await asyncio.sleep(1.0)
                        continue
                    for tp, records in batch.items():
                        metrics.MESSAGES_CONSUMED.labels(self.service, tp.topic).inc(len(records))
                        for rec in records:
                            self._offsets.fetched(tp, rec.offset)
                            self._enqueue(rec)
                    self._record_lag(batch)
                if time.monotonic() - last_commit >= self.commit_policy.interval_s:
                    await self._commit()
                    last_commit = time.monotonic()
            await self._settle(None)  # the drain: wait_drained cancels this past the drain timeout
            await self._commit()
        finally:
            for task in self._workers:
                task.cancel()
            await self.consumer.stop()

    def _enqueue(self, rec: ConsumerRecord) -> None:
        """Records with the same key run one after another, in offset order; other keys concurrently."""
        key = (rec.topic, rec.key if rec.key is not None else f"p{rec.partition}".encode())
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
            task = asyncio.create_task(self._drain_key(key, queue))
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)
        queue.append(rec)

    async def _drain_key(self, key: tuple[str, bytes], queue: deque[ConsumerRecord]) -> None:
        try:
            while queue:
                rec = queue[0]
                async with self._sem:
                    self._inflight.inc()
                    started = time.perf_counter()
                    try:
                        await self._handle_with_policy(rec)
                    finally:
                        self._inflight.dec()
                        self._latency.observe(time.perf_counter() - started)
                queue.popleft()
                self._offsets.handled(TopicPartition(rec.topic, rec.partition), rec.offset)
                self._progress.set()
        except Exception as exc:  # only while draining: leave the rest uncommitted for the next owner
            log.info("record abandoned while draining; it will be redelivered", error=repr(exc))
            self._offsets.abandoned(len(queue))
            self._progress.set()
        finally:
            del self._queues[key]

    async def _wait_progress(self, timeout_s: float) -> None:
        self._progress.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._progress.wait(), timeout=timeout_s)

    async def _settle(self, timeout_s: float | None) -> bool:
        """Wait until no record is in flight; False if ``timeout_s`` passed first."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self._workers:
            self.lifecycle.beat()
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.wait(set(self._workers), timeout=0.5)
        return True

    async def _commit(self) -> None:
        offsets = self._offsets.to_commit()
        assigned = self.consumer.assignment()
        stale = [tp for tp in offsets if tp not in assigned]
        if stale:  # records of partitions that moved away while they were handled: not ours to commit
            self._offsets.forget(stale)
            offsets = {tp: o for tp, o in offsets.items() if tp in assigned}
        if not offsets:
            return
        try:
            await self.producer.flush()  # what the handled records produced is acknowledged first
            await self.consumer.commit(offsets)
            self._offsets.committed(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The partitions moved on; the next owner gets those records again and the ledger dedupes.
            log.warning("commit failed; records will be redelivered", error=str(exc))

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
                        (DLQ_REASON, repr(exc)[:500].encode()),
                        (DLQ_SOURCE_TOPIC, rec.topic.encode()),
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
