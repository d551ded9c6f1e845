"""herald router --lane transactional|bulk: requests in, one delivery per channel out. The transactional
router also consumes loyalty events (``<prefix>.events``, and every tenant's own events topic, found by a
pattern subscription) and turns them into requests through their triggers."""

from __future__ import annotations

import asyncio
import re

from aiokafka.structs import ConsumerRecord

from herald_common.ids import NotificationIds, wait_for_shared_secret
from herald_common.kafka import Handler
from herald_common.lifecycle import Lifecycle
from herald_common.topics import Topics
from herald_common.unsubscribe import Links, Tokens, link_key
from herald_common.worker import WorkerContext, run_worker
from herald_router.events import EventRouter
from herald_router.handler import Router
from herald_router.settings import RouterSettings
from herald_router.tenant_events import TenantEvents


def subscription(topics: Topics, lane: str) -> str:
    """The transactional router's pattern: its requests, the events topic and every tenant's own."""
    fixed = "|".join(re.escape(t) for t in (topics.requests(lane), topics.events))
    return rf"^(?:{fixed}|{topics.tenant_events_pattern[1:-1]})$"


class Dispatch:
    """The transactional router's records by topic: requests to the router (a fetched batch's at once),
    loyalty events to the event router, one key's after another and other keys concurrently."""

    def __init__(
        self, requests: str, router: Router, events: EventRouter, tenant_events: TenantEvents
    ) -> None:
        self.requests = requests
        self.router = router
        self.events = events
        self.tenant_events = tenant_events
        self.topics = router.ctx.topics

    async def __call__(self, rec: ConsumerRecord) -> None:
        if rec.topic == self.requests:  # the common case first: no topic-name matching
            await self.router.handle(rec)
        elif rec.topic == self.topics.events:
            await self.events.handle(rec)
        elif (tenant_id := self.topics.tenant_of(rec.topic)) is not None:
            await self.tenant_events.handle(rec, tenant_id)
        else:
            await self.router.handle(rec)

    async def many(self, recs: list[ConsumerRecord]) -> list[ConsumerRecord]:
        requests = [rec for rec in recs if rec.topic == self.requests]
        by_key: dict[tuple[str, bytes | None], list[ConsumerRecord]] = {}
        for rec in recs:
            if rec.topic != self.requests:
                by_key.setdefault((rec.topic, rec.key), []).append(rec)

        async def in_order(records: list[ConsumerRecord]) -> None:
            for rec in records:
                await self(rec)

        try:
            async with asyncio.TaskGroup() as group:  # one failing cancels the rest: the batch is retried
                routed = group.create_task(self.router.many(requests))
                for records in by_key.values():
                    group.create_task(in_order(records))
        except ExceptionGroup as failed:  # the error policy judges the error itself (a poison record)
            raise failed.exceptions[0] from None
        return routed.result()


async def serve(settings: RouterSettings, lifecycle: Lifecycle) -> None:
    topics = Topics(settings.kafka_topic_prefix)
    with_events = settings.router_lane == "transactional"

    async def make_handler(ctx: WorkerContext) -> tuple[Handler, None]:
        secret = settings.id_secret_bytes() or await wait_for_shared_secret(ctx.redis, ctx.keys.id_secret())
        unsubscribe = settings.unsubscribe_secret.get_secret_value() if settings.unsubscribe_secret else None
        links = Links(Tokens(link_key(unsubscribe, secret)), settings.public_base_url)
        router = Router(ctx, settings.template_cache_s, report_queued=settings.reports_queued(), links=links)
        if not with_events:
            return router, None
        ids = NotificationIds(secret)
        events = EventRouter(
            ctx,
            ids,
            template_cache_s=settings.template_cache_s,
            idempotency_ttl_s=settings.idempotency_ttl_s,
            outcome_ttl_s=settings.event_outcome_ttl_s,
        )
        tenant_events = TenantEvents(ctx, ids, events, tenant_cache_s=settings.template_cache_s)

        return Dispatch(topics.requests(settings.router_lane), router, events, tenant_events), None

    await run_worker(
        service="router",
        settings=settings,
        lifecycle=lifecycle,
        topics=[topics.requests(settings.router_lane), *([topics.events] if with_events else [])],
        group_id=topics.group("router", settings.router_lane),
        make_handler=make_handler,
        pattern=subscription(topics, settings.router_lane) if with_events else None,
        metadata_refresh_s=settings.tenant_events_refresh_s if with_events else None,
        latency_sensitive=with_events,  # the transactional lane
    )
