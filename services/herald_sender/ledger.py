"""The delivery ledger in Redis: one hash per deterministic delivery id.

``begin`` atomically refuses a delivery that already reached ``sent`` or a final state (so a
redelivered Kafka record is not sent twice) and otherwise marks it ``sending`` and counts the attempt.
``finish`` records the outcome. The only duplicate window is a crash after the provider accepted and
before ``finish`` wrote ``sent``: the record is redelivered, the ledger still says ``sending``, and the
message is sent again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from herald_common.redisio import Keys

DONE = ("sent", "delivered", "bounced", "failed", "expired")

_BEGIN = """
local state = redis.call('HGET', KEYS[1], 'state')
if state then
  for i = 2, #ARGV do
    if state == ARGV[i] then return {state, redis.call('HGET', KEYS[1], 'attempts') or '0'} end
  end
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'state', 'sending', 'updated_at', ARGV[1])
return {'sending', tostring(attempts)}
"""


@dataclass(slots=True)
class Entry:
    state: str
    attempts: int
    provider: str | None = None
    provider_message_id: str | None = None
    reason: str | None = None


class Ledger:
    def __init__(self, redis: aioredis.Redis, keys: Keys, ttl_s: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_s = ttl_s
        self._begin = redis.register_script(_BEGIN)

    async def begin(self, delivery_id: str) -> tuple[bool, int]:
        """Returns (go, attempts). go is False when the delivery was already done."""
        state, attempts = await self._begin(keys=[self.keys.ledger(delivery_id)], args=[time.time(), *DONE])
        return state == b"sending", int(attempts)

    async def finish(
        self,
        delivery_id: str,
        state: str,
        *,
        provider: str | None = None,
        provider_message_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        key = self.keys.ledger(delivery_id)
        fields = {
            "state": state,
            "updated_at": time.time(),
            "provider": provider or "",
            "provider_message_id": provider_message_id or "",
            "reason": reason or "",
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=fields)
            pipe.expire(key, self.ttl_s)
            await pipe.execute()

    async def get(self, delivery_id: str) -> Entry | None:
        raw = await self.redis.hgetall(self.keys.ledger(delivery_id))
        if not raw:
            return None
        d = {k.decode(): v.decode() for k, v in raw.items()}
        return Entry(
            d.get("state", ""),
            int(d.get("attempts", "0")),
            d.get("provider") or None,
            d.get("provider_message_id") or None,
            d.get("reason") or None,
        )
