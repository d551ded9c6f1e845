"""Redis access: one client per process (redis.asyncio, pooled) and the key layout, in one place."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from herald_common.settings import CommonSettings


def make_redis(settings: CommonSettings) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        settings.redis_url,
        decode_responses=False,
        socket_timeout=5.0,
        socket_connect_timeout=5.0,
        health_check_interval=30,
        max_connections=256,
        retry_on_timeout=True,
    )


@dataclass(frozen=True, slots=True)
class Keys:
    """Every Redis key Herald uses. Tenant data is always under the tenant's id."""

    prefix: str = "herald"

    def tenant(self, tenant_id: str) -> str:
        return f"{self.prefix}:tenant:{tenant_id}"

    def tenant_keys(self, tenant_id: str) -> str:
        return f"{self.prefix}:tenant:{tenant_id}:keys"

    def api_key(self, key_hash: str) -> str:
        return f"{self.prefix}:apikey:{key_hash}"

    def contact(self, tenant_id: str, contact_id: str) -> str:
        return f"{self.prefix}:t:{tenant_id}:contact:{contact_id}"

    def template(self, tenant_id: str, template_id: str) -> str:
        return f"{self.prefix}:t:{tenant_id}:template:{template_id}"

    def suppressions(self, tenant_id: str) -> str:
        return f"{self.prefix}:t:{tenant_id}:suppressed"

    def notification(self, tenant_id: str, notification_id: str) -> str:
        return f"{self.prefix}:t:{tenant_id}:n:{notification_id}"

    def idempotency(self, tenant_id: str, key: str) -> str:
        return f"{self.prefix}:t:{tenant_id}:idem:{key}"

    def ledger(self, delivery_id: str) -> str:
        return f"{self.prefix}:ledger:{delivery_id}"

    def delayed(self, part: str) -> str:
        """The scheduler's delayed-work keys (``due``, ``leases``, ``items``, ``owners``), one hash tag."""
        return f"{self.prefix}:{{delayed}}:{part}"

    def receipt_seen(self, provider: str, event_id: str) -> str:
        return f"{self.prefix}:receipt:{provider}:{event_id}"

    def dead_letter_replayed(self, topic: str, partition: int, offset: int) -> str:
        return f"{self.prefix}:dlq:replayed:{topic}:{partition}:{offset}"
