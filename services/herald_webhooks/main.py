"""herald webhooks: tells a tenant's systems what happened, over signed webhooks.

One consumer group (``<prefix>.webhooks``) reads three topics: ``<prefix>.status`` and
``<prefix>.notices`` (event decisions, campaign progress), fanned out into one delivery per subscribed
endpoint (herald_webhooks.fanout) on ``<prefix>.webhooks``, and that topic
itself, each record one signed delivery attempt (herald_webhooks.deliver); failed attempts come back
onto it through the scheduler's delayed queue. Senders never wait on a tenant's endpoint: this service
has its own consumers, replicas and HTTP client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
from aiokafka.structs import ConsumerRecord

from herald_common.delayed import DelayQueue
from herald_common.kafka import Handler
from herald_common.lifecycle import Lifecycle
from herald_common.topics import Topics
from herald_common.webhooks.store import WebhookStore
from herald_common.worker import WorkerContext, run_worker
from herald_webhooks.deliver import Deliverer
from herald_webhooks.fanout import Fanout
from herald_webhooks.settings import WebhooksSettings


async def serve(settings: WebhooksSettings, lifecycle: Lifecycle) -> None:
    topics = Topics(settings.kafka_topic_prefix)

    async def make_handler(ctx: WorkerContext) -> tuple[Handler, Callable[[], Awaitable[None]]]:
        store = WebhookStore(ctx.redis, ctx.keys)
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256, limit_per_host=32))
        fanout = Fanout(store, ctx.producer, topics.webhooks, settings.webhook_endpoint_cache_s)
        deliverer = Deliverer(
            settings, store, http, DelayQueue(ctx.redis, ctx.keys), ctx.dead_letters, topics.webhooks
        )

        async def handle(rec: ConsumerRecord) -> None:
            if rec.topic == topics.status:
                await fanout.handle(rec)
            elif rec.topic == topics.notices:
                await fanout.handle_notice(rec)
            else:
                await deliverer.handle(rec)

        return handle, http.close

    await run_worker(
        service="webhooks",
        settings=settings,
        lifecycle=lifecycle,
        topics=[topics.status, topics.notices, topics.webhooks],
        group_id=topics.group("webhooks"),
        make_handler=make_handler,
    )
