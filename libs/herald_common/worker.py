"""The runtime shared by every consumer service (router, sender, tracker): health server, Redis,
producer, consumer runner, readiness checks, and the scripted drain on SIGTERM."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog
from aiokafka import AIOKafkaProducer

from herald_common.health import start_health_server
from herald_common.kafka import ConsumerRunner, ErrorPolicy, Handler, make_producer
from herald_common.lifecycle import Lifecycle
from herald_common.redisio import Keys, make_redis
from herald_common.service import wait_drained
from herald_common.settings import ConsumerSettings
from herald_common.topics import Topics

log = structlog.get_logger()


@dataclass(slots=True)
class WorkerContext:
    settings: ConsumerSettings
    producer: AIOKafkaProducer
    redis: aioredis.Redis
    topics: Topics
    keys: Keys
    lifecycle: Lifecycle


# Builds the record handler from the worker's clients; the second item closes what it opened (or None).
HandlerFactory = Callable[[WorkerContext], Awaitable[tuple[Handler, Callable[[], Awaitable[None]] | None]]]


async def run_worker(
    *,
    service: str,
    settings: ConsumerSettings,
    lifecycle: Lifecycle,
    topics: Sequence[str],
    group_id: str,
    make_handler: HandlerFactory,
) -> None:
    """Run until SIGTERM (or ``lifecycle.request_stop``); raise if the consume loop dies."""
    names = Topics(settings.kafka_topic_prefix)
    health = await start_health_server(lifecycle, settings.health_host, settings.health_port)
    redis = make_redis(settings)
    producer = make_producer(settings)
    ctx = WorkerContext(settings, producer, redis, names, Keys(settings.redis_prefix), lifecycle)
    close_handler: Callable[[], Awaitable[None]] | None = None
    try:
        await producer.start()
        handler, close_handler = await make_handler(ctx)
        runner = ConsumerRunner(
            service=service,
            topics=topics,
            group_id=group_id,
            settings=settings,
            handler=handler,
            producer=producer,
            lifecycle=lifecycle,
            error_policy=ErrorPolicy(dead_letter_topic=names.dead_letters(service)),
        )
        await runner.start()
        lifecycle.add_check("redis", redis.ping)
        lifecycle.add_check("kafka", runner.ready)
        lifecycle.started = True
        log.info("consuming", topics=list(topics), group=group_id)
        task = asyncio.create_task(runner.run(), name=f"{service}-consume")
        stop = asyncio.create_task(wait_drained(task, lifecycle, settings.drain_timeout_s))
        done, _ = await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        if task in done and not lifecycle.stopping.is_set():
            stop.cancel()
            task.result()  # the consume loop died on its own: surface the error
            raise RuntimeError("consume loop ended unexpectedly")
        await stop
    finally:
        lifecycle.request_stop("shutdown")
        if close_handler is not None:
            await close_handler()
        await producer.stop()  # flushes anything still buffered
        await redis.aclose()
        await health.cleanup()
        log.info("drained")
