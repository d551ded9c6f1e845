"""Webhook endpoints and their health in Redis.

- ``{prefix}:t:{tenant}:webhooks`` — hash, endpoint id → :class:`Endpoint` as JSON (written by the
  gateway, read by the webhooks service);
- ``{prefix}:t:{tenant}:webhook-health:{id}`` — hash: the endpoint's failure streak and pause, written
  by the webhooks service after each attempt and cleared by the gateway when the endpoint is saved.

Pause rule (:meth:`WebhookStore.record_failure`, one Lua script so replicas agree): an endpoint is
paused when its last ``min_failures`` or more attempts all failed *and* the first of them is at least
``after_s`` old. One success ends the streak. A paused endpoint is not called again; its deliveries
are dead-lettered (``herald dlq replay --service webhooks`` sends them again) until the tenant saves
the endpoint again with ``PUT /v1/webhooks/{id}``, which clears the pause.
"""

from __future__ import annotations

import time

import orjson
import redis.asyncio as aioredis

from herald_common.redisio import Keys, register_script
from herald_common.webhooks.model import Endpoint, Health

_FAILURE = """
redis.call('HSETNX', KEYS[1], 'failing_since', ARGV[1])
local n = redis.call('HINCRBY', KEYS[1], 'consecutive_failures', 1)
redis.call('HSET', KEYS[1], 'last_error', ARGV[2], 'last_error_at', ARGV[1])
local since = tonumber(redis.call('HGET', KEYS[1], 'failing_since'))
local paused = redis.call('HGET', KEYS[1], 'paused')
if paused == '1' then return 1 end
if n >= tonumber(ARGV[3]) and tonumber(ARGV[1]) - since >= tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'paused', '1', 'paused_at', ARGV[1], 'paused_reason', ARGV[5])
  return 2
end
return 0
"""


class WebhookStore:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._failure = register_script(redis, _FAILURE)

    # endpoints ----------------------------------------------------------------------------------------
    async def put(self, endpoint: Endpoint) -> None:
        """Save the endpoint and clear its health (saving it is how a tenant resumes a paused one)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.webhooks(endpoint.tenant_id), endpoint.id, endpoint.model_dump_json())
            pipe.delete(self.keys.webhook_health(endpoint.tenant_id, endpoint.id))
            await pipe.execute()

    async def get(self, tenant_id: str, endpoint_id: str) -> Endpoint | None:
        raw = await self.redis.hget(self.keys.webhooks(tenant_id), endpoint_id)
        return Endpoint.model_validate_json(raw) if raw else None

    async def list(self, tenant_id: str) -> list[Endpoint]:
        raw = await self.redis.hgetall(self.keys.webhooks(tenant_id))
        return sorted((Endpoint.model_validate_json(v) for v in raw.values()), key=lambda e: e.id)

    async def delete(self, tenant_id: str, endpoint_id: str) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.webhooks(tenant_id), endpoint_id)
            pipe.delete(self.keys.webhook_health(tenant_id, endpoint_id))
            removed, _ = await pipe.execute()
        return bool(removed)

    # health -------------------------------------------------------------------------------------------
    async def health(self, tenant_id: str, endpoint_id: str) -> Health:
        raw = await self.redis.hgetall(self.keys.webhook_health(tenant_id, endpoint_id))
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        return Health.model_validate(
            {
                "paused": fields.get("paused") == "1",
                "paused_reason": fields.get("paused_reason"),
                "paused_at": fields.get("paused_at"),
                "consecutive_failures": fields.get("consecutive_failures", 0),
                "failing_since": fields.get("failing_since"),
                "last_error": fields.get("last_error"),
                "last_error_at": fields.get("last_error_at"),
                "last_success_at": fields.get("last_success_at"),
            }
        )

    async def is_paused(self, tenant_id: str, endpoint_id: str) -> bool:
        return await self.redis.hget(self.keys.webhook_health(tenant_id, endpoint_id), "paused") == b"1"

    async def record_success(self, tenant_id: str, endpoint_id: str) -> None:
        key = self.keys.webhook_health(tenant_id, endpoint_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"consecutive_failures": 0, "last_success_at": repr(time.time())})
            pipe.hdel(key, "failing_since")
            await pipe.execute()

    async def record_failure(
        self, tenant_id: str, endpoint_id: str, error: str, *, min_failures: int, after_s: float
    ) -> bool:
        """Count a failed attempt; True when this failure paused the endpoint."""
        now = time.time()
        reason = (
            f"every attempt failed for {after_s:g} s or more ({min_failures}+ in a row); last error: {error}"
        )[:500]
        key = self.keys.webhook_health(tenant_id, endpoint_id)
        args = [repr(now), error[:500], min_failures, after_s, reason]
        return int(await self._failure(keys=[key], args=args)) == 2


def endpoint_view(endpoint: Endpoint, health: Health) -> dict[str, object]:
    """What ``GET /v1/webhooks/{id}`` shows: never a secret, always the health."""
    doc = orjson.loads(endpoint.model_dump_json(exclude={"secret", "previous_secret", "tenant_id"}))
    doc["rotating"] = endpoint.previous_secret is not None
    doc["status"] = "paused" if health.paused else ("enabled" if endpoint.enabled else "disabled")
    doc["health"] = health.model_dump(exclude_none=True)
    return doc
