"""herald campaigns: fans campaigns out to their recipients at their rate, with checkpoints.

Reading order: settings → :func:`run_loop` (health server, Redis, producer, readiness) → claim loop:
every ``HERALD_CAMPAIGNS_POLL_INTERVAL_S`` the campaigns due in the active set are claimed under a
lease in Redis (one replica per campaign at a time; renewed while it runs; a killed replica's lease
expires and another replica resumes from the checkpoint), each run by
:class:`~herald_campaigns.fanout.CampaignRun`. On SIGTERM each run finishes its batch and checkpoint,
releases its lease, and the producer is flushed. Stateless: everything is in Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time

import structlog
from redis.exceptions import RedisError

from herald_campaigns.fanout import CampaignRun, LeaseLost
from herald_campaigns.settings import CampaignsSettings
from herald_common import metrics
from herald_common.cache import TTLCache
from herald_common.campaigns.records import Records
from herald_common.campaigns.store import CampaignStore
from herald_common.ids import NotificationIds, wait_for_shared_secret
from herald_common.intake import Intake
from herald_common.lifecycle import Lifecycle
from herald_common.store import Store
from herald_common.worker import LoopContext, run_loop

log = structlog.get_logger()


async def serve(settings: CampaignsSettings, lifecycle: Lifecycle) -> None:
    async def claim_loop(ctx: LoopContext) -> None:
        secret = settings.id_secret_bytes() or await wait_for_shared_secret(ctx.redis, ctx.keys.id_secret())
        ids = NotificationIds(secret)
        store = CampaignStore(ctx.redis, ctx.keys)
        contacts = Store(ctx.redis, ctx.keys)
        token = secrets.token_hex(8)
        run = CampaignRun(
            store=store,
            records=Records(ctx.redis, ctx.keys),
            contacts=contacts,
            intake=Intake(
                producer=ctx.producer,
                redis=ctx.redis,
                keys=ctx.keys,
                topics=ctx.topics,
                store=contacts,
                category_cache=TTLCache(settings.template_cache_s),
                ids=ids,
                idempotency_ttl_s=3600,
            ),
            ids=ids,
            token=token,
            batch_max=settings.campaigns_batch_max,
            progress_s=settings.campaign_progress_s,
            stop=ctx.lifecycle.stopping,
        )
        running: dict[tuple[str, str], asyncio.Task[None]] = {}
        lease_s = settings.campaigns_lease_s

        async def one(tenant_id: str, campaign_id: str) -> None:
            async def renew() -> None:
                while True:
                    await asyncio.sleep(lease_s / 3)
                    if not await store.renew(tenant_id, campaign_id, token, lease_s):
                        return

            keeper = asyncio.create_task(renew())
            try:
                await run.run(tenant_id, campaign_id)
            except LeaseLost:
                log.warning("campaign lease lost; another replica has it", campaign=campaign_id)
            except Exception:
                log.exception(
                    "campaign run failed; it will be resumed", tenant=tenant_id, campaign=campaign_id
                )
            finally:
                keeper.cancel()
                with contextlib.suppress(Exception):
                    await store.release(tenant_id, campaign_id, token)

        log.info("fanning out campaigns", lease_s=lease_s, replica=token)
        while not ctx.lifecycle.stopping.is_set():
            ctx.lifecycle.beat()
            for key in [k for k, t in running.items() if t.done()]:
                del running[key]
            free = settings.campaigns_max_running - len(running)
            try:
                due = await store.due(time.time(), free + len(running)) if free > 0 else []
                for tenant_id, campaign_id in due:
                    if (tenant_id, campaign_id) in running or len(running) >= settings.campaigns_max_running:
                        continue
                    if await store.lease(tenant_id, campaign_id, token, lease_s):
                        running[(tenant_id, campaign_id)] = asyncio.create_task(one(tenant_id, campaign_id))
            except (RedisError, OSError) as exc:  # waited out: the next round tries again
                log.warning("could not look for campaigns", error=repr(exc))
            metrics.CAMPAIGNS_RUNNING.set(len(running))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ctx.lifecycle.stopping.wait(), settings.campaigns_poll_interval_s)
        if running:  # draining: each run finishes its batch and checkpoint, then releases its lease
            await asyncio.gather(*running.values(), return_exceptions=True)

    await run_loop(service="campaigns", settings=settings, lifecycle=lifecycle, loop=claim_loop)
