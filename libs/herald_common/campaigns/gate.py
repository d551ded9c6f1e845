"""Whether a campaign is paused, as the bulk senders ask just before calling the provider.

Pausing sets ``…:campaign:<id>:paused``; resuming and cancelling clear it. A sender remembers each
campaign's answer for :data:`CACHE_S`, so a paused campaign stops reaching the provider within that
much of the pause (plus one provider call in flight), at one Redis read per campaign per
:data:`CACHE_S` however many messages pass. A delivery of a paused campaign is parked in the scheduler
for :data:`PARK_S` and comes back to be asked again.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from herald_common.redisio import Keys, auto_pipeline

CACHE_S = 0.4
PARK_S = 2.0


class CampaignGate:
    def __init__(self, redis: aioredis.Redis, keys: Keys, cache_s: float = CACHE_S) -> None:
        self.keys, self.cache_s = keys, cache_s
        self._auto = auto_pipeline(redis)
        self._known: dict[tuple[str, str], tuple[float, bool]] = {}

    async def paused(self, tenant_id: str, campaign_id: str) -> bool:
        now = time.monotonic()
        known = self._known.get((tenant_id, campaign_id))
        if known is not None and known[0] > now:
            return known[1]
        key = self.keys.campaign(tenant_id, campaign_id, "paused")
        paused = bool(await self._auto.call(lambda pipe: pipe.exists(key)))
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[(tenant_id, campaign_id)] = (now + self.cache_s, paused)
        return paused
