"""herald tracker: folds status events into per-notification status in Redis."""

from __future__ import annotations

from collections import Counter
from functools import partial

import pydantic
from aiokafka.structs import ConsumerRecord

from herald_common import metrics
from herald_common.campaigns.records import Records
from herald_common.campaigns.records import observer as campaign_records
from herald_common.kafka import PoisonRecord
from herald_common.lifecycle import Lifecycle
from herald_common.message_log import MessageLog
from herald_common.redisio import AutoPipeline, auto_pipeline, queue_all
from herald_common.stats import Stats
from herald_common.status import StatusObserver, StatusStore
from herald_common.topics import Topics
from herald_common.wire import StatusEvent
from herald_common.worker import WorkerContext, run_worker
from herald_tracker.settings import TrackerSettings


class Tracker:
    """The status topic's handler. Each fetched batch is folded at once (``many``: the runner's batch
    mode), since a fold is ranked and never depends on the order events arrive in: one pipeline of fold
    scripts for the batch, then one of every observer's commands. A record alone (a batch's fallback)
    goes through ``__call__``."""

    def __init__(self, ctx: WorkerContext, settings: TrackerSettings) -> None:
        self.keys = ctx.keys
        self.store = StatusStore(ctx.redis, settings.status_ttl_s)
        # What else follows the status stream, each told what an event changed (herald_common.status.Folded).
        self.observers: list[StatusObserver] = [
            Stats(ctx.redis, ctx.keys, settings.stats_retention_days).plan,
            MessageLog(ctx.redis, ctx.keys, settings).plan,
            campaign_records(Records(ctx.redis, ctx.keys)),
        ]
        self.auto: AutoPipeline = auto_pipeline(ctx.redis)

    async def __call__(self, rec: ConsumerRecord) -> None:
        try:
            event = StatusEvent.model_validate_json(rec.value)
        except (pydantic.ValidationError, ValueError) as exc:
            raise PoisonRecord(f"unreadable status event: {exc}") from exc
        await self._fold([event])

    async def many(self, recs: list[ConsumerRecord]) -> list[ConsumerRecord]:
        events: list[StatusEvent] = []
        unreadable: list[ConsumerRecord] = []
        for rec in recs:
            try:
                events.append(StatusEvent.model_validate_json(rec.value))
            except (pydantic.ValidationError, ValueError):
                unreadable.append(rec)
        if events:
            await self._fold(events)
        return unreadable

    async def _fold(self, events: list[StatusEvent]) -> None:
        keys = [self.keys.notification(e.tenant_id, e.notification_id) for e in events]
        folded = await self.store.fold_many(list(zip(keys, events, strict=True)))
        builds = [
            build
            for event, done in zip(events, folded, strict=True)
            for plan in self.observers
            if (build := plan(event, done)) is not None
        ]
        if builds:  # every observer's commands for the whole batch in one pipeline
            await self.auto.call(partial(queue_all, builds))
        for status, n in Counter(e.status for e in events).items():
            metrics.STATUS_EVENTS.labels(status).inc(n)


async def serve(settings: TrackerSettings, lifecycle: Lifecycle) -> None:
    topics = Topics(settings.kafka_topic_prefix)

    async def make_handler(ctx: WorkerContext) -> tuple[Tracker, None]:
        return Tracker(ctx, settings), None

    await run_worker(
        service="tracker",
        settings=settings,
        lifecycle=lifecycle,
        topics=[topics.status],
        group_id=topics.group("tracker"),
        make_handler=make_handler,
    )
