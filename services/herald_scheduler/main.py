"""herald scheduler: holds delayed work in Redis and produces it back onto its topic when due.

Reading order: settings → :func:`run_loop` (health server, Redis, producer, readiness) → release
loop → on SIGTERM finish the round in hand (produce, ack), flush the producer, close. Replicas share
the work safely: claims are atomic with a lease (see herald_common.delayed).
"""

from __future__ import annotations

import structlog

from herald_common.delayed import DelayQueue
from herald_common.lifecycle import Lifecycle
from herald_common.worker import LoopContext, run_loop
from herald_scheduler.releaser import Releaser
from herald_scheduler.settings import SchedulerSettings

log = structlog.get_logger()


async def serve(settings: SchedulerSettings, lifecycle: Lifecycle) -> None:
    async def release(ctx: LoopContext) -> None:
        releaser = Releaser(
            DelayQueue(ctx.redis, ctx.keys),
            ctx.producer,
            ctx.lifecycle,
            batch=settings.scheduler_batch,
            lease_s=settings.scheduler_lease_s,
            poll_interval_s=settings.scheduler_poll_interval_s,
        )
        log.info("releasing delayed work", lease_s=settings.scheduler_lease_s)
        await releaser.run()

    await run_loop(service="scheduler", settings=settings, lifecycle=lifecycle, loop=release)
