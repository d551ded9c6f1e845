"""Per-notification status in Redis: written by the tracker (and the gateway's first "accepted"),
read by ``GET /v1/notifications/{id}``.

One hash per notification. Field ``n`` holds the notification-level record, ``c:<channel>`` one
record per channel; ``r:<field>`` holds that record's rank so that a late, older event never
overwrites a newer one (events for one notification can arrive out of order across partitions).
The overall status is derived when read, never stored.
"""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis

from herald_common.schemas import StatusEvent

RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "bounced": 4,
    "failed": 4,
    "suppressed": 4,
    "expired": 4,
    "cancelled": 4,
}
TERMINAL = frozenset(s for s, r in RANK.items() if r == 4)

_UPDATE = """
local cur = redis.call('HGET', KEYS[1], 'r:' .. ARGV[1])
if cur and tonumber(cur) > tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], 'r:' .. ARGV[1], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""


class StatusStore:
    def __init__(self, redis: aioredis.Redis, ttl_s: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self._update = redis.register_script(_UPDATE)

    async def apply(self, key: str, event: StatusEvent) -> bool:
        """Fold one event in; returns False when it was older than what is stored."""
        field = f"c:{event.channel}" if event.channel else "n"
        record = {
            "status": event.status,
            "updated_at": event.at,
            "provider": event.provider,
            "provider_message_id": event.provider_message_id,
            "attempts": event.attempts,
            "reason": event.reason,
        }
        record = {k: v for k, v in record.items() if v is not None}
        return bool(
            await self._update(keys=[key], args=[field, orjson.dumps(record), RANK[event.status], self.ttl_s])
        )

    async def accept(self, key: str, meta: dict[str, Any], at: float) -> None:
        record = orjson.dumps({"status": "accepted", "updated_at": at})
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hsetnx(key, "meta", orjson.dumps(meta))
            pipe.hsetnx(key, "n", record)
            pipe.hsetnx(key, "r:n", 0)
            pipe.expire(key, self.ttl_s)
            await pipe.execute()

    async def read(self, key: str, notification_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hgetall(key)
        if not raw:
            return None
        return view(notification_id, {k.decode(): v for k, v in raw.items()})


def overall(n: dict[str, Any], channels: dict[str, dict[str, Any]]) -> str:
    if n.get("status") in TERMINAL and not channels:
        return str(n["status"])
    states = [c["status"] for c in channels.values()]
    if not states:
        return str(n.get("status", "accepted"))
    for best in ("delivered", "sent", "sending"):
        if best in states:
            return best
    if any(s in ("queued", "scheduled", "accepted") for s in states):
        return "scheduled" if "scheduled" in states else "accepted"
    for s in ("bounced", "failed", "expired", "cancelled"):
        if s in states:
            return s
    return "suppressed"


def view(notification_id: str, fields: dict[str, bytes]) -> dict[str, Any]:
    meta = orjson.loads(fields["meta"]) if "meta" in fields else {}
    n = orjson.loads(fields["n"]) if "n" in fields else {"status": "accepted"}
    channels = {
        name[2:]: orjson.loads(value) for name, value in sorted(fields.items()) if name.startswith("c:")
    }
    out: dict[str, Any] = {
        "id": notification_id,
        "status": overall(n, channels),
        "accepted_at": meta.get("accepted_at"),
        "lane": meta.get("lane"),
        "channels": channels,
    }
    if n.get("reason"):
        out["reason"] = n["reason"]
    return out
