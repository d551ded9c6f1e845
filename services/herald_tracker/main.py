"""herald tracker: folds status events into per-notification status in Redis."""

from __future__ import annotations

from functools import partial

import pydantic
from aiokafka.structs import ConsumerRecord

from herald_common import metrics
from herald_common.campaigns.records import Records
from herald_common.campaigns.records import observer as campaign_records
from herald_common.kafka import Handler, PoisonRecord
from herald_common.lifecycle import Lifecycle
from herald_common.message_log import MessageLog
from herald_common.redisio import auto_pipeline, queue_all
from herald_common.stats import Stats
from herald_common.status import StatusObserver, StatusStore
from herald_common.topics import Topics
from herald_common.wire import StatusEvent
from herald_common.worker import WorkerContext, run_worker
from herald_tracker.settings import TrackerSettings


async def serve(settings: TrackerSettings, lifecycle: Lifecycle) -> None:
    topics = Topics(settings.kafka_topic_prefix)

    async def make_handler(ctx: WorkerContext) -> tuple[Handler, None]:
        store = StatusStore(ctx.redis, settings.status_ttl_s)
        # What else follows the status stream, each told what an event changed (herald_common.status.Folded).
        observers: list[StatusObserver] = [
            Stats(ctx.redis, ctx.keys, settings.stats_retention_days).plan,
            MessageLog(ctx.redis, ctx.keys, settings).plan,
            campaign_records(Records(ctx.redis, ctx.keys)),
        ]
        auto = auto_pipeline(ctx.redis)

        async def handle(rec: ConsumerRecord) -> None:
            try:
                event = StatusEvent.model_validate_json(rec.value)
            except (pydantic.ValidationError, ValueError) as exc:
                raise PoisonRecord(f"unreadable status event: {exc}") from exc
            folded = await store.fold(ctx.keys.notification(event.tenant_id, event.notification_id), event)
            builds = [build for plan in observers if (build := plan(event, folded)) is not None]
            if builds:  # every observer's commands in one pipeline, one round trip per event
                await auto.call(partial(queue_all, builds))
            metrics.STATUS_EVENTS.labels(event.status).inc()

        return handle, None

    await run_worker(
        service="tracker",
        settings=settings,
        lifecycle=lifecycle,
        topics=[topics.status],
        group_id=topics.group("tracker"),
        make_handler=make_handler,
    )
