"""The runtimes shared by Herald's services, so each service's main reads settings → serve:

- :func:`run_worker` for consumer services (router, sender, tracker): a consumer runner over a
  handler built from the worker's clients;
- :func:`run_loop` for loop services (scheduler): one long-running coroutine over the same clients.

Both start the health server, Redis and the producer once, register readiness checks (Redis, Kafka),
and on SIGTERM run the scripted drain: not ready at once, the loop finishes the work in hand within
``drain_timeout_s`` (then it is cancelled and its work left for redelivery), the producer is flushed,
pools are closed. If the loop dies on its own its error is raised.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import structlog
from aiokafka import AIOKafkaProducer

from herald_common.health import start_health_server
from herald_common.kafka import ConsumerRunner, DeadLetters, ErrorPolicy, Handler, make_producer
from herald_common.lifecycle import Lifecycle
from herald_common.redisio import Keys, make_redis
from herald_common.service import wait_drained
from herald_common.settings import CommonSettings, ConsumerSettings
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
    dead_letters: DeadLetters  # this service's dead-letter topic, shared with the runner


@dataclass(slots=True)
class LoopContext:
    settings: CommonSettings
    producer: AIOKafkaProducer
    redis: aioredis.Redis
    topics: Topics
    keys: Keys
    lifecycle: Lifecycle


# Builds the record handler from the worker's clients; the second item closes what it opened (or None).
HandlerFactory = Callable[[WorkerContext], Awaitable[tuple[Handler, Callable[[], Awaitable[None]] | None]]]
# The loop service's work: runs until ``ctx.lifecycle.stopping`` is set, finishing the round in hand.
Loop = Callable[[LoopContext], Coroutine[Any, Any, None]]


@dataclass(slots=True)
class _Clients:
    producer: AIOKafkaProducer
    redis: aioredis.Redis


@contextlib.asynccontextmanager
async def _clients(
    settings: CommonSettings, lifecycle: Lifecycle, **producer_options: object
) -> AsyncIterator[_Clients]:
    """Health server, Redis and a started producer; on the way out: flush, close, and say so."""
    health = await start_health_server(lifecycle, settings.health_host, settings.health_port)
    clients = _Clients(make_producer(settings, **producer_options), make_redis(settings))
    try:
        await clients.producer.start()
        lifecycle.add_check("redis", clients.redis.ping)
        yield clients
    finally:
        lifecycle.request_stop("shutdown")
        await clients.producer.stop()  # flushes anything still buffered
        await clients.redis.aclose()
        await health.cleanup()
        log.info("drained")


async def _until_drained(
    name: str, work: Coroutine[Any, Any, None], lifecycle: Lifecycle, timeout_s: float
) -> None:
    """Run ``work`` until it finishes draining after SIGTERM; raise if it ends on its own first."""
    lifecycle.started = True
    task = asyncio.create_task(work, name=name)
    stop = asyncio.create_task(wait_drained(task, lifecycle, timeout_s))
    done, _ = await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    if task in done and not lifecycle.stopping.is_set():
        stop.cancel()
        task.result()  # the loop died on its own: surface the error
        raise RuntimeError(f"{name} ended unexpectedly")
    await stop


async def run_worker(
    *,
    service: str,
    settings: ConsumerSettings,
    lifecycle: Lifecycle,
    topics: Sequence[str],
    group_id: str,
    make_handler: HandlerFactory,
    pattern: str | None = None,
    metadata_refresh_s: float | None = None,
    latency_sensitive: bool = False,
) -> None:
    """Run until SIGTERM (or ``lifecycle.request_stop``); raise if the consume loop dies. With
    ``pattern`` the runner subscribes to every topic matching it instead of ``topics``;
    ``latency_sensitive``: see :class:`ConsumerRunner`."""
    names = Topics(settings.kafka_topic_prefix)
    close_handler: Callable[[], Awaitable[None]] | None = None
    async with _clients(settings, lifecycle) as clients:
        try:
            dead_letter_topic = names.dead_letters(service)
            dead_letters = DeadLetters(clients.producer, dead_letter_topic, service)
            ctx = WorkerContext(
                settings,
                clients.producer,
                clients.redis,
                names,
                Keys(settings.redis_prefix),
                lifecycle,
                dead_letters,
            )
            handler, close_handler = await make_handler(ctx)
            runner = ConsumerRunner(
                service=service,
                topics=topics,
                group_id=group_id,
                settings=settings,
                handler=handler,
                producer=clients.producer,
                lifecycle=lifecycle,
                error_policy=ErrorPolicy(dead_letter_topic=dead_letter_topic),
                dead_letters=dead_letters,
                pattern=pattern,
                metadata_refresh_s=metadata_refresh_s,
                latency_sensitive=latency_sensitive,
            )
            await runner.start()
            lifecycle.add_check("kafka", runner.ready)
            log.info("consuming", topics=list(topics), pattern=pattern, group=group_id)
            await _until_drained(f"{service}-consume", runner.run(), lifecycle, settings.drain_timeout_s)
        finally:
            lifecycle.request_stop("shutdown")
            if close_handler is not None:
                await close_handler()


async def run_loop(*, service: str, settings: CommonSettings, lifecycle: Lifecycle, loop: Loop) -> None:
    """Run ``loop`` until SIGTERM (or ``lifecycle.request_stop``); raise if it ends on its own."""
    async with _clients(settings, lifecycle, client_id=f"herald-{service}") as clients:
        producer = clients.producer

        async def kafka_ok() -> bool:
            await producer.client.fetch_all_metadata()
            return True

        lifecycle.add_check("kafka", kafka_ok)
        ctx = LoopContext(
            settings,
            producer,
            clients.redis,
            Topics(settings.kafka_topic_prefix),
            Keys(settings.redis_prefix),
            lifecycle,
        )
        await _until_drained(f"{service}-loop", loop(ctx), lifecycle, settings.drain_timeout_s)
