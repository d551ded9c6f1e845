"""The producer every service shares: acks=all, and the same key always lands on the same partition."""

from __future__ import annotations

import asyncio
import random
import zlib
from collections import defaultdict
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnsupportedForMessageFormatError,
    UnsupportedVersionError,
)
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from herald_common.kafka.security import client_options
from herald_common.settings import CommonSettings

# The largest record (key, value and headers as the producer sizes them) any Herald producer writes: the
# producer's ``max_request_size``, and at most what the broker accepts (Kafka's ``message.max.bytes``
# defaults to 1 MiB plus a batch header). Every limit upstream is derived from it: the gateway refuses a
# notification whose request record would be larger (413), the content models' longest fields fit in it
# (an all-ASCII email at its maximum html + text + subject is ~1,000 KB), and the router fails a channel
# whose rendered delivery would be larger (reason ``too_large``) instead of producing it.
MAX_RECORD_BYTES = 1024 * 1024

# Produce errors that no retry can cure: the record (or the request) is refused as it is. They are not
# outages; a consumer dead-letters the record that caused them instead of waiting forever.
SIZE_ERRORS: tuple[type[Exception], ...] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
PERMANENT_PRODUCE_ERRORS: tuple[type[Exception], ...] = (
    *SIZE_ERRORS,
    InvalidTopicError,
    TopicAuthorizationFailedError,
    UnsupportedForMessageFormatError,
    UnsupportedVersionError,
)


def record_size(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]] = ()) -> int:
    """The size the producer gives a record when it checks it against ``max_request_size``."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers)))


def fits(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]] = ()) -> bool:
    return record_size(key, value, headers) <= MAX_RECORD_BYTES


def crc32_partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """Same key, same partition (per-recipient order), at C speed; every Herald producer uses it."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[zlib.crc32(key) % len(all_partitions)]


def make_producer(settings: CommonSettings, **overrides: object) -> AIOKafkaProducer:
    """acks=all: a write is durable before anyone is told it was accepted."""
    options: dict[str, object] = {
        **client_options(settings),
        "partitioner": crc32_partitioner,
        "acks": "all",
        "linger_ms": 2,
        "max_batch_size": 256 * 1024,
        "max_request_size": MAX_RECORD_BYTES,
        "request_timeout_ms": 15_000,
        "client_id": "herald",
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


async def produce_many(
    producer: AIOKafkaProducer,
    topic: str,
    records: Sequence[tuple[bytes | None, bytes]],
    headers: Sequence[Sequence[tuple[str, bytes]]] | None = None,
) -> None:
    """Write many keyed records (with ``headers[i]`` for record i when given) and wait until all are
    acknowledged.

    Records are grouped per partition (same partitioner as :func:`crc32_partitioner`) into a few
    record batches instead of one future per message: the batch intake path's main saving."""
    partitions = sorted(await producer.partitions_for(topic))
    by_partition: dict[int, list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]] = defaultdict(list)
    for i, (key, value) in enumerate(records):
        extra = list(headers[i]) if headers is not None else []
        by_partition[crc32_partitioner(key, partitions, partitions)].append((key, value, extra))
    futures = []
    for partition, items in by_partition.items():
        batch = producer.create_batch()
        for key, value, extra in items:
            if batch.append(key=key, value=value, timestamp=None, headers=extra) is None:
                batch.close()
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None, headers=extra)
        batch.close()
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    await asyncio.gather(*futures)
