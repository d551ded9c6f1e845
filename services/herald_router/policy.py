"""The router's side of policy (order and reason codes: herald_common.policy): cancellation, waiting
for ``send_at`` or the end of quiet hours in the scheduler, and frequency caps.

A request that must wait is put, byte for byte, into the scheduler's delayed queue (item
``request:<tenant>:<id>``, so a redelivered request replaces its own item rather than adding one) with
a ``herald-deferred`` header saying why; the scheduler produces it back onto the same requests topic
when due and the router routes it again from the start: cancellation, ``send_at``, every policy step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from aiokafka.structs import ConsumerRecord

from herald_common.cancel import Cancellations
from herald_common.caps import FrequencyCaps
from herald_common.delayed import DelayedRecord, DelayQueue
from herald_common.policy import is_transactional
from herald_common.quiet_hours import next_allowed, resolve
from herald_common.schemas import Contact, Tenant
from herald_common.wire import NotificationRequest
from herald_common.worker import WorkerContext

DEFERRED_HEADER = "herald-deferred"


def was_deferred(rec: ConsumerRecord) -> bool:
    """True for a request the scheduler released (it waited for send_at or quiet hours)."""
    return any(name == DEFERRED_HEADER for name, _ in rec.headers or ())


class RouterPolicy:
    def __init__(self, ctx: WorkerContext, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.cancellations = Cancellations(ctx.redis, ctx.keys)
        self.caps = FrequencyCaps(ctx.redis, ctx.keys)
        self.delayed = DelayQueue(ctx.redis, ctx.keys)

    async def cancelled(self, req: NotificationRequest) -> bool:
        return await self.cancellations.is_cancelled(
            req.tenant_id, req.id, req.cancellation_key, req.accepted_at
        )

    async def defer(self, rec: ConsumerRecord, req: NotificationRequest, until: float, why: str) -> None:
        """Hand the request to the scheduler until ``until`` (durable before the handler returns)."""
        headers = tuple((n, v) for n, v in rec.headers or () if n != DEFERRED_HEADER)
        record = DelayedRecord(
            topic=rec.topic, value=rec.value, key=rec.key, headers=(*headers, (DEFERRED_HEADER, why.encode()))
        )
        await self.delayed.put(f"request:{req.tenant_id}:{req.id}", record, until)
        if req.cancellation_key:
            await self.cancellations.waiting(req.tenant_id, req.cancellation_key, req.id)

    async def released(self, req: NotificationRequest) -> None:
        """The request is routed now: it no longer waits under its cancellation key."""
        if req.cancellation_key:
            await self.cancellations.done_waiting(req.tenant_id, req.cancellation_key, req.id)

    async def within_caps(
        self, req: NotificationRequest, tenant: Tenant | None, recipient: str, category: str
    ) -> bool:
        caps = (tenant.frequency_caps or {}).get(category) if tenant is not None else None
        if not caps:
            return True
        return await self.caps.admit(req.tenant_id, recipient, category, req.id, caps, self.clock())

    def quiet_until(self, tenant: Tenant | None, contact: Contact | None, category: str) -> float | None:
        """When quiet hours end, if the notification falls inside them (a category transactional for
        the tenant never does)."""
        if is_transactional(category, tenant):
            return None
        applies = resolve(
            tenant.quiet_hours if tenant else None,
            contact.quiet_hours if contact else None,
            contact.timezone if contact else None,
        )
        if applies is None:
            return None
        window, tz = applies
        until = next_allowed(datetime.fromtimestamp(self.clock(), UTC), window, tz)
        return until.timestamp() if until is not None else None
