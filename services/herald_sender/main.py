"""herald sender --channel email|sms|push --lane transactional|bulk: deliveries in, provider out.

Reading order: settings → the channel's providers (failover chain, breakers, shared rate limits,
SendGrid micro-batcher; the batching sender, herald_sender.batch, takes whole fetched batches) → the
worker runtime (health server, Redis, producer, consumer runner) → drain on SIGTERM.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from herald_common.kafka import Handler
from herald_common.lifecycle import Lifecycle
from herald_common.topics import Topics
from herald_common.worker import WorkerContext, run_worker
from herald_sender.batch import BatchSender
from herald_sender.handler import Sender
from herald_sender.outbound import build_outbound
from herald_sender.settings import SenderSettings


async def serve(settings: SenderSettings, lifecycle: Lifecycle) -> None:
    topics = Topics(settings.kafka_topic_prefix)
    try:
        settings.providers()  # a provider that cannot serve this channel stops the process at once
    except ValueError as exc:
        raise SystemExit(f"sender for {settings.sender_channel}: {exc}") from None

    async def make_handler(ctx: WorkerContext) -> tuple[Handler, Callable[[], Awaitable[None]]]:
        outbound = build_outbound(settings, ctx.redis)
        await outbound.start()
        sender = Sender(ctx, settings, outbound)
        if outbound.batcher is not None and outbound.fair is None:  # many messages per provider request
            return BatchSender(sender, settings.sendgrid_batch_max), outbound.close
        return sender.handle, outbound.close

    await run_worker(
        service="sender",
        settings=settings,
        lifecycle=lifecycle,
        topics=[topics.deliveries(settings.sender_channel, settings.sender_lane)],
        group_id=topics.group("sender", settings.sender_channel, settings.sender_lane),
        make_handler=make_handler,
        latency_sensitive=settings.sender_lane == "transactional",
    )
