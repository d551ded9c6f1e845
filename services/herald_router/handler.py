"""Consume one notification request, emit one delivery per channel address and a status per channel.

Policy is applied in the order herald_common.policy documents (the router's part: herald_router.policy).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import orjson
import pydantic
import structlog
from aiokafka.structs import ConsumerRecord

from herald_common import metrics
from herald_common import policy as codes
from herald_common.cache import TTLCache
from herald_common.channels import spec
from herald_common.fields import header_problem
from herald_common.ids import delivery_id, partition_key
from herald_common.kafka import MAX_RECORD_BYTES, PoisonRecord, produce_many, record_size
from herald_common.schemas import ChannelContent, Contact, Template, Tenant
from herald_common.store import Store
from herald_common.templating import TemplateRenderError, template_context
from herald_common.unsubscribe import CONTENT_FIELD, Links, is_marketing
from herald_common.wire import Delivery, Fallback, NotificationRequest, Status, StatusEvent
from herald_common.worker import WorkerContext
from herald_router.personalise import Personaliser
from herald_router.policy import RouterPolicy, was_deferred
from herald_router.routing import ChannelPlan, pick_first, plan_channels

log = structlog.get_logger()


def _bound(value: object) -> int:
    """An upper bound of ``value``'s JSON size: at most 6 bytes per character (``\\u00XX``)."""
    if isinstance(value, str):
        return 6 * len(value) + 2
    if isinstance(value, dict):
        return sum(_bound(k) + _bound(v) + 2 for k, v in value.items()) + 2
    if isinstance(value, list):
        return sum(_bound(v) + 1 for v in value) + 2
    return 32


def _fallback(req: NotificationRequest, channels: list[str], ids: list[str], own: str) -> Fallback | None:
    """Routing ``first``: where this delivery's channel falls back to (None when nowhere)."""
    if not channels:
        return None
    request = req.model_copy(update={"channels": channels})
    return Fallback(request=request, siblings=[i for i in ids if i != own])


def _fallback_bytes(deliveries: list[Delivery]) -> int:
    fb = deliveries[0].fallback if deliveries else None
    return 0 if fb is None else len(fb.model_dump_json(exclude_none=True)) + 40 * len(fb.siblings)


def _too_large(
    deliveries: list[Delivery], rendered: dict[str, object], key: bytes, extra: int = 0
) -> str | None:
    """The ``too_large`` reason when a delivery's record would be over the producer's limit (a size
    error is permanent: produced, it would be retried forever). Exact sizes are computed only when a
    cheap upper bound of the rendered content (plus ``extra`` bytes the record carries besides) does
    not already fit."""
    if _bound(rendered) + len(key) + extra + 8192 <= MAX_RECORD_BYTES:  # 8 KB: the envelope, ids and address
        return None
    for d in deliveries:
        size = record_size(key, orjson.dumps(d.model_dump(exclude_none=True)))
        if size > MAX_RECORD_BYTES:
            return (
                f"too_large: the rendered {d.channel} message is {size} bytes as a record; "
                f"a record holds at most {MAX_RECORD_BYTES}"
            )
    return None


def _bad_header(channel: str, rendered: dict[str, object]) -> str | None:
    """The ``invalid_header`` reason when a rendered header field (an email subject rendered from
    ``data``, say) holds a control character: a CR/LF there would inject headers of its own."""
    for name in spec(channel).header_fields:
        if (problem := header_problem(rendered.get(name))) is not None:
            return f"invalid_header: the rendered {name} {problem}"
    return None


Out = list[tuple[bytes, "Delivery | StatusEvent"]]


def _read(rec: ConsumerRecord) -> NotificationRequest:
    try:
        return NotificationRequest.model_validate_json(rec.value)
    except (pydantic.ValidationError, ValueError) as exc:
        raise PoisonRecord(f"unreadable request: {exc}") from exc


@dataclass(slots=True)
class _Routing:
    """One request's routing between its plans and suppression (see :meth:`Router._prepare`)."""

    rec: ConsumerRecord
    req: NotificationRequest
    contact: Contact | None
    content: ChannelContent
    category: str
    tenant: Tenant | None
    plans: list[ChannelPlan]
    now: float

    def addresses(self) -> list[str]:
        return [a for plan in self.plans if plan.skip_status is None for a in plan.addresses]


class Router:
    def __init__(
        self,
        ctx: WorkerContext,
        template_cache_s: float,
        *,
        report_queued: bool = True,
        links: Links | None = None,
    ) -> None:
        self.ctx = ctx
        self.links = links
        self.report_queued = report_queued
        self.store = Store(ctx.redis, ctx.keys)
        self.templates: TTLCache[Template] = TTLCache(template_cache_s)
        self.tenants: TTLCache[Tenant] = TTLCache(template_cache_s)
        self.policy = RouterPolicy(ctx)
        self.personaliser = Personaliser()

    async def __call__(self, rec: ConsumerRecord) -> None:
        await self.handle(rec)

    async def handle(self, rec: ConsumerRecord) -> None:
        req = _read(rec)
        cancelled = await self.policy.cancelled(req)
        contact = None
        if req.to.contact_id and not cancelled:
            contact = await self.store.get_contact(req.tenant_id, req.to.contact_id)
        out: Out = []
        routing = await self._prepare(rec, req, cancelled, contact, out)
        if routing is not None:
            addresses = routing.addresses()
            why = await self.store.suppressions.check_many([(req.tenant_id, a) for a in addresses])
            await self._finish(routing, dict(zip(addresses, why, strict=True)), out)
        await self._emit(out)

    async def many(self, recs: list[ConsumerRecord]) -> list[ConsumerRecord]:
        """A fetched batch (the runner's batch mode): every request's cancellation and contact read in
        one round trip, every address's suppression in a second, everything produced at once. Each
        request is routed exactly as :meth:`handle` routes it, in the batch's order."""
        unreadable: list[ConsumerRecord] = []
        batch: list[tuple[ConsumerRecord, NotificationRequest]] = []
        for rec in recs:
            try:
                batch.append((rec, _read(rec)))
            except PoisonRecord:
                unreadable.append(rec)
        with_contact = [req for _, req in batch if req.to.contact_id]
        cancelled, contacts = await asyncio.gather(
            self.policy.cancellations.are_cancelled(
                [(r.tenant_id, r.id, r.cancellation_key, r.accepted_at) for _, r in batch]
            ),
            self.store.contacts_of([(r.tenant_id, r.to.contact_id or "") for r in with_contact]),
        )
        contact_of = {id(req): c for req, c in zip(with_contact, contacts, strict=True)}
        out: Out = []
        routings = []
        for (rec, req), stop in zip(batch, cancelled, strict=True):
            routing = await self._prepare(rec, req, stop, contact_of.get(id(req)), out)
            if routing is not None:
                routings.append(routing)
        asked = list({(r.req.tenant_id, a) for r in routings for a in r.addresses()})
        why = dict(zip(asked, await self.store.suppressions.check_many(asked), strict=True))
        for routing in routings:
            tenant_id = routing.req.tenant_id
            await self._finish(routing, {a: why[(tenant_id, a)] for a in routing.addresses()}, out)
        await self._emit(out, batch=True)
        return unreadable

    async def _prepare(
        self,
        rec: ConsumerRecord,
        req: NotificationRequest,
        cancelled: bool,
        contact: Contact | None,
        out: Out,
    ) -> _Routing | None:
        """Policy up to suppression: cancellation, ``send_at``, the contact, the template and the
        channel plans. None when the request ends here (its status is in ``out``)."""
        now = self.policy.clock()
        if cancelled:
            metrics.POLICY_OUTCOMES.labels("cancelled").inc()
            self._alone(out, self._status(req, "cancelled", reason="cancelled", code=codes.CANCELLED))
            await self.policy.released(req)
            return None
        if req.send_at is not None and req.send_at > now:
            if req.expires_at is not None and req.expires_at <= req.send_at:
                self._expired(out, req, "expires before its send_at")
                return None
            await self.policy.defer(rec, req, req.send_at, "scheduled")
            metrics.POLICY_OUTCOMES.labels("scheduled").inc()
            self._alone(out, self._status(req, "scheduled", code=codes.SEND_AT, release_at=req.send_at))
            return None
        if req.to.contact_id and contact is None:
            log.info("unknown contact", tenant=req.tenant_id, notification=req.id)
            reason = f"unknown contact {req.to.contact_id}"
            self._alone(out, self._status(req, "failed", reason=reason, code=codes.UNKNOWN_CONTACT))
            return None
        content: ChannelContent
        category = req.category or "transactional"
        if req.template_id:
            template = await self._template(req.tenant_id, req.template_id)
            if template is None:
                reason = f"template {req.template_id} not found"
                self._alone(out, self._status(req, "failed", reason=reason, code=codes.TEMPLATE_NOT_FOUND))
                return None
            content = template.content_for(req.locale or (contact.locale if contact else None))
            category = req.category or template.category
        else:
            assert req.content is not None
            content = req.content
        tenant = await self._tenant(req.tenant_id)
        plans = plan_channels(req, contact, content, category, tenant)
        return _Routing(rec, req, contact, content, category, tenant, plans, now)

    async def _finish(self, r: _Routing, why: dict[str, str | None], out: Out) -> None:
        """Policy from suppression on (``why``: each plan address's suppression reason, or None), then
        rendering and the deliveries."""
        req, plans, tenant, contact, category = r.req, r.plans, r.tenant, r.contact, r.category
        recipient = req.to.contact_id or req.to.email or req.to.phone or req.to.push_token or ""
        for plan in plans:
            if plan.skip_status is None:
                suppressed = [a for a in plan.addresses if why[a] is not None]
                if suppressed and len(suppressed) == len(plan.addresses):
                    plan.skip_status, plan.reason = "suppressed", "address is on the suppression list"
                    plan.reason_code = codes.suppression_code(why[suppressed[0]])
                plan.addresses = [a for a in plan.addresses if a not in suppressed]
        fallback: list[str] = []
        if req.routing == "first":
            plans, fallback = pick_first(plans)
        if any(plan.skip_status is None for plan in plans):
            if not await self.policy.within_caps(req, tenant, recipient, category):
                for plan in plans:
                    if plan.skip_status is None:
                        plan.skip_status, plan.reason = "capped", f"frequency cap of {category} reached"
                        plan.reason_code = codes.FREQUENCY_CAP
            elif (until := self.policy.quiet_until(tenant, contact, category)) is not None:
                if req.expires_at is not None and req.expires_at <= until:
                    self._expired(out, req, "expires before quiet hours end")
                    return
                await self.policy.defer(r.rec, req, until, "held")
                metrics.POLICY_OUTCOMES.labels("held").inc()
                self._alone(
                    out,
                    self._status(req, "held", reason="quiet hours", code=codes.QUIET_HOURS, release_at=until),
                )
                return
        sendable = any(plan.skip_status is None for plan in plans)
        if sendable and req.expires_at is not None and req.expires_at < r.now:
            self._expired(out, req, "expired before it was routed")
            return
        key = partition_key(req.tenant_id, recipient)
        if was_deferred(r.rec):
            out.append((key, self._status(req, "accepted")))  # no longer scheduled or held
            await self.policy.released(req)
        context = template_context(
            tenant_id=req.tenant_id, tenant=tenant, data=req.data, contact=contact, to=req.to
        )
        origin = req.full_origin
        for plan in plans:
            if plan.skip_status is None:
                try:
                    rendered = await self.personaliser.render(r.content, plan.channel, context, req.lane)
                except TemplateRenderError as exc:
                    plan.skip_status, plan.reason = "failed", f"render error in {exc.field}: {exc.message}"
                    plan.reason_code = codes.RENDER_ERROR
            if plan.skip_status is not None:
                metrics.ROUTED.labels(plan.channel, plan.skip_status).inc()
                status = self._status(
                    req,
                    plan.skip_status,  # type: ignore[arg-type]
                    channel=plan.channel,
                    reason=plan.reason,
                    code=plan.reason_code,
                )
                out.append((key, status))
                continue
            if tenant is not None:
                rendered.update(spec(plan.channel).identity(tenant))
            if (
                self.links is not None
                and spec(plan.channel).unsubscribe_link
                and is_marketing(category, tenant)
            ):
                url = self.links.url(
                    req.tenant_id, category, contact_id=req.to.contact_id, address=req.to.email
                )
                if url is not None:
                    rendered[CONTENT_FIELD] = url
            if (bad_header := _bad_header(plan.channel, rendered)) is not None:
                metrics.ROUTED.labels(plan.channel, "failed").inc()
                out.append((key, self._status(req, "failed", channel=plan.channel, reason=bad_header)))
                continue
            ids = [delivery_id(req.id, plan.channel, address) for address in plan.addresses]
            deliveries = [
                Delivery(
                    delivery_id=did,
                    notification_id=req.id,
                    tenant_id=req.tenant_id,
                    channel=plan.channel,
                    lane=req.lane,
                    to=address,
                    content=rendered,
                    accepted_at=req.accepted_at,
                    expires_at=req.expires_at,
                    cancellation_key=req.cancellation_key,
                    contact_id=req.to.contact_id,
                    origin=origin,
                    fallback=_fallback(req, fallback, ids, did),
                )
                for did, address in zip(ids, plan.addresses, strict=True)
            ]
            if (too_large := _too_large(deliveries, rendered, key, _fallback_bytes(deliveries))) is not None:
                log.warning(
                    "rendered message over the record limit",
                    tenant=req.tenant_id,
                    notification=req.id,
                    channel=plan.channel,
                )
                metrics.ROUTED.labels(plan.channel, "failed").inc()
                out.append((key, self._status(req, "failed", channel=plan.channel, reason=too_large)))
                continue
            out.extend((key, d) for d in deliveries)
            metrics.ROUTED.labels(plan.channel, "routed").inc()
            if self.report_queued:
                out.append((key, self._status(req, "queued", channel=plan.channel)))

    async def _emit(self, out: Out, *, batch: bool = False) -> None:
        """Produce everything, each under its key, and wait for the acks: the runner commits only after
        this returns. Per key, records keep the order they have in ``out``. One request's few records
        go through the producer's accumulator (where concurrent handlers' records share batches); a
        fetched batch's, as ready-made record batches (``batch``)."""
        by_topic: dict[str, list[tuple[bytes | None, bytes]]] = {}
        for key, item in out:
            if isinstance(item, Delivery):
                topic = self.ctx.topics.deliveries(item.channel, item.lane)
            else:
                topic = self.ctx.topics.status
            by_topic.setdefault(topic, []).append((key, orjson.dumps(item.model_dump(exclude_none=True))))
        if batch:
            await asyncio.gather(*(produce_many(self.ctx.producer, t, rs) for t, rs in by_topic.items()))
            return
        send = self.ctx.producer.send
        futures = [await send(t, value, key=key) for t, rs in by_topic.items() for key, value in rs]
        if futures:
            await asyncio.gather(*futures)

    def _alone(self, out: Out, status: StatusEvent) -> None:
        """A status that ends a request before routing, keyed by its notification."""
        out.append((partition_key(status.tenant_id, status.notification_id), status))

    def _expired(self, out: Out, req: NotificationRequest, reason: str) -> None:
        metrics.POLICY_OUTCOMES.labels("expired").inc()
        self._alone(out, self._status(req, "expired", reason=reason, code=codes.EXPIRED))

    def _status(
        self,
        req: NotificationRequest,
        status: Status,
        *,
        channel: str | None = None,
        reason: str | None = None,
        code: str | None = None,
        release_at: float | None = None,
    ) -> StatusEvent:
        return StatusEvent(
            tenant_id=req.tenant_id,
            notification_id=req.id,
            status=status,
            at=time.time(),
            channel=channel,
            reason=reason,
            reason_code=code,
            next_attempt_at=release_at,
            origin=req.full_origin,
        )

    async def _template(self, tenant_id: str, template_id: str) -> Template | None:
        return await self.templates.get_or_load(
            f"{tenant_id}\x1f{template_id}", lambda: self.store.get_template(tenant_id, template_id)
        )

    async def _tenant(self, tenant_id: str) -> Tenant | None:
        return await self.tenants.get_or_load(tenant_id, lambda: self.store.get_tenant(tenant_id))
