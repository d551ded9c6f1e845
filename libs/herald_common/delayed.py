"""Delayed work in Redis: Kafka records to produce later, released by ``herald scheduler``.

Keys (one cluster hash tag, so each script touches a single slot):

- ``{prefix}:{delayed}:due``    sorted set, item id → due time (Unix seconds)
- ``{prefix}:{delayed}:items``  hash, item id → the record (topic, key, value, headers) as JSON
- ``{prefix}:{delayed}:leases`` sorted set, item id → lease expiry, for items being released
- ``{prefix}:{delayed}:owners`` hash, item id → the token of the claim that holds its lease

Protocol. :meth:`DelayQueue.put` writes the item and its due time in one transaction; putting an id
again replaces the item (so one delivery attempt is held once, however often it is scheduled).
:meth:`DelayQueue.claim` is one Lua script timed by the Redis server's clock: it first moves items
whose lease expired back to due (their claimer died or stalled), then moves up to ``limit`` due items
from ``due`` to ``leases`` under a fresh random token and returns them. Being one script, two
schedulers can never claim the same item while its lease holds. The claimer produces the records and
then :meth:`DelayQueue.ack` removes them, but only those its token still owns: an item whose lease ran
out and was claimed again belongs to the new claimer. An item put again while it was leased keeps its
new version (ack leaves ``items`` alone when the id is back in ``due``).

Guarantee: at least once. A scheduler that dies after producing and before acking has its items
released again after the lease; consumers dedupe (the sender's ledger does).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis

from herald_common.redisio import Keys

_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit = tonumber(ARGV[2])
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[4], id)
  if not redis.call('ZSCORE', KEYS[1], id) then redis.call('ZADD', KEYS[1], now, id) end
end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)
local lease_until = now + tonumber(ARGV[1])
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local item = redis.call('HGET', KEYS[3], id)
  if item then
    redis.call('ZADD', KEYS[2], lease_until, id)
    redis.call('HSET', KEYS[4], id, ARGV[3])
    out[#out + 1] = id
    out[#out + 1] = item
  end
end
return out
"""

_ACK = """
local n = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[4], id) == ARGV[1] then
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[4], id)
    if not redis.call('ZSCORE', KEYS[1], id) then redis.call('HDEL', KEYS[3], id) end
    n = n + 1
  end
end
return n
"""


@dataclass(frozen=True, slots=True)
class DelayedRecord:
    """A Kafka record to produce later."""

    topic: str
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "topic": self.topic,
                "key": _b64(self.key) if self.key is not None else None,
                "value": _b64(self.value),
                "headers": [[name, _b64(value)] for name, value in self.headers],
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> DelayedRecord:
        doc = orjson.loads(raw)
        return cls(
            topic=str(doc["topic"]),
            value=base64.b64decode(doc["value"]),
            key=base64.b64decode(doc["key"]) if doc.get("key") is not None else None,
            headers=tuple((str(n), base64.b64decode(v)) for n, v in doc.get("headers") or ()),
        )


@dataclass(frozen=True, slots=True)
class Claim:
    token: str
    items: list[tuple[str, bytes]]  # (item id, encoded DelayedRecord)


class DelayQueue:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self._keys = [
            keys.delayed("due"),
            keys.delayed("leases"),
            keys.delayed("items"),
            keys.delayed("owners"),
        ]
        self._claim = redis.register_script(_CLAIM)
        self._ack = redis.register_script(_ACK)

    async def put(self, item_id: str, record: DelayedRecord, due_at: float) -> None:
        """Hold ``record`` until ``due_at`` (Unix seconds). Replaces an item with the same id."""
        due, _, items, _ = self._keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(items, item_id, record.encode())
            pipe.zadd(due, {item_id: due_at})
            await pipe.execute()

    async def claim(self, limit: int, lease_s: float) -> Claim:
        """Take up to ``limit`` due items under a lease of ``lease_s`` seconds."""
        token = secrets.token_hex(16)
        flat = await self._claim(keys=self._keys, args=[lease_s, limit, token])
        items = [(flat[i].decode(), flat[i + 1]) for i in range(0, len(flat), 2)]
        return Claim(token, items)

    async def ack(self, token: str, item_ids: list[str]) -> int:
        """Forget released items that ``token`` still holds; returns how many it did."""
        if not item_ids:
            return 0
        return int(await self._ack(keys=self._keys, args=[token, *item_ids]))

    async def next_due(self) -> float | None:
        """When the earliest item is due (Unix seconds), or None when nothing waits."""
        first = await self.redis.zrange(self._keys[0], 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    async def pending(self) -> tuple[int, int]:
        """(items waiting, items leased right now)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self._keys[0])
            pipe.zcard(self._keys[1])
            waiting, leased = await pipe.execute()
        return int(waiting), int(leased)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
