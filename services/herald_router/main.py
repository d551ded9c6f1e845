"""herald router --lane transactional|bulk: requests in, one delivery per channel out."""

from __future__ import annotations

from herald_common.kafka import Handler
from herald_common.lifecycle import Lifecycle
from herald_common.topics import Topics
from herald_common.worker import WorkerContext, run_worker
from herald_router.handler import Router
from herald_router.settings import RouterSettings


async def serve(settings: RouterSettings, lifecycle: Lifecycle) -> None:
    topics = Topics(settings.kafka_topic_prefix)

    async def make_handler(ctx: WorkerContext) -> tuple[Handler, None]:
        router = Router(ctx, settings.template_cache_s, report_queued=settings.reports_queued())

        return router.handle, None

    await run_worker(
        service="router",
        settings=settings,
        lifecycle=lifecycle,
        topics=[topics.requests(settings.router_lane)],
        group_id=topics.group("router", settings.router_lane),
        make_handler=make_handler,
    )
