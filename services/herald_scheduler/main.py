"""herald scheduler: holds delayed work in Redis and produces it back onto its topic when due.

Reading order: settings → health server, Redis, producer → release loop → on SIGTERM finish the
round in hand (produce, ack), flush the producer, close. Replicas share the work safely: claims are
atomic with a lease (see herald_common.delayed).
"""

from __future__ import annotations

import asyncio

import structlog

from herald_common.delayed import DelayQueue
from herald_common.health import start_health_server
from herald_common.kafka import make_producer
from herald_common.lifecycle import Lifecycle
from herald_common.redisio import Keys, make_redis
from herald_common.service import wait_drained
from herald_scheduler.releaser import Releaser
from herald_scheduler.settings import SchedulerSettings

log = structlog.get_logger()


async def serve(settings: SchedulerSettings, lifecycle: Lifecycle) -> None:
    health = await start_health_server(lifecycle, settings.health_host, settings.health_port)
    redis = make_redis(settings)
    producer = make_producer(settings, client_id="herald-scheduler")
    try:
        await producer.start()

        async def kafka_ok() -> bool:
            await producer.client.fetch_all_metadata()
            return True

        lifecycle.add_check("redis", redis.ping)
        lifecycle.add_check("kafka", kafka_ok)
        releaser = Releaser(
            DelayQueue(redis, Keys(settings.redis_prefix)),
            producer,
            lifecycle,
            batch=settings.scheduler_batch,
            lease_s=settings.scheduler_lease_s,
            poll_interval_s=settings.scheduler_poll_interval_s,
        )
        lifecycle.started = True
        log.info("releasing delayed work", lease_s=settings.scheduler_lease_s)
        task = asyncio.create_task(releaser.run(), name="scheduler-release")
        stop = asyncio.create_task(wait_drained(task, lifecycle, settings.drain_timeout_s))
        done, _ = await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        if task in done and not lifecycle.stopping.is_set():
            stop.cancel()
            task.result()
            raise RuntimeError("release loop ended unexpectedly")
        await stop
    finally:
        lifecycle.request_stop("shutdown")
        await producer.stop()
        await redis.aclose()
        await health.cleanup()
        log.info("drained")
