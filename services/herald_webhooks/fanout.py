"""Status events and notices → webhook deliveries: one per endpoint of the tenant that wants the type.

Idempotent under redelivery: a status event consumed twice produces deliveries with the same
``webhook_id`` (receivers dedupe on it). Deliveries are keyed by tenant, notification and endpoint,
so one notification's changes reach one endpoint in order on their first attempt, and different
notifications go out in parallel.
"""

from __future__ import annotations

import pydantic
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from herald_common.cache import TTLCache
from herald_common.kafka import PoisonRecord, produce_many
from herald_common.notices import Notice
from herald_common.webhooks.model import Endpoint, event_types_for
from herald_common.webhooks.store import WebhookStore
from herald_common.webhooks.wire import (
    WebhookDelivery,
    notice_body,
    notice_webhook_id,
    status_body,
    webhook_id,
)
from herald_common.wire import StatusEvent


class Fanout:
    def __init__(self, store: WebhookStore, producer: AIOKafkaProducer, topic: str, cache_s: float) -> None:
        self.store = store
        self.producer = producer
        self.topic = topic
        self._cache: TTLCache[list[Endpoint]] = TTLCache(cache_s)

    async def _endpoints(self, tenant_id: str) -> list[Endpoint]:
        cached = self._cache.get(tenant_id)
        if cached is None:
            cached = await self.store.list(tenant_id)
            self._cache.put(tenant_id, cached)
        return cached

    def deliveries(self, event: StatusEvent, endpoints: list[Endpoint]) -> list[WebhookDelivery]:
        types = sorted(event_types_for(event.status))
        return [
            WebhookDelivery(
                webhook_id=webhook_id(event, endpoint.id, event_type),
                tenant_id=event.tenant_id,
                endpoint_id=endpoint.id,
                event_type=event_type,
                notification_id=event.notification_id,
                body=status_body(event, event_type),
            )
            for endpoint in endpoints
            for event_type in types
            if endpoint.wants(event_type)
        ]

    def notice_deliveries(self, notice: Notice, endpoints: list[Endpoint]) -> list[WebhookDelivery]:
        body = notice_body(notice)
        return [
            WebhookDelivery(
                webhook_id=notice_webhook_id(notice, endpoint.id),
                tenant_id=notice.tenant_id,
                endpoint_id=endpoint.id,
                event_type=notice.type,
                notification_id=notice.subject_id,
                body=body,
            )
            for endpoint in endpoints
            if endpoint.wants(notice.type)
        ]

    async def handle(self, rec: ConsumerRecord) -> None:
        try:
            event = StatusEvent.model_validate_json(rec.value)
        except (pydantic.ValidationError, ValueError) as exc:
            raise PoisonRecord(f"unreadable status event: {exc}") from exc
        if endpoints := await self._endpoints(event.tenant_id):
            await self._produce(self.deliveries(event, endpoints))

    async def handle_notice(self, rec: ConsumerRecord) -> None:
        try:
            notice = Notice.model_validate_json(rec.value)
        except (pydantic.ValidationError, ValueError) as exc:
            raise PoisonRecord(f"unreadable notice: {exc}") from exc
        if endpoints := await self._endpoints(notice.tenant_id):
            await self._produce(self.notice_deliveries(notice, endpoints))

    async def _produce(self, deliveries: list[WebhookDelivery]) -> None:
        records = [
            (f"{d.tenant_id}:{d.notification_id}:{d.endpoint_id}".encode(), d.model_dump_json().encode())
            for d in deliveries
        ]
        if records:
            await produce_many(self.producer, self.topic, records)
