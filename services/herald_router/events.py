"""Consume one loyalty event: for each rule of its type's trigger decide (staleness, CEL condition, send
time, cancellation key, channels), publish the notification through the intake library under a
deterministic id and idempotency key, and record every decision for ``GET /v1/events/{id}``.

A redelivered event publishes nothing twice: each rule's notification has the id and the intake
idempotency key the event id and the rule's index give, so the second publish replays the first.

The rules' CEL expressions share one :class:`~herald_common.conditions.Budget` per event
(``EVENT_BUDGET`` steps): an expression over its budget, or a stored one today's bounds refuse, is a
``condition_error`` (``cancellation_key_error`` for a key) without being run."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from typing import Any

import pydantic
import structlog
from aiokafka.structs import ConsumerRecord

from herald_common import metrics
from herald_common.cache import TTLCache
from herald_common.cancel import announce, cancel_by_key, cancelled_events
from herald_common.conditions import (
    EVENT_BUDGET,
    Budget,
    ExpressionCache,
    ExpressionError,
    contact_variables,
)
from herald_common.events import (
    Decision,
    EventOutcome,
    EventRecord,
    Trigger,
    TriggerRule,
    rule_idempotency_key,
    rule_notification_id,
)
from herald_common.ids import NotificationIds
from herald_common.intake import (
    IdempotencyInFlight,
    IdempotencyMismatch,
    Intake,
    QueueUnavailable,
    Submission,
)
from herald_common.intake.idempotency import INFLIGHT_TTL_S
from herald_common.kafka import PoisonRecord
from herald_common.notices import Notice, publish_notices
from herald_common.schemas import Contact, NotificationIn, Recipient, Template
from herald_common.store import Store
from herald_common.triggerstore import TriggerStore
from herald_common.wire import Origin
from herald_common.worker import WorkerContext
from herald_router.triggers import DelayError, choose_channels, is_stale, send_at

log = structlog.get_logger()
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,199}$")  # fields.CancellationKey


class EventRouter:
    def __init__(
        self,
        ctx: WorkerContext,
        ids: NotificationIds,
        *,
        template_cache_s: float,
        idempotency_ttl_s: int,
        outcome_ttl_s: int,
    ) -> None:
        self.ctx, self.ids, self.outcome_ttl_s = ctx, ids, outcome_ttl_s
        self.store = Store(ctx.redis, ctx.keys)
        self.triggers = TriggerStore(ctx.redis, ctx.keys)
        self.expressions = ExpressionCache()
        self.templates: TTLCache[Template] = TTLCache(template_cache_s)
        self.intake = Intake(
            producer=ctx.producer,
            redis=ctx.redis,
            keys=ctx.keys,
            topics=ctx.topics,
            store=self.store,
            category_cache=TTLCache(template_cache_s),
            ids=ids,
            idempotency_ttl_s=idempotency_ttl_s,
        )

    async def handle(self, rec: ConsumerRecord) -> None:
        try:
            event = EventRecord.model_validate_json(rec.value)
        except (pydantic.ValidationError, ValueError) as exc:
            raise PoisonRecord(f"unreadable event: {exc}") from exc
        await self.decide(event)

    async def decide(self, event: EventRecord) -> None:
        """Every rule of the event's trigger, decided and recorded (an event taken in from any source)."""
        outcome = EventOutcome(
            id=event.id,
            type=event.type,
            contact_id=event.contact_id,
            occurred_at=event.occurred_at,
            processed_at=datetime.now(UTC),
        )
        trigger = await self.triggers.get(event.tenant_id, event.type)
        if trigger is None:
            outcome.decisions.append(Decision(reason="no_trigger"))
        else:
            outcome.trigger_version = trigger.version
            contact = await self.store.get_contact(event.tenant_id, event.contact_id)
            budget = Budget(EVENT_BUDGET)  # the rules' expressions share it: one event is bounded
            for i, rule in enumerate(trigger.rules):
                if contact is None:
                    decision = Decision(rule=i, template_id=rule.template_id, reason="unknown_contact")
                else:
                    decision = await self._rule(event, trigger, i, rule, contact, budget)
                outcome.decisions.append(decision)
        for d in outcome.decisions:
            metrics.EVENT_DECISIONS.labels(d.reason).inc()
        await self.triggers.record(event.tenant_id, outcome, self.outcome_ttl_s)
        decided = Notice(
            tenant_id=event.tenant_id,
            type="event.decision",
            subject_id=event.id,
            data=outcome.model_dump(mode="json", exclude_none=True),
        )
        await publish_notices(self.ctx.producer, self.ctx.topics, [decided])
        log.debug(
            "event decided",
            tenant=event.tenant_id,
            event_id=event.id,
            reasons=[d.reason for d in outcome.decisions],
        )

    async def _rule(
        self,
        event: EventRecord,
        trigger: Trigger,
        i: int,
        rule: TriggerRule,
        contact: Contact,
        budget: Budget,
    ) -> Decision:
        decision = Decision(rule=i, template_id=rule.template_id, reason="notified")
        if is_stale(rule, event.occurred_at, datetime.now(UTC)):
            return decision.model_copy(update={"reason": "stale"})
        variables = {"event": event.variables(), "contact": contact_variables(contact)}
        cache_key = (event.tenant_id, event.type, str(trigger.version), str(i))
        if rule.condition is not None:
            try:
                condition = self.expressions.get((*cache_key, "condition"), rule.condition)
                matched = condition.test(variables, budget)
            except ExpressionError as exc:  # a runtime error, over budget, or refused by today's bounds
                return decision.model_copy(update={"reason": "condition_error", "error": str(exc)[:500]})
            if not matched:
                return decision.model_copy(update={"reason": "condition_false"})
        try:
            due = send_at(rule, event)
        except DelayError as exc:
            return decision.model_copy(update={"reason": "delay_error", "error": str(exc)})
        try:
            key = self._key(cache_key, "key", rule.cancellation_key, variables, budget)
            cancels = self._key(cache_key, "cancels", rule.cancels, variables, budget)
        except ExpressionError as exc:
            return decision.model_copy(update={"reason": "cancellation_key_error", "error": str(exc)[:500]})
        if cancels is not None:
            decision = decision.model_copy(
                update={"cancels": cancels, "cancelled": await self._cancel(event.tenant_id, cancels)}
            )
            if rule.template_id is None:
                return decision.model_copy(update={"reason": "cancelled"})
        assert rule.template_id is not None  # the rule model requires a template or a key to cancel
        template = await self._template(event.tenant_id, rule.template_id)
        content = template.content_for(contact.locale) if template is not None else None
        channels = choose_channels(rule.routing, rule.channels, contact, content)
        if channels == []:
            return decision.model_copy(update={"reason": "no_reachable_channel"})
        request = NotificationIn(
            to=Recipient(contact_id=event.contact_id),
            template_id=rule.template_id,
            channels=channels,  # type: ignore[arg-type]  # channel names, validated at PUT
            data=event.data,
            category=rule.category,
            lane=rule.lane,
            send_at=due,
            cancellation_key=key,
        )
        if rule.routing == "first":  # set only then: an unset routing is "all" and left out of the record
            request = request.model_copy(update={"routing": "first"})
        nid = rule_notification_id(self.ids, event.tenant_id, event.id, event.accepted_at, i)
        await self._publish(
            event.tenant_id,
            Submission(
                request,
                rule_idempotency_key(event.id, i),
                nid,
                Origin(trigger=event.type, event_id=event.id),
            ),
        )
        return decision.model_copy(
            update={"notification_id": nid, "channels": channels, "send_at": due, "cancellation_key": key}
        )

    def _key(
        self,
        cache_key: tuple[str, ...],
        name: str,
        source: str | None,
        variables: dict[str, Any],
        budget: Budget,
    ) -> str | None:
        """A rule's cancellation-key expression evaluated for this event (None when it has none)."""
        if source is None:
            return None
        key = self.expressions.get((*cache_key, name), source).text(variables, budget)
        if not _KEY.match(key):
            raise ExpressionError(f"{key[:50]!r} is not a valid cancellation key")
        return key

    async def _cancel(self, tenant_id: str, key: str) -> list[str]:
        """Cancel the tenant's notifications carrying ``key`` accepted before now. Events of one contact
        are handled in order, so what an earlier event published is cancelled by a later one; those that
        were waiting in the scheduler read ``cancelled`` at once, the others when the router or the
        sender meets them."""
        at = time.time()
        ids = await cancel_by_key(self.ctx.redis, self.ctx.keys, tenant_id, key, at)
        await announce(
            self.ctx.producer, self.ctx.topics, cancelled_events(tenant_id, ids, at, f"cancelled by {key}")
        )
        return ids

    async def _publish(self, tenant_id: str, submission: Submission) -> None:
        """Publish once. The key used with another request means this rule already published (the
        contact changed since, say): nothing more to do. A key still in flight (a crash between
        reserving and producing) lapses within INFLIGHT_TTL_S: wait for it, then publish."""
        deadline = time.monotonic() + INFLIGHT_TTL_S + 5
        while True:
            try:
                await self.intake.publish(tenant_id, submission)
                return
            except IdempotencyMismatch:
                return
            except IdempotencyInFlight:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1.0)
            except QueueUnavailable as exc:  # a Kafka outage: let the runner wait it out
                raise exc.__cause__ or exc from None

    async def _template(self, tenant_id: str, template_id: str) -> Template | None:
        return await self.templates.get_or_load(
            f"{tenant_id}\x1f{template_id}", lambda: self.store.get_template(tenant_id, template_id)
        )
