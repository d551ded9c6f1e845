"""Deliver one rendered message: ledger check, provider call, outcome recorded, status emitted.

Transient provider errors are retried here with exponential backoff and jitter (honouring the
provider's Retry-After) up to ``retry_max_attempts``; then the delivery is dead-lettered and marked
failed. Permanent errors fail at once with the provider's reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

import orjson
import pydantic
import structlog
from aiokafka.structs import ConsumerRecord

from herald_common import metrics
from herald_common.ids import partition_key
from herald_common.kafka import PoisonRecord
from herald_common.logging import mask
from herald_common.schemas import Delivery, StatusEvent
from herald_common.worker import WorkerContext
from herald_providers.base import OutboundMessage, PermanentError, Provider, SendResult, TransientError
from herald_sender.ledger import Ledger
from herald_sender.settings import SenderSettings

log = structlog.get_logger()


class Draining(Exception):
    """Raised instead of waiting out a backoff while the process drains: the batch is left
    uncommitted and the delivery is retried by whoever owns the partition next."""


class Sender:
    def __init__(self, ctx: WorkerContext, settings: SenderSettings, provider: Provider) -> None:
        self.ctx = ctx
        self.settings = settings
        self.provider = provider
        self.ledger = Ledger(ctx.redis, ctx.keys, settings.ledger_ttl_s)
        self.channel = settings.sender_channel

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        s = self.settings
        delay = min(s.retry_max_delay_s, s.retry_base_delay_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
        return max(delay, retry_after or 0.0)

    async def handle(self, rec: ConsumerRecord) -> None:
        try:
            d = Delivery.model_validate_json(rec.value)
        except (pydantic.ValidationError, ValueError) as exc:
            raise PoisonRecord(f"unreadable delivery: {exc}") from exc
        bound = log.bind(
            tenant=d.tenant_id, notification=d.notification_id, delivery=d.delivery_id, to=mask(d.to)
        )
        msg = OutboundMessage(
            d.delivery_id, d.tenant_id, d.channel, d.to, d.content, {"notification_id": d.notification_id}
        )
        while True:
            if d.expires_at is not None and d.expires_at < time.time():
                await self.ledger.finish(d.delivery_id, "expired", reason="expired before delivery")
                await self._status(d, "expired", reason="expired before delivery")
                return
            go, attempts = await self.ledger.begin(d.delivery_id)
            if not go:
                await self._replay(d)
                return
            started = time.perf_counter()
            try:
                result: SendResult = await self.provider.send(msg)
            except PermanentError as exc:
                self._observe(started, "failed")
                bound.info("delivery failed", reason=exc.reason)
                await self.ledger.finish(
                    d.delivery_id, "failed", provider=self.provider.name, reason=exc.reason
                )
                await self._status(d, "failed", attempts=attempts, reason=exc.reason)
                return
            except TransientError as exc:
                if attempts >= self.settings.retry_max_attempts:
                    self._observe(started, "dead_lettered")
                    reason = f"gave up after {attempts} attempts: {exc.reason}"
                    bound.warning("delivery dead-lettered", reason=reason)
                    await self._dead_letter(rec, reason)
                    await self.ledger.finish(
                        d.delivery_id, "failed", provider=self.provider.name, reason=reason
                    )
                    await self._status(d, "failed", attempts=attempts, reason=reason)
                    return
                self._observe(started, "retried")
                metrics.RETRIES_SCHEDULED.labels(self.channel).inc()
                delay = self.backoff(attempts, exc.retry_after)
                bound.info(
                    "transient failure; retrying",
                    reason=exc.reason,
                    attempt=attempts,
                    delay_s=round(delay, 2),
                )
                await self._sleep_unless_draining(delay)
                continue
            self._observe(started, "sent")
            await self.ledger.finish(
                d.delivery_id,
                "sent",
                provider=result.provider,
                provider_message_id=result.provider_message_id,
            )
            await self._status(
                d,
                "sent",
                attempts=attempts,
                provider=result.provider,
                provider_message_id=result.provider_message_id,
            )
            return

    async def _sleep_unless_draining(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ctx.lifecycle.stopping.wait(), timeout=delay)
        if self.ctx.lifecycle.stopping.is_set():
            raise Draining("draining during a retry backoff")

    async def _replay(self, d: Delivery) -> None:
        """Already done: say so again (the tracker ignores repeats) in case the first status was lost."""
        metrics.DELIVERIES.labels(self.channel, self.provider.name, "skipped_duplicate").inc()
        entry = await self.ledger.get(d.delivery_id)
        if entry is not None and entry.state in ("sent", "failed", "expired", "delivered", "bounced"):
            await self._status(
                d,
                entry.state,
                attempts=entry.attempts,
                provider=entry.provider,
                provider_message_id=entry.provider_message_id,
                reason=entry.reason,
            )

    def _observe(self, started: float, status: str) -> None:
        metrics.PROVIDER_LATENCY.labels(self.channel, self.provider.name).observe(
            time.perf_counter() - started
        )
        metrics.DELIVERIES.labels(self.channel, self.provider.name, status).inc()

    async def _status(self, d: Delivery, status: str, **fields: object) -> None:
        event = StatusEvent(
            tenant_id=d.tenant_id,
            notification_id=d.notification_id,
            status=status,
            at=time.time(),
            channel=d.channel,
            delivery_id=d.delivery_id,
            provider=fields.pop("provider", self.provider.name),
            **fields,
        )
        await self.ctx.producer.send_and_wait(
            self.ctx.topics.status,
            orjson.dumps(event.model_dump(exclude_none=True)),
            key=partition_key(d.tenant_id, d.notification_id),
        )

    async def _dead_letter(self, rec: ConsumerRecord, reason: str) -> None:
        metrics.DEAD_LETTERS.labels(self.channel).inc()
        headers = [
            *(rec.headers or ()),
            ("x-herald-error", reason[:500].encode()),
            ("x-herald-source-topic", rec.topic.encode()),
        ]
        await self.ctx.producer.send_and_wait(
            self.ctx.topics.dead_letters("sender"), rec.value, key=rec.key, headers=headers
        )
