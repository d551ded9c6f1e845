"""What the sender tells the rest of Herald: status events, dead letters, retries handed to the
scheduler, and the clean-up a permanently invalid address calls for. Every write is awaited before the
handler returns, so the runner commits the offset only after it is durable."""

from __future__ import annotations

import time
from typing import Any

import orjson
import structlog
from aiokafka.structs import ConsumerRecord

from herald_common import metrics
from herald_common.channels import spec
from herald_common.delayed import DelayedRecord, DelayQueue
from herald_common.ids import partition_key
from herald_common.kafka import produce_many
from herald_common.logging import mask
from herald_common.policy import INVALID_ADDRESS
from herald_common.store import Store
from herald_common.wire import Delivery, Status, StatusEvent
from herald_common.worker import WorkerContext

log = structlog.get_logger()


class Reporter:
    def __init__(self, ctx: WorkerContext, provider_name: str) -> None:
        self.ctx = ctx
        self.provider_name = provider_name
        self.store = Store(ctx.redis, ctx.keys)
        self.delayed = DelayQueue(ctx.redis, ctx.keys)

    async def status(self, d: Delivery, status: Status, **fields: Any) -> None:
        await self.ctx.producer.send_and_wait(
            self.ctx.topics.status,
            self._event(d, status, **fields),
            key=partition_key(d.tenant_id, d.notification_id),
        )

    async def statuses(self, items: list[tuple[Delivery, Status, dict[str, Any]]]) -> None:
        """Many status events, produced together (record batches per partition) and acknowledged."""
        records = [
            (partition_key(d.tenant_id, d.notification_id), self._event(d, status, **fields))
            for d, status, fields in items
        ]
        await produce_many(self.ctx.producer, self.ctx.topics.status, records)

    def _event(self, d: Delivery, status: Status, **fields: Any) -> bytes:
        event = StatusEvent(
            tenant_id=d.tenant_id,
            notification_id=d.notification_id,
            status=status,
            at=time.time(),
            channel=d.channel,
            delivery_id=d.delivery_id,
            provider=fields.pop("provider", None) or self.provider_name,
            origin=d.origin,
            **fields,
        )
        return orjson.dumps(event.model_dump(exclude_none=True))

    async def retry_later(self, rec: ConsumerRecord, d: Delivery, next_attempt: int, due_at: float) -> None:
        """Hand attempt ``next_attempt`` to the scheduler, which produces it back onto this topic."""
        value = orjson.dumps(d.model_copy(update={"attempt": next_attempt}).model_dump(exclude_none=True))
        record = DelayedRecord(topic=rec.topic, value=value, key=rec.key)
        await self.delayed.put(f"delivery:{d.delivery_id}:{next_attempt}", record, due_at)
        metrics.RETRIES_SCHEDULED.labels(d.channel).inc()

    async def invalid_address(self, d: Delivery, contact_id: str | None) -> None:
        """The provider says this address will never work: suppress it, or drop the push token."""
        if spec(d.channel).on_invalid_address == "remove_push_token":
            if contact_id and await self.store.remove_push_token(d.tenant_id, contact_id, d.to):
                log.info("push token removed from contact", contact=contact_id, token=mask(d.to))
            return
        await self.store.suppress(
            d.tenant_id, d.to, reason=INVALID_ADDRESS, source=self.provider_name, channel=d.channel
        )
        log.info("address suppressed", to=mask(d.to))
