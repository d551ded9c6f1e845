"""What members do with a message once it arrived: opens, clicks, unsubscribes, spam reports.

Recorded by the gateway as provider receipts come in (herald_providers.receipts_sendgrid; SMS STOP
replies in herald_gateway.replies), straight into the notification's status hash: field
``e:<channel>:<kind>`` holds the time of the first such event (HSETNX), which ``GET
/v1/notifications/{id}`` and the message log show as ``<kind>_at`` on the channel (``opened_at``,
``clicked_at``, ``unsubscribed_at``, ``complained_at``). The delivery status and its rank are left
alone. The first event of a kind on a message's channel moves the day's counter (herald_common.stats:
``opened``, ``clicked``, ``unsubscribed``, ``complaints``) under the notification's template, campaign,
trigger and channel; later ones (a second open) and replays (deduplicated before this by event id)
count nothing.
"""

from __future__ import annotations

from typing import Final, Literal

import redis.asyncio as aioredis

from herald_common.redisio import Keys
from herald_common.stats import Stats
from herald_common.wire import Origin

Kind = Literal["opened", "clicked", "unsubscribed", "complained"]
COUNTER: Final[dict[str, str]] = {
    "opened": "opened",
    "clicked": "clicked",
    "unsubscribed": "unsubscribed",
    "complained": "complaints",
}


class Engagement:
    def __init__(self, redis: aioredis.Redis, keys: Keys, stats: Stats, status_ttl_s: int) -> None:
        self.redis = redis
        self.keys = keys
        self.stats = stats
        self.status_ttl_s = status_ttl_s

    async def record(self, tenant_id: str, notification_id: str, channel: str, kind: Kind, at: float) -> bool:
        """Note the event on the notification's channel; True (and counted) when it is the first."""
        key = self.keys.notification(tenant_id, notification_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, f"e:{channel}:{kind}", repr(at))
            pipe.hget(key, "o")
            pipe.expire(key, self.status_ttl_s)
            first, origin, _ = await pipe.execute()
        if first:
            known = Origin.model_validate_json(origin) if origin else None
            await self.stats.count(tenant_id, at, known, channel, [COUNTER[kind]])
        return bool(first)
