"""Events a tenant's own systems produce to its Kafka topic, ``<prefix>.tenant-events.<tenant id>``
(tenant setting ``events_topic``), taken in exactly like ``POST /v1/events``:

- the tenant is the topic's, never anything the record says; a tenant that does not exist or has not
  enabled its topic has its records dead-lettered;
- the value is an ``EventIn`` (the body of ``POST /v1/events``), validated by the same model: anything
  else is dead-lettered with the validation error as its reason, and the partition moves on;
- ``idempotency_key`` shares the namespace of the HTTP events' keys (24 h per tenant): an event already
  taken in under that key, by either way, is skipped; the key used with another event is dead-lettered;
- inline contact fields are upserted, then the triggers decide as for any event.

The event id is derived from the record's place (topic, partition, offset) and timestamp, so a
redelivered record is the same event: its notifications keep their ids and idempotency keys, and
nothing is published twice. Unlike the HTTP API, no intake rate limit applies: the topic's own
consumption rate bounds it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pydantic
import structlog
from aiokafka.structs import ConsumerRecord

from herald_common.cache import TTLCache
from herald_common.events import EventIn, EventRecord, event_idempotency_name
from herald_common.ids import EventIds, NotificationIds
from herald_common.intake import fingerprint
from herald_common.intake.idempotency import INFLIGHT_TTL_S, Claim, IdempotencyStore
from herald_common.kafka import PoisonRecord
from herald_common.schemas import Tenant
from herald_common.store import Store
from herald_common.triggerstore import TriggerStore
from herald_common.worker import WorkerContext
from herald_router.events import EventRouter

log = structlog.get_logger()


def _reason(exc: pydantic.ValidationError) -> str:
    """The validation errors as one line, as a problem document would list them."""
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5]]
    return "invalid event: " + "; ".join(parts)


class TenantEvents:
    def __init__(
        self, ctx: WorkerContext, ids: NotificationIds, events: EventRouter, *, tenant_cache_s: float
    ) -> None:
        self.ctx, self.events = ctx, events
        self.event_ids = EventIds.like(ids)
        self.store = Store(ctx.redis, ctx.keys)
        self.triggers = TriggerStore(ctx.redis, ctx.keys)
        self.tenants: TTLCache[Tenant] = TTLCache(tenant_cache_s)
        self.idempotency = IdempotencyStore(ctx.redis, events.intake.idempotency.ttl_s)

    async def handle(self, rec: ConsumerRecord, tenant_id: str) -> None:
        tenant = await self.tenants.get_or_load(tenant_id, lambda: self.store.get_tenant(tenant_id))
        if tenant is None or not tenant.events_topic:
            raise PoisonRecord(f"tenant {tenant_id} does not exist or has not enabled its events topic")
        try:
            event = EventIn.model_validate_json(rec.value or b"")
        except pydantic.ValidationError as exc:
            raise PoisonRecord(_reason(exc)) from None
        at = rec.timestamp / 1000 if rec.timestamp and rec.timestamp > 0 else time.time()
        seed = f"record\x1f{rec.topic}\x1f{rec.partition}\x1f{rec.offset}"
        record = EventRecord.accepted(event, self.event_ids.derived(tenant_id, seed, at), tenant_id, at)
        claim = await self._claim(tenant_id, event, record.id) if event.idempotency_key else None
        if claim is False:
            return
        try:
            if event.contact is not None:
                await self.triggers.upsert_contacts(tenant_id, [(event.contact_id, event.contact)])
            await self.events.decide(record)
        except BaseException:
            if isinstance(claim, Claim):
                await self.idempotency.release([claim])
            raise
        if isinstance(claim, Claim):
            await self.idempotency.complete([(claim, {"id": record.id, "status": "accepted"})])

    async def _claim(self, tenant_id: str, event: EventIn, event_id: str) -> Claim | bool:
        """Reserve the event's idempotency key: the claim; False when an event was already taken in
        under it (this one, redelivered, included). A key in flight (an HTTP request, or this record's
        earlier handling that crashed) is waited for until it lapses."""
        assert event.idempotency_key is not None
        key = self.ctx.keys.idempotency(tenant_id, event_idempotency_name(event.idempotency_key))
        fp = fingerprint(event)
        deadline = time.monotonic() + INFLIGHT_TTL_S + 5
        while True:
            (held,) = await self.idempotency.reserve([(key, fp)])
            if isinstance(held, Claim):
                return held
            if str(held.get("fp")) != fp:
                raise PoisonRecord("idempotency_key: this idempotency key was used with a different event")
            if held.get("state") == "done":
                result: dict[str, Any] = held.get("result") or {}
                log.info("event already taken in", tenant=tenant_id, event_id=result.get("id", event_id))
                return False
            if time.monotonic() > deadline:
                raise RuntimeError("an event with this idempotency key stayed in flight")
            self.ctx.lifecycle.beat()
            await asyncio.sleep(1.0)


__all__ = ["TenantEvents"]
