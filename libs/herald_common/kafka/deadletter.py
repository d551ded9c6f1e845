"""The one way anything in Herald writes a dead letter (the consumer runner giving up on a record, the
sender giving up on a delivery) and the headers every dead letter carries.

A dead letter is the original value and key on ``<prefix>.deadletter.<service>``, with
``x-herald-source-topic`` (where a replay sends it back) and ``x-herald-reason`` (why it was given
up on), after any headers the writer adds. ``herald dlq list|replay`` reads them back
(herald_common.dlq). Each write is counted in ``herald_dead_letters_total{service, reason}``, where
``reason`` is the bounded cause (:data:`Cause`), never the error text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from herald_common import metrics
from herald_common.kafka.producer import SIZE_ERRORS

DLQ_SOURCE_TOPIC = "x-herald-source-topic"  # where the record came from: where a replay sends it back
DLQ_REASON = "x-herald-reason"  # why it was given up on
DLQ_ATTEMPTS = "x-herald-attempts"  # attempts made, where the writer counted them (the sender)
DLQ_DELIVERY_ID = "x-herald-delivery-id"  # the delivery a sender gave up on
DLQ_VALUE_DROPPED = "x-herald-value-dropped"  # the value was too large to keep beside the headers

# poison: unreadable input; attempts_exhausted: failed on every attempt; expired: due after expires_at;
# refused: what handling it produced was refused for good (a record over the size limit, say)
Cause = Literal["poison", "attempts_exhausted", "expired", "refused"]

Headers = Sequence[tuple[str, bytes]]


class DeadLetters:
    """Writes one service's dead letters; each write waits for the broker's acknowledgement, so the
    offset of the record given up on is committed only once its dead letter is durable."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, service: str) -> None:
        self.producer = producer
        self.topic = topic
        self.service = service

    async def write(
        self,
        value: bytes | None,
        key: bytes | None,
        *,
        reason: str,
        cause: Cause,
        source_topic: str,
        headers: Headers = (),
    ) -> None:
        all_headers = [
            *headers,
            (DLQ_SOURCE_TOPIC, source_topic.encode()),
            (DLQ_REASON, reason[:500].encode()),
        ]
        try:
            await self.producer.send_and_wait(self.topic, value, key=key, headers=all_headers)
        except SIZE_ERRORS:
            # a record just under the limit plus these headers is over it: keep the headers (what, why,
            # where from), say the value was dropped, and let the partition move on
            dropped = [*all_headers, (DLQ_VALUE_DROPPED, str(len(value or b"")).encode())]
            await self.producer.send_and_wait(self.topic, None, key=key, headers=dropped)
        metrics.DEAD_LETTERS.labels(self.service, cause).inc()

    async def write_record(self, rec: ConsumerRecord, *, reason: str, cause: Cause) -> None:
        """Dead-letter a consumed record as it is, its own headers kept."""
        await self.write(
            rec.value,
            rec.key,
            reason=reason,
            cause=cause,
            source_topic=rec.topic,
            headers=list(rec.headers or ()),
        )
