"""herald router --lane transactional|bulk: requests in, one delivery per channel out. The transactional
router also consumes loyalty events (``<prefix>.events``, and every tenant's own events topic, found by a
pattern subscription) and turns them into requests through their triggers."""

from __future__ import annotations

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


async def serve(settings: RouterSettings, lifecycle: Lifecycle) -> None:
    topics = Topics(settings.kafka_topic_prefix)
    with_events = settings.router_lane == "transactional"

    async def make_handler(ctx: WorkerContext) -> tuple[Handler, None]:
        secret = settings.id_secret_bytes() or await wait_for_shared_secret(ctx.redis, ctx.keys.id_secret())
        unsubscribe = settings.unsubscribe_secret.get_secret_value() if settings.unsubscribe_secret else None
        links = Links(Tokens(link_key(unsubscribe, secret)), settings.public_base_url)
        router = Router(ctx, settings.template_cache_s, report_queued=settings.reports_queued(), links=links)
        if not with_events:
            return router.handle, None
        ids = NotificationIds(secret)
        events = EventRouter(
            ctx,
            ids,
            template_cache_s=settings.template_cache_s,
            idempotency_ttl_s=settings.idempotency_ttl_s,
            outcome_ttl_s=settings.event_outcome_ttl_s,
        )
        tenant_events = TenantEvents(ctx, ids, events, tenant_cache_s=settings.template_cache_s)

        requests = topics.requests(settings.router_lane)

        async def handle(rec: ConsumerRecord) -> None:
            if rec.topic == requests:  # the common case first: no topic-name matching
                await router.handle(rec)
            elif rec.topic == topics.events:
                await events.handle(rec)
            elif (tenant_id := topics.tenant_of(rec.topic)) is not None:
                await tenant_events.handle(rec, tenant_id)
            else:
                await router.handle(rec)

        return handle, None

    await run_worker(
        service="router",
        settings=settings,
        lifecycle=lifecycle,
        topics=[topics.requests(settings.router_lane), *([topics.events] if with_events else [])],
        group_id=topics.group("router", settings.router_lane),
        make_handler=make_handler,
        pattern=subscription(topics, settings.router_lane) if with_events else None,
        metadata_refresh_s=settings.tenant_events_refresh_s if with_events else None,
    )
