"""Kafka plumbing, one concept per module:

- ``producer`` — the shared producer (acks=all, crc32 partitioner) and ``produce_many``;
- ``admin`` — topic creation;
- ``policies`` — ``CommitPolicy``, ``Backpressure``, ``ErrorPolicy`` → ``Decision`` (pure);
- ``offsets`` — what is safe to commit per partition;
- ``deadletter`` — the one dead-letter writer and its headers;
- ``runner`` — the consumer runner that acts on the policies.

Import from ``herald_common.kafka``; the module layout behind it is not part of the interface.
"""

from herald_common.kafka.admin import create_topics
from herald_common.kafka.deadletter import (
    DLQ_ATTEMPTS,
    DLQ_DELIVERY_ID,
    DLQ_REASON,
    DLQ_SOURCE_TOPIC,
    DLQ_VALUE_DROPPED,
    Cause,
    DeadLetters,
)
from herald_common.kafka.offsets import Offsets
from herald_common.kafka.policies import (
    Backpressure,
    CommitPolicy,
    Decision,
    ErrorPolicy,
    PoisonRecord,
)
from herald_common.kafka.producer import (
    MAX_RECORD_BYTES,
    PERMANENT_PRODUCE_ERRORS,
    SIZE_ERRORS,
    crc32_partitioner,
    fits,
    make_producer,
    produce_many,
    record_size,
)
from herald_common.kafka.runner import ConsumerRunner, Handler, Record

__all__ = [
    "DLQ_ATTEMPTS",
    "DLQ_DELIVERY_ID",
    "DLQ_REASON",
    "DLQ_SOURCE_TOPIC",
    "DLQ_VALUE_DROPPED",
    "MAX_RECORD_BYTES",
    "PERMANENT_PRODUCE_ERRORS",
    "SIZE_ERRORS",
    "Backpressure",
    "Cause",
    "CommitPolicy",
    "ConsumerRunner",
    "DeadLetters",
    "Decision",
    "ErrorPolicy",
    "Handler",
    "Offsets",
    "PoisonRecord",
    "Record",
    "crc32_partitioner",
    "create_topics",
    "fits",
    "make_producer",
    "produce_many",
    "record_size",
]
