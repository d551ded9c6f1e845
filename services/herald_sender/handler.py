"""Deliver one rendered message: ledger check, provider call, outcome recorded, status emitted.

- accepted → ledger ``sent``, status ``sent`` with provider, message id and attempts;
- permanent error → ledger and status ``failed`` with the provider's reason at once; an invalid
  address is suppressed for the tenant (a dead push token is removed from its contact);
- cancelled (herald_common.cancel: by id, or by key before it was accepted) → ledger and status
  ``cancelled`` instead of calling the provider (checked by the ledger's ``begin``, in the same round
  trip, just before each attempt);
- of a paused campaign (herald_common.campaigns.gate) → parked in the scheduler, asked again later;
- transient error → the :class:`RetryPolicy` decides: a short backoff is waited in place, a longer
  one is handed to the scheduler (ledger ``scheduled``, status ``retrying`` with ``next_attempt_at``)
  and the handler returns, so the partition moves on; after the last attempt, or when the message
  would expire first, the delivery goes to ``<prefix>.deadletter.sender`` and is marked ``failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from functools import partial

import orjson
import pydantic
import structlog
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Histogram
from redis.exceptions import RedisError

from herald_common import metrics
from herald_common.backoff import backoff
from herald_common.campaigns.gate import PARK_S, CampaignGate
from herald_common.channels import spec
from herald_common.intake import republish
from herald_common.kafka import DLQ_ATTEMPTS, DLQ_DELIVERY_ID, Cause, PoisonRecord
from herald_common.logging import mask
from herald_common.policy import CANCELLED, FELL_BACK
from herald_common.wire import Delivery
from herald_common.worker import WorkerContext
from herald_providers.base import OutboundMessage, PermanentError, ProviderError, SendResult, TransientError
from herald_sender.fair import FairGate
from herald_sender.ledger import DONE, Cancellable, Ledger
from herald_sender.outbound import Outbound
from herald_sender.report import Reporter
from herald_sender.retry import RetryPolicy
from herald_sender.settings import SenderSettings

log = structlog.get_logger()


class Draining(Exception):
    """Raised instead of waiting out a backoff while the process drains: the batch is left
    uncommitted and the delivery is retried by whoever owns the partition next."""


class Sender:
    def __init__(self, ctx: WorkerContext, settings: SenderSettings, outbound: Outbound) -> None:
        self.ctx = ctx
        self.settings = settings
        self.outbound = outbound
        self.channel = settings.sender_channel
        self.ledger = Ledger(ctx.redis, ctx.keys, settings.ledger_ttl_s)
        self.report = Reporter(ctx, outbound.name)
        self.campaigns = CampaignGate(ctx.redis, ctx.keys)
        self.retry = RetryPolicy(
            max_attempts=settings.retry_max_attempts,
            base_delay_s=settings.retry_base_delay_s,
            max_delay_s=settings.retry_max_delay_s,
            inplace_max_s=settings.retry_inplace_max_s,
        )
        self._children: dict[tuple[str, str], tuple[Histogram, Counter]] = {}
        self.fair = None
        if outbound.fair is not None:
            self.fair = FairGate(outbound.fair, self.report.delayed, self._sleep_unless_draining)

    async def handle(self, rec: ConsumerRecord) -> None:
        try:
            d = Delivery.model_validate_json(rec.value)
        except (pydantic.ValidationError, ValueError) as exc:
            raise PoisonRecord(f"unreadable delivery: {exc}") from exc
        msg = self.message(d)
        cancel = Cancellable(d.tenant_id, d.notification_id, d.cancellation_key, d.accepted_at)
        campaign = d.origin.campaign_id if d.origin is not None else None
        if campaign is not None and await self.campaigns.paused(d.tenant_id, campaign):
            await self.report.retry_later(rec, d, d.attempt, time.time() + PARK_S)  # asked again then
            metrics.DELIVERIES.labels(self.channel, self.outbound.name, "parked").inc()
            return
        if self.fair is not None and not await self.fair.admit(rec, d, time.time()):
            return  # parked: its tenant is ahead of its fair share of the provider's rate
        while True:
            if d.expires_at is not None and d.expires_at < time.time():
                await self._expired(rec, d)
                return
            begin = await self.ledger.begin(d.tenant_id, d.delivery_id, d.attempt, cancel)
            if begin.outcome == "done":
                await self._replay(d)
                return
            if begin.outcome == "cancelled":
                await self._cancelled(d)
                return
            if begin.outcome == "stale":
                metrics.DELIVERIES.labels(self.channel, self.outbound.name, "skipped_duplicate").inc()
                return
            attempts = begin.attempts
            started = time.perf_counter()
            try:
                result = await self.outbound.send(msg)
            except (PermanentError, TransientError) as exc:
                if await self.after_error(rec, d, attempts, exc, started):
                    continue
                return
            await self.sent(d, attempts, result, started)
            return

    async def after_error(
        self, rec: ConsumerRecord, d: Delivery, attempts: int, exc: ProviderError, started: float
    ) -> bool:
        """Act on the provider's refusal of attempt ``attempts``; True means try again now (after an
        in-place wait)."""
        if isinstance(exc, TransientError):
            return await self._after_transient(rec, d, attempts, exc, started)
        self.observe(started, exc.provider, "failed")
        _bound(d).info("delivery failed", reason=exc.reason, attempt=attempts)
        await self.durably(
            partial(
                self.ledger.finish,
                d.tenant_id,
                d.delivery_id,
                "failed",
                provider=exc.provider,
                reason=exc.reason,
            )
        )
        await self._failed(d, attempts, exc.provider, exc.reason)
        if isinstance(exc, PermanentError) and exc.invalid_recipient:
            await self.report.invalid_address(d, _contact_id(rec, d))
        return False

    async def _after_transient(
        self,
        rec: ConsumerRecord,
        d: Delivery,
        attempts: int,
        exc: TransientError,
        started: float,
    ) -> bool:
        """Act on a transient failure; True means try again now (after an in-place wait)."""
        bound = _bound(d)
        now = time.time()
        decision = self.retry.decide(attempts, exc, now=now, expires_at=d.expires_at)
        if decision.action == "dead_letter":
            self.observe(started, exc.provider, "dead_lettered")
            bound.warning("delivery dead-lettered", reason=decision.reason, attempt=attempts)
            await self._dead_letter(rec, d, attempts, decision.reason, decision.cause or "attempts_exhausted")
            await self.ledger.finish(
                d.tenant_id, d.delivery_id, "failed", provider=exc.provider, reason=decision.reason
            )
            await self._failed(d, attempts, exc.provider, decision.reason)
            return False
        self.observe(started, exc.provider, "retried")
        bound.info(
            "transient failure; retrying",
            reason=exc.reason,
            attempt=attempts,
            delay_s=round(decision.delay_s, 3),
            via="in_place" if decision.action == "in_place" else "scheduler",
        )
        if decision.action == "in_place":
            metrics.RETRIES_SCHEDULED.labels(self.channel).inc()
            await self._sleep_unless_draining(decision.delay_s)
            return True
        due_at = now + decision.delay_s
        # The retry is durable in the scheduler's set before the ledger says so and before the
        # handler returns (and the runner commits): a crash in between leaves a stale copy at most.
        await self.report.retry_later(rec, d, attempts + 1, due_at)
        await self.ledger.schedule(d.tenant_id, d.delivery_id, attempts + 1, due_at, exc.reason)
        await self.report.status(
            d, "retrying", attempts=attempts, provider=exc.provider, reason=exc.reason, next_attempt_at=due_at
        )
        return False

    async def sent(self, d: Delivery, attempts: int, result: SendResult, started: float) -> None:
        await self.ledger_sent(d, result, started)
        await self.durably(
            lambda: self.report.status(
                d,
                "sent",
                attempts=attempts,
                provider=result.provider,
                provider_message_id=result.provider_message_id,
            )
        )

    async def ledger_sent(self, d: Delivery, result: SendResult, started: float) -> None:
        """The provider accepted ``d``: the ledger says so at once (the duplicate window closes here)."""
        self.observe(started, result.provider, "sent")
        await self.durably(
            lambda: self.ledger.finish(
                d.tenant_id,
                d.delivery_id,
                "sent",
                provider=result.provider,
                provider_message_id=result.provider_message_id,
            )
        )

    async def durably(self, step: Callable[[], Awaitable[object]]) -> None:
        """Record an outcome the provider already gave, retrying through a Redis or Kafka outage.

        Raising instead would re-run the whole handler and send the message a second time. Only a
        process stopped while the outage lasts gives up (leaving its batch uncommitted): the one way,
        besides a crash between the provider's answer and this write, to send a message twice."""
        attempt = 0
        while True:
            attempt += 1
            try:
                await step()
                return
            except (RedisError, KafkaError, OSError) as exc:
                if self.ctx.lifecycle.stopping.is_set():
                    raise
                delay = backoff(attempt, base_s=0.1, max_s=5.0)
                log.warning("could not record an outcome; retrying", error=repr(exc), delay_s=delay)
                self.ctx.lifecycle.beat()
                await asyncio.sleep(delay)

    async def _dead_letter(
        self, rec: ConsumerRecord, d: Delivery, attempts: int, reason: str, cause: Cause
    ) -> None:
        """The delivery as last attempted, on the sender's dead-letter topic (herald dlq lists it)."""
        value = orjson.dumps(d.model_copy(update={"attempt": attempts}).model_dump(exclude_none=True))
        headers = [(DLQ_DELIVERY_ID, d.delivery_id.encode()), (DLQ_ATTEMPTS, str(attempts).encode())]
        await self.ctx.dead_letters.write(
            value, rec.key, reason=reason, cause=cause, source_topic=rec.topic, headers=headers
        )

    async def _expired(self, rec: ConsumerRecord, d: Delivery) -> None:
        if d.attempt <= 1:  # never tried: it simply expired on the way
            await self.ledger.finish(d.tenant_id, d.delivery_id, "expired", reason="expired before delivery")
            await self.report.status(d, "expired", reason="expired before delivery")
            return
        reason = f"expired before attempt {d.attempt}"
        await self._dead_letter(rec, d, d.attempt - 1, reason, "expired")
        await self.ledger.finish(d.tenant_id, d.delivery_id, "failed", reason=reason)
        await self.report.status(d, "failed", attempts=d.attempt - 1, reason=reason)

    def message(self, d: Delivery) -> OutboundMessage:
        content = d.content
        if not content.get("from"):
            fallback = spec(d.channel).fallback_identity(self.settings)
            content = {**content, **{k: v for k, v in fallback.items() if not content.get(k)}}
        return OutboundMessage(
            d.delivery_id, d.tenant_id, d.channel, d.to, content, {"notification_id": d.notification_id}
        )

    async def _sleep_unless_draining(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ctx.lifecycle.stopping.wait(), timeout=delay)
        if self.ctx.lifecycle.stopping.is_set():
            raise Draining("draining during a retry backoff")

    async def _cancelled(self, d: Delivery) -> None:
        """Cancelled before an attempt (``begin`` found it not yet sent or ended)."""
        metrics.DELIVERIES.labels(self.channel, self.outbound.name, "cancelled").inc()
        await self.ledger.finish(d.tenant_id, d.delivery_id, "cancelled", reason="cancelled")
        await self.report.status(d, "cancelled", reason="cancelled", reason_code=CANCELLED)

    async def _replay(self, d: Delivery) -> None:
        """Already done: say so again (the tracker ignores repeats) in case the first status was lost."""
        metrics.DELIVERIES.labels(self.channel, self.outbound.name, "skipped_duplicate").inc()
        entry = await self.ledger.get(d.tenant_id, d.delivery_id)
        if entry is not None and entry.state in DONE:
            falls_back = entry.state == "failed" and await self._falls_back(d)
            await self.report.status(
                d,
                entry.state,  # type: ignore[arg-type]
                attempts=entry.attempts,
                provider=entry.provider,
                provider_message_id=entry.provider_message_id,
                reason=entry.reason,
                reason_code=FELL_BACK if falls_back else None,
            )
            if falls_back:  # the first handling may have stopped before publishing it
                await self._fall_back(d)

    async def _failed(self, d: Delivery, attempts: int, provider: str | None, reason: str) -> None:
        """Report the delivery failed for good (its ledger entry already says so) and, for routing
        ``first``, move the notification on to its next channel."""
        falls_back = await self._falls_back(d)
        await self.durably(
            partial(
                self.report.status,
                d,
                "failed",
                attempts=attempts,
                provider=provider,
                reason=reason,
                reason_code=FELL_BACK if falls_back else None,
            )
        )
        if falls_back:
            await self._fall_back(d)

    async def _falls_back(self, d: Delivery) -> bool:
        """Routing ``first``: this failed delivery moves the notification on to its next channel when
        it has one and the channel's other deliveries (other push tokens) have all failed too. Records
        of one contact are handled one after another, so the last of them to fail sees the others'."""
        if d.fallback is None:
            return False
        for sibling in d.fallback.siblings:
            entry = await self.ledger.get(d.tenant_id, sibling)
            if entry is None or entry.state != "failed":
                return False
        return True

    async def _fall_back(self, d: Delivery) -> None:
        """Publish the notification again for its next channels (same id: a repeat leads to the same
        delivery ids, which the ledger sends once)."""
        assert d.fallback is not None
        await self.durably(partial(republish, self.ctx.producer, self.ctx.topics, d.fallback.request))
        metrics.DELIVERIES.labels(self.channel, self.outbound.name, "fell_back").inc()
        log.info(
            "falling back to the next channel",
            notification=d.notification_id,
            channels=d.fallback.request.channels,
        )

    def observe(self, started: float, provider: str | None, status: str) -> None:
        name = provider or self.outbound.name
        children = self._children.get((name, status))
        if children is None:  # resolved once per provider and outcome, not per message
            children = self._children[(name, status)] = (
                metrics.PROVIDER_LATENCY.labels(self.channel, name),
                metrics.DELIVERIES.labels(self.channel, name, status),
            )
        children[0].observe(time.perf_counter() - started)
        children[1].inc()


def _bound(d: Delivery) -> structlog.typing.FilteringBoundLogger:
    """The delivery's logger, bound only when there is something to say (never on the sent path)."""
    return log.bind(tenant=d.tenant_id, notification=d.notification_id, delivery=d.delivery_id, to=mask(d.to))


def _contact_id(rec: ConsumerRecord, d: Delivery) -> str | None:
    """The contact an address came from: the delivery says so, or (from routers that do not set it
    yet) the record key ``<tenant>:<recipient>`` names a contact id rather than the address itself."""
    if d.contact_id:
        return d.contact_id
    if rec.key is None:
        return None
    tenant, _, recipient = rec.key.decode(errors="replace").partition(":")
    if tenant != d.tenant_id or not recipient or recipient == d.to:
        return None
    return recipient
