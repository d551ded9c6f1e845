"""Every service's dead letters: list them, replay them (``herald dlq list|replay [--service S]``).

A dead letter is a record on ``<prefix>.deadletter.<service>`` (router, sender, tracker, …) written by
herald_common.kafka's ``DeadLetters``, with headers naming its source topic and the reason
(``x-herald-source-topic``, ``x-herald-reason``). Replaying one:

1. claims it with ``SET NX`` on ``{prefix}:dlq:replayed:<topic>:<partition>:<offset>``, so the same
   dead letter is never replayed twice (by two operators at once either);
2. if it is a delivery (the sender's): forgets the delivery's ledger entry and starts its channel
   status over at ``queued``, so the sender tries again (attempt 1) and the result shows;
3. produces the value to its source topic, with its original headers (minus the dead-letter ones),
   and waits for the acknowledgement; if that fails the claim is released so the replay can be run
   again.

When one delivery was dead-lettered more than once (a redelivered record, say) only its newest dead
letter is replayed; the older ones are marked replayed with it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pydantic
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from herald_common.kafka import DLQ_ATTEMPTS, DLQ_DELIVERY_ID, DLQ_REASON, DLQ_SOURCE_TOPIC, make_producer
from herald_common.kafka.security import client_options
from herald_common.logging import mask
from herald_common.redisio import Keys, make_redis
from herald_common.settings import CommonSettings
from herald_common.status import RANK
from herald_common.topics import DEAD_LETTER_SERVICES, Topics
from herald_common.wire import Delivery

REPLAY_MARK_TTL_S = 90 * 24 * 3600
STATUS_TTL_S = 30 * 24 * 3600
REPLAYED_FROM = "x-herald-replayed-from"
# Headers a replay does not carry back to the source topic: they describe the dead letter.
_DEAD_LETTER_HEADERS = {DLQ_SOURCE_TOPIC, DLQ_REASON, DLQ_ATTEMPTS, REPLAYED_FROM, DLQ_DELIVERY_ID}


@dataclass(slots=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    raw_headers: list[tuple[str, bytes]] = field(default_factory=list)
    service: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {k: v.decode(errors="replace") for k, v in self.raw_headers}

    @property
    def source_topic(self) -> str | None:
        return self.headers.get(DLQ_SOURCE_TOPIC)

    @property
    def reason(self) -> str | None:
        return self.headers.get(DLQ_REASON)

    def delivery(self) -> Delivery | None:
        try:
            return Delivery.model_validate_json(self.value)
        except (pydantic.ValidationError, ValueError):
            return None

    def describe(self, replayed: bool) -> dict[str, Any]:
        """One JSON line for ``herald dlq list`` (addresses masked; other values are not printed)."""
        out: dict[str, Any] = {
            "service": self.service,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "dead_lettered_at": self.timestamp_ms / 1000,
            "source_topic": self.source_topic,
            "reason": self.reason,
            "replayed": replayed,
        }
        if DLQ_DELIVERY_ID in self.headers:
            out["delivery_id"] = self.headers[DLQ_DELIVERY_ID]
        d = self.delivery()
        if d is not None:
            attempts = self.headers.get(DLQ_ATTEMPTS)
            out |= {
                "delivery_id": d.delivery_id,
                "tenant_id": d.tenant_id,
                "notification_id": d.notification_id,
                "channel": d.channel,
                "lane": d.lane,
                "to": mask(d.to),
                "attempts": int(attempts) if attempts and attempts.isdigit() else d.attempt,
            }
        return out

    def ident(self) -> str:
        """What a replay is unique by: the delivery, else the dead letter itself."""
        d = self.delivery()
        if d is not None:
            return d.delivery_id
        # a writer's own delivery id (a webhook's webhook-id), else the dead letter itself
        return self.headers.get(DLQ_DELIVERY_ID) or f"{self.topic}:{self.partition}:{self.offset}"


async def read_dead_letters(
    client: str | Mapping[str, Any], topic: str, *, service: str = "", timeout_s: float = 30.0
) -> list[DeadLetter]:
    """Every record on ``topic`` now, oldest first per partition, read without a consumer group.

    Reads until every partition's position reached the high watermark its fetch responses report
    (ListOffsets is not used: brokers such as Tansu answer it with the last batch's base offset)."""
    options = {"bootstrap_servers": client} if isinstance(client, str) else dict(client)
    consumer = AIOKafkaConsumer(**options, group_id=None, enable_auto_commit=False)
    await consumer.start()
    out: list[DeadLetter] = []
    try:
        if topic not in await consumer.topics():
            return out
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return out
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(*tps, timeout_ms=200)
            for records in batch.values():
                out.extend(
                    DeadLetter(
                        r.topic,
                        r.partition,
                        r.offset,
                        r.timestamp,
                        r.key,
                        r.value or b"",
                        list(r.headers or ()),
                        service,
                    )
                    for r in records
                )
            if await _at_end(consumer, tps):
                break
    finally:
        await consumer.stop()
    out.sort(key=lambda dl: (dl.partition, dl.offset))
    return out


async def _at_end(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> bool:
    for tp in tps:
        high = consumer.highwater(tp)
        if high is None or await consumer.position(tp) < high:
            return False
    return True


class DeadLetterQueue:
    """The dead letters of ``services`` (every service with a dead-letter topic by default)."""

    def __init__(
        self,
        settings: CommonSettings,
        redis: aioredis.Redis,
        services: Sequence[str] = DEAD_LETTER_SERVICES,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = Keys(settings.redis_prefix)
        topics = Topics(settings.kafka_topic_prefix)
        self.topics = {service: topics.dead_letters(service) for service in services}

    async def letters(self) -> list[DeadLetter]:
        out: list[DeadLetter] = []
        for service, topic in self.topics.items():
            out += await read_dead_letters(client_options(self.settings), topic, service=service)
        return out

    async def describe(self) -> list[dict[str, Any]]:
        letters = await self.letters()
        marks = await self._replayed(letters)
        return [dl.describe(mark) for dl, mark in zip(letters, marks, strict=True)]

    async def replay(self, delivery_id: str | None = None) -> list[DeadLetter]:
        """Replay the dead letters not replayed yet (all, or one delivery's); returns those replayed."""
        letters = await self.letters()
        marks = await self._replayed(letters)
        newest: dict[str, DeadLetter] = {}
        superseded: list[DeadLetter] = []
        for dl, replayed in zip(letters, marks, strict=True):
            if replayed or dl.source_topic is None:
                continue
            ident = dl.ident()
            if delivery_id is not None and ident != delivery_id:
                continue
            previous = newest.get(ident)
            if previous is not None:
                superseded.append(previous if previous.timestamp_ms <= dl.timestamp_ms else dl)
                if previous.timestamp_ms > dl.timestamp_ms:
                    continue
            newest[ident] = dl
        producer = make_producer(self.settings, client_id="herald-dlq")
        await producer.start()
        replayed_now: list[DeadLetter] = []
        try:
            for dl in newest.values():
                if await self._replay_one(producer, dl):
                    replayed_now.append(dl)
            for dl in superseded:
                await self.redis.set(self._mark(dl), b"superseded", nx=True, ex=REPLAY_MARK_TTL_S)
        finally:
            await producer.stop()
        return replayed_now

    async def _replay_one(self, producer: AIOKafkaProducer, dl: DeadLetter) -> bool:
        mark = self._mark(dl)
        if not await self.redis.set(mark, str(time.time()).encode(), nx=True, ex=REPLAY_MARK_TTL_S):
            return False  # someone else replayed it meanwhile
        assert dl.source_topic is not None
        value = dl.value
        try:
            d = dl.delivery()
            if d is not None:
                await self.redis.delete(
                    self.keys.ledger(d.tenant_id, d.delivery_id)
                )  # the sender tries afresh
                await self._restart_status(d)
                value = orjson.dumps(d.model_copy(update={"attempt": 1}).model_dump(exclude_none=True))
            headers = [(k, v) for k, v in dl.raw_headers if k not in _DEAD_LETTER_HEADERS]
            headers.append((REPLAYED_FROM, f"{dl.topic}:{dl.partition}:{dl.offset}".encode()))
            await producer.send_and_wait(dl.source_topic, value, key=dl.key, headers=headers)
        except BaseException:
            await self.redis.delete(mark)
            raise
        return True

    async def _restart_status(self, d: Delivery) -> None:
        """Start the channel's status record over at ``queued`` (rank included, see
        herald_common.status), so the replayed attempt's outcome replaces the old "failed"."""
        key = self.keys.notification(d.tenant_id, d.notification_id)
        record = {
            "status": "queued",
            "updated_at": time.time(),
            "reason": "replayed from the dead-letter queue",
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key, mapping={f"c:{d.channel}": orjson.dumps(record), f"r:c:{d.channel}": RANK["queued"]}
            )
            pipe.expire(key, STATUS_TTL_S)
            await pipe.execute()

    async def _replayed(self, letters: list[DeadLetter]) -> list[bool]:
        if not letters:
            return []
        # EXISTS per mark in one pipeline: the marks are global keys in different cluster slots.
        async with self.redis.pipeline(transaction=False) as pipe:
            for dl in letters:
                pipe.exists(self._mark(dl))
            values = await pipe.execute()
        return [bool(v) for v in values]

    def _mark(self, dl: DeadLetter) -> str:
        return self.keys.dead_letter_replayed(dl.topic, dl.partition, dl.offset)


async def run_cli(
    settings: CommonSettings,
    action: str,
    delivery_id: str | None,
    services: Sequence[str] = DEAD_LETTER_SERVICES,
) -> int:
    """``herald dlq list`` prints one JSON line per dead letter; ``herald dlq replay`` one per replay."""
    redis = make_redis(settings)
    try:
        queue = DeadLetterQueue(settings, redis, services)
        if action == "list":
            for line in await queue.describe():
                sys.stdout.write(orjson.dumps(line).decode() + "\n")
            return 0
        replayed = await queue.replay(delivery_id)
        for dl in replayed:
            sys.stdout.write(orjson.dumps(dl.describe(True)).decode() + "\n")
        sys.stderr.write(f"replayed {len(replayed)} dead letter(s)\n")
        return 0 if replayed or delivery_id is None else 1
    finally:
        await redis.aclose()
