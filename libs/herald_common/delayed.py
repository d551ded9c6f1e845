"""Delayed work in Redis: Kafka records to produce later, released by ``herald scheduler``.

Keys (one cluster hash tag, so each script touches a single slot):

- ``{prefix}:{delayed}:due``    sorted set, item id → due time (Unix seconds)
- ``{prefix}:{delayed}:items``  hash, item id → the record (topic, key, value, headers) as JSON
- ``{prefix}:{delayed}:leases`` sorted set, claim token → lease expiry, one entry per claim
- ``{prefix}:{delayed}:owners`` hash, item id → the token of the claim that holds it (leased items)
- ``{prefix}:{delayed}:claims`` hash, claim token → the ids it holds (JSON), to put them back

Protocol. :meth:`DelayQueue.put` writes the item and its due time in one transaction; putting an id
again replaces the item (so one delivery attempt is held once, however often it is scheduled).
:meth:`DelayQueue.claim` is one Lua script timed by the Redis server's clock: it first moves the items
of claims whose lease expired back to due (their claimer died or stalled; only items that claim still
owns), then takes up to ``limit`` due items off the head of ``due`` (one ZREMRANGEBYRANK), marks them
owned by a fresh random token (one HSET) under one lease entry for the whole claim, and returns them.
The work per item is a few hash-field writes, the per-call overhead is paid once per batch: that is
what lets one scheduler release tens of thousands of items a second. Being one script, two
schedulers can never claim the same item while its lease holds. The claimer produces the records and
then :meth:`DelayQueue.ack` removes them (and the claim once it holds nothing), but only those its
token still owns: an item whose lease ran out and was claimed again belongs to the new claimer. An item
put again while it was leased keeps its new version (ack leaves ``items`` alone when the id is back in
``due``).

Guarantee: at least once. A scheduler that dies after producing and before acking has its items
released again after the lease; consumers dedupe (the sender's ledger does).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis

from herald_common.redisio import Keys, register_script

_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tok = ARGV[3]
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 64)
for _, old in ipairs(expired) do
  redis.call('ZREM', KEYS[2], old)
  local packed = redis.call('HGET', KEYS[5], old)
  redis.call('HDEL', KEYS[5], old)
  if packed then
    for _, id in ipairs(cjson.decode(packed)) do
      if redis.call('HGET', KEYS[4], id) == old then
        redis.call('HDEL', KEYS[4], id)
        if not redis.call('ZSCORE', KEYS[1], id) then redis.call('ZADD', KEYS[1], now, id) end
      end
    end
  end
end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
if #ids == 0 then return '' end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #ids - 1)
local out, claimed, owners = {}, {}, {}
for i = 1, #ids, 1000 do
  local chunk = {unpack(ids, i, math.min(i + 999, #ids))}
  local items = redis.call('HMGET', KEYS[3], unpack(chunk))
  for j, id in ipairs(chunk) do
    if items[j] then
      out[#out + 1] = id
      out[#out + 1] = items[j]
      claimed[#claimed + 1] = id
      owners[#owners + 1] = id
      owners[#owners + 1] = tok
    end
  end
end
if #claimed > 0 then
  for i = 1, #owners, 2000 do
    redis.call('HSET', KEYS[4], unpack(owners, i, math.min(i + 1999, #owners)))
  end
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), tok)
  redis.call('HSET', KEYS[5], tok, cjson.encode(claimed))
end
return table.concat(out, '\\n')
"""

_ACK = """
local tok = ARGV[1]
local n = 0
local acked = {}
for id in string.gmatch(ARGV[2], '[^\\n]+') do acked[#acked + 1] = id end
for i = 1, #acked, 1000 do
  local chunk = {unpack(acked, i, math.min(i + 999, #acked))}
  local own = redis.call('HMGET', KEYS[4], unpack(chunk))
  local mine = {}
  for j, id in ipairs(chunk) do
    if own[j] == tok then mine[#mine + 1] = id end
  end
  if #mine > 0 then
    redis.call('HDEL', KEYS[4], unpack(mine))
    local scores = redis.call('ZMSCORE', KEYS[1], unpack(mine))
    local gone = {}
    for j, id in ipairs(mine) do
      if not scores[j] then gone[#gone + 1] = id end
    end
    if #gone > 0 then redis.call('HDEL', KEYS[3], unpack(gone)) end
    n = n + #mine
  end
end
local packed = redis.call('HGET', KEYS[5], tok)
if packed then
  local all, left = cjson.decode(packed), {}
  for i = 1, #all, 1000 do
    local chunk = {unpack(all, i, math.min(i + 999, #all))}
    local own = redis.call('HMGET', KEYS[4], unpack(chunk))
    for j, id in ipairs(chunk) do
      if own[j] == tok then left[#left + 1] = id end
    end
  end
  if #left == 0 then
    redis.call('HDEL', KEYS[5], tok)
    redis.call('ZREM', KEYS[2], tok)
  else
    redis.call('HSET', KEYS[5], tok, cjson.encode(left))
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
            keys.delayed("claims"),
        ]
        self._claim = register_script(redis, _CLAIM)
        self._ack = register_script(redis, _ACK)

    async def put(self, item_id: str, record: DelayedRecord, due_at: float) -> None:
        """Hold ``record`` until ``due_at`` (Unix seconds). Replaces an item with the same id."""
        due, _, items, *_ = self._keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(items, item_id, record.encode())
            pipe.zadd(due, {item_id: due_at})
            await pipe.execute()

    async def put_many(self, items: Sequence[tuple[str, DelayedRecord, float]]) -> None:
        """:meth:`put` for many ``(item id, record, due_at)`` at once: one transaction of one HSET and
        one ZADD, so a large backlog loads at memory speed (keep a call to some thousands of items)."""
        if not items:
            return
        due, _, keys_items, *_ = self._keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys_items, mapping={item_id: record.encode() for item_id, record, _ in items})
            pipe.zadd(due, {item_id: due_at for item_id, _, due_at in items})
            await pipe.execute()

    async def claim(self, limit: int, lease_s: float) -> Claim:
        """Take up to ``limit`` due items under a lease of ``lease_s`` seconds."""
        token = secrets.token_hex(16)
        # One bulk string, id and item on alternate lines (ids have no line breaks, items are JSON): a
        # batch is one reply to parse, not two per item.
        packed = await self._claim(keys=self._keys, args=[lease_s, limit, token])
        flat = packed.split(b"\n") if packed else []
        items = [(flat[i].decode(), flat[i + 1]) for i in range(0, len(flat), 2)]
        return Claim(token, items)

    async def ack(self, token: str, item_ids: list[str]) -> int:
        """Forget released items that ``token`` still holds; returns how many it did."""
        if not item_ids:
            return 0
        return int(await self._ack(keys=self._keys, args=[token, "\n".join(item_ids)]))

    async def next_due(self) -> float | None:
        """When the earliest item is due (Unix seconds), or None when nothing waits."""
        first = await self.redis.zrange(self._keys[0], 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    async def pending(self) -> tuple[int, int]:
        """(items waiting, items leased right now)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self._keys[0])
            pipe.hlen(self._keys[3])
            waiting, leased = await pipe.execute()
        return int(waiting), int(leased)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
